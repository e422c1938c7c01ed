package osc

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/internal/retry"
	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/throttler"
)

// Migration is one online schema change of one table. Fill in the configuration fields and call
// Run once.
type Migration struct {
	Conn     ferry.ConnConfig
	Database string
	Table    string
	// Alter is the ALTER clause, without "ALTER TABLE t": "ADD COLUMN c INT, DROP COLUMN d".
	Alter string
	// BinlogConn, when set, is a replica of Conn's server to read the binlog from, so that the
	// server being migrated serves no binlog stream (as gh-ost reads from a replica). Everything
	// else — the copy, the ghost and changelog tables, the cut-over — stays on Conn's server. The
	// replica must log what it replicates (log_slave_updates, ROW, FULL), checked before any write
	// (ferry.CheckBinlogReplica). The cut-over stays exact: its marker, written under the lock,
	// reaches the apply through the replica after every change before the lock; a lagging replica
	// fails the attempt after CutoverLockTimeout (the lock released), to be tried again. Positions
	// waited for elsewhere are mapped to the replica's binlog by GTID (ferry.ReplicaPosition), and the
	// checkpoint's position is the replica's, so a resume reads the binlog from the same replica.
	BinlogConn *ferry.ConnConfig

	// Execute runs the migration; without it Run stops after validation (a dry run: it creates and
	// drops the empty ghost table to learn the new schema, and never touches the original).
	Execute bool
	// UseInstant runs the ALTER in place with ALGORITHM=INSTANT when the server can (checked on an
	// empty copy of the table, see Plan.InstantPossible): a metadata change only, no copy, no ghost
	// table. It waits at most CutoverLockTimeout for the table's metadata lock (writes queue behind
	// it meanwhile) and is retried like a cut-over. Without it, a possible instant ALTER is only
	// reported.
	UseInstant bool
	// SQLMode is the sql_mode the ghost table's DDL, the copy and the apply run under; default the
	// server's @@GLOBAL.sql_mode (what a plain ALTER TABLE would run under). STRICT_ALL_TABLES and
	// NO_AUTO_VALUE_ON_ZERO are always added.
	SQLMode string
	// TimeZone is the time zone in which the server converts between TIMESTAMP and other types for
	// this ALTER (and reads TIMESTAMP defaults); default the server's @@GLOBAL.time_zone.
	TimeZone string
	// ChunkSize is the rows copied per INSERT ... SELECT; default 1000 (10..100000). With
	// TargetChunkTime it is the starting size.
	ChunkSize int
	// TargetChunkTime, when positive, adapts the chunk size after every chunk so that a chunk
	// takes about this long (from the rows per second of the recent chunks, growing at most 1.5x a
	// chunk, shrinking at once when a chunk takes over twice the target; 100..100,000 rows, or
	// down to ChunkSize when that is smaller). A chunk's INSERT ... SELECT holds share locks on
	// the original's rows until it commits, so this is also about the longest an application
	// write to those rows waits for the copy. Zero keeps ChunkSize fixed.
	TargetChunkTime time.Duration
	// CopyWorkers is how many chunks are copied at once, each by its own connection; default 2
	// (1..64). The chunks are consecutive key ranges, so the copy's order and its checkpoint (the
	// end below which every chunk committed) stay as with one worker. Each chunk in flight holds
	// share locks on its rows, so more workers also make application writes wait on the copy more
	// often (measured on a 2-core server: 4 workers copied no more rows per second than 2, and
	// application UPDATEs waited on the copy's locks far more often); raise it on a server with
	// cores to spare.
	CopyWorkers int
	// MaxRowsPerSecond, when positive, caps the copy's rate; the wait is between chunks, with no
	// row locked.
	MaxRowsPerSecond float64
	// ExactRowCount counts the table's rows with SELECT COUNT(*) before the copy instead of
	// taking information_schema's estimate, for a true total and ETA in Status.
	ExactRowCount bool
	// PanicFlagFile: when this file appears, the migration stops at once, as the panic command
	// does (checked every 100ms while Run runs).
	PanicFlagFile string
	// AllowForeignKeys lets a table that has or is referenced by foreign keys be migrated. The
	// ghost table is created with CREATE TABLE LIKE, which does not copy the table's own foreign
	// keys (add them in the ALTER if wanted), and constraints of other tables that reference the
	// original follow it to <t>_del at cut-over — the caller must fix them.
	AllowForeignKeys bool
	// AllowTriggers lets a table with triggers be migrated. The triggers stay on the original table
	// (they move with it to <t>_del): recreate them on the new table after the cut-over.
	AllowTriggers bool
	// SkipVerification skips the comparison of the ghost table with the original before the
	// cut-over (verify.go), which runs by default for ALTERs that keep the copied columns' values.
	SkipVerification bool
	// IncludeTriggers recreates the table's triggers on the new table within the cut-over, under
	// their own names, as ALTER TABLE keeps them (see triggers.go); the old table keeps none.
	IncludeTriggers bool
	// ApproveRenamedColumns approves every column rename the ALTER makes (CHANGE old new, RENAME
	// COLUMN old TO new): the values of old are copied into new. Without approval a rename is
	// refused, since a CHANGE that renames by mistake would otherwise drop a column's data.
	ApproveRenamedColumns bool
	// ApprovedRenames approves individual renames, old name → new name.
	ApprovedRenames map[string]string
	// AllowNewUniqueKey lets the ALTER add a unique key. A row colliding on it fails the copy, but
	// the apply's REPLACE would silently delete the other row, so ferry refuses such an ALTER unless
	// allowed; when allowed it first checks the existing rows have no duplicates on the new key, and
	// under the cut-over lock it compares the row counts of both tables and aborts the cut-over if
	// they differ (costs one COUNT(*) of each table while writes are blocked).
	AllowNewUniqueKey bool
	// DropLeftovers drops _<t>_gho, _<t>_ghc and <t>_del left by an earlier run, instead of refusing
	// to start — only those marked as ferry's (marks.go); any other table of those names is refused.
	DropLeftovers bool
	// Resume continues a migration that was interrupted (the process killed, the server restarted)
	// from the checkpoint in its leftover _<t>_ghc, instead of refusing the leftovers: after checking
	// the ALTER, the original's and the ghost's definitions and that the checkpoint's binlog file
	// still exists, the copy goes on after the last copied chunk and the binlog is applied again from
	// the checkpointed position (see resume.go for why this converges). Without leftovers, or with
	// leftovers of a run that died before its first checkpoint (they are dropped), it starts afresh.
	// A cut-over sentry <t>_del left by a killed attempt is dropped. DropLeftovers overrides Resume.
	Resume bool
	// CheckpointInterval is how often the checkpoint for Resume is written; default 500ms.
	CheckpointInterval time.Duration
	// DropOldTable drops <t>_del (the original table, renamed) after a successful cut-over.
	DropOldTable bool
	// MigrateOnReplica runs the migration on a replica (Conn names it): its table is changed and
	// cut over there, the primary's is not. The replica's binlog must carry replication's changes
	// (log_slave_updates), which the apply takes to the ghost like any other write; the cut-over's
	// table lock holds the replication applier too, which after the rename writes into the new
	// table. Refused before any write when the server is not a replica, has no log_slave_updates,
	// is read_only to this user, or when its writes would stop replication (see replica.go); and
	// when the ALTER moves a column to another position, which row-based replication of the
	// primary's changes into the new table would write into the wrong columns.
	MigrateOnReplica bool
	// TestOnReplica runs the migration on a replica as MigrateOnReplica does, but stops
	// replication right before the cut-over, cuts over, and swaps the tables back: the original
	// keeps its name, exactly as replication left it at the stop position, and the migrated table
	// stays as _<t>_gho for comparison. Replication stays stopped; Result.ReplicaTest says where
	// it stopped, how to compare the tables and how to resume.
	TestOnReplica bool
	// CutoverLockTimeout bounds every wait of one cut-over attempt (lock_wait_timeout of the lock and
	// of the rename, the wait for the binlog to catch up); writes to the table are blocked at most
	// about this long per attempt. Default 3s (1s..10s).
	CutoverLockTimeout time.Duration
	// CutoverTwoStep uses gh-ost's two-step cut-over instead of the atomic one: lock the table,
	// apply every change up to the lock, ALTER TABLE t RENAME TO <t>_del under the lock, unlock,
	// RENAME TABLE _<t>_gho TO t. Simpler (no second session, no processlist check), but for a
	// moment the table does not exist: writes queued on the lock, and any statement in that moment,
	// fail with "table doesn't exist" instead of waiting. If the process dies between the two
	// renames, finish by hand with RENAME TABLE _<t>_gho TO t (every change is in the ghost table).
	CutoverTwoStep bool
	// CutoverAttempts is how often the cut-over is tried before Run fails; default 60.
	CutoverAttempts int
	// PostponeFlagFile: while this file exists the cut-over waits (the copy and apply go on).
	PostponeFlagFile string
	// Postpone holds the cut-over until Unpostpone is called (or the unix-socket "cut-over" command).
	Postpone bool
	// MaxLag throttles the row copy while the binlog apply lags more than this; default 1.5s. The
	// cut-over starts only once the lag is below it.
	MaxLag time.Duration
	// CutoverMaxLag: a cut-over attempt starts only while the apply lag is below this, since writes
	// stay blocked until the changes before the lock are applied; default 250ms.
	CutoverMaxLag time.Duration
	// Throttler, when set, pauses the row copy while it says so.
	Throttler throttler.Throttler
	// HeartbeatInterval is how often a heartbeat row is written to the changelog; default 100ms.
	HeartbeatInterval time.Duration
	// ServerID is the binlog replica id of the streamer; default a random one.
	ServerID uint32
	// StatusInterval is how often OnStatus is called; default 5s.
	StatusInterval time.Duration
	// OnStatus receives a status snapshot every StatusInterval.
	OnStatus func(Status)
	// Hooks run at each step (see Hooks).
	Hooks Hooks
	// SocketPath, when set, serves interactive commands on a unix socket (see ServeSocket).
	SocketPath string
	// ExtraCommands, when set, is offered every command Command does not know (name lower-cased,
	// arg after '='); a host adds its own, e.g. gh-ost's max-load= for its throttlers.
	ExtraCommands func(name, arg string) (answer string, handled bool, err error)
	Logger        logrus.FieldLogger

	// testCutoverLocked is called while the cut-over holds the table lock, with the id of the
	// locking session (tests kill it).
	testCutoverLocked func(lockConnID int64)
	// testAfterMarker is called with the locking session once every change before the lock is
	// applied (a test writes through it to simulate a write that slipped past the lock).
	testAfterMarker func(lock *sql.Conn)
	// renameSeenTimeout bounds the wait for the binlog stream to reach the cut-over's RENAME
	// (default 60s; tests shorten it).
	renameSeenTimeout time.Duration
	// testStreamEndDelay delays the end of a streamer told to expect it (a slow stream).
	testStreamEndDelay time.Duration
	// testBetweenRenames, if it returns an error, stops a two-step cut-over between its renames
	// (as if the process died there).
	testBetweenRenames func() error
	// testAfterChunk is called after each copied chunk with the time its copy took, one call at a
	// time (tests write during the copy).
	testAfterChunk func(took time.Duration)
	// testApplyDelay, if it returns more than 0, delays the applier before each set of batches it
	// takes (an apply lagging behind the writes).
	testApplyDelay func() time.Duration
	// testYieldLag, when positive, replaces yieldLag (a test that must see chunks copied at once on
	// a loaded machine).
	testYieldLag time.Duration
	// testMarkerDelay delays the applier when a cut-over marker comes back (a slow apply).
	testMarkerDelay func() time.Duration

	db     *sql.DB
	flavor ferry.Flavor
	// binlog is BinlogConn's pool (nil when the binlog is read from db's server), binlogID its
	// identity.
	binlog   *sql.DB
	binlogID ferry.ServerIdentity
	log      logrus.FieldLogger
	plan     *Plan
	info     *alterInfo

	started        time.Time
	state          atomic.Value // string
	rowsCopied     atomic.Int64
	rowsEstimated  atomic.Int64
	chunkSize      atomic.Int64
	userThrottled  atomic.Bool
	throttleReason atomic.Value // string
	postponed      atomic.Bool
	panicked       chan struct{}
	panicOnce      sync.Once
	cutoverNow     chan struct{}
	copyDone       atomic.Bool
	result         Result
	resultMu       sync.Mutex
	applier        *applier
	applierP       atomic.Pointer[applier] // for Status from other goroutines
	startedNano    atomic.Int64
	runOnce        atomic.Bool
	renamed        atomic.Bool
	initOnce       sync.Once
	cp             checkpoint  // the checkpoint's fixed fields
	resumeFrom     *checkpoint // set when resuming
	copiedUpTo     atomic.Pointer[[][]byte]
	// verified: the verification pass before the cut-over matched (the changed rows are checked
	// again under the lock)
	verified bool
	// triggers are recreated on the new table (IncludeTriggers)
	triggers []trigger
	// zone is the time zone the server converts TIMESTAMP values in ("+00:00": no conversion)
	zone string
	// changelogCreated: this run created the changelog (dropped with the ghost if validation fails)
	changelogCreated bool
	// ghostAutoIncrement: the ghost table has an AUTO_INCREMENT column (its counter is carried over)
	ghostAutoIncrement bool
	// origTable is the original table's schema; sqlMode the sql_mode the migration runs under
	origTable *schema.Table
	sqlMode   string
	// replicaTest is filled in by a TestOnReplica cut-over (replica.go)
	replicaTest *ReplicaTest
}

