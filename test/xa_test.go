package test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

// The row events of an XA transaction reach the binlog at XA PREPARE; only the later XA COMMIT or
// XA ROLLBACK says whether they happened. ferry applies them at XA COMMIT (also ONE PHASE), drops
// them at XA ROLLBACK, keeps its checkpoint before a pending prepare (also across a reconnect), and
// refuses to flush (so to cut over) while a prepared transaction that changed copied tables is
// pending.
func TestXATransactions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS xa_db", "CREATE DATABASE xa_db", "DROP DATABASE IF EXISTS xa_other", "CREATE DATABASE xa_other",
		"CREATE TABLE xa_db.t (id INT PRIMARY KEY, v VARCHAR(40))",
		"INSERT INTO xa_db.t VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four'), (5, 'five')"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS xa_db"))
	f, errc := startFerry(t, ctx, "xa_db", nil)
	must(t, f.WaitUntilRowCopyIsComplete(ctx))

	db, err := source.DB("")
	must(t, err)
	defer db.Close()
	session := func() *sql.Conn {
		c, err := db.Conn(ctx)
		must(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}
	run := func(c *sql.Conn, stmts ...string) {
		t.Helper()
		for _, q := range stmts {
			if _, err := c.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	onTarget := func(q string) int { return count(t, target, q) }
	// Every change committed so far is applied once a marker change shows up on the target.
	marker := 0
	sync := func() {
		t.Helper()
		marker++
		must(t, source.Exec(ctx, "REPLACE INTO xa_db.t VALUES (1000, 'marker "+itoa(int64(marker))+"')"))
		waitFor(t, ctx, "the marker change on the target", func() bool {
			select {
			case err := <-errc:
				t.Fatalf("Run stopped: %v", err)
			default:
			}
			return onTarget("SELECT COUNT(*) FROM xa_db.t WHERE id = 1000 AND v = 'marker "+itoa(int64(marker))+"'") == 1
		})
	}
	binlogPos := func() ferry.Position {
		var p ferry.Position
		var a, b any
		must(t, db.QueryRowContext(ctx, "SHOW MASTER STATUS").Scan(&p.File, &p.Pos, &a, &b))
		return p
	}

	// Rolled back after PREPARE: nothing reaches the target.
	rb := prepareXA(t, ctx, db, "'rb1'", "INSERT INTO xa_db.t VALUES (100, 'rolled back')", "UPDATE xa_db.t SET v = 'rolled back' WHERE id = 1",
		"DELETE FROM xa_db.t WHERE id = 2")
	prepared := binlogPos()
	sync()
	if onTarget("SELECT COUNT(*) FROM xa_db.t WHERE id = 100 OR v = 'rolled back'") != 0 || onTarget("SELECT COUNT(*) FROM xa_db.t WHERE id = 2") != 1 {
		t.Errorf("while XA 'rb1' is only prepared the target shows its changes (want row 2 present, no row 100, row 1 unchanged)")
	}
	if applied := f.State().Applied; applied.Compare(prepared) >= 0 {
		t.Errorf("checkpoint position %s passed the pending prepare (which ends at %s)", applied, prepared)
	}
	if _, err := f.FlushBinlog(ctx); err == nil || !strings.Contains(err.Error(), "prepared XA transaction(s) X'726231',X'',1") {
		t.Errorf("FlushBinlog with a pending prepared XA transaction: %v, want it refused naming the XID", err)
	}
	// The cut-over fails and says why, never swaps, unlocks if it locked, and the Ferry keeps
	// streaming (the changes below still arrive).
	locked, unlocked := false, false
	cut := &ferry.Cutover{Ferry: f, Hooks: ferry.HookFuncs{
		LockFunc:   func(context.Context) error { locked = true; return nil },
		SwapFunc:   func(context.Context) error { t.Error("Swap called while an XA transaction is pending"); return nil },
		UnlockFunc: func(context.Context, bool) error { unlocked = true; return nil },
	}}
	if _, err := cut.Run(ctx); err == nil || !strings.Contains(err.Error(), "prepared XA transaction(s) X'726231'") || locked != unlocked {
		t.Errorf("cut-over with a pending prepared XA transaction: %v (locked %v, unlocked %v), want it refused naming the XID", err, locked, unlocked)
	}
	run(rb, "XA ROLLBACK 'rb1'")
	sync()
	if n := onTarget("SELECT COUNT(*) FROM xa_db.t WHERE id = 100 OR v = 'rolled back'"); n != 0 {
		t.Errorf("after XA ROLLBACK the target has %d rolled-back rows", n)
	}

	// Prepared, the stream reconnects (re-reading the prepare), then committed: applied at COMMIT.
	c1 := prepareXA(t, ctx, db, "'c1','branch',3", "INSERT INTO xa_db.t VALUES (101, 'committed')", "UPDATE xa_db.t SET v = 'committed' WHERE id = 3",
		"DELETE FROM xa_db.t WHERE id = 4")
	killBinlogDump(t, ctx)
	sync()
	if n := onTarget("SELECT COUNT(*) FROM xa_db.t WHERE v = 'committed'"); n != 0 {
		t.Errorf("XA 'c1' is applied before its XA COMMIT (%d rows)", n)
	}
	run(c1, "XA COMMIT 'c1','branch',3")

	// One phase: an ordinary transaction in the binlog.
	run(session(), "XA START 'op1'", "INSERT INTO xa_db.t VALUES (102, 'one phase')", "XA END 'op1'", "XA COMMIT 'op1' ONE PHASE")
	// Two interleaved XA transactions, committed in the reverse order of their prepares.
	a := prepareXA(t, ctx, db, "'ia'", "INSERT INTO xa_db.t VALUES (103, 'ia')")
	b := prepareXA(t, ctx, db, "'ib'", "INSERT INTO xa_db.t VALUES (104, 'ib')", "UPDATE xa_db.t SET v = 'ib' WHERE id = 5")
	sync()
	run(b, "XA COMMIT 'ib'")
	run(a, "XA ROLLBACK 'ia'")

	// A read-only XA transaction, and one that changed only a table that is not copied.
	run(prepareXA(t, ctx, db, "'ro'", "SELECT COUNT(*) FROM xa_db.t"), "XA COMMIT 'ro'")
	must(t, source.Exec(ctx, "CREATE TABLE IF NOT EXISTS xa_other.t (id INT PRIMARY KEY)"))
	run(prepareXA(t, ctx, db, "'other'", "INSERT INTO xa_other.t VALUES (1)"), "XA COMMIT 'other'")
	sync()

	must(t, f.FlushBinlogAndStopStreaming(ctx))
	must(t, <-errc)
	if n := assertSameRows(t, "xa_db.t", "", "xa_db.t"); n < 5 {
		t.Errorf("only %d rows compared", n)
	}
}

// The changes of prepared XA transactions wait in memory for XA COMMIT; beyond the bound the run
// stops with an error that says so, rather than growing without limit.
func TestXABufferIsBounded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS xa_bound", "CREATE DATABASE xa_bound", "CREATE TABLE xa_bound.t (id INT PRIMARY KEY)"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS xa_bound"))
	f, err := ferry.New(ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{"xa_bound"}},
		CreateTargetTables: true, Logger: testLogger(t)})
	must(t, err)
	defer f.Close()
	must(t, f.Initialize(ctx))
	tables := map[string]*ferry.TableCopy{}
	for _, tc := range f.Tables {
		tables[tc.Source.String()] = tc
	}
	f.BinlogStreamer = &ferry.SourceBinlogStreamer{Conn: conn(source), Flavor: f.SourceFlavor, ServerID: 424242, Tables: tables,
		MaxPendingXAChanges: 10, Logger: testLogger(t)}
	must(t, f.Start(ctx))
	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx) }()
	must(t, f.WaitUntilRowCopyIsComplete(ctx))

	db, err := source.DB("")
	must(t, err)
	defer db.Close()
	c := prepareXA(t, ctx, db, "'big'", "INSERT INTO xa_bound.t SELECT seq FROM mysql.seq_1_to_11")
	defer c.ExecContext(context.Background(), "XA ROLLBACK 'big'")
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "prepared XA transactions hold more than 10 row changes") || !strings.Contains(err.Error(), "MaxPendingXAChanges") {
			t.Fatalf("Run returned %v, want the bound on buffered XA changes", err)
		}
	case <-ctx.Done():
		t.Fatal("Run went on buffering past the bound")
	}
}

