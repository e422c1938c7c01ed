package test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/throttler"
)

// holdApply is a throttler the test closes and opens: while closed the binlog writer queues the
// stream without applying it, so that the parallel apply later meets a backlog of thousands of
// transactions, with every worker busy and dependent transactions queued side by side.
type holdApply struct{ held atomic.Bool }

func (h *holdApply) Check(context.Context) (throttler.Status, error) {
	if h.held.Load() {
		return throttler.Status{Throttled: true, Reason: "test holds the apply"}, nil
	}
	return throttler.Status{}, nil
}

// A parallel-apply scenario: a table, and one cycle of source transactions on rows of partition
// p (partitions are disjoint, so cycles run on several connections at once). Each cycle is a
// sequence of transactions that a wrong writeset would let the target apply in an order that
// loses or corrupts a row; the rows are compared with the source at the end.
type parallelScenario struct {
	name string
	ddl  string // CREATE TABLE %s, then 2000 rows seeded by seed
	seed string // INSERT … SELECT from seq_1_to_2000 into %s
	// cycle runs one cycle of transactions for round r in partition p (rows 1..2000, 8 partitions).
	cycle func(ctx context.Context, db *sql.DB, table string, p, r int) error
}

func txns(ctx context.Context, db *sql.DB, stmts ...string) error {
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// rowOf is the r-th of 250 rows of partition p: rows 1..2000.
func rowOf(p, r int) int { return 1 + p*250 + r%250 }

var parallelScenarios = []parallelScenario{{
	// Dependent transactions on one row: each update's image depends on the one before, so any
	// reordering leaves another value.
	name: "same-row chain",
	ddl:  "CREATE TABLE %s (id INT PRIMARY KEY, n BIGINT NOT NULL)",
	seed: "INSERT INTO %s SELECT seq, seq FROM seq_1_to_2000",
	cycle: func(ctx context.Context, db *sql.DB, tbl string, p, r int) error {
		id := rowOf(p, r%5) // five hot rows per partition
		return txns(ctx, db, fmt.Sprintf("UPDATE %s SET n = (n * 31 + %d) %% 1000003 WHERE id = %d", tbl, r, id))
	},
}, {
	// A row moves from key A to key B, and a new row takes key A: the move conflicts with both
	// (the delete of A must not run after the new row's insert).
	name: "primary-key move",
	ddl:  "CREATE TABLE %s (id INT PRIMARY KEY, v VARCHAR(30) NOT NULL)",
	seed: "INSERT INTO %s SELECT seq, CONCAT('seed ', seq) FROM seq_1_to_2000",
	cycle: func(ctx context.Context, db *sql.DB, tbl string, p, r int) error {
		a := rowOf(p, r)
		b := 100000 + p*100000 + r // a fresh key
		return txns(ctx, db,
			fmt.Sprintf("UPDATE %s SET id = %d WHERE id = %d", tbl, b, a),
			fmt.Sprintf("INSERT INTO %s VALUES (%d, 'new at %d round %d')", tbl, a, a, r),
			fmt.Sprintf("UPDATE %s SET v = CONCAT(v, ' moved') WHERE id = %d", tbl, b))
	},
}, {
	// Two rows take fresh unique values, then swap them across transactions through a temporary
	// value. The transaction that gives x its value and the one that later gives the same value to
	// y touch different rows: applied in the wrong order, the REPLACE of x (the older holder)
	// deletes y, and nothing rewrites it.
	name: "unique secondary swap",
	ddl:  "CREATE TABLE %s (id INT PRIMARY KEY, u INT NOT NULL, UNIQUE KEY (u))",
	seed: "INSERT INTO %s SELECT seq, seq FROM seq_1_to_2000",
	cycle: func(ctx context.Context, db *sql.DB, tbl string, p, r int) error {
		x, y := rowOf(p, 2*r), rowOf(p, 2*r+1)
		a, b := 10_000_000+p*100_000+2*r, 10_000_000+p*100_000+2*r+1
		return txns(ctx, db,
			fmt.Sprintf("UPDATE %s SET u = %d WHERE id = %d", tbl, a, x),  // x takes a
			fmt.Sprintf("UPDATE %s SET u = %d WHERE id = %d", tbl, b, y),  // y takes b
			fmt.Sprintf("UPDATE %s SET u = %d WHERE id = %d", tbl, -a, x), // x: a -> temporary
			fmt.Sprintf("UPDATE %s SET u = %d WHERE id = %d", tbl, a, y),  // y: b -> a
			fmt.Sprintf("UPDATE %s SET u = %d WHERE id = %d", tbl, b, x))  // x: temporary -> b
	},
}, {
	// A row is deleted and a new row with the same key is inserted, then changed.
	name: "delete and re-insert",
	ddl:  "CREATE TABLE %s (id INT PRIMARY KEY, u INT NOT NULL, v INT NOT NULL, UNIQUE KEY (u))",
	seed: "INSERT INTO %s SELECT seq, seq, 0 FROM seq_1_to_2000",
	cycle: func(ctx context.Context, db *sql.DB, tbl string, p, r int) error {
		id := rowOf(p, r)
		return txns(ctx, db,
			fmt.Sprintf("DELETE FROM %s WHERE id = %d", tbl, id),
			fmt.Sprintf("INSERT INTO %s VALUES (%d, %d, %d)", tbl, id, id, r),
			fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = %d", tbl, id))
	},
}, {
	// A case-insensitive unique key: 'name-x' and 'NAME-X' are the same value. One row takes the
	// lower-case value, gives it up, and another row takes the upper-case one.
	name: "case-insensitive unique handoff",
	ddl:  "CREATE TABLE %s (id INT PRIMARY KEY, name VARCHAR(40) COLLATE utf8mb4_general_ci NOT NULL, UNIQUE KEY (name))",
	seed: "INSERT INTO %s SELECT seq, CONCAT('seed-', seq) FROM seq_1_to_2000",
	cycle: func(ctx context.Context, db *sql.DB, tbl string, p, r int) error {
		x, y := rowOf(p, 2*r), rowOf(p, 2*r+1)
		v := fmt.Sprintf("name-%d-%d", p, r)
		return txns(ctx, db,
			fmt.Sprintf("UPDATE %s SET name = '%s' WHERE id = %d", tbl, v, x),
			fmt.Sprintf("UPDATE %s SET name = CONCAT('gone-', id, '-%d') WHERE id = %d", tbl, r, x),
			fmt.Sprintf("UPDATE %s SET name = UPPER('%s') WHERE id = %d", tbl, v, y))
	},
}}

// The parallel apply (8 workers) applies a backlog of conflicting transactions — same-row chains,
// primary-key moves, unique secondary swaps, delete and re-insert, a case-insensitive unique key —
// while the copy of the same tables runs, then keeps up with the rest of the load; every row of
// every table equals the source's at the end.
func TestParallelApplyKeepsConflictingTransactionsInOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const db = "papply"
	setup := []string{"DROP DATABASE IF EXISTS " + db, "CREATE DATABASE " + db, "USE " + db}
	for i, s := range parallelScenarios {
		tbl := fmt.Sprintf("%s.s%d", db, i)
		setup = append(setup, fmt.Sprintf(s.ddl, tbl), fmt.Sprintf(s.seed, tbl))
	}
	// A bigger table keeps the copy busy while the backlog is applied.
	setup = append(setup, "CREATE TABLE "+db+".bulk (id INT PRIMARY KEY, v VARCHAR(60) NOT NULL)",
		"INSERT INTO "+db+".bulk SELECT seq, REPEAT('b', 50) FROM seq_1_to_60000")
	must(t, source.Exec(ctx, setup...))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))

	f, err := ferry.New(ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{db}},
		BatchSize: 500, CopyWorkers: 2, ApplyWorkers: 8, ApplyBatchSize: 200, CreateTargetTables: true, Logger: testLogger(t)})
	must(t, err)
	defer f.Close()
	must(t, f.Initialize(ctx))
	must(t, f.Start(ctx))
	w, ok := f.BinlogWriter.(*ferry.TargetBinlogWriter)
	if !ok {
		t.Fatalf("binlog writer is %T", f.BinlogWriter)
	}
	hold := &holdApply{}
	hold.held.Store(true)
	w.Throttler = hold
	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx) }()

	srcDB, err := source.DB(db)
	must(t, err)
	defer srcDB.Close()
	srcDB.SetMaxOpenConns(16)
	// Every scenario, 8 partitions each on its own connection; rounds 0..rounds-1. The first half
	// is generated while the apply is held, the second while it runs.
	const rounds = 40
	load := func(from, to int) {
		var wg sync.WaitGroup
		for i, s := range parallelScenarios {
			for p := 0; p < 8; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for r := from; r < to; r++ {
						if err := s.cycle(ctx, srcDB, fmt.Sprintf("s%d", i), p, r); err != nil {
							t.Errorf("%s: %v", s.name, err)
							return
						}
					}
				}()
			}
		}
		wg.Wait()
	}
	load(0, rounds/2)
	// The backlog is what the stream has handed over: on a quiet machine the load can finish
	// before the stream has read it, so wait until the stream has read up to the source's
	// position of now, or the writer's queue holds enough (when it is full the stream waits).
	pos, err := ferry.CurrentPosition(ctx, srcDB, f.SourceFlavor)
	must(t, err)
	const enough = 1000
	for deadline := time.Now().Add(time.Minute); w.Backlog() < enough && f.BinlogStreamer.Position().Compare(pos) < 0; {
		if time.Now().After(deadline) {
			t.Fatalf("the stream did not reach the source's %s within a minute (at %s, backlog %d)", pos, f.BinlogStreamer.Position(), w.Backlog())
		}
		time.Sleep(10 * time.Millisecond)
	}
	held := w.Backlog()
	hold.held.Store(false)
	load(rounds/2, rounds)
	must(t, f.WaitUntilRowCopyIsComplete(ctx))
	must(t, f.FlushBinlogAndStopStreaming(ctx))
	must(t, <-errc)
	t.Logf("backlog when the apply was released: %d batches; events applied: %d; deadlocks between workers rerun: %d", held, w.EventsApplied(), w.DeadlocksRerun())
	if held < enough {
		t.Errorf("only %d batches queued while the apply was held: the workers never met a backlog", held)
	}
	for i, s := range parallelScenarios {
		t.Run(s.name, func(t *testing.T) {
			tbl := fmt.Sprintf("%s.s%d", db, i)
			assertSameRows(t, tbl, "", tbl)
		})
	}
	assertSameRows(t, db+".bulk", "", db+".bulk")
}

