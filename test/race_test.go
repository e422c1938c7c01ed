package test

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

// lockingWriter wraps the default BatchWriter and, while one chosen batch is being written, lets a
// test act on the source: the rows of that batch have been read but are not yet on the target.
type lockingWriter struct {
	inner  ferry.BatchWriter
	once   atomic.Bool
	during func(ctx context.Context, b *ferry.RowBatch)
}

func (w *lockingWriter) WriteBatch(ctx context.Context, b *ferry.RowBatch) error {
	if b.Table.Source.Name == "big" && w.once.CompareAndSwap(false, true) {
		w.during(ctx, b)
	}
	return w.inner.WriteBatch(ctx, b)
}

// startFerry initialises and starts a Ferry over one database with the given writer wrapper.
func startFerry(t *testing.T, ctx context.Context, db string, wrap func(ferry.BatchWriter) ferry.BatchWriter) (*ferry.Ferry, chan error) {
	t.Helper()
	f, err := ferry.New(ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{db}},
		BatchSize: 100, CopyWorkers: 1, CreateTargetTables: true, Logger: testLogger(t)})
	must(t, err)
	t.Cleanup(func() { f.Close() })
	must(t, f.Initialize(ctx))
	if wrap != nil {
		f.BatchWriter = wrap(&ferry.TargetBatchWriter{DB: f.Target, MaxRetries: 5})
	}
	must(t, f.Start(ctx))
	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx) }()
	return f, errc
}

func finish(t *testing.T, ctx context.Context, f *ferry.Ferry, errc chan error) {
	t.Helper()
	must(t, f.WaitUntilRowCopyIsComplete(ctx))
	must(t, f.FlushBinlogAndStopStreaming(ctx))
	must(t, <-errc)
}

// The classic copy/delete race: the copier has read a row, the application deletes it, the delete's
// binlog event is applied, and only then the stale copy is inserted — a row that should not exist.
// ferry holds the copied rows share-locked on the source until they are committed on the target,
// so the DELETE cannot commit (nor reach the binlog) before the copy lands.
func TestRaceDeleteOfRowBeingCopied(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db := "race_delete"
	createSchema(t, source, db, 2000)
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
	srcDB, err := source.DB(db)
	must(t, err)
	defer srcDB.Close()

	var deleted atomic.Int64
	var deleteCommittedBeforeCopy atomic.Bool
	var copyWritten atomic.Bool
	deleteDone := make(chan struct{})
	f, errc := startFerry(t, ctx, db, func(inner ferry.BatchWriter) ferry.BatchWriter {
		return &lockingWriter{inner: inner, during: func(ctx context.Context, b *ferry.RowBatch) {
			// Delete the last row of the batch being written, from another session.
			last := b.Rows[len(b.Rows)-1]
			var n int64
			if _, err := fmt.Sscan(fmt.Sprint(asString(last[0])), &n); err != nil {
				t.Error(err)
				return
			}
			go func() {
				defer close(deleteDone)
				if _, err := srcDB.ExecContext(ctx, "DELETE FROM big WHERE id = ?", n); err != nil {
					t.Error(err)
					return
				}
				deleted.Store(n)
				if !copyWritten.Load() {
					deleteCommittedBeforeCopy.Store(true)
				}
			}()
			// Give the DELETE every chance to commit before the copy is written.
			time.Sleep(300 * time.Millisecond)
			copyWritten.Store(true)
		}}
	})
	finishAfter := func() {
		<-deleteDone
		// Let the delete's event through before stopping.
		finish(t, ctx, f, errc)
	}
	finishAfter()
	if deleteCommittedBeforeCopy.Load() {
		t.Fatal("the DELETE committed while the copied row was not yet on the target: the copy does not hold its rows locked")
	}
	if n := count(t, target, "SELECT COUNT(*) FROM race_delete.big WHERE id = "+itoa(deleted.Load())); n != 0 {
		t.Fatalf("row %d was deleted on the source but exists on the target", deleted.Load())
	}
	assertSameRows(t, db+".big", "", db+".big")
}

