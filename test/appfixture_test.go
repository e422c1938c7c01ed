package test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// appSchema is a small application shaped like real ones: tenants keyed by a string code, customers
// with GEOMETRY columns and a FULLTEXT index, orders keyed by id with ENUM/SET columns, order lines
// and BLOB attachments under foreign keys (three of them cascading, two levels deep), an activity log keyed by
// DATETIME(6), and an audit table; appObjects adds triggers (one writes the audit table), a view,
// a procedure, a function and an event.
var appSchema = []string{
	`CREATE TABLE %[1]s.tenants (code VARCHAR(16) NOT NULL PRIMARY KEY, name VARCHAR(100) NOT NULL,
		plan ENUM('free','pro','enterprise') NOT NULL DEFAULT 'free', features SET('sso','audit','api','export') NOT NULL DEFAULT '')`,
	`CREATE TABLE %[1]s.customers (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, tenant VARCHAR(16) NOT NULL, email VARCHAR(190) NOT NULL,
		name VARCHAR(100) NOT NULL, bio TEXT, location POINT NULL, area GEOMETRY NULL, created_at DATETIME NOT NULL,
		UNIQUE KEY uq_email (tenant, email), FULLTEXT KEY ft_profile (name, bio),
		CONSTRAINT fk_customers_tenant FOREIGN KEY (tenant) REFERENCES %[1]s.tenants (code))`,
	`CREATE TABLE %[1]s.orders (id BIGINT NOT NULL PRIMARY KEY, tenant VARCHAR(16) NOT NULL, customer_id INT NOT NULL,
		status ENUM('new','paid','shipped','cancelled') NOT NULL DEFAULT 'new', flags SET('gift','express','fragile') NOT NULL DEFAULT '',
		placed_at DATETIME(6) NOT NULL, total DECIMAL(12,2) NOT NULL DEFAULT 0, note VARCHAR(200), KEY (customer_id),
		CONSTRAINT fk_orders_customer FOREIGN KEY (customer_id) REFERENCES %[1]s.customers (id) ON DELETE CASCADE)`,
	`CREATE TABLE %[1]s.order_items (order_id BIGINT NOT NULL, line INT NOT NULL, sku VARCHAR(32) NOT NULL, qty INT NOT NULL,
		price DECIMAL(10,2) NOT NULL, PRIMARY KEY (order_id, line),
		CONSTRAINT fk_items_order FOREIGN KEY (order_id) REFERENCES %[1]s.orders (id) ON DELETE CASCADE)`,
	`CREATE TABLE %[1]s.attachments (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, order_id BIGINT NOT NULL, mime VARCHAR(50) NOT NULL,
		body MEDIUMBLOB NOT NULL, CONSTRAINT fk_attachments_order FOREIGN KEY (order_id) REFERENCES %[1]s.orders (id) ON DELETE CASCADE)`,
	`CREATE TABLE %[1]s.activity (happened_at DATETIME(6) NOT NULL, seq INT NOT NULL, tenant VARCHAR(16) NOT NULL,
		kind VARCHAR(20) NOT NULL, detail VARCHAR(200), PRIMARY KEY (happened_at, seq))`,
	`CREATE TABLE %[1]s.audit (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, order_id BIGINT NOT NULL, old_status VARCHAR(20),
		new_status VARCHAR(20), at DATETIME(6) NOT NULL)`,
}

