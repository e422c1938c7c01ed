package snapshot

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/schema"
)

// RestoreOptions configures a restore of one or more snapshots (for example the shards of a split,
// or snapshots of several sources) into one target.
type RestoreOptions struct {
	Target ferry.ConnConfig
	// Snapshots are the locations to restore, each holding a manifest at ManifestName.
	Snapshots []Storage
	// Threads is the number of files loaded at once; default 4.
	Threads int
	// DelaySecondaryIndexes creates tables without their plain (non-unique) secondary indexes and
	// adds them after the rows are loaded, which is faster for large tables. Tables with foreign
	// keys keep their indexes.
	DelaySecondaryIndexes bool
	// AllowNonEmpty lets the restore load into tables that already hold rows. Without it such a
	// target is refused before anything is written.
	AllowNonEmpty bool
	// Resume continues an interrupted restore of the same snapshot(s): files recorded as loaded are
	// skipped. Without it, a target holding an interrupted restore is refused.
	Resume bool
	// DatabaseRewrites restores the tables of a source database into another database of the
	// target (source name → target name), like ferry.Config.DatabaseRewrites. Every database named
	// must be in the snapshots, and no two databases may end up in one.
	DatabaseRewrites map[string]string
	// CreateSchemaObjects creates the snapshot's views and stored routines of these kinds
	// (ferry.ObjectViews, ferry.ObjectRoutines) once the rows are loaded. One of the same name
	// already on the target is left as it is. Not with DatabaseRewrites of their database: their
	// definitions name the source's objects.
	CreateSchemaObjects []string
	// ProgressDatabase holds the table recording which files are loaded; default "_ferry".
	ProgressDatabase string
	// MaxRowsPerSecond limits the load rate (0: no limit), to spare a busy target.
	MaxRowsPerSecond int
	// Progress, if set, is called every ProgressInterval (default 10s) and at the end.
	Progress         func(RestoreProgress)
	ProgressInterval time.Duration
	Logger           logrus.FieldLogger
}

// RestoreProgress reports a running restore.
type RestoreProgress struct {
	Files, FilesDone int
	Rows, RowsDone   int64
	Elapsed          time.Duration
	// ETA is the estimated time left at the current rate (0 when unknown or done).
	ETA time.Duration
}

// RestoreReport summarizes a restore.
type RestoreReport struct {
	Manifests []*Manifest
	Files     int
	Rows      int64
	// SkippedFiles were loaded by an earlier, interrupted run (Resume).
	SkippedFiles int
	// ObjectsCreated and ObjectsExisting name ("kind db.name") the views and routines created, and
	// those left as they were because the target had one of that name.
	ObjectsCreated, ObjectsExisting []string
	Verify                          time.Duration
	Load                            time.Duration
	Indexes                         time.Duration
}

type loadFile struct {
	st    Storage
	m     *Manifest
	table *TableManifest
	f     *FileManifest
}

