package osc

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// With TargetChunkTime the chunk size grows (at most 1.5x a chunk) while chunks are fast, and
// drops at once after a chunk that waited on a lock far longer than the target (whichever of the
// copy workers copied it).
func TestTargetChunkTimeAdaptsTheChunkSize(t *testing.T) {
	f := newFixture(t, 10_000)
	m := f.migration("ADD COLUMN z INT NULL")
	m.ChunkSize = 100
	m.TargetChunkTime = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sizes := []int{100} // the chunk size after each chunk
	slowAt := -1        // the index in sizes of the size set after the slowed chunk
	locked := false
	m.testAfterChunk = func(took time.Duration) {
		if locked && slowAt < 0 && took > 900*time.Millisecond {
			slowAt = len(sizes)
		}
		sizes = append(sizes, int(m.chunkSize.Load()))
		var copied int64
		if err := f.db.QueryRowContext(ctx, "SELECT COALESCE(MAX(id), 0) FROM "+q(m.ghostName())).Scan(&copied); err != nil {
			t.Error(err)
			return
		}
		if locked || copied < 500 {
			return
		}
		// Lock a row for a second, well beyond the chunks in flight (the workers copy at most
		// CopyWorkers chunks beyond the ghost's largest key, and one more is cut): the chunk that
		// reaches it takes over a second, five times the target.
		locked = true
		tx, err := f.db.BeginTx(ctx, nil)
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := tx.ExecContext(ctx, "SELECT id FROM t WHERE id = ? FOR UPDATE", copied+int64(m.CopyWorkers+2)*m.chunkSize.Load()); err != nil {
			t.Error(err)
		}
		time.AfterFunc(time.Second, func() { tx.Rollback() })
	}
	_, err := m.Run(ctx)
	must(t, err)
	t.Logf("chunk sizes: %v (size after the slowed chunk: index %d)", sizes, slowAt)
	grown := 0
	for i, n := range sizes {
		if i > 0 && float64(n) > 1.5*float64(sizes[i-1])+1 {
			t.Errorf("chunk %d grew from %d to %d rows: more than 1.5x", i, sizes[i-1], n)
		}
		if slowAt < 0 || i < slowAt {
			grown = max(grown, n)
		}
	}
	if grown < 400 {
		t.Errorf("while chunks were fast the size reached only %d rows (started at 100): it did not grow", grown)
	}
	if slowAt < 1 {
		t.Fatalf("no chunk waited for the locked row: %v", sizes)
	}
	if slow, next := sizes[slowAt-1], sizes[slowAt]; next*2 > slow {
		t.Errorf("after a chunk waited a second (target 200ms) the size went from %d to %d rows: it did not shrink", slow, next)
	}
}

// PanicFlagFile stops the migration at once, before the cut-over, with an error naming the file;
// the original table is unchanged.
func TestPanicFlagFileStopsTheMigration(t *testing.T) {
	f := newFixture(t, 3000)
	flag := filepath.Join(t.TempDir(), "panic")
	m := f.migration("ADD COLUMN z INT NULL")
	m.ChunkSize = 100
	m.PanicFlagFile = flag
	chunks := 0
	m.testAfterChunk = func(time.Duration) {
		chunks++
		if chunks == 5 {
			must(t, os.WriteFile(flag, nil, 0o600))
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := m.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "panic flag file "+flag) {
		t.Fatalf("want the migration stopped by the panic flag file %s, got %v", flag, err)
	}
	if chunks >= 30 {
		t.Errorf("all %d chunks were copied: the flag did not stop the copy", chunks)
	}
	var n int
	must(t, f.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 't' AND COLUMN_NAME = 'z'", f.name).Scan(&n))
	if n != 0 {
		t.Error("the original table was altered")
	}
}
