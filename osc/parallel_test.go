package osc

import (
	"context"
	"encoding/json"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Several chunks are copied at once (CopyWorkers) while three clients write to the table: the
// table ends exactly as the twin altered natively with the same writes, and the copy did run
// chunks concurrently (seen in the server's processlist).
func TestParallelCopyUnderLoadMatchesNativeAlter(t *testing.T) {
	f := newFixture(t, 30_000)
	alter := "ADD COLUMN x INT NOT NULL DEFAULT 7, MODIFY b VARCHAR(80) NOT NULL DEFAULT ''"
	m := f.migration(alter)
	m.ChunkSize = 300
	m.CopyWorkers = 4
	m.testYieldLag = time.Hour // a loaded machine's lag must not make the copy serial here
	var most atomic.Int64
	ctx, stop := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for ctx.Err() == nil {
			var n int64
			f.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE CONCAT('INSERT INTO `', ?, '`.`\\_t\\_gho`%')", f.name).Scan(&n)
			if n > most.Load() {
				most.Store(n)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	runUnderLoad(t, f, m, alter)
	stop()
	<-watched
	if most.Load() < 2 {
		t.Errorf("at most %d chunk copied at a time, with CopyWorkers 4", most.Load())
	}
	t.Logf("up to %d chunks copied at once", most.Load())
}

// While one chunk waits (a row of it is locked) the other workers copy the chunks after it, but the
// checkpoint never moves past the chunk still being copied; a run stopped then and resumed copies
// that chunk, and no row is lost.
func TestParallelCopyCheckpointStaysBelowUnfinishedChunk(t *testing.T) {
	f := newFixture(t, 4000)
	alter := "ADD COLUMN x INT NULL"
	m := f.migration(alter)
	m.ChunkSize = 100 // chunk 2 holds the ids 101..200
	m.CopyWorkers = 4
	m.testYieldLag = time.Hour // the other workers go on whatever the lag (the first may be the one waiting)
	m.CheckpointInterval = 20 * time.Millisecond
	lock, err := f.db.Begin()
	must(t, err)
	defer lock.Rollback()
	if _, err := lock.Exec("SELECT id FROM t WHERE id = 150 FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := m.Run(ctx); done <- err }()
	readCP := func() *checkpoint {
		var v string
		if err := f.db.QueryRow("SELECT value FROM _t_ghc WHERE id = ? AND hint = 'checkpoint'", checkpointID).Scan(&v); err != nil {
			return nil
		}
		var cp checkpoint
		must(t, json.Unmarshal([]byte(v), &cp))
		return &cp
	}
	// Wait until the chunks after the waiting one are copied and checkpointed.
	var cp *checkpoint
	for {
		if ctx.Err() != nil {
			t.Fatal("the other chunks were not copied")
		}
		var ghost int
		f.db.QueryRow("SELECT COUNT(*) FROM _t_gho WHERE id > 200").Scan(&ghost)
		if cp = readCP(); cp != nil && ghost >= 3000 && cp.Written.After(time.Now().Add(-10*time.Millisecond)) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var upTo int64
	if len(cp.CopiedUpTo) > 0 {
		upTo, _ = strconv.ParseInt(string(cp.CopiedUpTo[0]), 10, 64)
	}
	if upTo > 100 {
		t.Fatalf("the checkpoint says every row up to id %d is copied while the chunk 101..200 is still waiting", upTo)
	}
	t.Logf("checkpoint copied up to id %d, %d rows, while later chunks are in the ghost", upTo, cp.RowsCopied)
	cancel() // the run dies with the chunk unfinished
	if err := <-done; err == nil {
		t.Fatal("the stopped run reported success")
	} else {
		t.Logf("stopped run: %v", err)
	}
	must(t, lock.Rollback())

	r := f.migration(alter)
	r.Resume = true
	r.CopyWorkers = 4
	rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
	defer rcancel()
	if _, err := r.Run(rctx); err != nil {
		t.Fatal(err)
	}
	f.expect(alter)
}

// Every copy worker keeps its own connection: with more workers than the rest of the migration
// leaves room for in the connection pool, the chunk planner, the apply and the heartbeat must
// still get theirs (else the copy waits forever for a chunk the planner cannot cut).
func TestManyCopyWorkersKeepThePoolUsable(t *testing.T) {
	f := newFixture(t, 3000)
	alter := "ADD COLUMN x INT NULL"
	m := f.migration(alter)
	m.ChunkSize = 10
	m.CopyWorkers = 24
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	if _, err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	f.expect(alter)
}