// Result reports a finished migration.
type Result struct {
	Plan *Plan
	// RowsCopied counts the rows the copy inserted into the ghost table.
	RowsCopied int64
	// EventsApplied counts the binlog row changes applied to the ghost table.
	EventsApplied int64
	// CutoverAttempts is how many cut-overs were tried.
	CutoverAttempts int
	// WriteBlocked is, per cut-over attempt, how long writes to the table were blocked: from the
	// LOCK TABLES request until the rename (or the unlock of a failed attempt) finished.
	WriteBlocked []time.Duration
	// Instant is set when the ALTER ran in place with ALGORITHM=INSTANT (UseInstant).
	Instant bool
	// Verification is the outcome of the comparison of the ghost table with the original before
	// the cut-over: "MATCH (...)", "not applicable: why", or "skipped".
	Verification string
	// OldTable is the name the original table has now (<t>_del), or "" if it was dropped (or,
	// with TestOnReplica, swapped back).
	OldTable string
	// ReplicaTest reports a TestOnReplica run: where replication stopped, the two tables, and
	// how to compare them and resume replication.
	ReplicaTest *ReplicaTest
	Elapsed     time.Duration
}

// State names of a migration.
const (
	StateValidating = "validating"
	StateCopying    = "copying"
	StateCatchingUp = "catching up"
	StateVerifying  = "verifying"
	StatePostponed  = "postponed"
	StateCutover    = "cut-over"
	StateDone       = "done"
	StateFailed     = "failed"
	StateDryRun     = "dry run done"
)