// appObjects are created after appData (a trigger on order_items that updates orders cannot run
// under INSERT ... SELECT FROM orders).
var appObjects = []string{
	`CREATE TRIGGER %[1]s.customers_email BEFORE INSERT ON %[1]s.customers FOR EACH ROW SET NEW.email = LOWER(NEW.email)`,
	`CREATE TRIGGER %[1]s.items_total AFTER INSERT ON %[1]s.order_items FOR EACH ROW
		UPDATE %[1]s.orders SET total = total + NEW.qty * NEW.price WHERE id = NEW.order_id`,
	`CREATE TRIGGER %[1]s.orders_status_audit AFTER UPDATE ON %[1]s.orders FOR EACH ROW BEGIN
		IF NEW.status <> OLD.status THEN INSERT INTO %[1]s.audit (order_id, old_status, new_status, at) VALUES (NEW.id, OLD.status, NEW.status, NOW(6)); END IF;
	END`,
	`CREATE VIEW %[1]s.order_totals AS SELECT o.tenant, o.id, o.total, COUNT(i.line) AS line_count
		FROM %[1]s.orders o LEFT JOIN %[1]s.order_items i ON i.order_id = o.id GROUP BY o.id`,
	`CREATE PROCEDURE %[1]s.place_order(IN p_id BIGINT, IN p_customer INT, IN p_sku VARCHAR(32)) BEGIN
		INSERT INTO orders (id, tenant, customer_id, placed_at) SELECT p_id, tenant, p_customer, NOW(6) FROM customers WHERE id = p_customer;
		IF ROW_COUNT() > 0 THEN INSERT INTO order_items VALUES (p_id, 1, p_sku, 1, 9.99); END IF;
	END`,
	`CREATE FUNCTION %[1]s.order_lines(p_id BIGINT) RETURNS INT READS SQL DATA RETURN (SELECT COUNT(*) FROM %[1]s.order_items WHERE order_id = p_id)`,
	`CREATE EVENT %[1]s.purge_activity ON SCHEDULE EVERY 1 HOUR DO DELETE FROM %[1]s.activity WHERE happened_at < NOW() - INTERVAL 90 DAY`,
}

var appTables = []string{"tenants", "customers", "orders", "order_items", "attachments", "activity", "audit"}

// appData fills the schema: 5 tenants, 500 customers (orders only for the first 400, so the others
// can be re-keyed), 2,000 orders with 4,000 lines (their totals kept by the trigger), 200
// attachments up to ~10 KB, 1,000 activity rows.
var appData = []string{
	`INSERT INTO %[1]s.tenants VALUES ('acme', 'Acme', 'pro', 'sso,api'), ('globex', 'Globex', 'enterprise', 'sso,audit,api,export'),
		('initech', 'Initech', 'free', ''), ('umbrella', 'Umbrella', 'pro', 'audit'), ('hooli', 'Hooli', 'enterprise', 'api')`,
	`INSERT INTO %[1]s.customers (id, tenant, email, name, bio, location, area, created_at)
		SELECT seq, ELT(1 + seq %% 5, 'acme', 'globex', 'initech', 'umbrella', 'hooli'), CONCAT('User', seq, '@Example.COM'),
			CONCAT('Customer ', seq), REPEAT(CONCAT('bio ', seq, ' ünïcødé 😀 '), 1 + seq %% 5),
			IF(seq %% 7 = 0, NULL, POINT(seq / 10, -seq / 7)),
			IF(seq %% 3 = 0, ST_GeomFromText(CONCAT('POLYGON((0 0, ', seq, ' 0, ', seq, ' ', seq, ', 0 0))')), NULL),
			'2020-01-01' + INTERVAL seq HOUR
		FROM mysql.seq_1_to_500`,
	`INSERT INTO %[1]s.orders (id, tenant, customer_id, status, flags, placed_at, note)
		SELECT seq, c.tenant, c.id, ELT(1 + seq %% 4, 'new', 'paid', 'shipped', 'cancelled'), ELT(1 + seq %% 3, '', 'gift', 'gift,express'),
			'2023-01-01 00:00:00' + INTERVAL seq * 37 MINUTE + INTERVAL seq MICROSECOND, IF(seq %% 5 = 0, NULL, CONCAT('note ', seq))
		FROM mysql.seq_1_to_2000 JOIN %[1]s.customers c ON c.id = 1 + seq %% 400`,
	`INSERT INTO %[1]s.order_items SELECT o.id, l.seq, CONCAT('SKU-', (o.id * 7 + l.seq) %% 300), 1 + l.seq %% 4, 1.25 * l.seq
		FROM %[1]s.orders o JOIN mysql.seq_1_to_2 l`,
	`INSERT INTO %[1]s.attachments (order_id, mime, body)
		SELECT seq * 10, 'application/octet-stream', REPEAT(UNHEX(SHA2(seq, 256)), 1 + seq %% 300) FROM mysql.seq_1_to_200`,
	`INSERT INTO %[1]s.activity SELECT '2024-03-31 00:00:00' + INTERVAL (seq DIV 3) MINUTE + INTERVAL seq MICROSECOND, seq,
		ELT(1 + seq %% 5, 'acme', 'globex', 'initech', 'umbrella', 'hooli'), ELT(1 + seq %% 3, 'login', 'export', 'invite'), CONCAT('detail ', seq)
		FROM mysql.seq_1_to_1000`,
	`UPDATE %[1]s.orders o SET total = (SELECT SUM(qty * price) FROM %[1]s.order_items i WHERE i.order_id = o.id)`,
}