// Restore verifies every file of the snapshots, then creates the schema and loads the rows.
//
// Guarantees: nothing is written to the target unless every file of every manifest is present and
// matches its size and SHA-256 (a corrupted, truncated or missing file is an error naming it).
// Each file is loaded in one target transaction that also records the file as loaded, and is
// hashed again while it is loaded (a file changed since the check rolls back); so an interrupted
// restore leaves whole files loaded and nothing of any other, and a run with Resume loads exactly
// the files that are missing.
func Restore(ctx context.Context, o RestoreOptions) (*RestoreReport, error) {
	if len(o.Snapshots) == 0 {
		return nil, errors.New("restore: no snapshot given")
	}
	if o.Threads <= 0 {
		o.Threads = 4
	}
	if o.ProgressDatabase == "" {
		o.ProgressDatabase = "_ferry"
	}
	if o.ProgressInterval <= 0 {
		o.ProgressInterval = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = logrus.StandardLogger()
	}
	rep := &RestoreReport{}
	var files []loadFile
	tables := map[string]*TableManifest{} // db.table → first manifest's definition
	var order []string
	wholeFrom := map[string]string{} // table stored whole → the manifest it is loaded from
	for _, st := range o.Snapshots {
		m, err := ReadManifest(ctx, st, ManifestName)
		if err != nil {
			return nil, err
		}
		rep.Manifests = append(rep.Manifests, m)
	}
	renamed, err := rewriteDatabases(rep.Manifests, o.DatabaseRewrites)
	if err != nil {
		return nil, err
	}
	for i, st := range o.Snapshots {
		m := rep.Manifests[i]
		for _, t := range renamed[i] {
			key := t.String()
			if prev, ok := tables[key]; ok {
				if prev.CreateTable != t.CreateTable {
					return nil, fmt.Errorf("restore: table %s is defined differently in %s than in an earlier snapshot; restore them into different targets", key, st.Describe(ManifestName))
				}
				if (prev.Where == "") != (t.Where == "") {
					return nil, fmt.Errorf("restore: table %s is split in one snapshot and whole in another", key)
				}
				if t.Where == "" {
					if from := wholeFrom[key]; from != m.ID && !sameSnapshot(from, m.ID) {
						return nil, fmt.Errorf("restore: table %s is stored whole in two different snapshots (%s, %s); loading both would duplicate its rows", key, from, m.ID)
					}
					continue // the same table of the same split snapshot: loaded once
				}
			} else {
				tables[key] = t
				order = append(order, key)
				if t.Where == "" {
					wholeFrom[key] = m.ID
				}
			}
			for _, f := range t.Files {
				files = append(files, loadFile{st, m, t, f})
			}
		}
	}
	objects, err := objectsToCreate(rep.Manifests, o.CreateSchemaObjects, o.DatabaseRewrites)
	if err != nil {
		return nil, err
	}
	// 1. Every file is checked before anything is written.
	start := time.Now()
	if err := verifyFiles(ctx, files, o.Threads); err != nil {
		return nil, fmt.Errorf("restore: %w; nothing was written to the target", err)
	}
	rep.Verify = time.Since(start)

	db, err := o.Target.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(o.Threads + 2)
	flavor, err := ferry.DetectFlavor(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	var infile sql.NullString
	if err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.local_infile").Scan(&infile); err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	if infile.String != "1" && !strings.EqualFold(infile.String, "ON") {
		return nil, errors.New("target: restore loads with LOAD DATA LOCAL INFILE, which the target refuses (local_infile=OFF); SET GLOBAL local_infile = 1")
	}
	// 2. Which files an earlier run loaded.
	progress := schema.QuoteIdent(o.ProgressDatabase) + ".`restored_files`"
	if _, err := db.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+schema.QuoteIdent(o.ProgressDatabase)); err != nil {
		return nil, fmt.Errorf("target: create %s: %w", o.ProgressDatabase, err)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+progress+` (
		snapshot_id VARCHAR(100) CHARACTER SET ascii NOT NULL, file VARCHAR(1000) CHARACTER SET ascii NOT NULL,
		table_name VARCHAR(200) NOT NULL, rows_loaded BIGINT NOT NULL, loaded_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
		PRIMARY KEY (snapshot_id, file)) ENGINE=InnoDB`); err != nil {
		return nil, fmt.Errorf("target: create %s: %w", progress, err)
	}
	loaded := map[string]bool{}
	for _, m := range rep.Manifests {
		rows, err := db.QueryContext(ctx, "SELECT file FROM "+progress+" WHERE snapshot_id = ?", m.ID)
		if err != nil {
			return nil, fmt.Errorf("target: %w", err)
		}
		for rows.Next() {
			var f string
			if err := rows.Scan(&f); err != nil {
				rows.Close()
				return nil, err
			}
			loaded[m.ID+"\x00"+f] = true
		}
		rows.Close()
	}
	if len(loaded) == len(files) && !o.Resume {
		return nil, fmt.Errorf("target: this snapshot is already restored into this target (its %d files are recorded in %s); to restore it again, drop its tables and those records first", len(files), progress)
	}
	if len(loaded) > 0 && !o.Resume {
		return nil, fmt.Errorf("target: an earlier restore of this snapshot loaded %d of its %d files into this target (recorded in %s) and did not finish; rerun with -resume to load the rest", len(loaded), len(files), progress)
	}
	// 3. The target tables: missing ones are created, existing ones must be empty unless allowed.
	var nonEmpty []string
	exists := map[string]bool{}
	for _, key := range order {
		t := tables[key]
		var one int
		err := db.QueryRowContext(ctx, "SELECT 1 FROM "+qualified(t)+" LIMIT 1").Scan(&one)
		switch {
		case err == nil:
			exists[key] = true
			nonEmpty = append(nonEmpty, key)
		case errors.Is(err, sql.ErrNoRows):
			exists[key] = true
		default:
			var me *mysql.MySQLError
			if !errors.As(err, &me) || (me.Number != 1146 && me.Number != 1049) {
				return nil, fmt.Errorf("target: %w", err)
			}
		}
	}
	if len(nonEmpty) > 0 && !o.AllowNonEmpty && !o.Resume {
		return nil, fmt.Errorf("target: tables %s already hold rows; empty them, or pass -allow-non-empty if loading into them is intended", strings.Join(nonEmpty, ", "))
	}
	deferred := map[string][]string{}
	for _, key := range order {
		t := tables[key]
		create := t.CreateTable
		if o.DelaySecondaryIndexes {
			var keys []string
			create, keys = withoutSecondaryIndexes(create)
			deferred[key] = keys
		}
		if exists[key] {
			continue
		}
		if _, err := db.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+schema.QuoteIdent(t.Database)); err != nil {
			return nil, fmt.Errorf("target: create database %s: %w", t.Database, err)
		}
		conn, err := db.Conn(ctx)
		if err != nil {
			return nil, err
		}
		_, err = conn.ExecContext(ctx, "USE "+schema.QuoteIdent(t.Database))
		if err == nil {
			_, err = conn.ExecContext(ctx, create)
		}
		conn.Close()
		if err != nil {
			return nil, fmt.Errorf("target: create table %s: %w", key, err)
		}
	}
	// 4. Load.
	var todo []loadFile
	var total int64
	for _, lf := range files {
		if loaded[lf.m.ID+"\x00"+lf.f.Name] {
			rep.SkippedFiles++
			continue
		}
		todo = append(todo, lf)
		total += lf.f.Rows
	}
	// Largest files first: the longest bounds the load.
	sort.SliceStable(todo, func(i, j int) bool { return todo[i].f.Size > todo[j].f.Size })
	if rep.SkippedFiles > 0 {
		o.Logger.WithFields(logrus.Fields{"skipped": rep.SkippedFiles, "remaining": len(todo)}).Info("restore: resuming; files loaded by the earlier run are skipped")
	}
	start = time.Now()
	var rowsDone atomic.Int64
	var filesDone atomic.Int64
	report := func() {
		p := RestoreProgress{Files: len(todo), FilesDone: int(filesDone.Load()), Rows: total, RowsDone: rowsDone.Load(), Elapsed: time.Since(start)}
		if p.RowsDone > 0 && p.RowsDone < p.Rows {
			p.ETA = time.Duration(float64(p.Elapsed) * float64(p.Rows-p.RowsDone) / float64(p.RowsDone))
		}
		o.Logger.WithFields(logrus.Fields{"files": fmt.Sprintf("%d/%d", p.FilesDone, p.Files), "rows": fmt.Sprintf("%d/%d", p.RowsDone, p.Rows),
			"eta": p.ETA.Round(time.Second)}).Info("restore: progress")
		if o.Progress != nil {
			o.Progress(p)
		}
	}
	stopProgress := make(chan struct{})
	var progressDone sync.WaitGroup
	progressDone.Add(1)
	go func() {
		defer progressDone.Done()
		tick := time.NewTicker(o.ProgressInterval)
		defer tick.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-tick.C:
				report()
			}
		}
	}()
	lim := &limiter{rate: o.MaxRowsPerSecond}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Threads)
	for _, lf := range todo {
		g.Go(func() error {
			if err := lim.wait(gctx, int(lf.f.Rows)); err != nil {
				return err
			}
			if err := loadOne(gctx, db, lf, progress, flavor.MariaDB); err != nil {
				return err
			}
			rowsDone.Add(lf.f.Rows)
			filesDone.Add(1)
			return nil
		})
	}
	err = g.Wait()
	close(stopProgress)
	progressDone.Wait()
	if err != nil {
		return nil, fmt.Errorf("restore: %w; files loaded so far are recorded in %s: rerun with -resume to load the rest", err, progress)
	}
	rep.Load = time.Since(start)
	rep.Files, rep.Rows = len(todo), rowsDone.Load()
	report()
	// 5. Secondary indexes deferred at creation (also those of a table created by an interrupted run).
	start = time.Now()
	for _, key := range order {
		if len(deferred[key]) == 0 {
			continue
		}
		if err := addIndexes(ctx, db, tables[key], deferred[key], o.Logger); err != nil {
			return nil, err
		}
	}
	rep.Indexes = time.Since(start)
	// 6. Views and routines, once every table they may read is there.
	if err := createObjects(ctx, db, objects, rep, o.Logger); err != nil {
		return nil, err
	}
	return rep, nil
}