func (m *Migration) ghostName() string     { return "_" + m.Table + "_gho" }
func (m *Migration) changelogName() string { return "_" + m.Table + "_ghc" }

// oldName is the sentry's and then the old table's name. It must sort after the table's own name
// (it starts with it): RENAME takes its metadata locks in name order, and a sentry that sorted first
// (gh-ost's _<t>_del) is what the queued RENAME waits on; once the sentry is dropped the RENAME
// must still request the table's lock before the locking session unlocks, and loses that race
// under load, letting queued writes into the old table after the last event was applied (measured:
// 2 of 30 cut-overs on MariaDB 10.11). With <t>_del the RENAME queues on the table itself.
func (m *Migration) oldName() string { return m.Table + "_del" }
func (m *Migration) qualified(t string) string {
	return q(m.Database) + "." + q(t)
}

func (m *Migration) setState(s string) {
	m.state.Store(s)
	m.log.WithField("state", s).Info("osc: " + s)
}

func (m *Migration) stateName() string {
	if s, ok := m.state.Load().(string); ok {
		return s
	}
	return ""
}

// cleanupHint tells the operator what to drop after a failure.
func (m *Migration) cleanupHint() string {
	return fmt.Sprintf("the original table %s was not changed; drop %s and %s (or run again with DropLeftovers / --drop-leftovers)",
		m.qualified(m.Table), m.qualified(m.ghostName()), m.qualified(m.changelogName()))
}

