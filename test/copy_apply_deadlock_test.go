package test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

// retryCounter is an Observer that counts the retries of transient errors by operation.
type retryCounter struct {
	mu sync.Mutex
	by map[string]int
}

func (r *retryCounter) BatchCopied(string, int, int64, time.Duration)       {}
func (r *retryCounter) ChangesApplied(map[ferry.DMLType]int, time.Duration) {}
func (r *retryCounter) Retried(what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.by == nil {
		r.by = map[string]int{}
	}
	r.by[what]++
}

func (r *retryCounter) counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.by {
		out[k] = v
	}
	return out
}

// positionWriter records the last key of the batch being written, so the load can aim at it.
type positionWriter struct {
	inner ferry.BatchWriter
	pos   *atomic.Int64
}

func (w *positionWriter) WriteBatch(ctx context.Context, b *ferry.RowBatch) error {
	var first int64
	fmt.Sscan(fmt.Sprint(asString(b.Rows[0][0])), &first)
	w.pos.Store(first)
	return w.inner.WriteBatch(ctx, b)
}

// The default (LOAD DATA) copy and the binlog apply write the same rows of the target at the same
// time: the application changes rows just ahead of and just behind the batch being copied, several
// rows per transaction in random key order, and deletes and re-inserts some. The copy must yield
// to the apply: no deadlock or lock-wait timeout may reach the apply's retry path (a retry backs
// off while the copy goes on, and the lag grows), the lag stays bounded while the copy runs, and
// the target ends identical.
func TestLoadDataCopyYieldsToApplyOnHotRows(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const db, rows, batch = "hotcopy", 40000, 500
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db, "USE "+db,
		"CREATE TABLE "+db+".t (id INT PRIMARY KEY, u INT NOT NULL, v VARCHAR(40) NOT NULL, UNIQUE KEY (u))",
		fmt.Sprintf("INSERT INTO %s.t SELECT seq, seq, CONCAT('row ', seq) FROM seq_1_to_%d", db, rows)))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))

	retries := &retryCounter{}
	f, err := ferry.New(ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{db}},
		BatchSize: batch, CopyWorkers: 1, CreateTargetTables: true, Logger: testLogger(t)})
	must(t, err)
	defer f.Close()
	f.Observer = retries
	must(t, f.Initialize(ctx))
	must(t, f.Start(ctx))
	if _, ok := f.BatchWriter.(*ferry.LoadDataBatchWriter); !ok {
		t.Fatalf("the default copy writer is %T, want the LOAD DATA writer", f.BatchWriter)
	}
	var pos atomic.Int64
	f.BatchWriter = &positionWriter{inner: f.BatchWriter, pos: &pos}

	// The application: transactions of several changes on keys within the next batches the copy
	// reads (a change committed just before the copy reads its row reaches the apply while the
	// copy writes it), in random order.
	srcDB, err := source.DB(db)
	must(t, err)
	defer srcDB.Close()
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var commits atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			for loadCtx.Err() == nil {
				if err := hotTransaction(loadCtx, srcDB, rng, int(pos.Load()), batch, rows); err == nil {
					commits.Add(1)
				} else if loadCtx.Err() == nil && !isExpected(err) {
					t.Errorf("application: %v", err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}(int64(w))
	}

	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx) }()
	var maxLag time.Duration
	copied := make(chan error, 1)
	go func() { copied <- f.WaitUntilRowCopyIsComplete(ctx) }()
watch:
	for {
		select {
		case err := <-copied:
			must(t, err)
			break watch
		case <-time.After(10 * time.Millisecond):
			maxLag = max(maxLag, f.BinlogLag())
		}
	}
	stopLoad()
	wg.Wait()
	must(t, f.FlushBinlogAndStopStreaming(ctx))
	must(t, <-errc)

	got := retries.counts()
	t.Logf("application commits during the copy: %d; retries: %v; highest lag during the copy: %s", commits.Load(), got, maxLag)
	if commits.Load() < 100 {
		t.Errorf("only %d application transactions committed during the copy: the load did not race it", commits.Load())
	}
	if n := got["target transaction"]; n > 0 {
		t.Errorf("the binlog apply was retried %d times (deadlocks or lock-wait timeouts with the copy); want none\n%s", n, latestDeadlock(t))
	}
	if maxLag > 2*time.Second {
		t.Errorf("the binlog apply lagged %s while the copy ran; want it bounded (< 2s)", maxLag)
	}
	assertSameRows(t, db+".t", "", db+".t")
}

// hotTransaction changes six rows within three batches from pos: updates, or a delete, or a
// re-insert of a deleted row.
func hotTransaction(ctx context.Context, db *sql.DB, rng *rand.Rand, pos, batch, rows int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for i := 0; i < 6; i++ {
		id := pos + rng.Intn(3*batch)
		if id < 1 || id > rows {
			id = 1 + rng.Intn(rows)
		}
		var q string
		switch r := rng.Intn(10); {
		case r < 7:
			q = fmt.Sprintf("UPDATE t SET v = 'changed %d' WHERE id = %d", rng.Int63(), id)
		case r < 8:
			q = fmt.Sprintf("DELETE FROM t WHERE id = %d", id)
		default:
			q = fmt.Sprintf("INSERT IGNORE INTO t VALUES (%d, %d, 'back %d')", id, id, rng.Int63())
		}
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// latestDeadlock is the LATEST DETECTED DEADLOCK section of the target's InnoDB status.
func latestDeadlock(t *testing.T) string {
	db, err := target.DB("")
	if err != nil {
		return err.Error()
	}
	defer db.Close()
	var typ, name, status string
	if err := db.QueryRow("SHOW ENGINE INNODB STATUS").Scan(&typ, &name, &status); err != nil {
		return err.Error()
	}
	i := strings.Index(status, "LATEST DETECTED DEADLOCK")
	if i < 0 {
		return "(no deadlock recorded on the target)"
	}
	j := strings.Index(status[i:], "TRANSACTIONS\n")
	if j < 0 {
		j = len(status) - i
	}
	return status[i : i+j]
}