// objectsToCreate returns the manifests' views and routines of the kinds asked for, each once
// (the shards of a split snapshot each carry them), routines first.
func objectsToCreate(ms []*Manifest, kinds []string, rewrites map[string]string) ([]*ferry.SchemaObjectDefinition, error) {
	want := map[string]bool{}
	for _, k := range kinds {
		switch k {
		case ferry.ObjectViews:
			want["view"] = true
		case ferry.ObjectRoutines:
			want["procedure"], want["function"] = true, true
		default:
			return nil, fmt.Errorf("restore: schema objects %q: a snapshot holds %s and %s", k, ferry.ObjectViews, ferry.ObjectRoutines)
		}
	}
	seen := map[string]*ferry.SchemaObjectDefinition{}
	var routines, views []*ferry.SchemaObjectDefinition
	for _, m := range ms {
		for _, d := range m.Objects {
			if !want[d.Kind] {
				continue
			}
			key := d.Kind + " " + d.Database + "." + d.Name
			if prev, ok := seen[key]; ok {
				if prev.Create != d.Create {
					return nil, fmt.Errorf("restore: %s is defined differently in two snapshots; restore them into different targets, or without %s", key, kindName(d.Kind))
				}
				continue
			}
			if to, ok := rewrites[d.Database]; ok {
				return nil, fmt.Errorf("restore: %s cannot be created in database %s (rewritten from %s): its definition names the source's objects; restore without -rewrite-databases, or without -create-objects %s", key, to, d.Database, kindName(d.Kind))
			}
			seen[key] = d
			if d.Kind == "view" {
				views = append(views, d)
			} else {
				routines = append(routines, d)
			}
		}
	}
	return append(routines, views...), nil
}