// appLoad runs the application's transactions until stopped.
type appLoad struct {
	db                         string
	cancel                     context.CancelFunc
	wg                         sync.WaitGroup
	commits, rollbacks, errs   atomic.Int64
	nextOrder, nextCust, nextA atomic.Int64
	first                      atomic.Value
}

func startAppLoad(t *testing.T, db string, workers int) *appLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &appLoad{db: db, cancel: cancel}
	l.nextOrder.Store(100000)
	l.nextCust.Store(100000)
	l.nextA.Store(1 << 20)
	pool, err := source.DB(db)
	must(t, err)
	pool.SetMaxOpenConns(workers)
	for w := 0; w < workers; w++ {
		rng := rand.New(rand.NewSource(int64(w) + 42))
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(time.Second / 100)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if err := l.one(ctx, pool, rng); err != nil && ctx.Err() == nil && !appExpected(err) {
					l.errs.Add(1)
					l.first.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	t.Cleanup(func() { l.stop(); pool.Close() })
	return l
}

func (l *appLoad) stop() { l.cancel(); l.wg.Wait() }

// appExpected: duplicate keys, foreign-key refusals, deadlocks and lock waits are part of an
// application's life.
func appExpected(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1062, 1451, 1452, 1213, 1205:
			return true
		}
	}
	return false
}

var tenantCodes = []string{"acme", "globex", "initech", "umbrella", "hooli"}

