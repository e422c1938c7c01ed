package test

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

// fkaSchema: customers keyed by id with a unique case-insensitive code; orders cascade-deleted with
// their customer and order lines with their order (two levels); coupons set to NULL when their
// customer goes; tags follow a customer's code (ON UPDATE CASCADE, also for a change of case only)
// and are set to NULL when the customer goes.
var fkaSchema = []string{
	"CREATE TABLE %[1]s.customers (id INT PRIMARY KEY, code VARCHAR(20) COLLATE utf8mb4_general_ci NOT NULL, name VARCHAR(40), UNIQUE KEY (code))",
	"CREATE TABLE %[1]s.orders (id INT PRIMARY KEY, customer_id INT NOT NULL, note VARCHAR(40), KEY (customer_id), CONSTRAINT o_c FOREIGN KEY (customer_id) REFERENCES %[1]s.customers (id) ON DELETE CASCADE)",
	"CREATE TABLE %[1]s.order_items (order_id INT NOT NULL, line INT NOT NULL, qty INT, PRIMARY KEY (order_id, line), CONSTRAINT i_o FOREIGN KEY (order_id) REFERENCES %[1]s.orders (id) ON DELETE CASCADE)",
	"CREATE TABLE %[1]s.coupons (id INT PRIMARY KEY, customer_id INT NULL, value INT, CONSTRAINT cp_c FOREIGN KEY (customer_id) REFERENCES %[1]s.customers (id) ON DELETE SET NULL)",
	"CREATE TABLE %[1]s.tags (id INT PRIMARY KEY, customer_code VARCHAR(20) COLLATE utf8mb4_general_ci NULL, tag VARCHAR(20), KEY (customer_code), CONSTRAINT t_c FOREIGN KEY (customer_code) REFERENCES %[1]s.customers (code) ON UPDATE CASCADE ON DELETE SET NULL)",
	"INSERT INTO %[1]s.customers SELECT seq, CONCAT('cust', seq), CONCAT('Customer ', seq) FROM mysql.seq_1_to_300",
	"INSERT INTO %[1]s.orders SELECT seq, 1 + seq %% 300, CONCAT('order ', seq) FROM mysql.seq_1_to_1200",
	"INSERT INTO %[1]s.order_items SELECT o.seq, l.seq, o.seq * l.seq FROM mysql.seq_1_to_1200 o JOIN mysql.seq_1_to_2 l",
	"INSERT INTO %[1]s.coupons SELECT seq, 1 + seq %% 300, seq FROM mysql.seq_1_to_300",
	"INSERT INTO %[1]s.tags SELECT seq, CONCAT(IF(seq %% 2, 'CUST', 'cust'), 1 + seq %% 300), CONCAT('tag', seq) FROM mysql.seq_1_to_600",
}

var fkaTables = []string{"customers", "orders", "order_items", "coupons", "tags"}