func kindName(kind string) string {
	if kind == "view" {
		return ferry.ObjectViews
	}
	return ferry.ObjectRoutines
}

// createObjects creates the views and routines the target does not have. Views are created in
// rounds, so a view over another view waits for it.
func createObjects(ctx context.Context, db *sql.DB, todo []*ferry.SchemaObjectDefinition, rep *RestoreReport, log logrus.FieldLogger) error {
	var missing []*ferry.SchemaObjectDefinition
	for _, d := range todo {
		q := "SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?"
		if d.Kind != "view" {
			q = "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? AND ROUTINE_NAME = ? AND ROUTINE_TYPE = '" + strings.ToUpper(d.Kind) + "'"
		}
		var n int
		if err := db.QueryRowContext(ctx, q, d.Database, d.Name).Scan(&n); err != nil {
			return fmt.Errorf("target: look for %s %s.%s: %w", d.Kind, d.Database, d.Name, err)
		}
		if n > 0 {
			rep.ObjectsExisting = append(rep.ObjectsExisting, d.Kind+" "+d.Database+"."+d.Name)
			continue
		}
		missing = append(missing, d)
	}
	for len(missing) > 0 {
		var retry []*ferry.SchemaObjectDefinition
		var lastErr error
		for _, d := range missing {
			if err := ferry.CreateSchemaObject(ctx, db, d.Database, d); err != nil {
				if d.Kind != "view" {
					return err
				}
				retry, lastErr = append(retry, d), err
				continue
			}
			rep.ObjectsCreated = append(rep.ObjectsCreated, d.Kind+" "+d.Database+"."+d.Name)
			log.WithField(d.Kind, d.Database+"."+d.Name).Info("restore: created")
		}
		if len(retry) == len(missing) {
			return fmt.Errorf("%w; a view can only be created when every table and view it reads is on the target", lastErr)
		}
		missing = retry
	}
	return nil
}