// A failure in one parallel worker stops the run: Run returns the apply's error, naming what
// failed, while the other workers had work queued.
func TestParallelApplyErrorStopsRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const db = "papplyerr"
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db, "USE "+db,
		"CREATE TABLE "+db+".a (id INT PRIMARY KEY, n INT NOT NULL)", "INSERT INTO "+db+".a SELECT seq, 0 FROM seq_1_to_1000",
		"CREATE TABLE "+db+".b (id INT PRIMARY KEY, n INT NOT NULL)", "INSERT INTO "+db+".b SELECT seq, 0 FROM seq_1_to_1000"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
	f, err := ferry.New(ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{db}},
		ApplyWorkers: 4, MaxRetries: 2, CreateTargetTables: true, Logger: testLogger(t)})
	must(t, err)
	defer f.Close()
	must(t, f.Initialize(ctx))
	must(t, f.Start(ctx))
	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx) }()
	must(t, f.WaitUntilRowCopyIsComplete(ctx))
	must(t, target.Exec(ctx, "DROP TABLE "+db+".b")) // every apply transaction on b fails
	srcDB, err := source.DB(db)
	must(t, err)
	defer srcDB.Close()
	// Work for the other workers, then the failing transaction last: the stream is idle when it
	// fails, so Run returns only if the failure itself stops the writer.
	for i := 1; i <= 200; i++ {
		must(t, txns(ctx, srcDB, fmt.Sprintf("UPDATE a SET n = n + 1 WHERE id = %d", i)))
	}
	must(t, txns(ctx, srcDB, "UPDATE b SET n = n + 1 WHERE id = 1"))
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "papplyerr") {
			t.Fatalf("Run returned %v, want the apply's error naming the table", err)
		}
		t.Logf("Run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after an apply worker failed")
	}
}