// Run validates the migration and, with Execute, performs it: ghost and changelog tables, row copy
// with binlog apply, atomic cut-over, cleanup. It returns once the table has its new schema, or
// with an error after which the original table is unchanged (the error says what to clean up).
func (m *Migration) Run(ctx context.Context) (*Result, error) {
	if !m.runOnce.CompareAndSwap(false, true) {
		return nil, errors.New("osc: a Migration runs once")
	}
	m.log = m.Logger
	if m.log == nil {
		m.log = logrus.StandardLogger()
	}
	m.log = m.log.WithField("table", m.Database+"."+m.Table)
	m.started = time.Now()
	m.startedNano.Store(m.started.UnixNano())
	m.init()
	if m.Postpone {
		m.postponed.Store(true)
	}
	m.applyDefaults()
	m.chunkSize.Store(int64(m.ChunkSize))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-m.panicked:
			cancel(errors.New("stopped by the panic command"))
		case <-ctx.Done():
		}
	}()
	if m.PanicFlagFile != "" {
		go func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				if _, err := os.Stat(m.PanicFlagFile); err == nil {
					cancel(fmt.Errorf("stopped by the panic flag file %s", m.PanicFlagFile))
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	m.result.Elapsed = 0
	res, err := m.run(ctx)
	if err != nil {
		if c := context.Cause(ctx); c != nil && ctx.Err() != nil && !errors.Is(err, c) {
			err = fmt.Errorf("%w (%v)", err, c)
		}
		m.state.Store(StateFailed)
		m.runHook(context.WithoutCancel(ctx), HookFailure, err)
	}
	return res, err
}

func (m *Migration) init() {
	m.initOnce.Do(func() {
		m.panicked = make(chan struct{})
		m.cutoverNow = make(chan struct{}, 1)
	})
}

func (m *Migration) applyDefaults() {
	if m.ChunkSize <= 0 {
		m.ChunkSize = 1000
	}
	m.ChunkSize = min(max(m.ChunkSize, 10), 100000)
	if m.CopyWorkers <= 0 {
		m.CopyWorkers = 2
	}
	m.CopyWorkers = min(m.CopyWorkers, 64)
	if m.CutoverLockTimeout <= 0 {
		m.CutoverLockTimeout = 3 * time.Second
	}
	m.CutoverLockTimeout = min(max(m.CutoverLockTimeout, time.Second), 10*time.Second)
	if m.CutoverAttempts <= 0 {
		m.CutoverAttempts = 60
	}
	if m.MaxLag <= 0 {
		m.MaxLag = 1500 * time.Millisecond
	}
	if m.CutoverMaxLag <= 0 {
		m.CutoverMaxLag = 250 * time.Millisecond
	}
	if m.HeartbeatInterval <= 0 {
		m.HeartbeatInterval = 100 * time.Millisecond
	}
	if m.CheckpointInterval <= 0 {
		m.CheckpointInterval = 500 * time.Millisecond
	}
	if m.StatusInterval <= 0 {
		m.StatusInterval = 5 * time.Second
	}
	if m.renameSeenTimeout <= 0 {
		m.renameSeenTimeout = time.Minute
	}
	if m.ServerID == 0 {
		m.ServerID = uint32(100000 + rand.Intn(1<<30))
	}
}

func (m *Migration) run(ctx context.Context) (*Result, error) {
	m.setState(StateValidating)
	if m.Database == "" || m.Table == "" {
		return nil, errors.New("osc: Database and Table are required")
	}
	if len(m.Table) > 58 {
		return nil, fmt.Errorf("osc: table name %q is too long for the ghost table names (at most 58 characters)", m.Table)
	}
	info, err := parseAlter(m.Alter)
	if err != nil {
		return nil, fmt.Errorf("osc: %w", err)
	}
	m.info = info
	probe, err := m.Conn.Open(ctx)
	if err != nil {
		return nil, err
	}
	mode, zone, err := m.serverSettings(ctx, probe)
	probe.Close()
	if err != nil {
		return nil, err
	}
	m.zone, m.sqlMode = zone, mode
	conn := m.Conn
	conn.Params = map[string]string{}
	for k, v := range m.Conn.Params {
		conn.Params[k] = v
	}
	conn.Params["sql_mode"] = "'" + mode + "'"
	db, err := conn.Open(ctx)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	// Each copy worker keeps a connection for the copy's life; the planner, the apply, heartbeats,
	// checkpoints and the cut-over need theirs besides.
	db.SetMaxOpenConns(16 + m.CopyWorkers)
	m.db = db
	if m.flavor, err = ferry.DetectFlavor(ctx, db); err != nil {
		return nil, err
	}
	if err := m.checkReplica(ctx); err != nil {
		return nil, err
	}
	if m.BinlogConn != nil {
		if m.binlog, err = m.BinlogConn.Open(ctx); err != nil {
			return nil, fmt.Errorf("osc: binlog source: %w", err)
		}
		defer m.binlog.Close()
		if m.binlogID, err = ferry.CheckBinlogReplica(ctx, db, m.binlog, m.flavor, m.Conn.String(), m.BinlogConn.String()); err != nil {
			return nil, fmt.Errorf("osc: %w", &ferry.BinlogSourceError{Err: err})
		}
		m.cp.Binlog = m.binlogID
	}
	release, err := m.lockMigration(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if m.SocketPath != "" {
		stop, err := m.ServeSocket(m.SocketPath)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	if err := m.runHook(ctx, HookStartup, nil); err != nil {
		return nil, err
	}
	if exists, _, err := tableExists(ctx, m.db, m.Database, m.Table); err != nil {
		return nil, err
	} else if !exists {
		return m.finishTwoStepRename(ctx)
	}
	orig, err := m.validateBeforeWrites(ctx)
	if err != nil {
		return nil, err
	}
	m.origTable = orig

	if m.Resume && m.Execute {
		if m.resumeFrom, err = m.prepareResume(ctx); err != nil {
			return nil, err
		}
	}
	m.cp.Alter = m.Alter
	if m.cp.Original, err = m.fingerprint(ctx, m.Table); err != nil {
		return nil, err
	}

	// From here on ferry writes: the ghost and changelog tables (never the original).
	if m.resumeFrom == nil {
		if m.Execute {
			if err := m.createChangelog(ctx); err != nil {
				return nil, err
			}
		}
		if err := m.createGhost(ctx, orig); err != nil {
			return nil, err
		}
		if m.Execute {
			if err := m.writeHint(ctx, ghostMarkID, "ghost", m.ghostName()); err != nil {
				m.dropGhost(ctx)
				return nil, fmt.Errorf("osc: record the ghost table in %s: %w", m.qualified(m.changelogName()), err)
			}
		}
	}
	if m.cp.Ghost, err = m.fingerprint(ctx, m.ghostName()); err != nil {
		m.dropGhost(ctx)
		return nil, err
	}
	ghostCreated := true
	defer func() {
		if ghostCreated && !m.Execute {
			m.db.ExecContext(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+m.qualified(m.ghostName()))
		}
	}()
	ghost, err := schema.Load(ctx, db, m.Database, m.ghostName())
	if err != nil && !errors.Is(err, schema.ErrNoKey) {
		return nil, err
	}
	if ghost == nil {
		return nil, fmt.Errorf("the altered table has no primary key and no NOT NULL unique key; ferry needs a key shared by the old and new schema; %s", m.cleanupHint())
	}
	if err := m.db.QueryRowContext(ctx, `SELECT COUNT(*) > 0 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND EXTRA LIKE '%auto_increment%'`,
		m.Database, m.ghostName()).Scan(&m.ghostAutoIncrement); err != nil {
		m.dropGhost(ctx)
		return nil, fmt.Errorf("osc: read the columns of %s: %w", m.qualified(m.ghostName()), err)
	}
	plan, err := m.mapColumns(ctx, orig, ghost, info)
	if err != nil {
		m.dropGhost(ctx)
		return nil, fmt.Errorf("osc: %w", err)
	}
	if m.resumeFrom == nil {
		// (not when resuming: the probe's DDL names the table and would be in the binlog replayed)
		plan.InstantPossible = m.instantPossible(ctx, orig)
	}
	if err := m.checkReplicatedColumns(orig, ghost, plan); err != nil {
		m.dropGhost(ctx)
		return nil, err
	}
	m.plan = plan
	m.result.Plan = plan
	if err := m.checkTimeZone(ctx); err != nil {
		m.dropGhost(ctx)
		return nil, err
	}
	if len(plan.NewUniqueKeys) > 0 {
		if !m.AllowNewUniqueKey {
			m.dropGhost(ctx)
			return nil, fmt.Errorf("osc: the ALTER adds unique key %s: rows of %s that collide on it fail the copy, or would be silently deleted by the apply (REPLACE) if written later; set AllowNewUniqueKey (--allow-new-unique-key) to go on with a duplicate check before the copy and a row count check at cut-over", strings.Join(plan.NewUniqueKeys, ", "), orig)
		}
		if err := m.checkNoDuplicates(ctx, ghost, plan); err != nil {
			m.dropGhost(ctx)
			return nil, err
		}
	}
	m.log.Info("osc: plan: " + plan.String())
	if err := m.runHook(ctx, HookValidated, nil); err != nil {
		m.dropGhost(ctx)
		return nil, err
	}
	if !m.Execute {
		m.dropGhost(ctx)
		ghostCreated = false
		m.setState(StateDryRun)
		return &m.result, nil
	}
	ghostCreated = false
	if m.UseInstant && plan.InstantPossible && !m.TestOnReplica { // (in place, nothing would be left to compare)
		m.dropGhost(ctx)
		return m.instant(ctx)
	}

	res, err := m.execute(ctx, orig)
	if err != nil {
		if m.renamed.Load() {
			return res, fmt.Errorf("osc: %w", err)
		}
		return res, fmt.Errorf("osc: %w; %s", err, m.cleanupHint())
	}
	return res, nil
}

func (m *Migration) dropGhost(ctx context.Context) {
	if m.resumeFrom != nil {
		return // the ghost of the resumed run is kept for another resume
	}
	m.db.ExecContext(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+m.qualified(m.ghostName()))
	if m.changelogCreated {
		m.db.ExecContext(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+m.qualified(m.changelogName()))
	}
}

// validateBeforeWrites runs every check that needs no write: server settings, the table and its
// key, renames, foreign keys, triggers, leftovers.
func (m *Migration) validateBeforeWrites(ctx context.Context) (*schema.Table, error) {
	var logBin, format, image string
	if err := m.db.QueryRowContext(ctx, "SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image").Scan(&logBin, &format, &image); err != nil {
		return nil, fmt.Errorf("osc: read binlog settings: %w", err)
	}
	if logBin != "1" && !strings.EqualFold(logBin, "ON") {
		return nil, errors.New("osc: the binary log is off; the server needs log_bin, binlog_format=ROW and binlog_row_image=FULL")
	}
	if !strings.EqualFold(format, "ROW") || !strings.EqualFold(image, "FULL") {
		return nil, fmt.Errorf("osc: binlog_format=%s, binlog_row_image=%s; an online schema change needs binlog_format=ROW and binlog_row_image=FULL", format, image)
	}
	orig, err := schema.Load(ctx, m.db, m.Database, m.Table)
	if err != nil {
		if errors.Is(err, schema.ErrNoKey) {
			return nil, fmt.Errorf("osc: %s.%s has no primary key and no unique key on NOT NULL columns: ferry copies and applies changes by key; add a primary key first", m.Database, m.Table)
		}
		return nil, fmt.Errorf("osc: %w", err)
	}
	for _, r := range m.info.renameOrder {
		approved := m.ApproveRenamedColumns
		for o, n := range m.ApprovedRenames {
			if strings.EqualFold(o, r[0]) && strings.EqualFold(n, r[1]) {
				approved = true
			}
		}
		if !approved {
			return nil, fmt.Errorf("osc: the ALTER renames column %s to %s; ferry copies the values of %s into %s only when approved: set ApproveRenamedColumns (--approve-renamed-columns) or ApprovedRenames[%q] = %q; if you meant to drop %s and add %s, write DROP COLUMN and ADD COLUMN",
				r[0], r[1], r[0], r[1], r[0], r[1], r[0], r[1])
		}
	}
	var fks int
	if err := m.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS
		WHERE (CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?) OR (UNIQUE_CONSTRAINT_SCHEMA = ? AND REFERENCED_TABLE_NAME = ?)`,
		m.Database, m.Table, m.Database, m.Table).Scan(&fks); err != nil {
		return nil, fmt.Errorf("osc: check foreign keys: %w", err)
	}
	if fks > 0 && !m.AllowForeignKeys {
		return nil, fmt.Errorf("osc: %s has or is referenced by %d foreign key(s); the ghost table cannot take over constraints that reference the original; set AllowForeignKeys (--allow-foreign-keys) only if you will fix them after the cut-over", orig, fks)
	}
	var triggers int
	if err := m.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?`,
		m.Database, m.Table).Scan(&triggers); err != nil {
		return nil, fmt.Errorf("osc: check triggers: %w", err)
	}
	if triggers > 0 && m.IncludeTriggers {
		if m.triggers, err = m.readTriggers(ctx); err != nil {
			return nil, err
		}
		if err := m.checkTriggerNames(ctx); err != nil {
			return nil, err
		}
	} else if triggers > 0 && !m.AllowTriggers {
		return nil, fmt.Errorf("osc: %s has %d trigger(s); they would stay on the old table at cut-over; set IncludeTriggers (--include-triggers) to recreate them on the new table within the cut-over, or AllowTriggers (--allow-triggers) to leave them on the old table", orig, triggers)
	}
	l, err := m.readLeftovers(ctx)
	if err != nil {
		return nil, err
	}
	if m.Resume && m.Execute && !l.changelog && !l.ghost && l.old && !l.oldMarked {
		return nil, m.nothingToResume()
	}
	for _, left := range []struct {
		name           string
		exists, marked bool
		how            string
	}{
		{m.ghostName(), l.ghost, l.ghostMarked, m.qualified(m.changelogName()) + " does not record it"},
		{m.changelogName(), l.changelog, l.changelogMarked, "its comment is not '" + changelogComment + "'"},
		{m.oldName(), l.old, l.oldMarked, "it is not ferry's cut-over sentry, and " + m.qualified(m.changelogName()) + " does not record it as the table ferry renamed"},
	} {
		if !left.exists {
			continue
		}
		if !left.marked {
			return nil, m.notOurs(left.name, left.how)
		}
		if m.Resume && m.Execute && !m.DropLeftovers {
			if left.name != m.oldName() {
				continue // resumed (prepareResume)
			}
			if l.oldIsSentry {
				// the sentry of a cut-over attempt that died: the original was not renamed
				if err := m.dropStaleSentry(ctx); err != nil {
					return nil, fmt.Errorf("osc: %w", err)
				}
				continue
			}
		}
		if !m.DropLeftovers {
			return nil, fmt.Errorf("osc: table %s already exists (left by an earlier migration of %s); resume that migration with Resume (--resume), or drop it, or run with DropLeftovers (--drop-leftovers)", m.qualified(left.name), orig)
		}
		if !m.Execute {
			m.log.Warnf("osc: leftover %s would be dropped", m.qualified(left.name))
			continue
		}
		m.log.Warnf("osc: dropping leftover %s", m.qualified(left.name))
		if _, err := m.db.ExecContext(ctx, "DROP TABLE "+m.qualified(left.name)); err != nil {
			return nil, fmt.Errorf("osc: drop leftover %s: %w", m.qualified(left.name), err)
		}
	}
	return orig, nil
}

func (m *Migration) createGhost(ctx context.Context, orig *schema.Table) error {
	if exists, _, err := tableExists(ctx, m.db, m.Database, m.ghostName()); err != nil {
		return err
	} else if exists {
		// dry run with a leftover that DropLeftovers would drop
		return fmt.Errorf("osc: table %s already exists; drop it or run with DropLeftovers", m.qualified(m.ghostName()))
	}
	return m.inZone(ctx, func(conn *sql.Conn) error {
		if _, err := conn.ExecContext(ctx, "CREATE TABLE "+m.qualified(m.ghostName())+" LIKE "+orig.QualifiedName()); err != nil {
			return fmt.Errorf("osc: create ghost table: %w", err)
		}
		if _, err := conn.ExecContext(ctx, "ALTER TABLE "+m.qualified(m.ghostName())+" "+m.Alter); err != nil {
			m.dropGhost(ctx)
			return fmt.Errorf("osc: the ALTER fails on the (empty) ghost table, the original was not touched: %w", err)
		}
		return nil
	})
}

// instantPossible tries the ALTER with ALGORITHM=INSTANT on a second empty copy of the table.
func (m *Migration) instantPossible(ctx context.Context, orig *schema.Table) bool {
	probe := "_" + m.Table + "_gh1"
	if len(probe) > 64 {
		return false
	}
	if exists, _, _ := tableExists(ctx, m.db, m.Database, probe); exists {
		return false
	}
	if _, err := m.db.ExecContext(ctx, "CREATE TABLE "+m.qualified(probe)+" LIKE "+orig.QualifiedName()); err != nil {
		return false
	}
	defer m.db.ExecContext(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+m.qualified(probe))
	_, err := m.db.ExecContext(ctx, "ALTER TABLE "+m.qualified(probe)+" "+m.Alter+", ALGORITHM=INSTANT")
	return err == nil
}

// checkNoDuplicates refuses a new unique key the existing rows already violate.
func (m *Migration) checkNoDuplicates(ctx context.Context, ghost *schema.Table, p *Plan) error {
	toOld := map[string]string{}
	for _, cm := range p.Columns {
		toOld[strings.ToLower(cm.To.Name)] = cm.From.Name
	}
	for _, uk := range p.NewUniqueKeys {
		name := uk[:strings.Index(uk, " (")]
		var cols []string
		for _, c := range ghost.UniqueKeys[name] {
			o, ok := toOld[strings.ToLower(c)]
			if !ok {
				cols = nil // on a new column: every row gets the default; the copy will show
				break
			}
			cols = append(cols, q(o))
		}
		if cols == nil {
			continue
		}
		var n int
		err := m.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM (SELECT 1 FROM "+m.qualified(m.Table)+" GROUP BY "+strings.Join(cols, ", ")+" HAVING COUNT(*) > 1 LIMIT 1) d").Scan(&n)
		if err != nil {
			return fmt.Errorf("osc: check duplicates for new unique key %s: %w", uk, err)
		}
		if n > 0 {
			return fmt.Errorf("osc: the rows of %s have duplicates on the new unique key %s; remove them first (the copy would drop rows)", m.qualified(m.Table), uk)
		}
	}
	return nil
}

// execute runs the migration proper once validation passed and the ghost table exists.
func (m *Migration) execute(ctx context.Context, orig *schema.Table) (*Result, error) {
	db := m.db
	rcp := m.resumeFrom
	changelog, err := schema.Load(ctx, db, m.Database, m.changelogName())
	if err != nil {
		return nil, err
	}
	m.writeHint(ctx, 2, "state", "migrating "+m.Alter)
	var pos ferry.Position
	if rcp != nil {
		pos = rcp.Position
		m.rowsCopied.Store(rcp.RowsCopied)
		if rcp.CopiedUpTo != nil {
			k := rcp.CopiedUpTo
			m.copiedUpTo.Store(&k)
		}
		m.copyDone.Store(rcp.CopyDone)
	} else if pos, err = m.streamPositionNow(ctx); err != nil {
		// after the ghost and changelog tables' DDL: a replica's stream must not start before it
		return nil, err
	}
	m.log.WithField("position", pos.String()).Info("osc: streaming the binlog from here")

	m.applier = newApplier(m, db, orig, changelog)
	if err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.max_allowed_packet").Scan(&m.applier.maxPacket); err != nil {
		return nil, fmt.Errorf("read max_allowed_packet: %w", err)
	}
	m.applier.applied = pos
	m.applierP.Store(m.applier)
	if err := m.writeCheckpoint(ctx); err != nil {
		return nil, fmt.Errorf("write the checkpoint: %w", err)
	}
	// Every goroutine of the run is in one group: the first to fail cancels the others, and execute
	// returns only once all of them have returned. The background ones (apply, stream watch,
	// heartbeat, status, checkpoint) run until the copy and cut-over are done.
	g, gctx := errgroup.WithContext(ctx)
	background, stopBackground := context.WithCancel(gctx)
	defer stopBackground()
	stream := m.newStream(background, orig, changelog)
	stream.start(pos)
	g.Go(func() error {
		if err := m.applier.run(background); err != nil && background.Err() == nil {
			return fmt.Errorf("binlog apply: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		select {
		case err := <-stream.failed:
			return err
		case <-background.Done():
			return nil
		}
	})
	g.Go(func() error { m.heartbeat(background); return nil })
	g.Go(func() error { m.statusLoop(background); return nil })
	g.Go(func() error { m.checkpointLoop(background); return nil })
	cutoverDone := false
	g.Go(func() error {
		defer stopBackground()
		defer stream.stop()
		err := m.copyAndCutover(gctx, stream)
		cutoverDone = err == nil
		return err
	})
	// Once the cut-over is done the table has its new schema: a background goroutine that failed
	// meanwhile no longer matters.
	if err := g.Wait(); err != nil && !cutoverDone {
		return &m.result, err
	}
	m.result.EventsApplied = m.applier.events.Load()
	m.result.Elapsed = time.Since(m.started)
	// Cleanup: the table has its new schema; leftovers are harmless.
	cctx := context.WithoutCancel(ctx)
	if _, err := db.ExecContext(cctx, "DROP TABLE IF EXISTS "+m.qualified(m.changelogName())); err != nil {
		m.log.WithError(err).Warnf("osc: could not drop %s; drop it by hand", m.qualified(m.changelogName()))
	}
	m.result.OldTable = m.oldName()
	if m.replicaTest != nil {
		m.result.OldTable = "" // swapped back: the original has its name again
		m.result.ReplicaTest = m.replicaTest
	} else if m.DropOldTable {
		if _, err := db.ExecContext(cctx, "DROP TABLE IF EXISTS "+m.qualified(m.oldName())); err != nil {
			m.log.WithError(err).Warnf("osc: could not drop the old table %s; drop it by hand", m.qualified(m.oldName()))
		} else {
			m.result.OldTable = ""
		}
	}
	m.setState(StateDone)
	m.runHook(cctx, HookSuccess, nil)
	return &m.result, nil
}

// copyAndCutover is the run's main line once the apply is streaming: copy the rows (unless a
// resumed run already did), then cut over.
func (m *Migration) copyAndCutover(ctx context.Context, stream *stream) error {
	m.setState(StateCopying)
	if !m.copyDone.Load() {
		if err := m.copyRows(ctx); err != nil {
			return causeOr(ctx, err)
		}
	}
	m.copyDone.Store(true)
	m.result.RowsCopied = m.rowsCopied.Load()
	m.log.WithField("rows", m.rowsCopied.Load()).Info("osc: row copy complete")
	if err := m.runHook(ctx, HookRowCopyComplete, nil); err != nil {
		return err
	}
	if err := m.waitCutoverAllowed(ctx); err != nil {
		return causeOr(ctx, err)
	}
	if err := m.verifyGhost(ctx); err != nil {
		return causeOr(ctx, err)
	}
	if err := m.cutover(ctx, stream); err != nil {
		return causeOr(ctx, err)
	}
	return nil
}

// causeOr returns why ctx was cancelled (the error of the goroutine that failed first, or the
// panic command) when it was, else err.
func causeOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
			return c
		}
	}
	return err
}

