package snapshot

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/schema"
)

// Options configures a snapshot.
type Options struct {
	Source ferry.ConnConfig
	Tables ferry.TableFilter
	// Storage receives the files and the manifest(s).
	Storage Storage
	// Threads is the number of connections reading at once (each its own consistent snapshot of the
	// same position); default 4.
	Threads int
	// RangesPerTable splits each large table into this many key ranges read in parallel; default
	// 4 × Threads. More ranges than connections keep every connection busy to the end: with one
	// range per connection a 300k-row snapshot used 1.2 of 2 cores and ran at 0.88× `mariadb-dump |
	// zstd`; with four per connection it used 1.8 and ran at 1.26× (docs/benchmarks.md).
	RangesPerTable int
	// MaxFileSize bounds the rows' text in one file (the stored file is this or smaller once
	// compressed; a single larger row gets a file of its own); default 64 MiB.
	MaxFileSize int64
	// Compression is CompressZstd (default), CompressGzip or CompressNone; CompressionLevel 0 is the
	// fastest level.
	Compression      string
	CompressionLevel int
	// Split, when set, writes one snapshot per shard (see Split), under "shard-<i>/".
	Split *Split
	// MaxRowsPerSecond limits the read rate (0: no limit), to spare a busy source.
	MaxRowsPerSecond int
	// LockWaitTimeout bounds the wait for the brief commit lock taken when the lock-free way to a
	// shared position does not succeed; default 10s.
	LockWaitTimeout time.Duration
	// LockFreeAttempts is how many times the lock-free way is tried first; default 3; negative: never.
	LockFreeAttempts int
	Logger           logrus.FieldLogger
}

// ShardLocation is the location, relative to the snapshot's, of shard i of a split snapshot.
func ShardLocation(i int) string { return "shard-" + strconv.Itoa(i) }

