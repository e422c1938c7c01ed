package test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

// recordingWriter wraps the default BatchWriter, records every batch's size and write time, and
// lets a test slow the target down (delay is called before each write, with the rows written so
// far).
type recordingWriter struct {
	inner ferry.BatchWriter
	delay func(written, batch int) time.Duration

	mu      sync.Mutex
	sizes   []int
	times   []time.Time
	written int
}

func (w *recordingWriter) WriteBatch(ctx context.Context, b *ferry.RowBatch) error {
	w.mu.Lock()
	written := w.written
	w.mu.Unlock()
	if w.delay != nil {
		if d := w.delay(written, len(b.Rows)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if err := w.inner.WriteBatch(ctx, b); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sizes = append(w.sizes, len(b.Rows))
	w.times = append(w.times, time.Now())
	w.written += len(b.Rows)
	return nil
}

func (w *recordingWriter) batches() ([]int, []time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int(nil), w.sizes...), append([]time.Time(nil), w.times...)
}

// createSeqTable creates db.t with rows rows (id 1..rows, tenant id%10) on the source and an empty
// target database.
func createSeqTable(t *testing.T, db string, rows int) {
	t.Helper()
	ctx := context.Background()
	must(t, source.Exec(ctx,
		"DROP DATABASE IF EXISTS "+db,
		"CREATE DATABASE "+db,
		"CREATE TABLE "+db+".t (id INT NOT NULL PRIMARY KEY, tenant INT NOT NULL, payload VARCHAR(40)) ENGINE=InnoDB",
		"SET SESSION max_recursive_iterations = 1000000",
		"INSERT INTO "+db+".t WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < "+itoa(int64(rows))+") SELECT n, n % 10, REPEAT('p', 30) FROM s",
	))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
}

// recordedFerry initialises a Ferry copying db with cfg's copy settings through the recording
// writer, with one worker and one range per table.
func recordedFerry(t *testing.T, ctx context.Context, db string, cfg ferry.Config, w *recordingWriter) *ferry.Ferry {
	t.Helper()
	cfg.Source, cfg.Target = conn(source), conn(target)
	cfg.Tables = ferry.TableFilter{Databases: []string{db}}
	cfg.CreateTargetTables = true
	cfg.CopyWorkers, cfg.RangesPerTable = 1, 1
	cfg.Logger = testLogger(t)
	f, err := ferry.New(cfg)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	must(t, f.Initialize(ctx))
	w.inner = &ferry.TargetBatchWriter{DB: f.Target, MaxRetries: 5}
	f.BatchWriter = w
	return f
}

// runFerry starts f and runs it in the background.
func runFerry(t *testing.T, ctx context.Context, f *ferry.Ferry) chan error {
	t.Helper()
	must(t, f.Start(ctx))
	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx) }()
	return errc
}

// startRecorded starts a recordedFerry.
func startRecorded(t *testing.T, ctx context.Context, db string, cfg ferry.Config, w *recordingWriter) (*ferry.Ferry, chan error) {
	t.Helper()
	f := recordedFerry(t, ctx, db, cfg, w)
	return f, runFerry(t, ctx, f)
}

// With a target chunk time the batch size grows (by at most 1.5x a batch) while batches are fast,
// and drops at once when the target slows down so much that a batch takes far longer than the
// target: the share locks a batch holds on the source stay short.
func TestAdaptiveBatchSizeFollowsTargetChunkTime(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db := "adaptive_chunk"
	const rows, slowAfter = 5000, 2000
	createSeqTable(t, db, rows)
	// From slowAfter rows on, the target takes 1ms a row: 1000 rows/s, so a 200ms batch is about
	// 200 rows.
	w := &recordingWriter{delay: func(written, batch int) time.Duration {
		if written < slowAfter {
			return 0
		}
		return time.Duration(batch) * time.Millisecond
	}}
	f, errc := startRecorded(t, ctx, db, ferry.Config{BatchSize: 100, MinBatchSize: 20, MaxBatchSize: 5000,
		TargetChunkTime: 200 * time.Millisecond}, w)
	finish(t, ctx, f, errc)
	sizes, _ := w.batches()
	t.Logf("batch sizes: %v", sizes)

	total, fastMax, firstSlow := 0, 0, -1
	for i, n := range sizes {
		if i > 0 && float64(n) > 1.5*float64(sizes[i-1])+1 {
			t.Errorf("batch %d grew from %d to %d rows: more than 1.5x", i, sizes[i-1], n)
		}
		if total < slowAfter {
			fastMax = max(fastMax, n)
		} else if firstSlow < 0 {
			firstSlow = i
		}
		total += n
	}
	if total != rows {
		t.Fatalf("copied %d rows, want %d", total, rows)
	}
	if fastMax < 4*100 {
		t.Errorf("while the target was fast the batch size reached only %d rows (started at 100): it did not grow", fastMax)
	}
	if firstSlow < 0 || firstSlow+1 >= len(sizes) {
		t.Fatalf("no batch after the target slowed down: %v", sizes)
	}
	// The first slow batch took about its size in milliseconds (over 2x the target); the next one
	// is sized from that rate: about 200 rows.
	if next := sizes[firstSlow+1]; next > 400 || next >= sizes[firstSlow] {
		t.Errorf("after a %d-row batch took %dms (target 200ms) the next batch has %d rows: it did not shrink to about 200", sizes[firstSlow], sizes[firstSlow], next)
	}
	if got := f.BatchSize(); got > 400 {
		t.Errorf("Ferry.BatchSize() = %d at the end, want about 200", got)
	}
}

