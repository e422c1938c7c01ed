package test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/sandbox"
)

// The binlog is read from a replica of the source while rows are read from, and the cut-over
// happens on, the source. The replica lags on purpose (its SQL thread stopped): at the start, during the copy,
// and under the cut-over's lock with changes the source committed that the replica has not logged
// yet. The first cut-over cannot see those changes in the replica's stream before its timeout, so it
// must abort without swapping (a cut-over that took the replica's position as it was would swap a
// target missing them); the second waits for the replica and ends with every row equal.
func TestCopyWithBinlogFromReplica(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	primary := rsOwnServer(t)
	replica, err := sandbox.StartReplica(ctx, primary, sandbox.Options{BufferPool: "64M"})
	must(t, err)
	t.Cleanup(replica.Stop)
	const db, rows = "brcopy", 4000
	sqlThread := func(verb string) { // also from goroutines: t.Error, not t.Fatal
		if err := replica.Exec(context.Background(), verb+" SLAVE SQL_THREAD"); err != nil {
			t.Error(err)
		}
	}
	var bg sync.WaitGroup
	defer bg.Wait()
	startLater := func(d time.Duration) {
		bg.Add(1)
		go func() { defer bg.Done(); time.Sleep(d); sqlThread("START") }()
	}
	// The replica lags at the start, not even having the tables: the stream must start where the
	// replica holds everything the source had (a stream from the replica's position as it was
	// would meet the tables' CREATE TABLE, and changes the copy already reads).
	must(t, primary.Exec(ctx, "CREATE DATABASE brwarm"))
	waitFor(t, ctx, "the replica replicates", func() bool {
		return count(t, replica, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'brwarm'") == 1
	})
	sqlThread("STOP")
	createSchema(t, primary, db, rows)
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))

	load := startLoad(t, primary, db, 7, 2, rows)
	time.Sleep(200 * time.Millisecond)
	startLater(time.Second)
	rc := conn(replica)
	f, err := ferry.New(ferry.Config{Source: conn(primary), Target: conn(target), BinlogSource: &rc,
		Tables: ferry.TableFilter{Databases: []string{db}}, BatchSize: 200, CopyWorkers: 2,
		CreateTargetTables: true, Logger: testLogger(t)})
	must(t, err)
	defer f.Close()
	must(t, f.Initialize(ctx))
	must(t, f.Start(ctx))
	// The replica stops applying right after the start position was read from it: the copy reads
	// rows the stream will only deliver later.
	sqlThread("STOP")
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()
	// Past the replica's heartbeat (1s) the stream idles at the replica's head, yet the target is
	// behind the source by as long as the replica has not applied the load's writes: the lag says so.
	time.Sleep(2500 * time.Millisecond)
	if lag := f.SourceLag(); lag < time.Second {
		t.Errorf("SourceLag %s with the replica's SQL thread stopped for 2.5s under writes; want the replica's lag", lag)
	}
	sqlThread("START")

	// Under the lock the replica stops again while the load still writes, so the source has
	// committed changes the replica's binlog lacks.
	lagUnderLock := func() {
		sqlThread("STOP")
		time.Sleep(300 * time.Millisecond)
		load.stop()
	}
	var swaps, unlocks atomic.Int32
	var swappedAtUnlock atomic.Bool
	first := &ferry.Cutover{Ferry: f, Timeout: 1500 * time.Millisecond, Hooks: ferry.HookFuncs{
		LockFunc: func(context.Context) error { lagUnderLock(); return nil },
		SwapFunc: func(context.Context) error { swaps.Add(1); return nil },
		UnlockFunc: func(_ context.Context, swapped bool) error {
			unlocks.Add(1)
			swappedAtUnlock.Store(swapped)
			sqlThread("START")
			load = startLoad(t, primary, db, 8, 2, rows) // writes go on after an aborted cut-over
			return nil
		},
	}}
	_, err = first.Run(ctx)
	if !errors.Is(err, ferry.ErrCutoverTimeout) {
		t.Fatalf("cut-over with the replica's SQL thread stopped under the lock: got %v, want a cut-over timeout", err)
	}
	if !strings.Contains(err.Error(), "SQL thread running: No") {
		t.Errorf("the timeout does not say that the replica's SQL thread is stopped: %v", err)
	}
	if swaps.Load() != 0 || unlocks.Load() != 1 || swappedAtUnlock.Load() {
		t.Fatalf("aborted cut-over: %d swaps, %d unlocks (swapped=%v); want no swap and one unlock(false)", swaps.Load(), unlocks.Load(), swappedAtUnlock.Load())
	}

	// The replica catches up a second after the lock: the cut-over waits for it, within its timeout.
	second := &ferry.Cutover{Ferry: f, Timeout: 30 * time.Second, Hooks: ferry.HookFuncs{
		LockFunc: func(context.Context) error {
			lagUnderLock()
			startLater(time.Second)
			return nil
		},
	}}
	rep, err := second.Run(ctx)
	must(t, err)
	must(t, <-runErr)
	if rep.Blocked < time.Second {
		t.Errorf("the cut-over blocked writes for %s, less than the second the replica took to log the source's last changes", rep.Blocked)
	}
	t.Logf("load: %d transactions; cut-over blocked writes for %s", load.ops.Load(), rep.Blocked)
	for _, tb := range []string{"types", "composite", "strkey", "big"} {
		if rsSameRowsBetween(t, primary, target, db+"."+tb, db+"."+tb) == 0 {
			t.Errorf("%s: no rows compared", tb)
		}
	}

	// copydb -binlog-from, on the same servers: the binlog comes from the replica (its dump
	// connection is the replica's), the read-only cut-over checks the source's position under the
	// lock, and the checksum verification matches.
	t.Run("copydb", func(t *testing.T) {
		bin := rsBuildCopydb(t, t.TempDir())
		const cdb = "brcopydb"
		must(t, primary.Exec(ctx, "CREATE DATABASE "+cdb, "CREATE TABLE "+cdb+".t (id INT PRIMARY KEY, v INT)",
			"INSERT INTO "+cdb+".t SELECT seq, seq FROM "+cdb+".seq_1_to_3000"))
		must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+cdb))
		r := rsStartCopydb(t, bin, append(serverArgs("source", primary),
			"-target-host", "127.0.0.1", "-target-port", fmt.Sprint(target.Port), "-target-user", "root",
			"-binlog-from", fmt.Sprintf("127.0.0.1:%d", replica.Port), "-databases", cdb, "-create-tables",
			"-cutover", "read-only", "-verify", "checksum", "-progress", "1h", "-log-level", "info")...)
		var dumps int
		rsWaitFor(t, r, time.Minute, "copydb's binlog dump connection on the replica", func() bool {
			dumps = count(t, replica, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
			return dumps > 0
		})
		if n := count(t, primary, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'"); n != 1 {
			t.Errorf("%d binlog dump connections on the source while copydb runs with -binlog-from; want only the replica's", n)
		}
		select {
		case <-r.exited:
		case <-ctx.Done():
			t.Fatalf("copydb did not finish:\n%s", rsTailString(r.output(), 3000))
		}
		if r.err != nil || !strings.Contains(r.output(), "MATCH") {
			t.Fatalf("copydb -binlog-from: %v, want a matching verification:\n%s", r.err, rsTailString(r.output(), 3000))
		}
		rsSameRowsBetween(t, primary, target, cdb+".t", cdb+".t")
	})
}