func (l *appLoad) one(ctx context.Context, db *sql.DB, rng *rand.Rand) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	exec := func(q string, args ...any) error {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	}
	order := 1 + rng.Int63n(2000)
	switch op := rng.Intn(11); op {
	case 0, 1: // a new order with lines and sometimes an attachment; one in ten rolled back
		id := l.nextOrder.Add(1)
		cust := 1 + rng.Intn(400)
		if err := exec("INSERT INTO orders (id, tenant, customer_id, status, flags, placed_at, note) SELECT ?, tenant, id, 'new', ?, NOW(6), ? FROM customers WHERE id = ?",
			id, []string{"", "express", "gift,fragile"}[rng.Intn(3)], fmt.Sprintf("live order %d ✓", id), cust); err != nil {
			return err
		}
		for line := 1; line <= 1+rng.Intn(3); line++ {
			if err := exec("INSERT INTO order_items VALUES (?, ?, ?, ?, ?)", id, line, fmt.Sprintf("SKU-%d", rng.Intn(300)), 1+rng.Intn(5), fmt.Sprintf("%d.%02d", rng.Intn(100), rng.Intn(100))); err != nil {
				return err
			}
		}
		if rng.Intn(3) == 0 {
			body := make([]byte, rng.Intn(20000))
			rng.Read(body)
			if err := exec("INSERT INTO attachments (order_id, mime, body) VALUES (?, 'image/png', ?)", id, body); err != nil {
				return err
			}
		}
		if rng.Intn(10) == 0 {
			l.rollbacks.Add(1)
			return tx.Rollback()
		}
	case 2: // status change: the trigger writes the audit row
		if err := exec("UPDATE orders SET status = ?, flags = ? WHERE id = ? OR id = ?", []string{"paid", "shipped", "cancelled"}[rng.Intn(3)],
			[]string{"", "gift", "express,fragile"}[rng.Intn(3)], order, l.nextOrder.Load()-int64(rng.Intn(20))); err != nil {
			return err
		}
	case 3: // delete an order the way the application does: its children first, so no cascade acts
		for _, q := range []string{"DELETE FROM attachments WHERE order_id = ?", "DELETE FROM order_items WHERE order_id = ?", "DELETE FROM orders WHERE id = ?"} {
			if err := exec(q, order); err != nil {
				return err
			}
		}
	case 4: // profile edit: FULLTEXT and GEOMETRY columns
		if err := exec("UPDATE customers SET bio = CONCAT(LEFT(bio, 200), ' más'), location = POINT(?, ?), area = IF(? , NULL, ST_GeomFromText('LINESTRING(0 0, 1 1, 2 0)')) WHERE id = ?",
			rng.Float64()*180-90, rng.Float64()*360-180, rng.Intn(2) == 0, 1+rng.Intn(500)); err != nil {
			return err
		}
	case 5: // a customer moves to another tenant, with its orders (string tenant column, two tables)
		cust, to := 1+rng.Intn(400), tenantCodes[rng.Intn(len(tenantCodes))]
		if err := exec("UPDATE customers SET tenant = ? WHERE id = ?", to, cust); err != nil {
			return err
		}
		if err := exec("UPDATE orders SET tenant = ? WHERE customer_id = ?", to, cust); err != nil {
			return err
		}
	case 6: // key changes: an activity row's DATETIME key, an order line's number, a customer's id
		if err := exec("UPDATE activity SET happened_at = happened_at + INTERVAL 1 DAY WHERE seq = ? ORDER BY happened_at LIMIT 1", rng.Intn(1000)); err != nil {
			return err
		}
		if err := exec("UPDATE order_items SET line = line + 10 WHERE order_id = ? AND line = 1", order); err != nil {
			return err
		}
		if err := exec("UPDATE customers SET id = ? WHERE id = ?", l.nextCust.Add(1), 401+rng.Intn(100)); err != nil {
			return err
		}
	case 7: // the application's procedure
		if err := exec("CALL place_order(?, ?, ?)", l.nextOrder.Add(1), 1+rng.Intn(400), fmt.Sprintf("SKU-%d", rng.Intn(300))); err != nil {
			return err
		}
	case 8: // activity log
		if err := exec("INSERT INTO activity VALUES (NOW(6), ?, ?, 'api', ?)", l.nextA.Add(1), tenantCodes[rng.Intn(len(tenantCodes))], fmt.Sprintf("call %d", rng.Int())); err != nil {
			return err
		}
	case 10: // a customer leaves: the source cascades to its orders, their lines and attachments
		if err := exec("DELETE FROM customers WHERE id = ?", 1+rng.Intn(400)); err != nil {
			return err
		}
	case 9: // a new customer (the trigger lower-cases the email) and a line edit
		if err := exec("INSERT INTO customers (tenant, email, name, bio, created_at) VALUES (?, ?, 'New Customer', NULL, NOW())",
			tenantCodes[rng.Intn(len(tenantCodes))], fmt.Sprintf("New%d@Example.COM", rng.Int63())); err != nil {
			return err
		}
		if err := exec("UPDATE order_items SET qty = qty + 1, price = price * 1.1 WHERE order_id = ?", order); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	l.commits.Add(1)
	return nil
}