// MaxRowsPerSecond caps the copy's rate over the run.
func TestMaxRowsPerSecondCapsCopyRate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db := "rate_cap"
	const rows, perSecond = 1500, 500
	createSeqTable(t, db, rows)
	w := &recordingWriter{}
	f, errc := startRecorded(t, ctx, db, ferry.Config{BatchSize: 100, MaxRowsPerSecond: perSecond}, w)
	finish(t, ctx, f, errc)
	sizes, times := w.batches()
	total := 0
	for _, n := range sizes {
		total += n
	}
	if total != rows || len(sizes) < 2 {
		t.Fatalf("copied %d rows in %d batches, want %d rows", total, len(sizes), rows)
	}
	// Rows written after the first batch, over the time from the first batch to the last.
	span := times[len(times)-1].Sub(times[0])
	rate := float64(total-sizes[0]) / span.Seconds()
	t.Logf("%d rows after the first batch in %s: %.0f rows/s (cap %d)", total-sizes[0], span, rate, perSecond)
	if rate > 1.5*perSecond {
		t.Errorf("copied at %.0f rows/s with a cap of %d rows/s", rate, perSecond)
	}
}

// ExactRowCount counts the rows the copy will select (here with a filter, which the
// information_schema estimate knows nothing of), so Progress's total is exact from the start.
func TestExactRowCountGivesTheTrueTotal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := "exact_rowcount"
	createSeqTable(t, db, 1000)
	must(t, source.Exec(ctx, "ANALYZE TABLE "+db+".t"))
	for _, exact := range []bool{false, true} {
		f, err := ferry.New(ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{db}},
			CreateTargetTables: true, Filter: ferry.ColumnEquals{Column: "tenant", Value: 3}, ExactRowCount: exact, Logger: testLogger(t)})
		must(t, err)
		must(t, f.Initialize(ctx))
		got := f.Progress().EstimatedRows
		f.Close()
		t.Logf("ExactRowCount=%v: EstimatedRows %d", exact, got)
		if exact && got != 100 {
			t.Errorf("with ExactRowCount the total is %d rows, want the 100 rows of tenant 3", got)
		}
		if !exact && got == 100 {
			t.Errorf("without ExactRowCount the estimate is already exact (%d): this test shows nothing", got)
		}
	}
}

// When the panic flag file appears, Run stops at once with ErrPanicFlag, leaves no source row
// locked, and saves a checkpoint from which a resumed run finishes the copy.
func TestPanicFlagFileStopsTheRunResumably(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db := "panic_flag"
	const rows = 3000
	createSeqTable(t, db, rows)
	flag := filepath.Join(t.TempDir(), "panic")
	// Batches of 100 rows taking 50ms each: the copy needs 1.5s; the flag appears after 500 rows,
	// while a batch is being written (its source rows share-locked).
	w := &recordingWriter{delay: func(written, batch int) time.Duration {
		if written == 500 {
			if err := os.WriteFile(flag, nil, 0o600); err != nil {
				t.Error(err)
			}
		}
		return 50 * time.Millisecond
	}}
	var mu sync.Mutex
	var saved *ferry.State
	cfg := ferry.Config{BatchSize: 100, PanicFlagFile: flag}
	f := recordedFerry(t, ctx, db, cfg, w)
	f.Checkpoints = ferry.CheckpointFunc(func(_ context.Context, s *ferry.State) error {
		mu.Lock()
		saved = s
		mu.Unlock()
		return nil
	})
	errc := runFerry(t, ctx, f)
	var err error
	select {
	case err = <-errc:
	case <-time.After(30 * time.Second):
		t.Fatal("the run did not stop when the panic flag file appeared")
	}
	if !errors.Is(err, ferry.ErrPanicFlag) || !strings.Contains(err.Error(), flag) {
		t.Fatalf("want an error wrapping ErrPanicFlag naming %s, got %v", flag, err)
	}
	t.Logf("run stopped: %v", err)
	// No source row stays locked: an update of every row does not wait.
	srcDB, err := source.DB(db)
	must(t, err)
	defer srcDB.Close()
	sess, err := srcDB.Conn(ctx)
	must(t, err)
	defer sess.Close()
	_, err = sess.ExecContext(ctx, "SET SESSION innodb_lock_wait_timeout = 1")
	must(t, err)
	_, err = sess.ExecContext(ctx, "UPDATE t SET payload = payload")
	must(t, err)
	f.Close()

	mu.Lock()
	st := saved
	mu.Unlock()
	if st == nil {
		t.Fatal("no checkpoint saved")
	}
	copied := int64(0)
	for _, ts := range st.Tables {
		copied += ts.RowsCopied
		if ts.Completed {
			t.Fatalf("the checkpoint says the copy completed; the flag appeared after 500 of %d rows", rows)
		}
	}
	if copied < 500 || copied >= rows {
		t.Fatalf("the checkpoint has %d rows copied, want between 500 and %d", copied, rows)
	}

	cfg.Resume, cfg.PanicFlagFile = st, ""
	w2 := &recordingWriter{}
	f2, errc2 := startRecorded(t, ctx, db, cfg, w2)
	finish(t, ctx, f2, errc2)
	var n int
	dst, err := target.DB(db)
	must(t, err)
	defer dst.Close()
	must(t, dst.QueryRowContext(ctx, "SELECT COUNT(*) FROM t").Scan(&n))
	if n != rows {
		t.Errorf("after the resume the target has %d rows, want %d", n, rows)
	}
}