// With ApplyForeignKeyCascades, ferry carries out on the target what the source's cascades did:
// under a load that deletes customers (two levels of ON DELETE CASCADE, and SET NULL), re-keys
// their codes (ON UPDATE CASCADE, including case-only changes under a _ci collation), re-creates
// deleted ids and deletes orders directly, all while the tables are being copied, every table ends
// byte-identical. Without ferry carrying out the cascades the same run leaves orphans.
func TestApplyForeignKeyCascadesUnderWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const db = "fka"
	stmts := []string{"DROP DATABASE IF EXISTS " + db, "CREATE DATABASE " + db}
	for _, s := range fkaSchema {
		stmts = append(stmts, fmt.Sprintf(s, db))
	}
	must(t, source.Exec(ctx, stmts...))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))

	pool, err := source.DB(db)
	must(t, err)
	defer pool.Close()
	var stop atomic.Bool
	var wg sync.WaitGroup
	var commits, errs atomic.Int64
	var firstErr atomic.Value
	nextID := atomic.Int64{}
	nextID.Store(10000)
	for w := 0; w < 3; w++ {
		rng := rand.New(rand.NewSource(int64(w)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				time.Sleep(3 * time.Millisecond)
				c := 1 + rng.Intn(300)
				var q []string
				switch rng.Intn(7) {
				case 0: // delete a customer: its orders and their lines go, coupons and tags lose it
					q = []string{fmt.Sprintf("DELETE FROM customers WHERE id = %d", c)}
				case 1: // re-create a deleted customer with an order
					q = []string{fmt.Sprintf("INSERT IGNORE INTO customers VALUES (%d, 'cust%d', 'back')", c, c),
						fmt.Sprintf("INSERT IGNORE INTO orders SELECT %d, id, 'new' FROM customers WHERE id = %d", nextID.Add(1), c)}
				case 2: // re-key a code: tags follow; sometimes only the case changes
					q = []string{fmt.Sprintf("UPDATE IGNORE customers SET code = IF(code = BINARY UPPER(code), LOWER(code), UPPER(code)) WHERE id = %d", c)}
					if rng.Intn(2) == 0 {
						q = []string{fmt.Sprintf("UPDATE IGNORE customers SET code = CONCAT(code, 'x') WHERE id = %d", c)}
					}
				case 3: // delete an order directly: its lines go
					q = []string{fmt.Sprintf("DELETE FROM orders WHERE id = %d", 1+rng.Intn(1200))}
				case 4: // move an order to another customer, add a line
					o := 1 + rng.Intn(1200)
					q = []string{fmt.Sprintf("UPDATE IGNORE orders SET customer_id = %d WHERE id = %d AND EXISTS (SELECT 1 FROM customers WHERE id = %d)", c, o, c),
						fmt.Sprintf("INSERT IGNORE INTO order_items SELECT id, 3, 7 FROM orders WHERE id = %d", o)}
				case 5: // a coupon and a tag for a customer that exists
					q = []string{fmt.Sprintf("INSERT INTO coupons SELECT %d, id, 5 FROM customers WHERE id = %d", nextID.Add(1), c),
						fmt.Sprintf("INSERT INTO tags SELECT %d, code, 'new' FROM customers WHERE id = %d", nextID.Add(1), c)}
				case 6: // a transaction rolled back after a cascade
					q = []string{"BEGIN", fmt.Sprintf("DELETE FROM customers WHERE id = %d", c), "ROLLBACK"}
				}
				if _, err := pool.Exec(strings.Join(q, ";")); err != nil && !appExpected(err) {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				commits.Add(1)
			}
		}()
	}
	defer func() { stop.Store(true); wg.Wait() }()
	time.Sleep(200 * time.Millisecond)

	f, err := ferry.New(ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{db}},
		CreateTargetTables: true, ApplyForeignKeyCascades: true, BatchSize: 50, CopyWorkers: 2, Logger: testLogger(t)})
	must(t, err)
	defer f.Close()
	must(t, f.Initialize(ctx))
	must(t, f.Start(ctx))
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()
	must(t, f.WaitUntilRowCopyIsComplete(ctx))
	time.Sleep(time.Second) // the load goes on against the streaming copy
	stop.Store(true)
	wg.Wait()
	must(t, f.FlushBinlogAndStopStreaming(ctx))
	must(t, <-runErr)
	t.Logf("load: %d statements, %d unexpected errors (first: %v)", commits.Load(), errs.Load(), firstErr.Load())
	if errs.Load() > 0 {
		t.Errorf("unexpected load errors: %v", firstErr.Load())
	}
	deleted := 300 - count(t, source, "SELECT COUNT(*) FROM "+db+".customers WHERE id <= 300")
	if deleted < 10 {
		t.Errorf("only %d customers deleted: the load did not exercise the cascades", deleted)
	}
	for _, tb := range fkaTables {
		assertSameRows(t, db+"."+tb, "", db+"."+tb)
	}
}

// Shapes ferry cannot carry out exactly are refused by name even with ApplyForeignKeyCascades.
func TestApplyForeignKeyCascadesRefusesInexactShapes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS fkx", "DROP DATABASE IF EXISTS fkx_other", "CREATE DATABASE fkx", "CREATE DATABASE fkx_other",
		"CREATE TABLE fkx_other.p (id INT PRIMARY KEY)",
		"CREATE TABLE fkx.p (id INT PRIMARY KEY)",
		"CREATE TABLE fkx.outside (id INT PRIMARY KEY, p INT, CONSTRAINT outside_p FOREIGN KEY (p) REFERENCES fkx_other.p (id) ON DELETE CASCADE)",
		"CREATE TABLE fkx.keyed (p INT NOT NULL, n INT NOT NULL, PRIMARY KEY (p, n), CONSTRAINT keyed_p FOREIGN KEY (p) REFERENCES fkx.p (id) ON UPDATE CASCADE)",
		"CREATE TABLE fkx.tree (id INT PRIMARY KEY, parent INT NULL, CONSTRAINT tree_parent FOREIGN KEY (parent) REFERENCES fkx.tree (id) ON DELETE CASCADE)",
		"CREATE TABLE fkx.fine (id INT PRIMARY KEY, p INT, CONSTRAINT fine_p FOREIGN KEY (p) REFERENCES fkx.p (id) ON DELETE CASCADE)"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS fkx"))
	f, err := ferry.New(ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{"fkx"}},
		CreateTargetTables: true, ApplyForeignKeyCascades: true, Logger: testLogger(t)})
	must(t, err)
	defer f.Close()
	err = f.Initialize(ctx)
	assertRefusal(t, err, "AllowForeignKeyCascades", []string{
		"fkx.outside.outside_p (ON DELETE CASCADE from fkx_other.p, not selected): its parent table is not selected",
		"fkx.keyed.keyed_p (ON UPDATE CASCADE from fkx.p): ON UPDATE CASCADE changes columns of the child's unique key PRIMARY",
		"ON DELETE CASCADE chains loop through fkx.tree"}, []string{"fine_p"})
	if n := count(t, target, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'fkx'"); n != 0 {
		t.Fatal("the refusal came after writing: the target database was created")
	}
}