// A realistic application database moved with copydb under its own traffic: the cascading foreign
// keys are refused by name first; then, with -apply-fk-cascades (ferry carries out the cascades of
// the customers the load deletes, two levels deep), copydb creates the tables, the view and the
// routines before the copy and the triggers and the event at the cut-over, and every table is
// byte-identical to the source.
func TestCopydbRealisticApplication(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const db = "shopapp"
	stmts := []string{"DROP DATABASE IF EXISTS " + db, "CREATE DATABASE " + db}
	for _, s := range append(append(append([]string{}, appSchema...), appData...), appObjects...) {
		stmts = append(stmts, fmt.Sprintf(s, db))
	}
	must(t, source.Exec(ctx, stmts...))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
	t.Cleanup(func() { source.Exec(context.Background(), "SET GLOBAL read_only = 0") })
	bin := rsBuildCopydb(t, t.TempDir())

	out, code := runCopydb(t, ctx, bin, "-databases", db, "-create-tables", "-create-objects", "all")
	for _, want := range []string{"shopapp.orders.fk_orders_customer (ON DELETE CASCADE from shopapp.customers)",
		"shopapp.order_items.fk_items_order (ON DELETE CASCADE from shopapp.orders)",
		"shopapp.attachments.fk_attachments_order (ON DELETE CASCADE from shopapp.orders)", "-apply-fk-cascades", "-allow-fk-cascades"} {
		if code != 1 || !strings.Contains(out, want) {
			t.Fatalf("copydb exit %d; want 1 and a refusal naming %q:\n%s", code, want, out)
		}
	}
	for _, notWant := range []string{"fk_customers_tenant"} {
		if strings.Contains(out, notWant) {
			t.Errorf("the refusal names %s, which does not cascade", notWant)
		}
	}
	if n := count(t, target, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '"+db+"'"); n != 0 {
		t.Fatal("copydb wrote to the target before refusing")
	}

	load := startAppLoad(t, db, 3)
	time.Sleep(300 * time.Millisecond)
	r := rsStartCopydb(t, bin, copydbArgs("-databases", db, "-create-tables", "-create-objects", "all", "-apply-fk-cascades",
		"-cutover", "wait", "-verify", "checksum", "-batch-size", "300", "-log-level", "info")...)
	rsWaitFor(t, r, time.Minute, "copydb streaming", func() bool { return strings.Contains(r.output(), "send SIGUSR1 to cut over") })
	time.Sleep(2 * time.Second) // the load goes on against the streaming copy
	load.stop()
	must(t, r.cmd.Process.Signal(syscall.SIGUSR1))
	select {
	case <-r.exited:
	case <-ctx.Done():
		t.Fatalf("copydb did not finish:\n%s", rsTailString(r.output(), 3000))
	}
	out = r.output()
	if r.err != nil || !strings.Contains(out, "cut over with writes blocked") || strings.Contains(out, "NOT created") {
		t.Fatalf("copydb: %v\n%s", r.err, rsTailString(out, 4000))
	}
	t.Logf("load: %d commits, %d rollbacks, %d unexpected errors (first: %v)", load.commits.Load(), load.rollbacks.Load(), load.errs.Load(), load.first.Load())
	if load.errs.Load() > 0 {
		t.Errorf("the load hit unexpected errors: %v", load.first.Load())
	}
	if load.commits.Load() < 100 || load.rollbacks.Load() == 0 {
		t.Errorf("the load ran %d commits and %d rollbacks; too few to exercise the copy", load.commits.Load(), load.rollbacks.Load())
	}
	if left := count(t, source, "SELECT COUNT(*) FROM "+db+".customers WHERE id <= 400"); left == 400 {
		t.Error("no customer with orders was deleted: the cascades were not exercised")
	}
	for _, tb := range appTables {
		if n := assertSameRows(t, db+"."+tb, "", db+"."+tb); n == 0 {
			t.Errorf("%s: no rows compared", tb)
		}
	}
	objs := targetObjects(t, db)
	for _, o := range []string{"view order_totals", "procedure place_order", "function order_lines", "event purge_activity",
		"trigger customers_email", "trigger items_total", "trigger orders_status_audit"} {
		if !objs[o] {
			t.Errorf("%s is not on the target", o)
		}
	}
	// The target enforces what the source did: the triggers work after the cut-over.
	order := count(t, target, "SELECT MIN(id) FROM "+db+".orders WHERE status <> 'paid'")
	must(t, target.Exec(ctx, fmt.Sprintf("UPDATE %s.orders SET status = 'paid' WHERE id = %d", db, order)))
	if n := count(t, target, fmt.Sprintf("SELECT COUNT(*) FROM %s.audit WHERE order_id = %d AND new_status = 'paid' AND at > NOW() - INTERVAL 1 MINUTE", db, order)); n != 1 {
		t.Errorf("the status trigger on the target wrote %d audit rows, want 1", n)
	}
}
