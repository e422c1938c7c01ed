package test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"math/rand"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/sandbox"
)

// rsOwnServer starts a sandbox server for one test, so the test can kill, restart or purge it
// without disturbing the shared servers.
func rsOwnServer(t *testing.T) *sandbox.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := sandbox.Start(ctx, sandbox.Options{BufferPool: "64M"})
	must(t, err)
	t.Cleanup(s.Stop)
	return s
}

// rsSameRowsBetween fails the test unless srcTable on src and dstTable on dst hold byte-identical rows.
func rsSameRowsBetween(t *testing.T, src, dst *sandbox.Server, srcTable, dstTable string) int {
	t.Helper()
	a := rowsOf(t, src, srcTable, "")
	b := rowsOf(t, dst, dstTable, "")
	if len(a) != len(b) {
		t.Errorf("%s: source has %d rows, target %d", srcTable, len(a), len(b))
		return len(a)
	}
	diffs := 0
	for i := range a {
		for j := range a[i] {
			if !bytes.Equal(a[i][j], b[i][j]) || (a[i][j] == nil) != (b[i][j] == nil) {
				diffs++
				if diffs <= 5 {
					t.Errorf("%s row %d column %d: source %q, target %q", srcTable, i, j, trunc(a[i][j]), trunc(b[i][j]))
				}
			}
		}
	}
	if diffs > 0 {
		t.Errorf("%s: %d differing values", srcTable, diffs)
	}
	return len(a)
}

// rsLoad is a write load whose connection pool the test can close before checking for leaked
// goroutines (each open connection has a watcher goroutine).
type rsLoad struct {
	*writeLoad
	pool *sql.DB
}

func rsStartLoad(t *testing.T, s *sandbox.Server, db string, seed int64, workers, bigRows int) *rsLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &rsLoad{writeLoad: &writeLoad{cancel: cancel}}
	var err error
	l.pool, err = s.DB(db)
	must(t, err)
	l.pool.SetMaxOpenConns(workers + 1)
	for w := 0; w < workers; w++ {
		rng := rand.New(rand.NewSource(seed*100 + int64(w)))
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				if err := l.one(ctx, l.pool, rng, bigRows); err != nil && ctx.Err() == nil {
					l.errs.Add(1)
					l.first.CompareAndSwap(nil, err.Error())
				}
				l.ops.Add(1)
			}
		}()
	}
	t.Cleanup(l.close)
	return l
}

func (l *rsLoad) close() {
	l.stop()
	l.pool.Close()
}

// rsLeakOptions ignores the goroutines that exist before the test's Ferry, and the sandbox's own
// process waiters (a restarted server gets a new one).
func rsLeakOptions() []goleak.Option {
	return []goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/ferrykit/ferry/sandbox.(*Server).Restart.func1"),
		goleak.IgnoreAnyFunction("github.com/ferrykit/ferry/sandbox.start.func1"),
	}
}

func rsFaultConfig(t *testing.T, src, dst *sandbox.Server, db string) ferry.Config {
	return ferry.Config{
		Source:             conn(src),
		Target:             conn(dst),
		Tables:             ferry.TableFilter{Databases: []string{db}},
		BatchSize:          200,
		CopyWorkers:        2,
		CreateTargetTables: true,
		Logger:             testLogger(t),
	}
}

