// Package ferry moves live MySQL and MariaDB tables between servers without downtime.
//
// A Ferry copies the selected tables from a source to a target while tailing the source's binary log
// and applying every row change to the target, so the target stays current; the host then stops
// writes its own way, ferry applies the last changes, and the host repoints its traffic. The
// write-blocked window is the time to apply the changes made since the last catch-up, typically
// milliseconds.
//
// # Guarantees
//
// When FlushBinlogAndStopStreaming returns with writes stopped on the source, every selected row of
// the source (after the copy filter and rewrites) is on the target with the same bytes, and no other
// row was written by ferry. This holds under any interleaving of application writes with the copy;
// docs/design.md gives the argument. In short: the binlog position is recorded before the first row
// is read, so every later change is applied; a row is copied under a shared lock held until it is
// committed on the target, so a racing change always lands after the copied row; and every change is
// applied as an idempotent "set this row to this image" or "delete this key", so order of arrival
// and replay never matter.
//
// # Components
//
// A Ferry only wires components, each an interface with a default implementation a host can
// replace: DataIterator (reads pages of rows, locked), BatchWriter (writes them), BinlogStreamer
// (tails the binlog), BinlogWriter (applies row changes), throttler.Throttler (pauses work) and
// verifier.Verifier (compares both sides at cut-over). The Cutover type drives the cut-over around
// host hooks.
package ferry

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/ferrykit/ferry/internal/apply"
	"github.com/ferrykit/ferry/internal/retry"
	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/throttler"
	"github.com/ferrykit/ferry/verifier"
)

// Ferry copies tables from a source to a target and keeps them current until cut-over.
// Use New, or fill Config and any components yourself; nil components get defaults in Start.
type Ferry struct {
	Config Config

	DataIterator   DataIterator
	BatchWriter    BatchWriter
	BinlogStreamer BinlogStreamer
	BinlogWriter   BinlogWriter
	Throttler      throttler.Throttler
	// Verifier, when set, is used by Cutover; if it implements verifier.CopyObserver or
	// verifier.BinlogObserver it is also shown copied rows and changed keys.
	Verifier verifier.Verifier
	// Observer, when set, is told of every copy batch and binlog apply as it happens (package
	// metrics turns these into Prometheus histograms and counters).
	Observer Observer
	// Checkpoints, when set, receives the resumable state when Run starts, periodically, on error
	// and at the end.
	Checkpoints CheckpointSink
	// CheckpointInterval is how often state is saved while running; default 5s.
	CheckpointInterval time.Duration

	// Source and Target are opened by Initialize unless set. A pool the host sets must be opened
	// with ferry's session settings (SessionParams): Initialize refuses one without them. Close
	// never closes a pool the host set.
	Source, Target *sql.DB
	SourceFlavor   Flavor
	TargetFlavor   Flavor
	// Tables are the tables being copied, set by Initialize.
	Tables []*TableCopy

	log        logrus.FieldLogger
	batchSize  atomic.Int64
	startPos   Position
	started    bool
	copyDone   chan struct{}
	runDone    chan struct{}
	runErr     error
	streamDone chan struct{}
	startTime  time.Time
	copyEnd    time.Time // when the last row was copied; read only after copyDone is closed
	// rowsAtStart is what the checkpoint said was already copied when Start ran.
	rowsAtStart int64
	// lastBatch is when the copy last wrote a batch (UnixNano), to show a stalled copy.
	lastBatch  atomic.Int64
	mu         sync.Mutex
	throttle   throttler.Status
	objects    []*SchemaObject
	ownsSource bool
	ownsTarget bool
	// binlog is the pool of Config.BinlogSource (nil when the binlog is the source's), and binlogID
	// its identity.
	binlog   *sql.DB
	binlogID ServerIdentity
	loadData bool
	// replicaLag is how far the binlog source replica is behind the source (nanoseconds; see
	// watchReplicaLag).
	replicaLag atomic.Int64
	// observer is the verifier the default binlog writer reports changed keys to.
	observer verifier.BinlogObserver
	// sourceID and targetID name the servers, for the checkpoint.
	sourceID, targetID ServerIdentity
	// targetMaxPacket is the target's max_allowed_packet: the largest statement it takes.
	targetMaxPacket int
	// copyGTID merges the SourceGTID of every copy batch handed to the BatchWriter (State.CopyGTID);
	// final is set once Run's components have stopped (State.Final). Both under mu.
	copyGTID string
	final    bool
	// streamedBefore is State.StreamedGTID of the runs before a resume or failover (under mu).
	streamedBefore string
	// gate is shared by the default copy and binlog writers (apply.Gate); streamerID is the
	// server_id the default streamer registers with.
	gate       *apply.Gate
	streamerID uint32
	// swapMu guards what a failover replaces (Source, SourceFlavor, the default DataIterator,
	// BinlogWriter and BinlogStreamer, startPos, sourceID) against the methods a host may call from
	// other goroutines while Run runs (Progress, SourceLag, BinlogLag, FlushBinlog, State): they
	// take a snapshot with parts() and use it without holding the lock, so none of them can block
	// a failover (which would wait for them) or be blocked by one for longer than the swap.
	swapMu sync.RWMutex
}

// runParts is a consistent snapshot of what a failover replaces.
type runParts struct {
	source   *sql.DB
	flavor   Flavor
	streamer BinlogStreamer
	writer   BinlogWriter
	startPos Position
	sourceID ServerIdentity
}

// parts snapshots what a failover replaces (see swapMu).
func (f *Ferry) parts() runParts {
	f.swapMu.RLock()
	defer f.swapMu.RUnlock()
	return runParts{source: f.Source, flavor: f.SourceFlavor, streamer: f.BinlogStreamer, writer: f.BinlogWriter, startPos: f.startPos, sourceID: f.sourceID}
}

// Observer is told of the copy's batches and the binlog apply's transactions as they happen. Its
// methods must be quick and safe for concurrent use: they run on the copy and apply paths. An
// Observer that also has a Retried(what string) method is told of every retry of a transient error
// during Run (what names the operation).
type Observer interface {
	// BatchCopied: a batch of rows of table (named as in TableProgress) was written to the target; bytes is the
	// size of the values as read.
	BatchCopied(table string, rows int, bytes int64, took time.Duration)
	// ChangesApplied: row changes, counted by kind, were committed on the target.
	ChangesApplied(byKind map[DMLType]int, took time.Duration)
}

// New returns a Ferry with default components for cfg.
func New(cfg Config) (*Ferry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Ferry{Config: cfg}, nil
}