// An XA transaction prepared before the copy started was invisible to the copy and its rows are
// not in the stream; its XA COMMIT therefore stops the run instead of leaving its changes out.
func TestXAPreparedBeforeStartStopsRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS xa_early", "CREATE DATABASE xa_early",
		"CREATE TABLE xa_early.t (id INT PRIMARY KEY, v INT)", "INSERT INTO xa_early.t SELECT seq, seq FROM mysql.seq_1_to_100"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS xa_early"))
	db, err := source.DB("")
	must(t, err)
	defer db.Close()
	c := prepareXA(t, ctx, db, "'early'", "INSERT INTO xa_early.t VALUES (1000, 1000)")
	_, errc := startFerry(t, ctx, "xa_early", nil)
	time.Sleep(200 * time.Millisecond)
	_, err = c.ExecContext(ctx, "XA COMMIT 'early'")
	must(t, err)
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "commits an XA transaction prepared before the stream started") {
			t.Fatalf("Run returned %v, want it stopped by the XA COMMIT of an earlier prepare", err)
		}
	case <-ctx.Done():
		t.Fatal("Run went on after the XA COMMIT of a transaction prepared before it started")
	}
}

// prepareXA runs stmts as XA transaction xid (an XID literal, e.g. 'a' or 'a','b',3) on a new session
// of db and prepares it; the session is returned to end the transaction.
func prepareXA(t *testing.T, ctx context.Context, db *sql.DB, xid string, stmts ...string) *sql.Conn {
	t.Helper()
	c, err := db.Conn(ctx)
	must(t, err)
	t.Cleanup(func() { c.Close() })
	for _, q := range append(append([]string{"XA START " + xid}, stmts...), "XA END "+xid, "XA PREPARE "+xid) {
		if _, err := c.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return c
}