// Take snapshots the selected tables of a live source at one binlog position and returns the
// manifest (one per shard for a split snapshot), written last to Storage.
func Take(ctx context.Context, o Options) ([]*Manifest, error) {
	if o.Storage == nil {
		return nil, errors.New("snapshot: no storage")
	}
	if o.Threads <= 0 {
		o.Threads = 4
	}
	if o.RangesPerTable <= 0 {
		o.RangesPerTable = 4 * o.Threads
	}
	if o.MaxFileSize <= 0 {
		o.MaxFileSize = 64 << 20
	}
	if o.Compression == "" {
		o.Compression = CompressZstd
	}
	if _, err := newCompressor(&bytes.Buffer{}, o.Compression, o.CompressionLevel); err != nil {
		return nil, err
	}
	if o.LockWaitTimeout <= 0 {
		o.LockWaitTimeout = 10 * time.Second
	}
	if o.LockFreeAttempts == 0 {
		o.LockFreeAttempts = 3
	}
	if o.Logger == nil {
		o.Logger = logrus.StandardLogger()
	}
	shards := 1
	if o.Split != nil {
		if err := o.Split.validate(); err != nil {
			return nil, err
		}
		shards = o.Split.count()
	}
	source := o.Source
	if source.ReadBufferSize == 0 {
		source.ReadBufferSize = 256 << 10 // whole result sets are read: fewer, larger reads
	}
	db, err := source.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(2*o.Threads + 2)
	flavor, err := ferry.DetectFlavor(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	identity, err := ferry.ReadServerIdentity(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	tables, err := selectTables(ctx, db, o.Tables)
	if err != nil {
		return nil, err
	}
	s := &snap{o: o, db: db, flavor: flavor, identity: identity, shards: shards, started: time.Now().UTC()}
	s.limit.rate = o.MaxRowsPerSecond
	for _, t := range tables {
		st, err := s.prepareTable(ctx, t)
		if err != nil {
			return nil, err
		}
		s.tables = append(s.tables, st)
	}
	conns, err := s.openSnapshots(ctx)
	defer func() {
		for _, c := range conns {
			c.ExecContext(context.Background(), "ROLLBACK")
			c.Close()
		}
	}()
	if err != nil {
		return nil, err
	}
	// A table altered between loading its definition and opening the snapshots would be read with
	// the wrong columns; one altered after is refused by InnoDB itself (ER_TABLE_DEF_CHANGED).
	for _, st := range s.tables {
		now, err := schema.Load(ctx, conns[0], st.t.Database, st.t.Name)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		if now.CreateTable != st.t.CreateTable {
			return nil, fmt.Errorf("source: table %s changed while the snapshot started; run the snapshot again", st.t)
		}
	}
	if s.objects, err = readSchemaObjects(ctx, s.db, s.tables, o.Tables); err != nil {
		return nil, err
	}
	o.Logger.WithFields(logrus.Fields{"position": s.pos.String(), "gtid": s.pos.GTID, "consistency": s.consistency,
		"lock_held": s.lockHeld, "tables": len(s.tables)}).Info("snapshot: consistent snapshot open")

	var tasks []task
	for _, st := range s.tables {
		for i, r := range st.ranges {
			tasks = append(tasks, task{st, i, r})
		}
	}
	queue := make(chan task)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(queue)
		for _, tk := range tasks {
			select {
			case queue <- tk:
			case <-gctx.Done():
				return nil
			}
		}
		return nil
	})
	for _, c := range conns {
		g.Go(func() error {
			for tk := range queue {
				if err := s.readRange(gctx, c, tk); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, c := range conns {
		if _, err := c.ExecContext(ctx, "COMMIT"); err != nil {
			return nil, fmt.Errorf("source: end snapshot: %w", err)
		}
	}
	return s.writeManifests(ctx)
}

type snap struct {
	o           Options
	db          *sql.DB
	flavor      ferry.Flavor
	identity    ferry.ServerIdentity
	shards      int
	started     time.Time
	pos         ferry.Position
	consistency string
	lockHeld    time.Duration
	tables      []*snapTable
	objects     []*ferry.SchemaObjectDefinition
	limit       limiter
	seq         atomic.Int64
}

type snapTable struct {
	t         *schema.Table
	cols      []*schema.Column
	keyIdx    []int
	shardExpr string
	ranges    []*ferry.KeyRange
	mu        sync.Mutex
	files     [][]*FileManifest // per shard
	rows      []int64           // per shard
}

type task struct {
	st    *snapTable
	index int
	r     *ferry.KeyRange
}

func selectTables(ctx context.Context, db *sql.DB, f ferry.TableFilter) ([]*schema.Table, error) {
	dbs, err := schema.ListDatabases(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	var out []*schema.Table
	for _, d := range dbs {
		names, err := schema.ListTables(ctx, db, d)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		for _, n := range names {
			if !f.Selects(d, n) {
				continue
			}
			t, err := schema.Load(ctx, db, d, n)
			if err != nil {
				return nil, fmt.Errorf("source: %w", err)
			}
			out = append(out, t)
		}
	}
	// A name without wildcards names one table, and a database named must exist: a typo is an
	// error, not a smaller snapshot.
	for _, p := range f.Include {
		if strings.ContainsAny(p, "*?[") {
			continue
		}
		found := false
		for _, t := range out {
			found = found || t.String() == p
		}
		if !found {
			return nil, fmt.Errorf("source: table %s does not exist (or is excluded)", p)
		}
	}
	for _, d := range f.Databases {
		found := false
		for _, x := range dbs {
			found = found || x == d
		}
		if !found {
			return nil, fmt.Errorf("source: database %s does not exist", d)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("source: no table matches the table filter (-databases / -tables)")
	}
	return out, nil
}

// readSchemaObjects reads the definitions of the views the filter selects and the stored routines
// of the databases holding the snapshot's tables. They are not versioned like rows: these are the
// definitions when the snapshot opened.
func readSchemaObjects(ctx context.Context, db *sql.DB, tables []*snapTable, f ferry.TableFilter) ([]*ferry.SchemaObjectDefinition, error) {
	var dbs []string
	for _, st := range tables {
		if !slices.Contains(dbs, st.t.Database) {
			dbs = append(dbs, st.t.Database)
		}
	}
	var out []*ferry.SchemaObjectDefinition
	for _, d := range dbs {
		rows, err := db.QueryContext(ctx, `
			SELECT 'view', TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ?
			UNION ALL SELECT LOWER(ROUTINE_TYPE), ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?
			ORDER BY 1, 2`, d, d)
		if err != nil {
			return nil, fmt.Errorf("source: list the views and routines of %s: %w", d, err)
		}
		var names [][2]string
		for rows.Next() {
			var kind, name string
			if err := rows.Scan(&kind, &name); err != nil {
				rows.Close()
				return nil, fmt.Errorf("source: list the views and routines of %s: %w", d, err)
			}
			if kind != "view" || f.Selects(d, name) {
				names = append(names, [2]string{kind, name})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("source: list the views and routines of %s: %w", d, err)
		}
		for _, n := range names {
			def, err := ferry.ReadSchemaObject(ctx, db, n[0], d, n[1])
			if err != nil {
				return nil, fmt.Errorf("source: %w", err)
			}
			out = append(out, def)
		}
	}
	return out, nil
}

// unorderedKey reports key types the server orders differently from their values: such tables are
// read as one range (a consistent snapshot needs no key order, only range splitting does).
func unorderedKey(t *schema.Table) bool {
	for _, c := range t.KeyColumns() {
		switch c.DataType {
		case "enum", "set", "float", "double", "bit", "json", "geometry":
			return true
		}
		if c.Generated {
			return true
		}
	}
	return false
}

func (s *snap) prepareTable(ctx context.Context, t *schema.Table) (*snapTable, error) {
	st := &snapTable{t: t, cols: t.WritableColumns(), files: make([][]*FileManifest, s.shards), rows: make([]int64, s.shards)}
	for _, k := range t.Key {
		for i, c := range st.cols {
			if c.Ordinal == k {
				st.keyIdx = append(st.keyIdx, i)
			}
		}
	}
	if s.o.Split != nil {
		e, err := s.o.Split.ShardExpr(t)
		if err != nil {
			return nil, err
		}
		st.shardExpr = e
	}
	var est sql.NullInt64
	s.db.QueryRowContext(ctx, "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", t.Database, t.Name).Scan(&est)
	st.ranges = []*ferry.KeyRange{{}}
	if !unorderedKey(t) && len(st.keyIdx) == len(t.Key) {
		r, err := ferry.PlanKeyRanges(ctx, s.db, t, est.Int64, s.o.RangesPerTable, 20000)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		st.ranges = r
	}
	return st, nil
}

// openSnapshots opens Threads connections, each in a transaction WITH CONSISTENT SNAPSHOT, all at
// the same binlog position (docs/design.md, "Snapshot").
func (s *snap) openSnapshots(ctx context.Context) ([]*sql.Conn, error) {
	var conns []*sql.Conn
	for i := 0; i < s.o.Threads; i++ {
		c, err := s.db.Conn(ctx)
		if err != nil {
			return conns, fmt.Errorf("source: %w", err)
		}
		conns = append(conns, c)
		if _, err := c.ExecContext(ctx, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
			return conns, fmt.Errorf("source: %w", err)
		}
	}
	if s.flavor.SnapshotPositionAvailable() {
		for attempt := 0; attempt < s.o.LockFreeAttempts; attempt++ {
			pos, same, err := s.startAll(ctx, conns)
			if err != nil {
				return conns, err
			}
			if same {
				s.pos, s.consistency = pos, "snapshot-status"
				return conns, nil
			}
			s.o.Logger.WithField("attempt", attempt+1).Info("snapshot: connections opened their snapshots at different positions (commits in between); retrying")
			for _, c := range conns {
				if _, err := c.ExecContext(ctx, "ROLLBACK"); err != nil {
					return conns, fmt.Errorf("source: %w", err)
				}
			}
		}
	}
	// Stop commits for the moment it takes to open the snapshots.
	lockConn, err := s.db.Conn(ctx)
	if err != nil {
		return conns, fmt.Errorf("source: %w", err)
	}
	defer lockConn.Close()
	lock, unlock := s.flavor.SnapshotLock()
	if _, err := lockConn.ExecContext(ctx, "SET SESSION lock_wait_timeout = "+strconv.Itoa(int(s.o.LockWaitTimeout.Seconds()+0.5))); err != nil {
		return conns, fmt.Errorf("source: %w", err)
	}
	start := time.Now()
	for _, q := range lock {
		if _, err := lockConn.ExecContext(ctx, q); err != nil {
			lockConn.ExecContext(context.Background(), unlock)
			return conns, fmt.Errorf("source: %s (needs the RELOAD privilege; waits at most -lock-wait-timeout for running statements): %w", q, err)
		}
	}
	pos, same, err := s.startAll(ctx, conns)
	if err == nil && !s.flavor.SnapshotPositionAvailable() {
		pos, err = ferry.CurrentPosition(ctx, s.db, s.flavor)
		same = true
	}
	_, uerr := lockConn.ExecContext(context.Background(), unlock)
	s.lockHeld = time.Since(start)
	if err != nil {
		return conns, err
	}
	if uerr != nil {
		return conns, fmt.Errorf("source: %s: %w", unlock, uerr)
	}
	if !same {
		return conns, errors.New("source: snapshots opened under the commit lock are at different binlog positions; the lock did not stop commits")
	}
	s.pos, s.consistency = pos, "lock"
	return conns, nil
}

// startAll opens a consistent snapshot on every connection at once and reports whether they share
// one binlog position (MariaDB; elsewhere the position is read under the lock).
func (s *snap) startAll(ctx context.Context, conns []*sql.Conn) (ferry.Position, bool, error) {
	positions := make([]ferry.Position, len(conns))
	g, gctx := errgroup.WithContext(ctx)
	for i, c := range conns {
		g.Go(func() error {
			if _, err := c.ExecContext(gctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
				return fmt.Errorf("source: start consistent snapshot: %w", err)
			}
			if !s.flavor.SnapshotPositionAvailable() {
				return nil
			}
			p, err := s.flavor.SnapshotPosition(gctx, c)
			positions[i] = p
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return ferry.Position{}, false, err
	}
	for _, p := range positions[1:] {
		if p.Compare(positions[0]) != 0 {
			return ferry.Position{}, false, nil
		}
	}
	return positions[0], true, nil
}

// readRange reads one key range of a table inside the connection's snapshot and writes its rows to
// files of at most MaxFileSize, per shard.
func (s *snap) readRange(ctx context.Context, c *sql.Conn, tk task) error {
	st := tk.st
	keyCols := st.t.KeyColumns()
	conds, args, err := schema.KeyRange(keyCols, tk.r.Start, tk.r.End)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", st.t, err)
	}
	sel := make([]string, len(st.cols))
	for i, col := range st.cols {
		sel[i] = schema.QuoteIdent(col.Name)
		if col.IsFloat() {
			// MariaDB prints FLOAT rounded to 6 digits; the DOUBLE of it converts back exactly.
			sel[i] = "CAST(" + sel[i] + " AS DOUBLE)"
		}
	}
	if st.shardExpr != "" {
		sel = append(sel, st.shardExpr)
	}
	q := "SELECT " + strings.Join(sel, ", ") + " FROM " + st.t.QualifiedName()
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	order := make([]string, len(keyCols))
	for i, k := range keyCols {
		order[i] = schema.QuoteIdent(k.Name)
	}
	q += " ORDER BY " + strings.Join(order, ", ")
	rows, err := c.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", st.t, err)
	}
	defer rows.Close()
	ncol := len(st.cols)
	raw := make([]sql.RawBytes, len(sel))
	ptrs := make([]any, len(sel))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	writers := make([]*fileWriter, s.shards)
	defer func() {
		for _, w := range writers {
			if w != nil {
				w.abort()
			}
		}
	}()
	var row bytes.Buffer
	var num []byte
	n := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("snapshot %s: %w", st.t, err)
		}
		shard := 0
		if st.shardExpr != "" {
			v, err := strconv.Atoi(string(raw[ncol]))
			if err != nil || v < 0 || v >= s.shards {
				return fmt.Errorf("snapshot %s: shard expression gave %q", st.t, raw[ncol])
			}
			shard = v
		}
		row.Reset()
		for i := 0; i < ncol; i++ {
			if i > 0 {
				row.WriteByte('\t')
			}
			switch {
			case raw[i] == nil:
				row.WriteString(`\N`)
			case st.cols[i].DataType == "bit":
				// LOAD DATA does not take a BIT's bytes; its unsigned integer goes through CAST.
				var x [8]byte
				copy(x[8-len(raw[i]):], raw[i])
				num = strconv.AppendUint(num[:0], binary.BigEndian.Uint64(x[:]), 10)
				row.Write(num)
			default:
				ferry.AppendLoadDataField(&row, st.cols[i], raw[i])
			}
		}
		row.WriteByte('\n')
		// A table without the split column goes whole into every shard.
		first, last := shard, shard
		if st.shardExpr == "" {
			first, last = 0, s.shards-1
		}
		for shard := first; shard <= last; shard++ {
			w := writers[shard]
			if w != nil && w.raw+int64(row.Len()) > s.o.MaxFileSize {
				if err := s.finish(ctx, st, shard, w); err != nil {
					return err
				}
				writers[shard], w = nil, nil
			}
			if w == nil {
				var err error
				if w, err = s.newFile(ctx, st, tk.index, shard); err != nil {
					return err
				}
				writers[shard] = w
			}
			if err := w.write(row.Bytes(), raw, st.keyIdx); err != nil {
				return err
			}
		}
		n++
		if n%1000 == 0 {
			if err := s.limit.wait(ctx, 1000); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("snapshot %s: %w", st.t, err)
	}
	for shard, w := range writers {
		if w != nil {
			if err := s.finish(ctx, st, shard, w); err != nil {
				return err
			}
			writers[shard] = nil
		}
	}
	return nil
}

func (s *snap) storageFor(shard int) Storage {
	if s.o.Split == nil {
		return s.o.Storage
	}
	return Sub(s.o.Storage, ShardLocation(shard))
}

func (s *snap) newFile(ctx context.Context, st *snapTable, rangeIndex, shard int) (*fileWriter, error) {
	ext := ".tsv"
	switch s.o.Compression {
	case CompressZstd:
		ext += ".zst"
	case CompressGzip:
		ext += ".gz"
	}
	name := fmt.Sprintf("data/%s/%s/r%03d-%06d%s", url.PathEscape(st.t.Database), url.PathEscape(st.t.Name), rangeIndex, s.seq.Add(1), ext)
	stor := s.storageFor(shard)
	ow, err := stor.Create(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", st.t, err)
	}
	w := &fileWriter{ow: ow, h: sha256.New(), f: &FileManifest{Name: name}, desc: stor.Describe(name)}
	w.comp, err = newCompressor(w, s.o.Compression, s.o.CompressionLevel)
	if err != nil {
		ow.Abort()
		return nil, err
	}
	return w, nil
}

func (s *snap) finish(ctx context.Context, st *snapTable, shard int, w *fileWriter) error {
	f, err := w.commit()
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", st.t, err)
	}
	st.mu.Lock()
	st.files[shard] = append(st.files[shard], f)
	st.rows[shard] += f.Rows
	st.mu.Unlock()
	return nil
}

// fileWriter writes one data file: rows → buffer → compressor → (storage, SHA-256, size).
type fileWriter struct {
	ow   ObjectWriter
	h    hash.Hash
	comp compressor
	f    *FileManifest
	buf  bytes.Buffer // rows not yet handed to the compressor (fewer, larger writes)
	last [][]byte     // key of the last row, reused
	raw  int64
	desc string
	done bool
}

// Write receives the compressed bytes.
func (w *fileWriter) Write(p []byte) (int, error) {
	w.h.Write(p)
	w.f.Size += int64(len(p))
	return w.ow.Write(p)
}

func (w *fileWriter) write(text []byte, raw []sql.RawBytes, keyIdx []int) error {
	w.buf.Write(text)
	if w.buf.Len() >= 256<<10 {
		if err := w.flush(); err != nil {
			return err
		}
	}
	w.raw += int64(len(text))
	if w.last == nil {
		w.last = make([][]byte, len(keyIdx))
	}
	for i, k := range keyIdx {
		w.last[i] = append(w.last[i][:0], raw[k]...)
	}
	if w.f.Rows == 0 {
		w.f.FirstKey = cloneKey(w.last)
	}
	w.f.Rows++
	return nil
}

func cloneKey(k [][]byte) ferry.Key {
	out := make(ferry.Key, len(k))
	for i, v := range k {
		out[i] = append([]byte(nil), v...)
	}
	return out
}

func (w *fileWriter) flush() error {
	if _, err := w.comp.Write(w.buf.Bytes()); err != nil {
		return fmt.Errorf("write %s: %w", w.desc, err)
	}
	w.buf.Reset()
	return nil
}

func (w *fileWriter) commit() (*FileManifest, error) {
	w.done = true
	if err := w.flush(); err != nil {
		w.ow.Abort()
		return nil, err
	}
	if err := w.comp.Close(); err != nil {
		w.ow.Abort()
		return nil, fmt.Errorf("write %s: %w", w.desc, err)
	}
	if err := w.ow.Commit(); err != nil {
		return nil, err
	}
	w.f.SHA256 = hex.EncodeToString(w.h.Sum(nil))
	w.f.RawSize = w.raw
	w.f.LastKey = cloneKey(w.last)
	return w.f, nil
}

func (w *fileWriter) abort() {
	if !w.done {
		w.done = true
		w.ow.Abort()
	}
}

func (s *snap) writeManifests(ctx context.Context) ([]*Manifest, error) {
	var id [8]byte
	rand.Read(id[:])
	finished := time.Now().UTC()
	var out []*Manifest
	for shard := 0; shard < s.shards; shard++ {
		m := &Manifest{Version: ManifestVersion, ID: hex.EncodeToString(id[:]), Started: s.started, Finished: finished,
			Source:   Server{Addr: s.o.Source.Addr(), Version: s.flavor.Version, MariaDB: s.flavor.MariaDB, Identity: s.identity},
			Position: s.pos, Consistency: s.consistency, LockHeld: s.lockHeld, Compression: s.o.Compression, Objects: s.objects}
		if s.o.Split != nil {
			m.ID += "-" + ShardLocation(shard)
			m.Shard = &ShardInfo{Index: shard, Count: s.shards, Column: s.o.Split.Column, Method: s.o.Split.method(), Bounds: s.o.Split.Bounds}
		}
		for _, st := range s.tables {
			tm := &TableManifest{Database: st.t.Database, Name: st.t.Name, CreateTable: st.t.CreateTable,
				Fingerprint: st.t.Fingerprint(), Rows: st.rows[shard], Files: st.files[shard]}
			if tm.Files == nil {
				tm.Files = []*FileManifest{}
			}
			for _, c := range st.cols {
				tm.Columns = append(tm.Columns, Column{Name: c.Name, DataType: c.DataType})
			}
			if st.shardExpr != "" {
				tm.Where = "(" + st.shardExpr + ") = " + strconv.Itoa(shard)
			}
			sortFiles(tm.Files)
			m.Tables = append(m.Tables, tm)
		}
		out = append(out, m)
	}
	// Every data file is committed; only now do the manifests make the snapshot(s) exist.
	for shard, m := range out {
		if err := writeManifest(ctx, s.storageFor(shard), ManifestName, m); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// limiter spreads reads to at most rate rows per second across all workers.
type limiter struct {
	rate  int
	mu    sync.Mutex
	start time.Time
	n     int64
}

func (l *limiter) wait(ctx context.Context, rows int) error {
	if l.rate <= 0 {
		return nil
	}
	l.mu.Lock()
	if l.start.IsZero() {
		l.start = time.Now()
	}
	l.n += int64(rows)
	due := l.start.Add(time.Duration(float64(l.n) / float64(l.rate) * float64(time.Second)))
	l.mu.Unlock()
	if d := time.Until(due); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
