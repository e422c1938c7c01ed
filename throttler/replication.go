package throttler

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/ferrykit/ferry/schema"
)

// DefaultHeartbeatTable is the heartbeat table's name when ReplicationLagConfig leaves it empty.
const DefaultHeartbeatTable = "_ferry_heartbeat"

// Defaults of ReplicationLagConfig.
const (
	DefaultHeartbeatInterval = 100 * time.Millisecond
	DefaultReplicaGrace      = 15 * time.Second
)

// Replica is one replica whose lag is watched.
type Replica struct {
	// Name identifies the replica in reasons and logs, e.g. "db2" or "10.0.0.7:3306".
	Name string
	// DB reads the replica. Its DSN should carry a connect timeout shorter than Grace.
	DB *sql.DB
}

// ReplicationLagConfig configures a ReplicationLag throttler.
type ReplicationLagConfig struct {
	// Replicas to watch; at least one.
	Replicas []Replica
	// MaxLag: work is throttled while the slowest replica lags more than this. Required. With a
	// heartbeat, a replica that is fully caught up still reads up to HeartbeatInterval (plus a
	// query's latency) of lag, so MaxLag should be several times HeartbeatInterval.
	MaxLag time.Duration
	// Source, when set, is where Start creates the heartbeat table and writes the heartbeat. Without
	// it, lag comes from the replicas' own status (Seconds_Behind_Master), which has one-second
	// resolution.
	Source *sql.DB
	// HeartbeatDatabase holds the heartbeat table on the source (normally the database being
	// moved, so that the table replicates wherever the data does). Required with Source.
	HeartbeatDatabase string
	// HeartbeatTable is the table's name; default DefaultHeartbeatTable.
	HeartbeatTable string
	// HeartbeatInterval is how often the heartbeat is written; default DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// Grace is how long a replica may be unreadable (or the heartbeat unwritable) before Check
	// fails closed; default DefaultReplicaGrace.
	Grace time.Duration
	// CheckInterval is how long a reading of the replicas is reused; default DefaultCheckInterval.
	CheckInterval time.Duration
	// Timeout bounds one query; default DefaultTimeout.
	Timeout time.Duration
}

// ReplicaLag is the last reading of one replica, for progress reports.
type ReplicaLag struct {
	Name string
	// Lag is the last good reading.
	Lag time.Duration
	// Method is how Lag was measured: "heartbeat" or "replica status"; empty before a first
	// reading.
	Method string
	// ReadAt is when Lag was read; zero before a first reading.
	ReadAt time.Time
	// Err is the error of the latest attempt when it failed, else nil.
	Err error
}