// rewriteDatabases returns the manifests' tables as they are named on the target: copies whose
// Database is rewritten. It refuses a rewrite of a database no snapshot holds (a typo would
// otherwise restore under the old name), two databases of one snapshot rewritten into one (tables
// of the same name would mix), and a foreign key naming a rewritten database (it would point at
// the old one).
func rewriteDatabases(ms []*Manifest, rewrites map[string]string) ([][]*TableManifest, error) {
	present := map[string]bool{}
	for _, m := range ms {
		for _, t := range m.Tables {
			present[t.Database] = true
		}
	}
	var names []string
	for from, to := range rewrites {
		if from == "" || to == "" {
			return nil, fmt.Errorf("restore: database rewrite %q=%q: both names are needed", from, to)
		}
		if !present[from] {
			return nil, fmt.Errorf("restore: database rewrite %s=%s: the snapshot holds no database %s", from, to, from)
		}
		names = append(names, from)
	}
	// Within one snapshot, two databases must not land in one (snapshots of several sources may
	// merge a database: the per-table checks of Restore apply to them).
	for _, m := range ms {
		into := map[string]string{} // target database → source database
		for _, t := range m.Tables {
			to := t.Database
			if r, ok := rewrites[to]; ok {
				to = r
			}
			if other, ok := into[to]; ok && other != t.Database {
				return nil, fmt.Errorf("restore: databases %s and %s would both be restored into %s; rewrite them into different databases", min(t.Database, other), max(t.Database, other), to)
			}
			into[to] = t.Database
		}
	}
	out := make([][]*TableManifest, len(ms))
	for i, m := range ms {
		for _, t := range m.Tables {
			for _, from := range names {
				if strings.Contains(t.CreateTable, "REFERENCES "+schema.QuoteIdent(from)+".") {
					return nil, fmt.Errorf("restore: table %s has a foreign key into database %s, which is rewritten to %s; restore without rewriting it", t, from, rewrites[from])
				}
			}
			c := *t
			if r, ok := rewrites[t.Database]; ok {
				c.Database = r
			}
			out[i] = append(out[i], &c)
		}
	}
	return out, nil
}

// sameSnapshot reports two shards of one split snapshot ("<id>-shard-N").
func sameSnapshot(a, b string) bool {
	base := func(s string) string {
		if i := strings.Index(s, "-shard-"); i >= 0 {
			return s[:i]
		}
		return s
	}
	return base(a) == base(b)
}

func qualified(t *TableManifest) string {
	return schema.QuoteIdent(t.Database) + "." + schema.QuoteIdent(t.Name)
}

// verifyFiles reads every file once and checks its size and SHA-256.
func verifyFiles(ctx context.Context, files []loadFile, threads int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(threads)
	for _, lf := range files {
		g.Go(func() error {
			r, err := lf.st.Open(gctx, lf.f.Name)
			if errors.Is(err, ErrNotExist) {
				return fmt.Errorf("file %s of table %s is missing", lf.st.Describe(lf.f.Name), lf.table)
			}
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.Copy(io.Discard, newVerifyingReader(r, lf.f, lf.st.Describe(lf.f.Name)))
			return err
		})
	}
	return g.Wait()
}

var loadSeq atomic.Int64