// A binlog source that cannot stand in for the source's binlog is refused by Initialize, before
// anything is written, naming what is wrong.
func TestBinlogFromReplicaRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	primary := rsOwnServer(t)
	must(t, primary.Exec(ctx, "CREATE DATABASE brref", "CREATE TABLE brref.t (id INT PRIMARY KEY)", "INSERT INTO brref.t VALUES (1)"))
	// A replica of another server (its binlog holds none of the source's transactions) starts
	// meanwhile.
	otherErr := make(chan error, 1)
	var other *sandbox.Server
	go func() {
		var err error
		if other, err = sandbox.Start(ctx, sandbox.Options{BufferPool: "64M"}); err == nil {
			err = other.Exec(ctx, "CREATE DATABASE own_writes",
				"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT="+fmtInt(int64(target.Port))+", MASTER_USER='root', MASTER_USE_GTID=slave_pos")
		}
		otherErr <- err
	}()
	noUpdates, err := sandbox.StartReplica(ctx, primary, sandbox.Options{BufferPool: "64M", ExtraArgs: []string{"--skip-log-slave-updates"}})
	must(t, err)
	t.Cleanup(noUpdates.Stop)
	err = <-otherErr
	if other != nil {
		t.Cleanup(other.Stop)
	}
	must(t, err)

	for _, c := range []struct {
		name   string
		server *sandbox.Server
		want   string
	}{
		{"without log_slave_updates", noUpdates, "log_slave_updates is OFF"},
		{"a replica of another server", other, "does not replicate from the source"},
		{"not a replica", target, "is not a replica"},
		{"the source itself", primary, "same server"},
	} {
		t.Run(c.name, func(t *testing.T) {
			must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS brref"))
			bc := conn(c.server)
			f, err := ferry.New(ferry.Config{Source: conn(primary), Target: conn(target), BinlogSource: &bc,
				Tables: ferry.TableFilter{Databases: []string{"brref"}}, CreateTargetTables: true, Logger: testLogger(t)})
			must(t, err)
			defer f.Close()
			err = f.Initialize(ctx)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Initialize with the binlog from %s: got %v, want an error saying %q", c.name, err, c.want)
			}
			if n := count(t, target, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'brref'"); n != 0 {
				t.Errorf("the refused run created the target database")
			}
		})
	}
	t.Run("copydb names the flag", func(t *testing.T) {
		bin := rsBuildCopydb(t, t.TempDir())
		addr := fmt.Sprintf("127.0.0.1:%d", noUpdates.Port)
		r := rsStartCopydb(t, bin, append(serverArgs("source", primary),
			"-target-host", "127.0.0.1", "-target-port", fmt.Sprint(target.Port), "-target-user", "root",
			"-binlog-from", addr, "-databases", "brref", "-create-tables", "-log-level", "warn")...)
		select {
		case <-r.exited:
		case <-ctx.Done():
			t.Fatal("copydb did not finish")
		}
		if out := r.output(); r.err == nil || !strings.Contains(out, "-binlog-from "+addr+": ") || !strings.Contains(out, "log_slave_updates is OFF") {
			t.Errorf("copydb -binlog-from a replica without log_slave_updates: %v, want a refusal naming -binlog-from and log_slave_updates:\n%s", r.err, rsTailString(out, 2000))
		}
	})
}