// ReplicationLag throttles while replicas lag behind the source.
//
// Measurement. Start creates a small heartbeat table on the source (CREATE TABLE IF NOT EXISTS, on
// the source only: the statement and every heartbeat replicate like any other write; creating it on
// a replica would break replication) and then, every HeartbeatInterval, reads the source's clock
// (UTC_TIMESTAMP(6), microseconds) and writes it into the table's single row. On each replica, Check
// reads the row back; the lag is the source's clock now minus the value the replica has applied.
//
// Clock skew. Both ends of that subtraction are the source's clock, so skew between the source, the
// replicas and the host running ferry does not matter. "The source's clock now" is not queried on
// every check: each heartbeat records the pair (source time read, ferry's monotonic time just before
// the read), and Check extrapolates with the monotonic clock from the latest pair. The estimate can
// only be late by the latency of that one read, so the lag is overestimated by at most a query's
// latency, never underestimated; ferry's wall clock is never used, so a wall-clock step on the ferry
// host does not distort it.
//
// Fallback. When the heartbeat cannot be read on a replica (no Source configured, Start not called,
// the table not replicated there) the replica's own status is used: SHOW REPLICA STATUS, or SHOW
// SLAVE STATUS on servers that predate it, reading Seconds_Behind_Source or Seconds_Behind_Master
// (MySQL 5.7/8.0/8.4 and MariaDB). A NULL there (replication threads stopped) counts as unreadable.
//
// Guarantees. The slowest replica counts: Check is throttled while any replica's lag is above
// MaxLag, with that replica's name and the method in Reason and the lag in Detail. It fails closed:
// a replica that cannot be read for longer than Grace (unreachable, not a replica, replication
// stopped without a heartbeat to show the lag) throttles, with its name and error; within Grace its
// last good reading is used. Likewise, if the heartbeat writer has not written for longer than Grace
// Check throttles. The replicas are read in parallel, at most once per CheckInterval however many
// goroutines call Check, each read bounded by Timeout. Check never returns an error other than its
// context's: lag is never a reason to abort.
//
// Lifecycle. Start launches one writer goroutine; it ends when Stop is called or Start's context is
// done, and Stop waits for it, so no goroutine outlives Stop. Check needs no goroutine of its own.
// The heartbeat writes appear in the source's binary log: a binlog tailer should skip the table
// named by HeartbeatTable.
type ReplicationLag struct {
	cfg    ReplicationLagConfig
	table  string // quoted `db`.`table`
	cache  *cached
	maxLag atomic.Int64 // cfg.MaxLag, changeable while running (SetMaxLag)

	mu       sync.Mutex
	replicas []*replicaState
	writing  bool      // the writer runs (between Start and Stop)
	anchor   anchor    // latest heartbeat written
	written  time.Time // local time of the latest successful heartbeat (or Start)
	writeErr error

	runMu  sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// anchor ties a source clock reading to ferry's monotonic clock.
type anchor struct {
	ok       bool
	sourceUS int64     // source UTC_TIMESTAMP(6) in microseconds since the Unix epoch
	local    time.Time // time.Now() (with its monotonic reading) just before the source was read
}

// sourceNowUS estimates the source's clock now, in microseconds.
func (a anchor) sourceNowUS() int64 { return a.sourceUS + time.Since(a.local).Microseconds() }

type replicaState struct {
	Replica
	statusQuery string // "SHOW REPLICA STATUS" until the server rejects it; then "SHOW SLAVE STATUS"

	// guarded by ReplicationLag.mu
	firstTry time.Time
	last     ReplicaLag
}

// NewReplicationLag returns a ReplicationLag throttler. Call Start to write the heartbeat.
func NewReplicationLag(cfg ReplicationLagConfig) (*ReplicationLag, error) {
	if len(cfg.Replicas) == 0 {
		return nil, errors.New("throttler: NewReplicationLag needs at least one replica")
	}
	if cfg.MaxLag <= 0 {
		return nil, errors.New("throttler: NewReplicationLag needs MaxLag > 0")
	}
	if cfg.Source != nil && cfg.HeartbeatDatabase == "" {
		return nil, errors.New("throttler: NewReplicationLag: HeartbeatDatabase is required with a Source")
	}
	if cfg.HeartbeatTable == "" {
		cfg.HeartbeatTable = DefaultHeartbeatTable
	}
	cfg.HeartbeatInterval = orDefault(cfg.HeartbeatInterval, DefaultHeartbeatInterval)
	cfg.Grace = orDefault(cfg.Grace, DefaultReplicaGrace)
	cfg.Timeout = orDefault(cfg.Timeout, DefaultTimeout)
	r := &ReplicationLag{
		cfg:   cfg,
		table: schema.QuoteIdent(cfg.HeartbeatDatabase) + "." + schema.QuoteIdent(cfg.HeartbeatTable),
		cache: newCached(cfg.CheckInterval),
	}
	r.maxLag.Store(int64(cfg.MaxLag))
	names := map[string]bool{}
	for i, rep := range cfg.Replicas {
		if rep.DB == nil {
			return nil, fmt.Errorf("throttler: NewReplicationLag: replica %d (%q) has no DB", i, rep.Name)
		}
		if rep.Name == "" {
			rep.Name = fmt.Sprintf("replica#%d", i+1)
		}
		if names[rep.Name] {
			return nil, fmt.Errorf("throttler: NewReplicationLag: two replicas named %q", rep.Name)
		}
		names[rep.Name] = true
		r.replicas = append(r.replicas, &replicaState{Replica: rep, statusQuery: "SHOW REPLICA STATUS",
			last: ReplicaLag{Name: rep.Name}})
	}
	return r, nil
}

// HeartbeatTable returns the database and table the heartbeat is written to ("" without a Source),
// so that a binlog tailer can skip its events.
func (r *ReplicationLag) HeartbeatTable() (database, table string) {
	if r.cfg.Source == nil {
		return "", ""
	}
	return r.cfg.HeartbeatDatabase, r.cfg.HeartbeatTable
}

// MaxLag is the lag above which work is throttled.
func (r *ReplicationLag) MaxLag() time.Duration { return time.Duration(r.maxLag.Load()) }

// SetMaxLag changes the lag above which work is throttled (gh-ost's max-lag-millis= command); it
// applies from the next reading of the replicas.
func (r *ReplicationLag) SetMaxLag(d time.Duration) error {
	if d <= 0 {
		return errors.New("throttler: max lag must be > 0")
	}
	r.maxLag.Store(int64(d))
	return nil
}

// Start creates the heartbeat table on the source if needed, writes a first heartbeat and starts
// the writer goroutine, which runs until Stop or until ctx is done. Without a Source it does
// nothing. Starting a running ReplicationLag is an error; after Stop it may be started again.
func (r *ReplicationLag) Start(ctx context.Context) error {
	if r.cfg.Source == nil {
		return nil
	}
	r.runMu.Lock()
	defer r.runMu.Unlock()
	if r.done != nil {
		return errors.New("throttler: ReplicationLag already started")
	}
	create := "CREATE TABLE IF NOT EXISTS " + r.table + ` (
  id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
  ts_us BIGINT NOT NULL COMMENT 'source UTC clock, microseconds since 1970-01-01',
  ts DATETIME(6) NOT NULL COMMENT 'the same instant in UTC, for humans'
) ENGINE=InnoDB COMMENT='ferry replication lag heartbeat; safe to drop when ferry is not running'`
	cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	_, err := r.cfg.Source.ExecContext(cctx, create)
	cancel()
	if err != nil {
		return fmt.Errorf("throttler: create heartbeat table %s on the source: %w", r.table, err)
	}
	if err := r.beat(ctx); err != nil {
		return fmt.Errorf("throttler: write heartbeat to %s on the source: %w", r.table, err)
	}
	runCtx, cancelRun := context.WithCancel(ctx)
	done := make(chan struct{})
	r.cancel, r.done = cancelRun, done
	r.mu.Lock()
	r.writing = true
	r.mu.Unlock()
	go r.run(runCtx, done)
	return nil
}

// Stop stops the heartbeat writer and waits for its goroutine to end. Afterwards Check measures lag
// from the replicas' status only. Stop is safe to call more than once, and before Start.
func (r *ReplicationLag) Stop() {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	if r.done == nil {
		return
	}
	r.cancel()
	<-r.done
	r.cancel, r.done = nil, nil
	r.mu.Lock()
	r.writing, r.anchor, r.writeErr = false, anchor{}, nil
	r.mu.Unlock()
}

// DropHeartbeatTable drops the heartbeat table on the source (the drop replicates). Call it after
// Stop, when no other ferry run uses the same table.
func (r *ReplicationLag) DropHeartbeatTable(ctx context.Context) error {
	if r.cfg.Source == nil {
		return nil
	}
	r.runMu.Lock()
	defer r.runMu.Unlock()
	if r.done != nil {
		return errors.New("throttler: DropHeartbeatTable while the heartbeat writer runs; call Stop first")
	}
	_, err := r.cfg.Source.ExecContext(ctx, "DROP TABLE IF EXISTS "+r.table)
	return err
}

func (r *ReplicationLag) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(r.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.beat(ctx)
	}
}