// writeHint upserts a changelog row; its binlog event comes back to the applier.
func (m *Migration) writeHint(ctx context.Context, id int, hint, value string) error {
	_, err := m.db.ExecContext(ctx, "INSERT INTO "+m.qualified(m.changelogName())+" (id, hint, value) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE hint = VALUES(hint), value = VALUES(value)", id, hint, value)
	return err
}

// heartbeat writes the current time into the changelog every HeartbeatInterval; the applier
// measures the lag as the heartbeat comes back through the binlog.
func (m *Migration) heartbeat(ctx context.Context) {
	t := time.NewTicker(m.HeartbeatInterval)
	defer t.Stop()
	for {
		m.writeHint(ctx, 1, "heartbeat", fmt.Sprint(time.Now().UnixNano()))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// postponedNow reports whether the cut-over must wait.
func (m *Migration) postponedNow() (bool, string) {
	if m.postponed.Load() {
		return true, "postponed until the cut-over command (Unpostpone)"
	}
	if m.PostponeFlagFile != "" {
		if _, err := os.Stat(m.PostponeFlagFile); err == nil {
			return true, "postponed while " + m.PostponeFlagFile + " exists"
		}
	}
	return false, ""
}

// instant runs the ALTER in place with ALGORITHM=INSTANT, bounded by CutoverLockTimeout per attempt.
func (m *Migration) instant(ctx context.Context) (*Result, error) {
	m.setState(StateCutover)
	secs := int((m.CutoverLockTimeout + time.Second - 1) / time.Second)
	for attempt := 1; ; attempt++ {
		conn, err := m.db.Conn(ctx)
		if err != nil {
			return &m.result, err
		}
		start := time.Now()
		_, err = conn.ExecContext(ctx, fmt.Sprintf("SET SESSION lock_wait_timeout = %d", secs))
		if err == nil {
			_, err = conn.ExecContext(ctx, "ALTER TABLE "+m.qualified(m.Table)+" "+m.Alter+", ALGORITHM=INSTANT")
		}
		discard(conn)
		m.result.CutoverAttempts = attempt
		m.result.WriteBlocked = append(m.result.WriteBlocked, time.Since(start))
		if err == nil {
			m.result.Instant = true
			m.result.Elapsed = time.Since(m.started)
			m.setState(StateDone)
			m.runHook(context.WithoutCancel(ctx), HookSuccess, nil)
			return &m.result, nil
		}
		if retry.Code(err) != retry.CodeLockWaitTimeout || attempt >= m.CutoverAttempts || ctx.Err() != nil {
			return &m.result, fmt.Errorf("osc: ALTER ... ALGORITHM=INSTANT: %w; the table is unchanged", err)
		}
		m.log.WithError(err).WithField("attempt", attempt).Warn("osc: instant ALTER could not get the table's metadata lock; retrying")
		select {
		case <-ctx.Done():
			return &m.result, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// binlogDB is the pool of the server the binlog is read from: BinlogConn's, or the migrated one.
func (m *Migration) binlogDB() *sql.DB {
	if m.binlog != nil {
		return m.binlog
	}
	return m.db
}

// streamPositionNow is the binlog position of now in the stream's binlog: every change committed
// on the migrated server so far is before it. With BinlogConn it waits (until ctx ends) for the
// replica's binlog to hold the server's GTID position of now (ferry.ReplicaPosition).
func (m *Migration) streamPositionNow(ctx context.Context) (ferry.Position, error) {
	pos, err := ferry.CurrentPosition(ctx, m.db, m.flavor)
	if err != nil || m.binlog == nil {
		return pos, err
	}
	rpos, err := ferry.ReplicaPosition(ctx, m.binlog, m.flavor, pos.GTID)
	if err != nil {
		return ferry.Position{}, fmt.Errorf("binlog source %s: %w", m.BinlogConn, err)
	}
	return rpos, nil
}