// Initialize connects to both servers, checks their settings and the user's privileges, loads and
// validates the schemas of the selected tables, and checks the target tables. It writes nothing,
// unless Config.CreateTargetTables is set and a target table is missing.
func (f *Ferry) Initialize(ctx context.Context) error {
	cfg := &f.Config
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg.setDefaults()
	f.log = cfg.Logger
	f.batchSize.Store(int64(cfg.BatchSize))
	f.copyDone = make(chan struct{})
	f.runDone = make(chan struct{})
	f.streamDone = make(chan struct{})
	var err error
	if f.Source == nil {
		if f.Source, err = cfg.Source.Open(ctx); err != nil {
			return fmt.Errorf("source: %w", err)
		}
		f.ownsSource = true
	} else if err := checkHostPool(ctx, f.Source, "Source", false); err != nil {
		return err
	}
	if f.Target == nil {
		if f.Target, err = cfg.Target.Open(ctx); err != nil {
			return fmt.Errorf("target: %w", err)
		}
		f.ownsTarget = true
	} else if err := checkHostPool(ctx, f.Target, "Target", true); err != nil {
		return err
	}
	if f.SourceFlavor, err = DetectFlavor(ctx, f.Source); err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if f.TargetFlavor, err = DetectFlavor(ctx, f.Target); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	f.log.WithFields(logrus.Fields{"source": cfg.Source.String(), "source_version": f.SourceFlavor.Version,
		"target": cfg.Target.String(), "target_version": f.TargetFlavor.Version}).Info("ferry: connected")
	if err := checkSourceSettings(ctx, f.Source); err != nil {
		return err
	}
	if err := checkDistinctServers(ctx, f.Source, f.Target, cfg.Source.String(), cfg.Target.String()); err != nil {
		return err
	}
	if err := checkTargetWritable(ctx, f.Target, "target "+cfg.Target.String()); err != nil {
		return err
	}
	if cfg.BinlogSource != nil {
		if err := f.openBinlogSource(ctx); err != nil {
			return err
		}
	}
	if f.sourceID, err = serverIdentity(ctx, f.Source); err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if f.targetID, err = serverIdentity(ctx, f.Target); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if err := f.Target.QueryRowContext(ctx, "SELECT @@GLOBAL.max_allowed_packet").Scan(&f.targetMaxPacket); err != nil {
		return fmt.Errorf("target: read max_allowed_packet: %w", err)
	}
	switch cfg.CopyWriteMethod {
	case WriteAuto, WriteLoadData:
		var on sql.NullString
		if err := f.Target.QueryRowContext(ctx, "SELECT @@GLOBAL.local_infile").Scan(&on); err != nil {
			return fmt.Errorf("target: read local_infile: %w", err)
		}
		f.loadData = on.String == "1" || strings.EqualFold(on.String, "ON")
		if !f.loadData && cfg.CopyWriteMethod == WriteLoadData {
			return &OptionError{What: "target: writing copied rows with LOAD DATA needs local_infile=ON on the target (SET GLOBAL local_infile = 1)",
				Option: "CopyWriteMethod", Effect: "to insert (or leave it empty to choose by itself)"}
		}
	case WriteInsert:
	default:
		return fmt.Errorf("config: CopyWriteMethod %q: want \"\", %q or %q", cfg.CopyWriteMethod, WriteInsert, WriteLoadData)
	}
	tables, err := f.selectTables(ctx)
	if err != nil {
		return err
	}
	var srcDBs, dstDBs []string
	seen := map[string]bool{}
	for _, t := range tables {
		if !seen["s"+t.Source.Database] {
			seen["s"+t.Source.Database] = true
			srcDBs = append(srcDBs, t.Source.Database)
		}
		if !seen["t"+t.TargetDatabase] {
			seen["t"+t.TargetDatabase] = true
			dstDBs = append(dstDBs, t.TargetDatabase)
		}
	}
	if err := checkPrivileges(ctx, f.Source, "source "+cfg.Source.String(), srcDBs, []string{"SELECT"},
		[][]string{{"REPLICATION SLAVE"}, f.SourceFlavor.binlogMonitorPrivileges()}); err != nil {
		return err
	}
	need := []string{"SELECT", "INSERT", "UPDATE", "DELETE"}
	if cfg.CreateTargetTables {
		need = append(need, "CREATE")
	}
	for _, k := range cfg.CreateSchemaObjects {
		need = append(need, map[string][]string{ObjectViews: {"CREATE VIEW"}, ObjectRoutines: {"CREATE ROUTINE"},
			ObjectEvents: {"EVENT"}, ObjectTriggers: {"TRIGGER"}}[k]...)
	}
	if err := checkPrivileges(ctx, f.Target, "target "+cfg.Target.String(), dstDBs, need, nil); err != nil {
		return err
	}
	// A resume is checked first: a table changed since the checkpoint is refused as such, not as a
	// target mismatch.
	if cfg.Resume != nil {
		if err := f.applyResume(ctx, tables); err != nil {
			return err
		}
	}
	// Refusals that need no target table come before checkTarget, which may create tables.
	if err := f.checkForeignKeyCascades(ctx, tables); err != nil {
		return err
	}
	if err := f.checkTargetTriggers(ctx, tables); err != nil {
		return err
	}
	for _, t := range tables {
		if err := f.checkTarget(ctx, t); err != nil {
			return err
		}
	}
	if err := f.planSchemaObjects(ctx, tables); err != nil {
		return err
	}
	if err := f.createEarlySchemaObjects(ctx); err != nil {
		return err
	}
	if s := notCreated(f.objects); s != "" {
		f.log.WithField("not_created", s).Warn("ferry: schema objects of the copied databases that are not created on the target")
	}
	f.Tables = tables
	return nil
}