// beat writes one heartbeat and records the outcome.
func (r *ReplicationLag) beat(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	local := time.Now()
	var us int64
	err := r.cfg.Source.QueryRowContext(ctx,
		"SELECT TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6))").Scan(&us)
	if err == nil {
		ts := time.UnixMicro(us).UTC().Format("2006-01-02 15:04:05.000000")
		_, err = r.cfg.Source.ExecContext(ctx, "INSERT INTO "+r.table+
			" (id, ts_us, ts) VALUES (1, ?, ?) ON DUPLICATE KEY UPDATE ts_us = ?, ts = ?", us, ts, us, ts)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.writeErr = err
		return err
	}
	r.anchor = anchor{ok: true, sourceUS: us, local: local}
	r.written, r.writeErr = time.Now(), nil
	return nil
}

// Check implements Throttler.
func (r *ReplicationLag) Check(ctx context.Context) (Status, error) {
	return r.cache.check(ctx, r.refresh)
}

// Lags returns the latest reading of each replica, in configuration order.
func (r *ReplicationLag) Lags() []ReplicaLag {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]ReplicaLag, len(r.replicas))
	for i, rs := range r.replicas {
		out[i] = rs.last
	}
	return out
}

type lagReading struct {
	lag    time.Duration
	method string
	err    error
}