// rsStartFerry initializes and starts a Ferry with a file checkpoint and runs it in the background.
func rsStartFerry(t *testing.T, ctx context.Context, cfg ferry.Config, stateFile string) (*ferry.Ferry, chan error) {
	t.Helper()
	f, err := ferry.New(cfg)
	must(t, err)
	f.Checkpoints = ferry.FileCheckpoint{Path: stateFile}
	f.CheckpointInterval = 200 * time.Millisecond
	if err := f.Initialize(ctx); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Start(ctx); err != nil {
		f.Close()
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()
	return f, runErr
}

func rsWaitRows(t *testing.T, f *ferry.Ferry, runErr chan error, n int64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for f.Progress().RowsCopied < n {
		select {
		case err := <-runErr:
			t.Fatalf("run ended before %d rows were copied: %v", n, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d rows copied after 2 minutes", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rsCutover stops the load as the cut-over's lock and waits for Run to return.
func rsCutover(t *testing.T, ctx context.Context, f *ferry.Ferry, runErr chan error, load *writeLoad) {
	t.Helper()
	cut := &ferry.Cutover{Ferry: f, Hooks: ferry.HookFuncs{LockFunc: func(context.Context) error { load.stop(); return nil }}}
	if _, err := cut.Run(ctx); err != nil {
		t.Fatalf("cut-over: %v", err)
	}
	must(t, <-runErr)
}

type rsRestartCase struct {
	restartSource bool // restart the source instead of the target
	maxRetries    int
	down          time.Duration // how long the server stays down
	wantStop      bool          // the run must give up (and is resumed from its checkpoint)
	wantErr       string        // what the give-up error says; default "giving up after"
	readOnly      bool          // instead of a restart, make the target read-only for a while (a failover)
}

// rsRunRestart copies under a write load, kills the source or target server mid-copy, and brings it
// back: the run either rides it out with retries, or stops with a checkpoint and a clear error and
// a resumed run finishes. Either way every row must be identical, and no goroutine outlives Run.
func rsRunRestart(t *testing.T, src, dst *sandbox.Server, c rsRestartCase) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	t0 := time.Now()
	victim := dst
	if c.restartSource {
		victim = src
	}
	db := "fault_" + sanitize(t.Name())
	const bigRows = 25_000
	createSchema(t, src, db, bigRows)
	must(t, dst.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
	t.Logf("%s: servers and schema ready", time.Since(t0).Round(time.Millisecond))
	leaks := rsLeakOptions()
	load := rsStartLoad(t, src, db, 21, 2, bigRows)
	time.Sleep(200 * time.Millisecond)

	stateFile := filepath.Join(t.TempDir(), "state.json")
	cfg := rsFaultConfig(t, src, dst, db)
	cfg.MaxRetries = c.maxRetries
	if c.readOnly {
		// read_only does not stop users with SUPER / READ ONLY ADMIN, such as root. Setting it waits
		// for running transactions; one stuck in a row-lock wait behind a transaction that the
		// global read lock holds at commit waits innodb_lock_wait_timeout (50s by default), so
		// shorten that on this test's own server.
		must(t, dst.Exec(ctx, "CREATE USER IF NOT EXISTS 'ferry'@'%' IDENTIFIED BY 'ferrypw'",
			"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON *.* TO 'ferry'@'%'",
			"SET GLOBAL innodb_lock_wait_timeout = 2"))
		cfg.Target.User, cfg.Target.Password = "ferry", "ferrypw"
	}
	f, runErr := rsStartFerry(t, ctx, cfg, stateFile)
	rsWaitRows(t, f, runErr, 5000)
	before := f.Progress().RowsCopied
	if c.readOnly {
		setAt := time.Now()
		must(t, dst.Exec(ctx, "SET GLOBAL read_only = 1"))
		// The copy goes on while the switch waits for running transactions; count from here.
		atSet := f.Progress().RowsCopied
		t.Logf("target read-only at %d rows copied (setting it took %s)", atSet, time.Since(setAt).Round(time.Millisecond))
		time.Sleep(c.down)
		after := f.Progress().RowsCopied
		must(t, dst.Exec(ctx, "SET GLOBAL read_only = 0"))
		t.Logf("target writable again at %d rows copied", after)
		// At most the batches already committing when read_only took effect (2 workers × 200 rows).
		if after > atSet+400 {
			t.Errorf("the copy went on while the target was read-only (%d rows when set, %d after %s)", atSet, after, c.down)
		}
	} else {
		rsKillAndRestart(t, ctx, victim, c, before)
	}

	if c.wantStop {
		var err error
		select {
		case err = <-runErr:
		case <-time.After(time.Minute):
			t.Fatal("the run did not stop after running out of retries")
		}
		f.Close()
		want := c.wantErr
		if want == "" {
			want = "giving up after"
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("want a clear give-up error containing %q, got %v", want, err)
		}
		t.Logf("run stopped: %v", err)
		st, lerr := ferry.LoadCheckpointFile(stateFile)
		must(t, lerr)
		t.Logf("resuming from checkpoint: %s", rsDescribeState(st))
		cfg.Resume = st
		cfg.MaxRetries = 0
		f, runErr = rsStartFerry(t, ctx, cfg, stateFile)
	}
	if c.restartSource {
		load.close() // the load's connections died with the server; start it afresh
		load = rsStartLoad(t, src, db, 22, 2, bigRows)
	}
	t.Logf("%s: cutting over", time.Since(t0).Round(time.Millisecond))
	rsCutover(t, ctx, f, runErr, load.writeLoad)
	st := f.State()
	f.Close()
	load.close()
	// No goroutine of either run outlives it (the first run's too, when it stopped).
	goleak.VerifyNone(t, leaks...)
	total, _ := rsStateRows(st)
	t.Logf("%s: done: %s; %d rows copied in all; load %d transactions", time.Since(t0).Round(time.Millisecond), rsDescribeState(st), total, load.ops.Load())
	for _, tb := range []string{"types", "composite", "strkey", "big"} {
		if n := rsSameRowsBetween(t, src, dst, db+"."+tb, db+"."+tb); n == 0 {
			t.Errorf("%s: no rows compared", tb)
		}
	}
	t.Logf("%s: compared", time.Since(t0).Round(time.Millisecond))
}

func rsKillAndRestart(t *testing.T, ctx context.Context, victim *sandbox.Server, c rsRestartCase, before int64) {
	victim.Kill()
	t.Logf("killed the %s at %d rows copied", map[bool]string{true: "source", false: "target"}[c.restartSource], before)
	// The load's writes fail while the source is down; that is expected.
	time.Sleep(c.down)
	restarted := time.Now()
	must(t, victim.Restart(ctx))
	t.Logf("server back after %s down + %s restart", c.down, time.Since(restarted).Round(time.Millisecond))
}

// TestTargetRestartMidCopy kills the target server (SIGKILL, as a crash) mid-copy and restarts it:
// with the default retries the run rides it out; with few retries it stops with a clear error and
// a checkpoint, and a resumed run finishes. The target is the test's own server.
func TestTargetRestartMidCopy(t *testing.T) {
	dst := rsOwnServer(t)
	t.Run("retried", func(t *testing.T) {
		rsRunRestart(t, source, dst, rsRestartCase{down: 500 * time.Millisecond})
	})
	t.Run("stops-and-resumes", func(t *testing.T) {
		rsRunRestart(t, source, dst, rsRestartCase{maxRetries: 3, down: 1500 * time.Millisecond, wantStop: true})
	})
	// A read-only target (error 1290: a failover made it a replica, or it was never the primary) is
	// not waited out: writing on would go to a server that is no longer the one to write to. The run
	// stops at once with the server's error, and a resumed run finishes once the target is writable.
	t.Run("read-only", func(t *testing.T) {
		rsRunRestart(t, source, dst, rsRestartCase{readOnly: true, down: time.Second, wantStop: true, wantErr: "--read-only"})
	})
}

// TestSourceRestartMidCopy kills and restarts the source mid-copy: the copy retries and the
// streamer reconnects from its last transaction boundary.
func TestSourceRestartMidCopy(t *testing.T) {
	rsRunRestart(t, rsOwnServer(t), target, rsRestartCase{restartSource: true, down: 500 * time.Millisecond})
}

// TestAlterOnSourceStopsRun: an ALTER of a copied table mid-run stops the run with a clear error
// and a checkpoint, and resuming from that checkpoint is refused because the table changed.
func TestAlterOnSourceStopsRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db := "fault_alter"
	createSchema(t, source, db, 40_000)
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
	leaks := rsLeakOptions()
	load := rsStartLoad(t, source, db, 31, 2, 40_000)
	stateFile := filepath.Join(t.TempDir(), "state.json")
	cfg := rsFaultConfig(t, source, target, db)
	f, runErr := rsStartFerry(t, ctx, cfg, stateFile)
	rsWaitRows(t, f, runErr, 3000)
	must(t, source.Exec(ctx, "ALTER TABLE "+db+".big ADD COLUMN extra INT NULL"))
	var err error
	select {
	case err = <-runErr:
	case <-time.After(time.Minute):
		t.Fatal("the run did not stop after an ALTER of a copied table")
	}
	load.close()
	f.Close()
	goleak.VerifyNone(t, leaks...)
	if err == nil || !strings.Contains(err.Error(), "DDL on copied table "+db+".big") || !strings.Contains(err.Error(), "ALTER TABLE") {
		t.Fatalf("want a clear DDL error naming the table and the statement, got %v", err)
	}
	if !errors.Is(err, ferry.ErrSchemaChanged) {
		t.Errorf("the DDL error does not wrap ferry.ErrSchemaChanged: %v", err)
	}
	t.Logf("run stopped: %v", err)
	st, lerr := ferry.LoadCheckpointFile(stateFile)
	must(t, lerr)
	t.Logf("checkpoint: %s", rsDescribeState(st))
	if n := count(t, target, "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '"+db+"' AND TABLE_NAME = 'big' AND COLUMN_NAME = 'extra'"); n != 0 {
		t.Errorf("the target table got the new column")
	}

	cfg.Resume = st
	f2, err := ferry.New(cfg)
	must(t, err)
	defer f2.Close()
	err = f2.Initialize(ctx)
	if err == nil || !errors.Is(err, ferry.ErrSchemaChanged) || !strings.Contains(err.Error(), "table "+db+".big changed since the checkpoint") {
		t.Fatalf("want resume refused because the table changed, got %v", err)
	}
	if !errors.Is(err, ferry.ErrResumeMismatch) {
		t.Errorf("the refusal does not wrap ferry.ErrResumeMismatch: %v", err)
	}
	t.Logf("resume refused: %.200s", err)
}

// TestResumeRefusedAfterBinlogPurge: a checkpoint whose binlog file the source purged cannot be
// resumed (the changes since it are gone), and the refusal says so.
func TestResumeRefusedAfterBinlogPurge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	src := rsOwnServer(t)
	db := "fault_purge"
	must(t, src.Exec(ctx, "CREATE DATABASE "+db,
		"CREATE TABLE "+db+".t (id INT PRIMARY KEY, v VARCHAR(20))",
		"INSERT INTO "+db+".t SELECT seq, CONCAT('v', seq) FROM "+db+".seq_1_to_5000"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
	leaks := rsLeakOptions()
	stateFile := filepath.Join(t.TempDir(), "state.json")
	cfg := rsFaultConfig(t, src, target, db)
	runCtx, stop := context.WithCancel(ctx)
	f, runErr := rsStartFerry(t, runCtx, cfg, stateFile)
	must(t, f.WaitUntilRowCopyIsComplete(ctx))
	must(t, src.Exec(ctx, "UPDATE "+db+".t SET v = 'changed' WHERE id <= 10"))
	_, err := f.FlushBinlog(ctx)
	must(t, err)
	stop()
	if err := <-runErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("run: want context.Canceled, got %v", err)
	}
	f.Close()
	goleak.VerifyNone(t, leaks...)
	st, err := ferry.LoadCheckpointFile(stateFile)
	must(t, err)
	t.Logf("checkpoint: %s", rsDescribeState(st))

	// Resuming works while the binlog is there...
	cfg.Resume = st
	f2, err := ferry.New(cfg)
	must(t, err)
	must(t, f2.Initialize(ctx))
	f2.Close()

	// A resumed table missing on the target is refused, even with CreateTargetTables: creating it
	// empty would lose the rows the checkpoint says are there.
	must(t, target.Exec(ctx, "RENAME TABLE "+db+".t TO "+db+".t_away"))
	fm, err := ferry.New(cfg)
	must(t, err)
	err = fm.Initialize(ctx)
	fm.Close()
	if err == nil || !strings.Contains(err.Error(), "does not exist, but the checkpoint says 5000 rows") {
		t.Fatalf("want resume refused because the target table is missing, got %v", err)
	}
	t.Logf("resume refused: %v", err)
	// So is an empty one (a wrong or emptied target): the rows the checkpoint counts are not there.
	must(t, target.Exec(ctx, "CREATE TABLE "+db+".t LIKE "+db+".t_away"))
	fm, err = ferry.New(cfg)
	must(t, err)
	err = fm.Initialize(ctx)
	fm.Close()
	if err == nil || !strings.Contains(err.Error(), "is empty, but the checkpoint says 5000 rows") {
		t.Fatalf("want resume refused because the target table is empty, got %v", err)
	}
	t.Logf("resume refused: %v", err)
	must(t, target.Exec(ctx, "DROP TABLE "+db+".t", "RENAME TABLE "+db+".t_away TO "+db+".t"))

	// ...and is refused once it is purged.
	db2, err := src.DB("")
	must(t, err)
	defer db2.Close()
	_, err = db2.ExecContext(ctx, "FLUSH BINARY LOGS")
	must(t, err)
	rows, err := db2.QueryContext(ctx, "SHOW MASTER STATUS")
	must(t, err)
	cols, _ := rows.Columns()
	vals := make([]any, len(cols))
	var file string
	vals[0] = &file
	for i := 1; i < len(vals); i++ {
		vals[i] = new(any)
	}
	if !rows.Next() {
		t.Fatal("SHOW MASTER STATUS: no row")
	}
	must(t, rows.Scan(vals...))
	rows.Close()
	rsPurgeBinlogsTo(t, ctx, src, db2, file)
	f3, err := ferry.New(cfg)
	must(t, err)
	err = f3.Initialize(ctx)
	f3.Close()
	if err == nil || !errors.Is(err, ferry.ErrBinlogPurged) || !strings.Contains(err.Error(), "no longer has binlog file "+st.Applied.File+" (purged)") {
		t.Fatalf("want resume refused because the binlog was purged, got %v", err)
	}
	if !errors.Is(err, ferry.ErrResumeMismatch) || !errors.Is(err, ferry.ErrBinlogPurged) {
		t.Errorf("the refusal does not wrap ferry.ErrResumeMismatch and ferry.ErrBinlogPurged: %v", err)
	}
	t.Logf("resume refused: %v", err)
	db2.Close()
	goleak.VerifyNone(t, leaks...)
}

// TestStateFormat: a checkpoint written by an earlier build of the same or the previous format
// version loads; another version, or one without a position, is refused.
func TestStateFormat(t *testing.T) {
	old := `{
  "version": 2,
  "tables": {
    "shop.orders": {
      "fingerprint": "id bigint(20) false  false;key PRIMARY [0]",
      "ranges": [{"end": ["MTAw"], "last": ["NTA="]}, {"start": ["MTAw"], "done": true}],
      "rows_copied": 150
    }
  },
  "applied": {"gtid": "0-1-77", "file": "binlog.000007", "pos": 1234},
  "written": "2026-01-02T03:04:05Z"
}`
	st, err := ferry.UnmarshalState([]byte(old))
	must(t, err)
	ts := st.Tables["shop.orders"]
	if ts == nil || len(ts.Ranges) != 2 || string(ts.Ranges[0].Last[0]) != "50" || string(ts.Ranges[0].End[0]) != "100" || !ts.Ranges[1].Done || ts.RowsCopied != 150 {
		t.Fatalf("decoded %+v", ts)
	}
	if st.Applied.File != "binlog.000007" || st.Applied.Pos != 1234 {
		t.Fatalf("applied %+v", st.Applied)
	}
	// Version 2 recorded the last transaction's GTID, not the set at the position: it is dropped
	// (so it can never pass for one), and the state reads as the current version.
	if st.Applied.GTID != "" || st.Version != ferry.StateVersion || st.Final {
		t.Fatalf("version 2 state read as %+v (version %d, final %v)", st.Applied, st.Version, st.Final)
	}
	b, err := ferry.MarshalState(st)
	must(t, err)
	again, err := ferry.UnmarshalState(b)
	must(t, err)
	if string(again.Tables["shop.orders"].Ranges[0].Last[0]) != "50" {
		t.Fatalf("round trip lost the key: %s", b)
	}
	if _, err := ferry.UnmarshalState([]byte(strings.Replace(old, `"version": 2`, `"version": 4`, 1))); err == nil || !strings.Contains(err.Error(), "format version 4") {
		t.Errorf("version 4: got %v", err)
	}
	// Version 1 did not record the row selection: it cannot be checked, so it is refused.
	if _, err := ferry.UnmarshalState([]byte(strings.Replace(old, `"version": 2`, `"version": 1`, 1))); !errors.Is(err, ferry.ErrResumeMismatch) {
		t.Errorf("version 1: got %v", err)
	}
	if _, err := ferry.UnmarshalState([]byte(strings.Replace(old, `, "file": "binlog.000007", "pos": 1234`, ``, 1))); err == nil {
		t.Errorf("a state without a position was accepted")
	}
}

// TestTableCheckpoint keeps the state in a table on the target, stops a run mid-copy, changes the
// source, and resumes from the state read back from that table.
func TestTableCheckpoint(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db := "ckpt_table"
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db,
		"CREATE TABLE "+db+".t (id INT PRIMARY KEY, v VARCHAR(40))",
		"INSERT INTO "+db+".t SELECT seq, CONCAT('v', seq) FROM "+db+".seq_1_to_30000"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE IF NOT EXISTS ferry_meta",
		"DROP TABLE IF EXISTS ferry_meta._ferry_state"))
	tdb, err := target.DB("")
	must(t, err)
	defer tdb.Close()
	leaks := rsLeakOptions()

	run := func(resume *ferry.State, stopAt int64) *ferry.State {
		cfg := rsFaultConfig(t, source, target, db)
		cfg.BatchSize = 100
		cfg.Resume = resume
		f, err := ferry.New(cfg)
		must(t, err)
		defer f.Close()
		f.Checkpoints = &ferry.TableCheckpoint{DB: tdb, Database: "ferry_meta", Name: db}
		f.CheckpointInterval = 100 * time.Millisecond
		must(t, f.Initialize(ctx))
		must(t, f.Start(ctx))
		if resume != nil {
			// The stream and the applied position start at the checkpoint's, not at the source's
			// current position.
			if got := f.State().Applied; got != resume.Applied || f.StartPosition() != resume.Applied {
				t.Errorf("resumed run starts at %s (applied %s), want %s", f.StartPosition(), got, resume.Applied)
			}
		}
		runCtx, stop := context.WithCancel(ctx)
		defer stop()
		runErr := make(chan error, 1)
		go func() { runErr <- f.Run(runCtx) }()
		if stopAt > 0 {
			rsWaitRows(t, f, runErr, stopAt)
			stop()
			if err := <-runErr; !errors.Is(err, context.Canceled) {
				t.Fatalf("run: want context.Canceled, got %v", err)
			}
		} else {
			if _, err := (&ferry.Cutover{Ferry: f, Hooks: ferry.HookFuncs{}}).Run(ctx); err != nil {
				t.Fatal(err)
			}
			must(t, <-runErr)
		}
		st, err := ferry.LoadCheckpointTable(ctx, tdb, "ferry_meta", "", db)
		must(t, err)
		return st
	}
	st := run(nil, 5000)
	t.Logf("stopped: %s", rsDescribeState(st))
	if st.Tables[db+".t"].Completed {
		t.Fatalf("the copy completed before it was stopped; the test needs it stopped mid-copy")
	}
	must(t, source.Exec(ctx, "UPDATE "+db+".t SET v = 'changed' WHERE id % 7 = 0",
		"DELETE FROM "+db+".t WHERE id % 11 = 0", "INSERT INTO "+db+".t VALUES (40000, 'new')"))
	st = run(st, 0)
	t.Logf("resumed and finished: %s", rsDescribeState(st))
	if !st.Tables[db+".t"].Completed {
		t.Errorf("final state: table not completed")
	}
	if n := assertSameRows(t, db+".t", "", db+".t"); n == 0 {
		t.Error("no rows compared")
	}
	tdb.Close()
	goleak.VerifyNone(t, leaks...)
}

// rsLogCounter counts log entries whose message or error contains a string.
type rsLogCounter struct {
	substr string
	n      atomic.Int64
}

func (h *rsLogCounter) Levels() []logrus.Level { return logrus.AllLevels }

func (h *rsLogCounter) Fire(e *logrus.Entry) error {
	s := e.Message
	if err, ok := e.Data[logrus.ErrorKey].(error); ok {
		s += " " + err.Error()
	}
	if strings.Contains(s, h.substr) {
		h.n.Add(1)
	}
	return nil
}

// TestLockWaitTimeoutsAreRetried: an application transaction holds row locks longer than the
// copy's lock wait timeout; the copy's locking read fails with error 1205, is retried with backoff,
// and goes on once the locks are released.
func TestLockWaitTimeoutsAreRetried(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db := "fault_lockwait"
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db,
		"CREATE TABLE "+db+".t (id INT PRIMARY KEY, v VARCHAR(40))",
		"INSERT INTO "+db+".t SELECT seq, CONCAT('v', seq) FROM "+db+".seq_1_to_20000"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
	leaks := rsLeakOptions()

	// The holder locks (and changes) rows in the middle of the table until the copy has timed out
	// on them twice.
	hook := &rsLogCounter{substr: "Lock wait timeout"}
	sdb, err := source.DB(db)
	must(t, err)
	defer sdb.Close()
	tx, err := sdb.BeginTx(ctx, nil)
	must(t, err)
	_, err = tx.ExecContext(ctx, "UPDATE t SET v = 'held' WHERE id BETWEEN 10000 AND 10100")
	must(t, err)
	released := make(chan struct{})
	go func() {
		defer close(released)
		for deadline := time.Now().Add(time.Minute); hook.n.Load() < 2 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if err := tx.Commit(); err != nil {
			t.Errorf("holder commit: %v", err)
		}
	}()

	cfg := rsFaultConfig(t, source, target, db)
	cfg.Source.Params = map[string]string{"innodb_lock_wait_timeout": "1"}
	cfg.CopyWorkers = 1
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	log.AddHook(hook)
	cfg.Logger = log
	f, err := ferry.New(cfg)
	must(t, err)
	defer f.Close()
	must(t, f.Initialize(ctx))
	must(t, f.Start(ctx))
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()
	<-released
	if _, err := (&ferry.Cutover{Ferry: f, Hooks: ferry.HookFuncs{}}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	must(t, <-runErr)
	f.Close()
	sdb.Close()
	goleak.VerifyNone(t, leaks...)
	t.Logf("%d lock wait timeouts retried", hook.n.Load())
	if hook.n.Load() < 2 {
		t.Errorf("the copy never hit the held locks; the test did not exercise a lock wait timeout")
	}
	if n := assertSameRows(t, db+".t", "", db+".t"); n != 20000 {
		t.Errorf("compared %d rows, want 20000", n)
	}
	if n := count(t, target, "SELECT COUNT(*) FROM "+db+".t WHERE v = 'held'"); n != 101 {
		t.Errorf("target has %d held rows, want 101", n)
	}
}

// TestUnusableCheckpointSinkFailsRun: a run asked to checkpoint into a sink that cannot store the
// state fails before copying anything, rather than doing work it could never resume.
func TestUnusableCheckpointSinkFailsRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := "ckpt_fail"
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db,
		"CREATE TABLE "+db+".t (id INT PRIMARY KEY, v VARCHAR(40))",
		"INSERT INTO "+db+".t SELECT seq, CONCAT('v', seq) FROM "+db+".seq_1_to_1000"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
	leaks := rsLeakOptions()
	f, err := ferry.New(rsFaultConfig(t, source, target, db))
	must(t, err)
	f.Checkpoints = ferry.FileCheckpoint{Path: filepath.Join(t.TempDir(), "missing-dir", "state.json")}
	must(t, f.Initialize(ctx))
	must(t, f.Start(ctx))
	err = f.Run(ctx)
	f.Close()
	if err == nil || !strings.Contains(err.Error(), "save the first checkpoint") {
		t.Fatalf("want the run to fail on its first checkpoint, got %v", err)
	}
	t.Logf("run failed: %v", err)
	if n := count(t, target, "SELECT COUNT(*) FROM "+db+".t"); n != 0 {
		t.Errorf("%d rows were copied by a run that could not checkpoint", n)
	}
	goleak.VerifyNone(t, leaks...)
}