// selectTables finds the tables the filter selects and loads their schemas.
func (f *Ferry) selectTables(ctx context.Context) ([]*TableCopy, error) {
	cfg := &f.Config
	dbs, err := schema.ListDatabases(ctx, f.Source)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	exists := map[string]bool{}
	for _, d := range dbs {
		exists[d] = true
	}
	for _, d := range cfg.Tables.Databases {
		if !exists[d] {
			return nil, fmt.Errorf("source: database %q does not exist", d)
		}
	}
	var out []*TableCopy
	for _, d := range dbs {
		names, err := schema.ListTables(ctx, f.Source, d)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		for _, n := range names {
			if !cfg.Tables.Selects(d, n) {
				continue
			}
			t, err := f.loadTable(ctx, d, n)
			if err != nil {
				return nil, err
			}
			out = append(out, t)
		}
	}
	// A pattern without wildcards names one table: it must exist.
	for _, p := range cfg.Tables.Include {
		if strings.ContainsAny(p, "*?[") {
			continue
		}
		found := false
		for _, t := range out {
			if t.Source.String() == p {
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("source: table %s does not exist (or is excluded)", p)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("source: no table matches the table filter")
	}
	return out, nil
}

func (f *Ferry) loadTable(ctx context.Context, database, name string) (*TableCopy, error) {
	src, err := schema.Load(ctx, f.Source, database, name)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	cond := ""
	if f.Config.Filter != nil {
		if cond, err = f.Config.Filter.Condition(src); err != nil {
			return nil, fmt.Errorf("copy filter on %s: %w", src, err)
		}
	}
	tdb, ttable := f.Config.targetName(database, name)
	t, err := newTableCopy(src, tdb, ttable, cond, f.TargetFlavor.MariaDB)
	if err != nil {
		return nil, err
	}
	var est sql.NullInt64
	if f.Config.ExactRowCount {
		q := "SELECT COUNT(*) FROM " + src.QualifiedName()
		if cond != "" {
			q += " WHERE " + cond
		}
		if err := f.Source.QueryRowContext(ctx, q).Scan(&est); err != nil {
			return nil, fmt.Errorf("count the rows of %s (-exact-rowcount): %w", src, err)
		}
	} else {
		f.Source.QueryRowContext(ctx, "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", database, name).Scan(&est)
	}
	t.EstimatedRows = est.Int64
	return t, nil
}

// checkTarget makes sure the target table exists (creating it if allowed), can hold the source's
// rows, identifies rows by the same key, and is empty unless allowed.
func (f *Ferry) checkTarget(ctx context.Context, t *TableCopy) error {
	dst, err := schema.Load(ctx, f.Target, t.TargetDatabase, t.TargetTable)
	// On a resume, a table the checkpoint has progress for must still be on the target: creating it
	// empty would lose the rows the checkpoint says are there.
	var resumed *TableState
	if f.Config.Resume != nil {
		resumed = f.Config.Resume.Tables[t.Source.String()]
	}
	if errors.Is(err, schema.ErrNoTable) && resumed != nil && (resumed.RowsCopied > 0 || resumed.Completed || len(resumed.Ranges) > 0) {
		return fmt.Errorf("%w: target table %s does not exist, but the checkpoint says %d rows of %s were copied into it; %s", ErrResumeMismatch, t.TargetName(), resumed.RowsCopied, t.Source, startOver)
	}
	if errors.Is(err, schema.ErrNoTable) && f.Config.CreateTargetTables {
		create := strings.Replace(t.Source.CreateTable, "CREATE TABLE "+schema.QuoteIdent(t.Source.Name), "CREATE TABLE "+t.TargetName(), 1)
		if _, err := f.Target.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+schema.QuoteIdent(t.TargetDatabase)); err != nil {
			return fmt.Errorf("target: create database %s: %w", t.TargetDatabase, err)
		}
		if _, err := f.Target.ExecContext(ctx, create); err != nil {
			return fmt.Errorf("target: create table %s: %w", t.TargetName(), err)
		}
		f.log.WithField("table", t.TargetName()).Info("ferry: created target table")
		dst, err = schema.Load(ctx, f.Target, t.TargetDatabase, t.TargetTable)
	}
	if errors.Is(err, schema.ErrNoTable) {
		return &OptionError{What: fmt.Sprintf("target: table %s.%s does not exist; create it first (same columns as %s)", t.TargetDatabase, t.TargetTable, t.Source),
			Option: "CreateTargetTables", Effect: "to create it from the source's definition"}
	}
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	for _, c := range t.Columns {
		dc := dst.Column(c.Name)
		if dc == nil {
			return fmt.Errorf("target: table %s has no column %s, which %s has; make the target schema match", t.TargetName(), c.Name, t.Source)
		}
		if dc.Generated {
			return fmt.Errorf("target: column %s of %s is generated but is a plain column on the source; make the target schema match", c.Name, t.TargetName())
		}
	}
	var keyNames []string
	for _, k := range t.Source.KeyColumns() {
		keyNames = append(keyNames, strings.ToLower(k.Name))
	}
	sameKey := false
	for _, cols := range dst.UniqueKeys {
		if len(cols) == len(keyNames) {
			eq := true
			for i := range cols {
				eq = eq && strings.ToLower(cols[i]) == keyNames[i]
			}
			sameKey = sameKey || eq
		}
	}
	if !sameKey {
		return fmt.Errorf("target: table %s has no unique key on (%s), the key of %s; ferry applies changes by that key", t.TargetName(), strings.Join(keyNames, ", "), t.Source)
	}
	t.target = dst
	if resumed != nil && resumed.RowsCopied > 0 {
		if err := f.checkResumedTarget(ctx, t, resumed); err != nil {
			return err
		}
	}
	// A resumed table holds the rows copied before the checkpoint; a table new since the checkpoint
	// is checked like on a first run.
	if !f.Config.AllowNonEmptyTarget && resumed == nil {
		var one int
		err := f.Target.QueryRowContext(ctx, "SELECT 1 FROM "+t.TargetName()+" LIMIT 1").Scan(&one)
		if err == nil {
			return &OptionError{What: fmt.Sprintf("target: table %s already holds rows; empty it", t.TargetName()),
				Option: "AllowNonEmptyTarget", Effect: "if copying into it is intended"}
		}
		if err != sql.ErrNoRows {
			return fmt.Errorf("target: %w", err)
		}
	}
	return nil
}

// checkResumedTarget refuses a resume into a target table that is empty although the source still
// has rows the checkpoint says were copied (a wrong or emptied target): resuming would skip them.
func (f *Ferry) checkResumedTarget(ctx context.Context, t *TableCopy, ts *TableState) error {
	var one int
	err := f.Target.QueryRowContext(ctx, "SELECT 1 FROM "+t.TargetName()+" LIMIT 1").Scan(&one)
	if err == nil {
		return nil
	}
	if err != sql.ErrNoRows {
		return fmt.Errorf("target: %w", err)
	}
	keyCols := t.Source.KeyColumns()
	for _, r := range ts.Ranges {
		if r.Last == nil {
			continue
		}
		conds, args, err := schema.KeyRange(keyCols, r.Start, r.Last)
		if err != nil {
			return fmt.Errorf("resume: table %s: checkpoint key: %w", t.Source, err)
		}
		if t.Condition != "" {
			conds = append(conds, "("+t.Condition+")")
		}
		err = f.Source.QueryRowContext(ctx, "SELECT 1 FROM "+t.Source.QualifiedName()+" WHERE "+strings.Join(conds, " AND ")+" LIMIT 1", args...).Scan(&one)
		if err == nil {
			return fmt.Errorf("%w: target table %s is empty, but the checkpoint says %d rows of %s were copied into it and the source still has rows in the copied key range (was it emptied?); %s", ErrResumeMismatch, t.TargetName(), ts.RowsCopied, t.Source, startOver)
		}
		if err != sql.ErrNoRows {
			return fmt.Errorf("source: %w", err)
		}
	}
	return nil
}

func (f *Ferry) applyResume(ctx context.Context, tables []*TableCopy) error {
	st := f.Config.Resume
	if st.Version != StateVersion {
		return fmt.Errorf("%w: state has format version %d, this build reads %d", ErrResumeMismatch, st.Version, StateVersion)
	}
	if st.Applied.IsZero() {
		return fmt.Errorf("%w: the state has no binlog position", ErrResumeMismatch)
	}
	failover := !st.Source.Same(f.sourceID)
	if failover {
		if err := f.checkFailover(ctx); err != nil {
			return err
		}
	}
	if err := f.checkResumeMatches(tables); err != nil {
		return err
	}
	f.copyGTID, f.streamedBefore = st.CopyGTID, st.StreamedGTID
	for _, t := range tables {
		ts, ok := st.Tables[t.Source.String()]
		if !ok {
			f.log.WithField("table", t.Source.String()).Info("ferry: resume: table not in the checkpoint, copying it from the start")
			continue // a table added since the checkpoint is copied from the start
		}
		if ts.Fingerprint != t.Source.Fingerprint() {
			return fmt.Errorf("%w: table %s changed since the checkpoint (%s: %w); %s", ErrResumeMismatch, t.Source, fingerprintDiff(ts.Fingerprint, t.Source.Fingerprint()), ErrSchemaChanged, startOver)
		}
		f.log.WithFields(logrus.Fields{"table": t.Source.String(), "rows_copied": ts.RowsCopied, "completed": ts.Completed}).Info("ferry: resume: table restored from the checkpoint")
		c := *ts
		c.Ranges = nil
		for _, r := range ts.Ranges {
			rc := *r
			c.Ranges = append(c.Ranges, &rc)
		}
		t.state = &c
	}
	if failover {
		f.startPos = Position{GTID: st.Applied.GTID}
		f.log.WithFields(logrus.Fields{"gtid": st.Applied.GTID, "was": st.Source.String(), "now": f.sourceID.String()}).Info("ferry: resume on another source server: streaming its binlog after the checkpoint's applied GTID set")
		return nil
	}
	if st.Applied.File == "" {
		// The run that saved it had failed over and applied nothing since: its position is on
		// this server by GTID set only.
		f.startPos = st.Applied
		return nil
	}
	files, err := BinlogFiles(ctx, f.binlogDB())
	if err != nil {
		return fmt.Errorf("resume: %s: %w", f.binlogName(), err)
	}
	for _, name := range files {
		if name == st.Applied.File {
			f.startPos = st.Applied
			f.log.WithField("position", st.Applied.String()).Info("ferry: resume: replaying the binlog from the checkpoint's applied position")
			return nil
		}
	}
	return fmt.Errorf("%w: the %s no longer has binlog file %s (%w), where the checkpoint's changes continue; %s, and keep binlogs longer than the copy takes (binlog_expire_logs_seconds)", ErrResumeMismatch, f.binlogName(), st.Applied.File, ErrBinlogPurged, startOver)
}

// checkFailover decides whether a checkpoint taken against another source server can be continued
// on this one (gtid.go): only from a final state (one saved once nothing wrote to the target any
// more) whose applied and copied GTID sets this server has, with every transaction after the
// applied set still in its binary logs.
func (f *Ferry) checkFailover(ctx context.Context) error {
	st := f.Config.Resume
	was := fmt.Sprintf("the checkpoint was taken from the source server %s, but this source is %s", st.Source, f.sourceID)
	if !st.Final {
		return fmt.Errorf("%w: %s, and the checkpoint is not the one ferry saves when it stops (ferry itself crashed or was killed after saving it), so the target may hold changes of the old source written after it that this server lacks; resume against the server the checkpoint was taken from, or %s",
			ErrResumeMismatch, was, startOver)
	}
	if err := f.SourceFlavor.checkGTIDContinuity(ctx, f.Source, "the new source "+f.Config.Source.String(), st); err != nil {
		return fmt.Errorf("%s; continuing on it by GTID is refused: %w", was, err)
	}
	if f.binlog != nil {
		// The stream comes from a replica: it must hold the applied set and everything after it.
		if err := f.SourceFlavor.checkGTIDContinuity(ctx, f.binlog, f.binlogName(), &State{Applied: st.Applied}); err != nil {
			return fmt.Errorf("%s; continuing by GTID is refused: %w", was, err)
		}
	}
	return nil
}

// checkResumeMatches refuses a checkpoint taken against another target server or with another
// selection of rows (see state.go): every difference is named.
func (f *Ferry) checkResumeMatches(tables []*TableCopy) error {
	st := f.Config.Resume
	if !st.Target.Same(f.targetID) {
		return fmt.Errorf("%w: the checkpoint was taken with the target server %s, but this target is %s; resume against the server the checkpoint was taken with",
			ErrResumeMismatch, st.Target, f.targetID)
	}
	// The checkpoint's binlog position is one of the server the binlog was read from.
	switch {
	case st.Binlog.IsZero() && !f.binlogID.IsZero():
		return fmt.Errorf("%w: the checkpoint's binlog position is the source's (the binlog was read from the source), but the binlog is now read from %s; resume reading the binlog from the source",
			ErrResumeMismatch, f.binlogID)
	case !st.Binlog.IsZero() && !st.Binlog.Same(f.binlogID):
		now := "the source"
		if !f.binlogID.IsZero() {
			now = f.binlogID.String()
		}
		return fmt.Errorf("%w: the checkpoint's binlog position is one of the replica %s (the binlog was read from it), but the binlog is now read from %s; resume reading the binlog from that replica",
			ErrResumeMismatch, st.Binlog, now)
	}
	var diffs []string
	if filter, comparable := filterIdentity(f.Config.Filter); !comparable {
		diffs = append(diffs, fmt.Sprintf("the copy filter %s cannot be compared with the checkpoint's (%s): give it a Fingerprint() string method", filter, describeFilter(st.Selection.Filter)))
	} else if filter != st.Selection.Filter {
		diffs = append(diffs, fmt.Sprintf("the copy filter was %s, now %s", describeFilter(st.Selection.Filter), describeFilter(filter)))
	}
	if !st.Selection.Tables.equal(f.Config.Tables) {
		diffs = append(diffs, fmt.Sprintf("the table selection was %s, now %s", st.Selection.Tables, f.Config.Tables))
	}
	byName := map[string]*TableCopy{}
	for _, t := range tables {
		byName[t.Source.String()] = t
	}
	names := make([]string, 0, len(st.Tables))
	for name := range st.Tables {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		ts := st.Tables[name]
		t := byName[name]
		if t == nil {
			diffs = append(diffs, fmt.Sprintf("table %s was copied but is not selected now (or no longer exists on the source)", name))
			continue
		}
		if target := t.TargetDatabase + "." + t.TargetTable; ts.Target != target {
			diffs = append(diffs, fmt.Sprintf("table %s was copied into %s, now into %s", name, ts.Target, target))
		}
		if ts.Condition != t.Condition {
			diffs = append(diffs, fmt.Sprintf("table %s was copied where %s, now where %s", name, describeCondition(ts.Condition), describeCondition(t.Condition)))
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%w: %s; resume with the settings the checkpoint was taken with", ErrResumeMismatch, strings.Join(diffs, "; "))
	}
	return nil
}

func describeFilter(id string) string {
	if id == "" {
		return "none (every row)"
	}
	return id
}

func describeCondition(c string) string {
	if c == "" {
		return "every row"
	}
	return c
}

// fingerprintDiff says which parts of a table definition's fingerprint (columns, key) changed.
func fingerprintDiff(was, now string) string {
	a, b := strings.Split(was, ";"), strings.Split(now, ";")
	in := func(x string, set []string) bool {
		for _, y := range set {
			if x == y {
				return true
			}
		}
		return false
	}
	var gone, added []string
	for _, x := range a {
		if !in(x, b) {
			gone = append(gone, strings.Join(strings.Fields(x), " "))
		}
	}
	for _, x := range b {
		if !in(x, a) {
			added = append(added, strings.Join(strings.Fields(x), " "))
		}
	}
	var parts []string
	if len(gone) > 0 {
		parts = append(parts, "was: "+strings.Join(gone, "; "))
	}
	if len(added) > 0 {
		parts = append(parts, "now: "+strings.Join(added, "; "))
	}
	if len(parts) == 0 {
		return "its definition differs"
	}
	return strings.Join(parts, ", ")
}

// Start records the binlog position from which changes will be applied — before any row is read,
// so every change the copy might miss is in the stream — and prepares the streamer and writer.
func (f *Ferry) Start(ctx context.Context) error {
	if f.Tables == nil {
		return errors.New("ferry: Start called before Initialize")
	}
	if f.startPos.IsZero() {
		pos, err := CurrentPosition(ctx, f.Source, f.SourceFlavor)
		if err != nil {
			return fmt.Errorf("source: %w", err)
		}
		// From a replica: its position once it holds everything the source has now (replica.go).
		if pos, err = f.streamPosition(ctx, pos); err != nil {
			return fmt.Errorf("start position: %w", err)
		}
		f.startPos = pos
		f.startPos.GTID = ""
		if !f.SourceFlavor.MariaDB {
			f.startPos.GTID = pos.GTID // read with the position
		}
	}
	if f.startPos.File != "" && f.startPos.GTID == "" {
		// The source's GTID set exactly at the position, which the stream then tracks: what a
		// checkpoint needs to continue on another server after a failover (gtid.go).
		gtid, err := f.SourceFlavor.gtidAt(ctx, f.binlogDB(), f.startPos)
		if err != nil {
			return fmt.Errorf("%s: %w", f.binlogName(), err)
		}
		f.startPos.GTID = gtid
	}
	cfg := &f.Config
	if _, ours := f.DataIterator.(*SourceDataIterator); f.DataIterator != nil && !ours {
		for _, t := range f.Tables {
			if len(t.copyAfter) > 0 {
				return fmt.Errorf("ferry: ApplyForeignKeyCascades needs %s copied completely before %s (a cascade finds its rows through theirs), which only the default DataIterator does", t.copyAfter[0].Source, t.Source)
			}
		}
	}
	if f.Config.SourceResolver != nil && (f.DataIterator != nil || f.BinlogWriter != nil || f.BinlogStreamer != nil || cfg.BinlogSource != nil) {
		return errors.New("ferry: Config.SourceResolver needs the default DataIterator, BinlogWriter and BinlogStreamer, which a failover rebuilds against the new source, and the binlog read from the source (no BinlogSource)")
	}
	if f.DataIterator == nil {
		f.DataIterator = f.newDataIterator()
	}
	// The default copy writers and binlog writer share one gate, so that the copy yields to the
	// apply instead of deadlocking with it (apply.Gate).
	f.gate = &apply.Gate{}
	gate := f.gate
	if f.BatchWriter == nil {
		if f.loadData {
			f.BatchWriter = &LoadDataBatchWriter{DB: f.Target, MaxRetries: cfg.MaxRetries, Logger: f.log, MariaDB: f.TargetFlavor.MariaDB, gate: gate,
				Fallback: &TargetBatchWriter{DB: f.Target, MaxRetries: cfg.MaxRetries, Logger: f.log, MaxPacket: f.targetMaxPacket, gate: gate}}
		} else {
			f.BatchWriter = &TargetBatchWriter{DB: f.Target, MaxRetries: cfg.MaxRetries, Logger: f.log, MaxPacket: f.targetMaxPacket, gate: gate}
		}
	}
	if f.BinlogWriter == nil {
		f.BinlogWriter = f.newBinlogWriter()
	}
	if f.BinlogStreamer == nil {
		id := cfg.ServerID
		if id == 0 {
			var b [4]byte
			rand.Read(b[:])
			id = 100000 + binary.LittleEndian.Uint32(b[:])%4000000000
		}
		f.streamerID = id // a failover's new streamer registers with the same id
		f.BinlogStreamer = f.newBinlogStreamer()
	}
	f.BinlogStreamer.AddListener(f.BinlogWriter.Write)
	files, err := BinlogFiles(ctx, f.binlogDB())
	if err != nil {
		return fmt.Errorf("%s: %w", f.binlogName(), err)
	}
	found := f.startPos.File == "" // a failover: the stream starts by GTID set
	for _, n := range files {
		found = found || n == f.startPos.File
	}
	if !found {
		return fmt.Errorf("%s: binlog file %s is not on the server", f.binlogName(), f.startPos.File)
	}
	f.started = true
	f.rowsAtStart = f.rowsCopied()
	f.startTime = time.Now()
	f.lastBatch.Store(f.startTime.UnixNano())
	f.log.WithField("position", f.startPos.String()).Info("ferry: binlog position recorded before the copy")
	return nil
}

// newDataIterator, newBinlogWriter and newBinlogStreamer build the default components against the
// current source (Start, and a failover).
func (f *Ferry) newDataIterator() *SourceDataIterator {
	cfg := &f.Config
	it := &SourceDataIterator{DB: f.Source, BatchSize: f.BatchSize, Workers: cfg.CopyWorkers,
		RangesPerTable: cfg.RangesPerTable, Throttler: f.Throttler, OnThrottle: f.onThrottle, MaxRetries: cfg.MaxRetries, Logger: f.log,
		TargetChunkTime: cfg.TargetChunkTime, MinBatchSize: cfg.MinBatchSize, MaxBatchSize: cfg.MaxBatchSize,
		SetBatchSize: f.SetBatchSize, RowsPerSecond: cfg.MaxRowsPerSecond}
	if f.startPos.GTID != "" {
		it.GTIDQuery = f.SourceFlavor.gtidPositionQuery()
	}
	return it
}

func (f *Ferry) newBinlogWriter() *TargetBinlogWriter {
	cfg := &f.Config
	applyWorkers := cfg.ApplyWorkers
	for _, t := range f.Tables {
		if len(t.cascades) > 0 {
			// The cascades ferry carries out find child rows through other tables' rows, by
			// values no writeset holds: the whole apply runs one transaction at a time.
			applyWorkers = 1
		}
	}
	w := &TargetBinlogWriter{DB: f.Target, MaxPacket: f.targetMaxPacket, Filter: cfg.Filter, FilterSource: newSourceEvaluator(f.Source, cfg.MaxRetries, f.log), BatchSize: cfg.ApplyBatchSize, Workers: applyWorkers, MaxRetries: cfg.MaxRetries,
		Throttler: f.Throttler, OnThrottle: f.onThrottle, Logger: f.log, gate: f.gate}
	if f.Observer != nil {
		w.OnApplied = f.Observer.ChangesApplied
	}
	if o, ok := f.Verifier.(verifier.BinlogObserver); ok {
		w.Observer = o
		f.observer = o
	}
	w.SetApplied(f.startPos)
	return w
}

func (f *Ferry) newBinlogStreamer() *SourceBinlogStreamer {
	cfg := &f.Config
	tables := map[string]*TableCopy{}
	for _, t := range f.Tables {
		tables[t.Source.String()] = t
	}
	conn := cfg.Source
	if cfg.BinlogSource != nil {
		conn = *cfg.BinlogSource
	}
	id := f.sourceID
	if cfg.BinlogSource != nil {
		id = f.binlogID
	}
	return &SourceBinlogStreamer{Conn: conn, Flavor: f.SourceFlavor, ServerID: f.streamerID, Tables: tables,
		MaxRetries: cfg.MaxRetries, Logger: f.log, Identity: id}
}

// StartPosition is the binlog position the stream starts from.
func (f *Ferry) StartPosition() Position { return f.parts().startPos }

// BatchSize is the current copy batch size.
func (f *Ferry) BatchSize() int { return int(f.batchSize.Load()) }

// SetBatchSize changes the copy batch size; it takes effect from the next batch. With
// Config.TargetChunkTime the size keeps adapting from the one set here.
func (f *Ferry) SetBatchSize(n int) {
	if n > 0 {
		f.batchSize.Store(int64(n))
	}
}

func (f *Ferry) onThrottle(st throttler.Status) {
	f.mu.Lock()
	changed := f.throttle != st
	f.throttle = st
	f.mu.Unlock()
	if !changed {
		return
	}
	if st.Throttled {
		f.log.WithField("reason", st.Reason).Info("ferry: throttled")
	} else {
		f.log.Info("ferry: throttle lifted")
	}
}

// Run copies the rows and applies binlog changes until FlushBinlogAndStopStreaming, then returns nil;
// or returns the first error. It never panics, and no goroutine it started outlives it.
//
// With Checkpoints set, Run saves the state before it starts (failing if that save fails), every
// CheckpointInterval, and once more when it returns — on success, on error and on cancellation —
// so a run stopped by a fault, a signal or a crash continues from there with Config.Resume.
// Transient faults (lost connections, a server restart, deadlocks, lock-wait timeouts, read-only
// errors during a failover) are retried with backoff up to Config.MaxRetries times per operation
// before Run gives up.
func (f *Ferry) Run(ctx context.Context) (err error) {
	if !f.started {
		return errors.New("ferry: Run called before Start")
	}
	defer func() {
		f.mu.Lock()
		f.runErr = err
		f.mu.Unlock()
		close(f.runDone)
	}()
	if f.Checkpoints != nil {
		// A first checkpoint before anything is copied: a crash from here on can be resumed, and a
		// sink that cannot store the state fails the run before doing work that could not be resumed.
		if err := f.Checkpoints.Save(ctx, f.State()); err != nil {
			return fmt.Errorf("ferry: save the first checkpoint: %w", err)
		}
	}
	if o, ok := f.Observer.(interface{ Retried(what string) }); ok {
		ctx = retry.WithObserver(ctx, o.Retried)
	}
	runCtx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	stopWatch := make(chan struct{})
	var wg sync.WaitGroup
	if f.Config.PanicFlagFile != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			watchPanicFlag(f.Config.PanicFlagFile, stopWatch, abort)
		}()
	}
	var streamOnce sync.Once
	closeStream := func() { streamOnce.Do(func() { close(f.streamDone) }) }
	defer closeStream()
	for {
		err = f.runComponents(runCtx, closeStream)
		if err == nil || f.Config.SourceResolver == nil || runCtx.Err() != nil {
			break
		}
		if err = f.failOver(runCtx, err); err != nil {
			break
		}
	}
	close(stopWatch)
	wg.Wait()
	if cause := context.Cause(runCtx); errors.Is(cause, ErrPanicFlag) {
		err = cause
	}
	// Nothing writes to the target any more: this state accounts for everything written.
	f.mu.Lock()
	f.final = true
	f.mu.Unlock()
	if f.Checkpoints != nil {
		saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		st := f.State()
		if serr := f.Checkpoints.Save(saveCtx, st); serr != nil {
			f.log.WithError(serr).Error("ferry: could not save the final checkpoint")
		} else {
			f.log.WithField("applied", st.Applied.String()).Info("ferry: final checkpoint saved")
		}
		cancel()
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		f.log.Info("ferry: run cancelled")
	} else if err != nil {
		f.log.WithError(err).Error("ferry: run failed")
	}
	return err
}