// A transaction that changes a row holds its lock until it commits; its binlog events can reach the
// streamer before the change is visible to other readers. The copy's locking read waits for the
// commit and then reads the new version; the event is applied as an idempotent image either way.
func TestRaceUncommittedChangeDuringCopy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db := "race_open_tx"
	createSchema(t, source, db, 3000)
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
	srcDB, err := source.DB(db)
	must(t, err)
	defer srcDB.Close()
	// Hold a transaction open over rows in the middle of the table, and a unique-value swap.
	tx, err := srcDB.BeginTx(ctx, nil)
	must(t, err)
	_, err = tx.ExecContext(ctx, "UPDATE big SET payload = 'changed in open tx' WHERE id BETWEEN 100 AND 120")
	must(t, err)
	_, err = tx.ExecContext(ctx, "DELETE FROM big WHERE id BETWEEN 121 AND 125")
	must(t, err)
	var u1, u2 int
	must(t, tx.QueryRowContext(ctx, "SELECT u FROM big WHERE id = 130").Scan(&u1))
	must(t, tx.QueryRowContext(ctx, "SELECT u FROM big WHERE id = 131").Scan(&u2))
	for _, q := range []string{"UPDATE big SET u = -5 WHERE id = 130", "UPDATE big SET u = ? WHERE id = 131", "UPDATE big SET u = ? WHERE id = 130"} {
		var args []any
		if q != "UPDATE big SET u = -5 WHERE id = 130" {
			if len(args) == 0 && q == "UPDATE big SET u = ? WHERE id = 131" {
				args = []any{u1}
			} else {
				args = []any{u2}
			}
		}
		_, err = tx.ExecContext(ctx, q, args...)
		must(t, err)
	}
	f, errc := startFerry(t, ctx, db, nil)
	// The copy reaches the locked rows and waits; commit while it waits.
	time.Sleep(500 * time.Millisecond)
	must(t, tx.Commit())
	finish(t, ctx, f, errc)
	for _, tb := range []string{"big", "strkey", "composite", "types"} {
		assertSameRows(t, db+"."+tb, "", db+"."+tb)
	}
	if n := count(t, target, "SELECT COUNT(*) FROM race_open_tx.big WHERE payload = 'changed in open tx'"); n != 21 {
		t.Fatalf("target has %d rows changed by the open transaction, want 21", n)
	}
}

// Swapping unique values between rows inside one transaction: applied row by row the middle state
// violates the unique key; the apply must tolerate it and end with the swap.
func TestUniqueValueSwapInOneTransaction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db := "race_swap"
	createSchema(t, source, db, 1000)
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
	f, errc := startFerry(t, ctx, db, nil)
	must(t, f.WaitUntilRowCopyIsComplete(ctx))
	srcDB, err := source.DB(db)
	must(t, err)
	defer srcDB.Close()
	for i := 0; i < 20; i++ {
		must(t, swap(ctx, srcDB, 10+i, 500+i))
	}
	finish(t, ctx, f, errc)
	assertSameRows(t, db+".big", "", db+".big")
}

func swap(ctx context.Context, db *sql.DB, a, b int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var ua, ub int
	if err := tx.QueryRowContext(ctx, "SELECT u FROM big WHERE id = ? FOR UPDATE", a).Scan(&ua); err != nil {
		return err
	}
	if err := tx.QueryRowContext(ctx, "SELECT u FROM big WHERE id = ? FOR UPDATE", b).Scan(&ub); err != nil {
		return err
	}
	for _, s := range []struct{ u, id int }{{-1, a}, {ua, b}, {ub, a}} {
		if _, err := tx.ExecContext(ctx, "UPDATE big SET u = ? WHERE id = ?", s.u, s.id); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func itoa(n int64) string { return fmtInt(n) }

func asString(v any) any {
	if b, ok := v.([]byte); ok {
		return string(b)
	}
	return v
}