// loadOne loads one file in one transaction that also records it as loaded.
func loadOne(ctx context.Context, db *sql.DB, lf loadFile, progress string, mariaDB bool) error {
	desc := lf.st.Describe(lf.f.Name)
	r, err := lf.st.Open(ctx, lf.f.Name)
	if err != nil {
		return err
	}
	defer r.Close()
	vr := newVerifyingReader(r, lf.f, desc)
	text, err := decompress(vr)
	if err != nil {
		return fmt.Errorf("%s: %w: %v", desc, ErrCorrupt, err)
	}
	defer text.Close()
	name := "ferry-restore-" + strconv.FormatInt(loadSeq.Add(1), 10)
	mysql.RegisterReaderHandler(name, func() io.Reader { return text })
	defer mysql.DeregisterReaderHandler(name)
	var cols, sets []string
	for i, c := range lf.table.Columns {
		q := schema.QuoteIdent(c.Name)
		switch {
		case c.DataType == "bit":
			v := "@c" + strconv.Itoa(i)
			cols, sets = append(cols, v), append(sets, q+" = CAST("+v+" AS UNSIGNED)")
		case c.DataType == "json" && !mariaDB:
			v := "@c" + strconv.Itoa(i)
			cols, sets = append(cols, v), append(sets, q+" = CAST(CONVERT("+v+" USING utf8mb4) AS JSON)")
		default:
			cols = append(cols, q)
		}
	}
	stmt := "LOAD DATA LOCAL INFILE 'Reader::" + name + "' INTO TABLE " + qualified(lf.table) + ferry.LoadDataFormat +
		" (" + strings.Join(cols, ", ") + ")"
	if len(sets) > 0 {
		stmt += " SET " + strings.Join(sets, ", ")
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, stmt)
	if err != nil {
		return fmt.Errorf("load %s into %s: %w", desc, lf.table, err)
	}
	// The decompressor may stop at the end of its frame: read the stored file to its end, so the
	// size and hash are checked before the commit.
	if _, err := io.Copy(io.Discard, vr); err != nil {
		return err
	}
	if err := ferry.CheckLoadDataWarnings(ctx, tx, lf.table.String(), false); err != nil {
		return fmt.Errorf("load %s: %w", desc, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != lf.f.Rows {
		return fmt.Errorf("load %s into %s: %d rows loaded, the manifest says %d", desc, lf.table, n, lf.f.Rows)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+progress+" (snapshot_id, file, table_name, rows_loaded) VALUES (?, ?, ?, ?)",
		lf.m.ID, lf.f.Name, lf.table.String(), lf.f.Rows); err != nil {
		return fmt.Errorf("record %s as loaded: %w", desc, err)
	}
	return tx.Commit()
}

// withoutSecondaryIndexes removes the plain secondary indexes ("  KEY ...") from a SHOW CREATE
// TABLE statement and returns them. A table with foreign keys is left whole (they need indexes).
func withoutSecondaryIndexes(create string) (string, []string) {
	if strings.Contains(create, "FOREIGN KEY") {
		return create, nil
	}
	lines := strings.Split(create, "\n")
	var kept, keys []string
	for _, l := range lines {
		if strings.HasPrefix(l, "  KEY ") {
			keys = append(keys, strings.TrimSuffix(strings.TrimSpace(l), ","))
			continue
		}
		kept = append(kept, l)
	}
	if len(keys) == 0 {
		return create, nil
	}
	// The line before the closing one must not end with a comma any more.
	for i := len(kept) - 1; i > 0; i-- {
		if strings.HasPrefix(kept[i], ")") {
			kept[i-1] = strings.TrimSuffix(kept[i-1], ",")
			break
		}
	}
	return strings.Join(kept, "\n"), keys
}

// addIndexes adds, in one ALTER TABLE, the deferred indexes the target table does not have yet.
func addIndexes(ctx context.Context, db *sql.DB, t *TableManifest, keys []string, log logrus.FieldLogger) error {
	have := map[string]bool{}
	rows, err := db.QueryContext(ctx, "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", t.Database, t.Name)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		have[n] = true
	}
	rows.Close()
	var add []string
	for _, k := range keys {
		// "KEY `name` (...)"
		name := k[len("KEY "):]
		if i := strings.Index(name[1:], "` "); strings.HasPrefix(name, "`") && i >= 0 {
			name = strings.ReplaceAll(name[1:i+1], "``", "`")
		}
		if !have[name] {
			add = append(add, "ADD "+k)
		}
	}
	if len(add) == 0 {
		return nil
	}
	start := time.Now()
	if _, err := db.ExecContext(ctx, "ALTER TABLE "+qualified(t)+" "+strings.Join(add, ", ")); err != nil {
		return fmt.Errorf("target: add secondary indexes to %s: %w", t, err)
	}
	log.WithFields(logrus.Fields{"table": t.String(), "indexes": len(add), "took": time.Since(start).Round(time.Millisecond)}).Info("restore: secondary indexes added")
	return nil
}

// Verify reads a snapshot's manifest and checks that every file is present with its size and
// SHA-256, without a server.
func Verify(ctx context.Context, st Storage) (*Manifest, error) {
	m, err := ReadManifest(ctx, st, ManifestName)
	if err != nil {
		return nil, err
	}
	var files []loadFile
	for _, t := range m.Tables {
		for _, f := range t.Files {
			files = append(files, loadFile{st, m, t, f})
		}
	}
	return m, verifyFiles(ctx, files, 4)
}