// runComponents runs the stream, the apply and (unless done) the copy, with the periodic
// checkpoints, until they end; closeStream is called when the stream reached its stop position.
func (f *Ferry) runComponents(ctx context.Context, closeStream func()) error {
	f.mu.Lock()
	f.final = false
	f.mu.Unlock()
	g, gctx := errgroup.WithContext(ctx)
	streamer, writer, iterator := f.BinlogStreamer, f.BinlogWriter, f.DataIterator
	g.Go(func() error {
		err := streamer.Run(gctx, f.startPos)
		if err == nil {
			closeStream()
			writer.Close()
		}
		return err
	})
	g.Go(func() error { return writer.Run(gctx) })
	select {
	case <-f.copyDone: // copied before a failover
	default:
		g.Go(func() error {
			if err := iterator.Run(gctx, f.Tables, f.writeBatch); err != nil {
				return err
			}
			f.copyEnd = time.Now()
			close(f.copyDone)
			f.log.WithField("rows", f.rowsCopied()).Info("ferry: row copy complete")
			return nil
		})
	}
	stop := make(chan struct{})
	var cg sync.WaitGroup
	if f.Checkpoints != nil {
		cg.Add(1)
		go func() {
			defer cg.Done()
			f.checkpointLoop(gctx, stop)
		}()
	}
	if f.binlog != nil {
		cg.Add(1)
		go func() {
			defer cg.Done()
			f.watchReplicaLag(gctx, stop)
		}()
	}
	err := g.Wait()
	// Stop the periodic saves, so none of them can overwrite the final state.
	close(stop)
	cg.Wait()
	return err
}