func (r *ReplicationLag) refresh(ctx context.Context) (Status, error) {
	r.mu.Lock()
	a := r.anchor
	r.mu.Unlock()
	readings := make([]lagReading, len(r.replicas))
	var wg sync.WaitGroup
	for i, rs := range r.replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			readings[i] = r.read(ctx, rs, a)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Status{}, err
	}

	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, rs := range r.replicas {
		if rs.firstTry.IsZero() {
			rs.firstTry = now
		}
		if rd := readings[i]; rd.err == nil {
			rs.last = ReplicaLag{Name: rs.Name, Lag: rd.lag, Method: rd.method, ReadAt: now}
		} else {
			rs.last.Err = rd.err
		}
	}
	// 1. Fail closed on a replica unreadable for longer than Grace.
	for _, rs := range r.replicas {
		if rs.last.Err == nil {
			continue
		}
		since := rs.last.ReadAt
		if since.IsZero() {
			since = rs.firstTry
		}
		if d := now.Sub(since); d > r.cfg.Grace {
			what := "unreadable"
			if rs.last.ReadAt.IsZero() {
				what = "never read"
			}
			return Status{Throttled: true,
				Reason: fmt.Sprintf("replica %s %s for more than %s", rs.Name, what, r.cfg.Grace),
				Detail: fmt.Sprintf("for %s: %v", d.Round(time.Millisecond), rs.last.Err)}, nil
		}
	}
	// 2. The slowest replica counts.
	var slowest *replicaState
	for _, rs := range r.replicas {
		if !rs.last.ReadAt.IsZero() && (slowest == nil || rs.last.Lag > slowest.last.Lag) {
			slowest = rs
		}
	}
	if maxLag := r.MaxLag(); slowest != nil && slowest.last.Lag > maxLag {
		return Status{Throttled: true,
			Reason: fmt.Sprintf("replica %s lag above %s (%s)", slowest.Name, maxLag, slowest.last.Method),
			Detail: "lag " + slowest.last.Lag.Round(time.Millisecond).String()}, nil
	}
	// 3. A heartbeat that is not being written cannot show lag.
	if r.writing {
		if d := now.Sub(r.written); d > r.cfg.Grace {
			detail := fmt.Sprintf("last written %s ago", d.Round(time.Millisecond))
			if r.writeErr != nil {
				detail += ": " + r.writeErr.Error()
			}
			return Status{Throttled: true,
				Reason: fmt.Sprintf("heartbeat on the source not written for more than %s", r.cfg.Grace),
				Detail: detail}, nil
		}
	}
	return Status{}, nil
}

// read measures one replica's lag: from the heartbeat when one is being written, else from the
// replica's status.
func (r *ReplicationLag) read(ctx context.Context, rs *replicaState, a anchor) lagReading {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	var hbErr error
	if a.ok {
		var us int64
		hbErr = rs.DB.QueryRowContext(ctx, "SELECT ts_us FROM "+r.table+" WHERE id = 1").Scan(&us)
		if hbErr == nil {
			lag := time.Duration(a.sourceNowUS()-us) * time.Microsecond
			return lagReading{lag: max(lag, 0), method: "heartbeat"}
		}
		if ctx.Err() != nil {
			return lagReading{err: hbErr}
		}
	}
	lag, err := r.replicaStatusLag(ctx, rs)
	if err != nil {
		if hbErr != nil {
			err = fmt.Errorf("heartbeat: %v; replica status: %w", hbErr, err)
		}
		return lagReading{err: err}
	}
	return lagReading{lag: lag, method: "replica status"}
}

// replicaStatusLag reads Seconds_Behind_Source / Seconds_Behind_Master.
func (r *ReplicationLag) replicaStatusLag(ctx context.Context, rs *replicaState) (time.Duration, error) {
	st, err := replicaStatus(ctx, rs.DB, rs.statusQuery)
	var me *mysql.MySQLError
	if err != nil && rs.statusQuery == "SHOW REPLICA STATUS" && errors.As(err, &me) && me.Number == 1064 {
		// A server older than MySQL 8.0.22 / MariaDB 10.5.1. Only this goroutine uses rs.statusQuery
		// (refreshes are serialised by the cache).
		rs.statusQuery = "SHOW SLAVE STATUS"
		st, err = replicaStatus(ctx, rs.DB, rs.statusQuery)
	}
	if err != nil {
		return 0, err
	}
	if st == nil {
		return 0, errors.New("not a replica (" + rs.statusQuery + " is empty)")
	}
	return lagFromStatus(st)
}

// lagFromStatus reads the lag from a SHOW REPLICA/SLAVE STATUS row: Seconds_Behind_Source (MySQL
// 8.0.22+ with SHOW REPLICA STATUS) or Seconds_Behind_Master (MariaDB, older MySQL). NULL, which
// the server reports while a replication thread is stopped, is an error.
func lagFromStatus(st map[string]sql.NullString) (time.Duration, error) {
	col := func(names ...string) sql.NullString {
		for _, n := range names {
			if v, ok := st[n]; ok {
				return v
			}
		}
		return sql.NullString{}
	}
	secs := col("Seconds_Behind_Source", "Seconds_Behind_Master")
	if !secs.Valid {
		msg := fmt.Sprintf("replication not running (IO thread %s, SQL thread %s)",
			col("Replica_IO_Running", "Slave_IO_Running").String, col("Replica_SQL_Running", "Slave_SQL_Running").String)
		for _, e := range []string{"Last_IO_Error", "Last_SQL_Error"} {
			if v := col(e).String; v != "" {
				msg += "; " + e + ": " + v
			}
		}
		return 0, errors.New(msg)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(secs.String), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("replica status: seconds behind %q is not a number", secs.String)
	}
	return time.Duration(n) * time.Second, nil
}

// replicaStatus returns the first row of query (SHOW REPLICA/SLAVE STATUS) by column name, or nil
// when it has no row.
func replicaStatus(ctx context.Context, db *sql.DB, query string) (map[string]sql.NullString, error) {
	return schema.RowByName(ctx, db, query)
}
