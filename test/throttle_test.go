package test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/sandbox"
	"github.com/ferrykit/ferry/throttler"
)

// The copy pauses while a replica of the source lags behind (its SQL thread stopped), says why in
// Progress, and resumes when the replica catches up; the result is identical.
func TestCopyPausesWhileReplicaLags(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	primary, err := sandbox.Start(ctx, sandbox.Options{})
	must(t, err)
	defer primary.Stop()
	replica, err := sandbox.StartReplica(ctx, primary, sandbox.Options{})
	must(t, err)
	defer replica.Stop()
	createSchema(t, primary, "thr", 20_000)
	must(t, primary.Exec(ctx, "CREATE DATABASE hb"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS thr"))

	pdb, err := primary.DB("")
	must(t, err)
	defer pdb.Close()
	rdb, err := replica.DB("")
	must(t, err)
	defer rdb.Close()
	lag, err := throttler.NewReplicationLag(throttler.ReplicationLagConfig{
		Replicas: []throttler.Replica{{Name: "replica1", DB: rdb}}, MaxLag: 400 * time.Millisecond,
		Source: pdb, HeartbeatDatabase: "hb", HeartbeatInterval: 50 * time.Millisecond, CheckInterval: 20 * time.Millisecond,
	})
	must(t, err)
	must(t, lag.Start(ctx))
	defer lag.Stop()
	// Let the replica apply the schema, then stop its SQL thread: lag grows from here.
	waitFor(t, ctx, "replica has the schema", func() bool {
		var n int
		return rdb.QueryRowContext(ctx, "SELECT COUNT(*) FROM thr.big").Scan(&n) == nil && n == 20_000
	})
	must(t, replica.Exec(ctx, "STOP SLAVE SQL_THREAD"))
	waitFor(t, ctx, "the throttler sees the replica lag", func() bool {
		st, err := lag.Check(ctx)
		return err == nil && st.Throttled
	})

	f, err := ferry.New(ferry.Config{Source: conn(primary), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{"thr"}},
		BatchSize: 200, CopyWorkers: 2, CreateTargetTables: true, Logger: testLogger(t)})
	must(t, err)
	defer f.Close()
	f.Throttler = lag
	must(t, f.Initialize(ctx))
	must(t, f.Start(ctx))
	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx) }()

	waitFor(t, ctx, "the copy reports being throttled by replica1", func() bool {
		p := f.Progress()
		return p.Throttled && strings.Contains(p.ThrottleReason, "replica1")
	})
	before := f.Progress().RowsCopied
	time.Sleep(time.Second)
	p := f.Progress()
	if p.RowsCopied != before {
		t.Fatalf("the copy went on while throttled: %d rows, then %d", before, p.RowsCopied)
	}
	if p.CopyComplete {
		t.Fatal("the copy completed before the replica lag throttled it; the test did not exercise throttling")
	}
	t.Logf("paused at %d rows: %s", before, p.ThrottleReason)

	must(t, replica.Exec(ctx, "START SLAVE SQL_THREAD"))
	must(t, f.WaitUntilRowCopyIsComplete(ctx))
	if f.Progress().Throttled {
		t.Error("still reported throttled after the replica caught up")
	}
	must(t, f.FlushBinlogAndStopStreaming(ctx))
	must(t, <-errc)
	for _, tb := range []string{"types", "composite", "strkey", "big"} {
		a := rowsOf(t, primary, "thr."+tb, "")
		b := rowsOf(t, target, "thr."+tb, "")
		if len(a) != len(b) {
			t.Fatalf("%s: %d rows on the source, %d on the target", tb, len(a), len(b))
		}
		for i := range a {
			for j := range a[i] {
				if !bytes.Equal(a[i][j], b[i][j]) {
					t.Fatalf("%s row %d column %d differs", tb, i, j)
				}
			}
		}
	}
}

func waitFor(t *testing.T, ctx context.Context, what string, ok func() bool) {
	t.Helper()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting until %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