// failOver continues the run on the source Config.SourceResolver names, after the run stopped with
// lost (see SourceResolver); it returns nil when the components are rebuilt against it and the
// run can go on, else the error to end Run with. The argument is the resume's: the stopped
// components wrote nothing beyond the state taken here.
func (f *Ferry) failOver(ctx context.Context, lost error) error {
	ping, cancel := context.WithTimeout(ctx, 2*time.Second)
	alive := f.Source.PingContext(ping) == nil
	cancel()
	if alive && !errors.Is(lost, ErrSourceChanged) {
		return lost // the source answers: the error is the run's own
	}
	f.mu.Lock()
	f.final = true
	f.mu.Unlock()
	st := f.State()
	if f.Checkpoints != nil {
		// Saved first, so a failover that fails (or a crash during it) can be resumed.
		if err := f.Checkpoints.Save(ctx, st); err != nil {
			f.log.WithError(err).Warn("ferry: failover: checkpoint not saved")
		}
	}
	f.log.WithError(lost).WithField("source", f.Config.Source.String()).Warn("ferry: the source is lost; asking SourceResolver for the source to continue on")
	conn, err := f.Config.SourceResolver(ctx, lost)
	if err != nil {
		return fmt.Errorf("the source %s was lost (%w), and SourceResolver named none to continue on: %v", f.Config.Source, lost, err)
	}
	db, err := conn.Open(ctx)
	if err != nil {
		return fmt.Errorf("the source %s was lost (%w); the one SourceResolver named: %v", f.Config.Source, lost, err)
	}
	fail := func(err error) error {
		db.Close()
		return fmt.Errorf("the source %s was lost (%v), and the run cannot continue on %s: %w", f.Config.Source, lost, conn, err)
	}
	flavor, err := DetectFlavor(ctx, db)
	if err != nil {
		return fail(err)
	}
	id, err := serverIdentity(ctx, db)
	if err != nil {
		return fail(err)
	}
	start := st.Applied
	if !st.Source.Same(id) {
		if err := flavor.checkGTIDContinuity(ctx, db, "the new source "+conn.String(), st); err != nil {
			return fail(err)
		}
		start = Position{GTID: st.Applied.GTID}
	}
	old, owned := f.Source, f.ownsSource
	f.swapMu.Lock()
	f.Source, f.ownsSource, f.SourceFlavor, f.sourceID = db, true, flavor, id
	f.Config.Source = conn
	f.startPos = start
	f.mu.Lock()
	f.streamedBefore = st.StreamedGTID
	f.mu.Unlock()
	f.DataIterator = f.newDataIterator()
	f.BinlogWriter = f.newBinlogWriter()
	f.BinlogStreamer = f.newBinlogStreamer()
	f.BinlogStreamer.AddListener(f.BinlogWriter.Write)
	f.swapMu.Unlock()
	if owned {
		old.Close()
	}
	f.log.WithFields(logrus.Fields{"source": conn.String(), "server": id.String(), "from": start.String()}).Warn("ferry: failover: continuing on the new source")
	return nil
}

