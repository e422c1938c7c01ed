package test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

// A read_only cut-over does not stop a user with SUPER / READ_ONLY ADMIN. ferry notices that the
// source's binlog still moves, aborts the cut-over before swapping, makes the source writable again,
// keeps streaming, and names the writer; once the writer stops, the cut-over succeeds with every
// row. (It used to report success while the rows written after the lock never reached the target.)
func TestReadOnlyCutoverAbortsWhenPrivilegedSessionsWrite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const db = "cut_privileged"
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db,
		"CREATE TABLE "+db+".t (id INT PRIMARY KEY, v VARCHAR(20))",
		"INSERT INTO "+db+".t SELECT seq, 'copied' FROM "+db+".seq_1_to_500",
		"DROP USER IF EXISTS admin_writer@'127.0.0.1'",
		"CREATE USER admin_writer@'127.0.0.1'",
		"GRANT ALL PRIVILEGES ON *.* TO admin_writer@'127.0.0.1'"))
	defer source.Exec(context.Background(), "SET GLOBAL read_only = 0", "DROP USER IF EXISTS admin_writer@'127.0.0.1'")
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))

	f, err := ferry.New(rsFaultConfig(t, source, target, db))
	must(t, err)
	defer f.Close()
	must(t, f.Initialize(ctx))
	must(t, f.Start(ctx))
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()
	must(t, f.WaitUntilRowCopyIsComplete(ctx))

	// The privileged application keeps inserting, read_only or not.
	admin := conn(source)
	admin.User = "admin_writer"
	adb, err := admin.Open(ctx)
	must(t, err)
	defer adb.Close()
	var written atomic.Int64
	writeCtx, stopWriting := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for id := 1000; writeCtx.Err() == nil; id++ {
			if _, err := adb.ExecContext(writeCtx, "INSERT INTO "+db+".t VALUES (?, 'privileged')", id); err == nil {
				written.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	defer func() { stopWriting(); wg.Wait() }()
	for written.Load() < 5 {
		time.Sleep(5 * time.Millisecond)
	}

	hooks := ferry.ReadOnlyHooks{Source: f.Source}
	rep, err := (&ferry.Cutover{Ferry: f, Hooks: hooks}).Run(ctx)
	if !errors.Is(err, ferry.ErrWritesNotStopped) {
		t.Fatalf("cut-over with a privileged writer: want ErrWritesNotStopped, got %v", err)
	}
	t.Logf("cut-over aborted: %v", err)
	for _, want := range []string{"admin_writer@127.0.0.1", "(thread ", "tables written: " + db + ".t", "SUPER or READ_ONLY ADMIN"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not name %q", want)
		}
	}
	if rep.Swapped {
		t.Error("the aborted cut-over swapped")
	}
	var ro int
	must(t, f.Source.QueryRowContext(ctx, "SELECT @@GLOBAL.read_only").Scan(&ro))
	if ro != 0 {
		t.Error("the source was left read-only after the aborted cut-over")
	}
	select {
	case err := <-runErr:
		t.Fatalf("the run ended after the aborted cut-over: %v", err)
	default:
	}

	// The writer stops; the next cut-over succeeds and nothing it wrote is missing.
	stopWriting()
	wg.Wait()
	rep, err = (&ferry.Cutover{Ferry: f, Hooks: hooks}).Run(ctx)
	if err != nil {
		t.Fatalf("cut-over without writers: %v", err)
	}
	// The binlog's settle interval is part of the write-blocked window the report states.
	if rep.Blocked < 100*time.Millisecond {
		t.Errorf("reported write-blocked window %s, shorter than the 100ms Lock watched the binlog with writes stopped", rep.Blocked)
	}
	must(t, <-runErr)
	rsSameRowsBetween(t, source, target, db+".t", db+".t")
	// An INSERT can commit while its client gives up on it (the writer's context is cancelled
	// mid-statement), so the source's own count is the truth; the writer's is a lower bound.
	onSource := count(t, source, "SELECT COUNT(*) FROM "+db+".t WHERE v = 'privileged'")
	if n := count(t, target, "SELECT COUNT(*) FROM "+db+".t WHERE v = 'privileged'"); n != onSource || int64(n) < written.Load() {
		t.Errorf("target has %d privileged rows, the source %d; the writer saw %d succeed", n, onSource, written.Load())
	}
}