// watchPanicFlag aborts the run, with ErrPanicFlag, as soon as the file exists; it returns when it
// did or when stop is closed.
func watchPanicFlag(path string, stop <-chan struct{}, abort context.CancelCauseFunc) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(path); err == nil {
			abort(fmt.Errorf("ferry: the panic flag file %s appeared: run aborted, open copy batches rolled back; remove the file and resume from the checkpoint (-resume): %w", path, ErrPanicFlag))
			return
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

func (f *Ferry) writeBatch(ctx context.Context, b *RowBatch) error {
	// Noted before the write: a batch may commit on the target even when the call fails.
	if err := f.noteCopyGTID(b.SourceGTID); err != nil {
		return err
	}
	began := time.Now()
	if err := f.BatchWriter.WriteBatch(ctx, b); err != nil {
		return err
	}
	now := time.Now()
	f.lastBatch.Store(now.UnixNano())
	if f.Observer != nil {
		var size int64
		for _, r := range b.Rows {
			for _, v := range r {
				if bs, ok := v.([]byte); ok {
					size += int64(len(bs))
				}
			}
		}
		f.Observer.BatchCopied(b.Table.String(), len(b.Rows), size, now.Sub(began))
	}
	if o, ok := f.Verifier.(verifier.CopyObserver); ok {
		o.RowsCopied(b.Table.Source, b.Rows)
	}
	return nil
}

func (f *Ferry) noteCopyGTID(gtid string) error {
	if gtid == "" {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	merged, err := f.SourceFlavor.unionGTID(f.copyGTID, gtid)
	if err != nil {
		return fmt.Errorf("copy: source GTID position: %w", err)
	}
	f.copyGTID = merged
	return nil
}

func (f *Ferry) rowsCopied() int64 {
	var n int64
	for _, t := range f.Tables {
		n += t.State().RowsCopied
	}
	return n
}

// WaitUntilRowCopyIsComplete blocks until every row has been copied, Run fails, or ctx ends.
func (f *Ferry) WaitUntilRowCopyIsComplete(ctx context.Context) error {
	select {
	case <-f.copyDone:
		return nil
	case <-f.runDone:
		select {
		case <-f.copyDone:
			return nil
		default:
		}
		return f.runError()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *Ferry) runError() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.runErr == nil {
		return errors.New("ferry: run ended")
	}
	return f.runErr
}

// WaitUntilBinlogCaughtUp blocks until the binlog writer's lag is under maxLag.
func (f *Ferry) WaitUntilBinlogCaughtUp(ctx context.Context, maxLag time.Duration) error {
	for {
		if f.BinlogLag() < maxLag {
			return nil
		}
		select {
		case <-f.runDone:
			return f.runError()
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// streamSilenceGrace is how long the binlog connection may stay silent before the silence counts
// as lag: the source sends a heartbeat every second while it has nothing else to send.
const streamSilenceGrace = 3 * time.Second

// SourceLag is how far the target is behind the source — the "true lag" an operator asks for. It is
// the age, by the source's clock (binlog timestamps have second precision), of the oldest change
// received and not yet applied; or, while the stream still delivers older changes (no heartbeat
// since the last event), of the last change applied; or 0 when the stream is at the source's head
// with nothing left to apply. While the binlog connection is silent beyond its heartbeats (a
// stalled network, a hung server) the lag is at least the silence, since the source may have moved
// on meanwhile. An event's timestamp is when its statement started, so a long transaction shows its
// duration as lag the moment it commits. With Config.BinlogSource it is at least how far the
// replica is behind the source (see watchReplicaLag).
func (f *Ferry) SourceLag() time.Duration {
	now := time.Now()
	var lag time.Duration
	atHead, streaming := true, true
	select {
	case <-f.streamDone:
		streaming = false
	default:
	}
	var lastHeard time.Time
	rp := f.parts()
	if s, ok := rp.streamer.(interface{ StreamState() (time.Time, bool) }); ok {
		lastHeard, atHead = s.StreamState()
	}
	if w, ok := rp.writer.(interface{ EventTimes() (time.Time, time.Time) }); ok {
		oldest, last := w.EventTimes()
		switch {
		case !oldest.IsZero():
			lag = now.Sub(oldest)
		case !atHead && !last.IsZero():
			lag = now.Sub(last)
		}
	}
	if streaming && !lastHeard.IsZero() {
		if silent := now.Sub(lastHeard) - streamSilenceGrace; silent > lag {
			lag = silent
		}
	}
	// With the binlog from a replica, the stream can be at the replica's head while the replica
	// itself is behind the source (its SQL thread stopped): the replica's own lag counts.
	lag = max(lag, time.Duration(f.replicaLag.Load()))
	return max(lag, 0)
}

// BinlogLag is how long the oldest unapplied change has waited inside ferry, if the writer reports
// it: the cut-over waits for it to fall under its MaxLag. SourceLag is how far behind the source
// the target is.
func (f *Ferry) BinlogLag() time.Duration {
	if l, ok := f.parts().writer.(LagReporter); ok {
		return l.Lag()
	}
	return 0
}

// FlushBinlog applies every change committed on the source up to now, and keeps streaming. With the
// source's writes stopped, the target then equals the source. It returns the source's position;
// with Config.BinlogSource, everything up to it was applied from the replica's stream once the
// replica's binlog held it (which waits for a lagging replica until ctx ends).
func (f *Ferry) FlushBinlog(ctx context.Context) (Position, error) {
	pos, _, err := f.flushBinlog(ctx)
	return pos, err
}

// flushBinlog is FlushBinlog, also returning the stream's position everything was applied up to
// (the replica's, with Config.BinlogSource).
func (f *Ferry) flushBinlog(ctx context.Context) (source, stream Position, err error) {
	rp := f.parts()
	source, err = CurrentPosition(ctx, rp.source, rp.flavor)
	if err != nil {
		return Position{}, Position{}, fmt.Errorf("flush binlog: %w", err)
	}
	if stream, err = f.streamPosition(ctx, source); err != nil {
		return Position{}, Position{}, fmt.Errorf("flush binlog to the source's %s: %w", source, err)
	}
	if err := f.waitApplied(ctx, rp, stream); err != nil {
		return Position{}, Position{}, err
	}
	return source, stream, nil
}

func (f *Ferry) waitApplied(ctx context.Context, rp runParts, pos Position) error {
	poll := func(done func() bool) error {
		for !done() {
			select {
			case <-f.runDone:
				return fmt.Errorf("flush binlog to %s: %w", pos, f.runError())
			case <-ctx.Done():
				return fmt.Errorf("flush binlog to %s: %w", pos, ctx.Err())
			case <-time.After(time.Millisecond):
			}
		}
		return nil
	}
	if err := poll(func() bool { return rp.streamer.Position().Compare(pos) >= 0 }); err != nil {
		return err
	}
	// Everything up to pos is queued; a marker behind it is applied only after all of it. A prepared
	// XA transaction's changes are applied only at its XA COMMIT: while one that changed copied tables
	// is pending the target cannot equal the source, and the marker never passes any pending one
	// (a checkpoint there would skip its changes on resume).
	marker := pos
	if x, ok := rp.streamer.(interface{ PendingXA() []PendingXA }); ok {
		var held []string
		for _, p := range x.PendingXA() {
			if p.Start.Compare(pos) >= 0 {
				continue
			}
			if p.Changes > 0 {
				held = append(held, fmt.Sprintf("%s (prepared at %s, %d row changes)", p.XID, p.Start, p.Changes))
			}
			if p.Start.Compare(marker) < 0 {
				marker = p.Start
			}
		}
		if len(held) > 0 {
			return fmt.Errorf("flush binlog to %s: prepared XA transaction(s) %s changed copied tables and are neither committed nor rolled back on the source; ferry applies them only at XA COMMIT, so the target cannot equal the source yet: end them (XA RECOVER lists them) and try again", pos, strings.Join(held, ", "))
		}
	}
	if err := rp.writer.Write(ctx, &BinlogBatch{Commit: &marker, Received: time.Now()}); err != nil {
		return err
	}
	return poll(func() bool { return rp.writer.Applied().Compare(marker) >= 0 })
}

// FlushBinlogAndStopStreaming applies every change committed on the source up to now, then stops the
// streamer; Run returns nil once the row copy is complete and the writer has drained. Call it with
// the source's writes stopped.
func (f *Ferry) FlushBinlogAndStopStreaming(ctx context.Context) error {
	_, pos, err := f.flushBinlog(ctx)
	if err != nil {
		return err
	}
	f.parts().streamer.StopAt(pos)
	select {
	case <-f.streamDone:
		return nil
	case <-f.runDone:
		return f.runError()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TablePairs describes the copied tables for a verifier.
func (f *Ferry) TablePairs() []verifier.TablePair {
	out := make([]verifier.TablePair, len(f.Tables))
	for i, t := range f.Tables {
		out[i] = verifier.TablePair{Source: t.Source, TargetDatabase: t.TargetDatabase, TargetTable: t.TargetTable, Where: t.Condition}
	}
	return out
}

// State is a snapshot of what a resume needs.
func (f *Ferry) State() *State {
	rp := f.parts()
	st := &State{Version: StateVersion, Tables: map[string]*TableState{}, Written: time.Now().UTC(),
		Source: rp.sourceID, Target: f.targetID, Binlog: f.binlogID}
	st.Selection.Tables = f.Config.Tables
	st.Selection.Filter, _ = filterIdentity(f.Config.Filter)
	// The applied position is read before the tables: anything the tables claim was committed
	// after it, and replaying from it re-applies whatever came later.
	if rp.writer != nil {
		st.Applied = rp.writer.Applied()
	}
	if st.Applied.IsZero() {
		st.Applied = rp.startPos
	}
	for _, t := range f.Tables {
		s := t.State()
		s.Schema = t.Source.CreateTable
		s.Target = t.TargetDatabase + "." + t.TargetTable
		s.Condition = t.Condition
		st.Tables[t.Source.String()] = &s
	}
	// After the tables: every batch their keys count noted its GTID set before it was written.
	f.mu.Lock()
	st.CopyGTID, st.Final, st.StreamedGTID = f.copyGTID, f.final, f.streamedBefore
	f.mu.Unlock()
	if s, ok := rp.streamer.(interface{ StreamedGTID() string }); ok {
		// What this run's stream handed over, with what earlier runs (before a resume or a
		// failover) did.
		if merged, err := rp.flavor.unionGTID(st.StreamedGTID, s.StreamedGTID()); err == nil {
			st.StreamedGTID = merged
		} else {
			f.log.WithError(err).Warn("ferry: checkpoint: streamed GTID set")
		}
	}
	return st
}

// Close closes the connection pools Initialize opened; a pool the host set is left open.
func (f *Ferry) Close() error {
	var errs []error
	if f.ownsSource && f.Source != nil {
		errs = append(errs, f.Source.Close())
		f.ownsSource = false
	}
	if f.ownsTarget && f.Target != nil {
		errs = append(errs, f.Target.Close())
		f.ownsTarget = false
	}
	if f.binlog != nil {
		errs = append(errs, f.binlog.Close())
		f.binlog = nil
	}
	return errors.Join(errs...)
}
