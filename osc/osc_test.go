package osc

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry/internal/retry"
	"github.com/ferrykit/ferry/throttler"
)

// run migrates f's table under a write load and checks the result against the twin.
func runUnderLoad(t *testing.T, f *fixture, m *Migration, expectAlter string) *Result {
	t.Helper()
	t.Logf("fixture ready after %s", time.Since(f.start).Round(time.Millisecond))
	l := f.startLoad(3)
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := m.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // writes go on after the cut-over, into the new table
	l.stop()
	l.check(t)
	for i, d := range res.WriteBlocked {
		t.Logf("cut-over attempt %d: writes blocked %s", i+1, d.Round(time.Microsecond))
	}
	t.Logf("plan: %s; rows copied %d, events applied %d, elapsed %s", res.Plan, res.RowsCopied, res.EventsApplied, res.Elapsed.Round(time.Millisecond))
	t0 := time.Now()
	f.expect(expectAlter)
	t.Logf("checked in %s", time.Since(t0).Round(time.Millisecond))
	tt := f.tables()
	sort.Strings(tt)
	tables := strings.Join(tt, ",")
	if tables != "t,t_del,twin" {
		t.Errorf("tables after the migration: %s, want t,t_del,twin", tables)
	}
	return res
}

func TestAddColumn200k(t *testing.T) {
	f := newFixture(t, 200_000)
	alter := "ADD COLUMN x INT NOT NULL DEFAULT 7, ADD COLUMN y VARCHAR(10) NULL"
	m := f.migration(alter)
	var statuses int
	m.OnStatus = func(s Status) { statuses++; t.Log(s) }
	res := runUnderLoad(t, f, m, alter)
	if res.RowsCopied < 190_000 {
		t.Errorf("copied %d rows", res.RowsCopied)
	}
	if res.CutoverAttempts < 1 || len(res.WriteBlocked) != res.CutoverAttempts {
		t.Errorf("cut-over attempts %d, blocked %v", res.CutoverAttempts, res.WriteBlocked)
	}
}

// issueRows is the table size the issue asks each ALTER to be shown on (>= 200k rows).
const issueRows = 200_000

func TestModifyType(t *testing.T) {
	f := newFixture(t, issueRows)
	alter := "MODIFY a BIGINT NOT NULL DEFAULT 0, MODIFY n DECIMAL(12,3) NULL, MODIFY b VARCHAR(80) NOT NULL DEFAULT ''"
	runUnderLoad(t, f, f.migration(alter), alter)
}

func TestAddIndex(t *testing.T) {
	f := newFixture(t, issueRows)
	alter := "ADD INDEX idx_a_b (a, b)"
	runUnderLoad(t, f, f.migration(alter), alter)
}

func TestDropColumn(t *testing.T) {
	f := newFixture(t, issueRows)
	alter := "DROP COLUMN c"
	res := runUnderLoad(t, f, f.migration(alter), alter)
	if len(res.Plan.Dropped) != 1 || res.Plan.Dropped[0] != "c" {
		t.Errorf("plan dropped %v, want [c]", res.Plan.Dropped)
	}
}

func TestApprovedRename(t *testing.T) {
	f := newFixture(t, issueRows)
	alter := "CHANGE COLUMN c c2 VARCHAR(100) NULL, RENAME COLUMN d TO d2"
	m := f.migration(alter)
	m.ApprovedRenames = map[string]string{"c": "c2"}
	m.ApproveRenamedColumns = false
	// d → d2 is not approved individually: refused before any write
	_, err := m.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "renames column d to d2") {
		t.Fatalf("unapproved rename: %v", err)
	}
	if got := strings.Join(f.tables(), ","); got != "t,twin" {
		t.Fatalf("tables after a refused migration: %s", got)
	}
	alter = "CHANGE COLUMN c c2 VARCHAR(100) NULL"
	m = f.migration(alter)
	m.ApproveRenamedColumns = true
	res := runUnderLoad(t, f, m, alter)
	if res.Plan.Renamed["c"] != "c2" {
		t.Errorf("plan renamed %v", res.Plan.Renamed)
	}
}

func TestCharsetToUTF8MB4(t *testing.T) {
	f := newFixture(t, issueRows)
	alter := "CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
	res := runUnderLoad(t, f, f.migration(alter), alter)
	if len(res.Plan.CharsetChanged) != 2 {
		t.Errorf("plan charset changes %v", res.Plan.CharsetChanged)
	}
	var b string
	must(t, f.db.QueryRow("SELECT b FROM t WHERE id = 5").Scan(&b))
	if b != "bé5ñ" {
		t.Errorf("row 5: b = %q, want bé5ñ", b)
	}
}

// Killing the session that holds the cut-over lock leaves the original table intact (the sentry
// makes the queued rename fail) and the next attempt succeeds.
func TestKilledLockSession(t *testing.T) {
	f := newFixture(t, 20_000)
	alter := "ADD COLUMN x INT NULL"
	m := f.migration(alter)
	killed := 0
	m.testCutoverLocked = func(id int64) {
		if killed > 0 {
			return
		}
		killed++
		if _, err := f.db.Exec("KILL CONNECTION ?", id); err != nil {
			t.Errorf("kill %d: %v", id, err)
		}
		// the original must still be there, readable and writable once the lock is gone
		var n int
		if err := f.db.QueryRow("SELECT COUNT(*) FROM t WHERE id < 10").Scan(&n); err != nil {
			t.Errorf("original table after the kill: %v", err)
		}
		var cols int
		f.db.QueryRow("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 't'", f.name).Scan(&cols)
		if cols != 7 {
			t.Errorf("original table has %d columns after the kill, want 7", cols)
		}
	}
	res := runUnderLoad(t, f, m, alter)
	// (a busy machine may need more than one more attempt)
	if killed != 1 || res.CutoverAttempts < 2 || len(res.WriteBlocked) != res.CutoverAttempts {
		t.Errorf("killed %d, attempts %d, blocked %v; want one kill and at least two attempts", killed, res.CutoverAttempts, res.WriteBlocked)
	}
}

// refused runs a migration that must fail before writing anything.
func refused(t *testing.T, f *fixture, m *Migration, want string) {
	t.Helper()
	before := strings.Join(f.tables(), ",")
	_, err := m.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want one containing %q", err, want)
	}
	t.Log(err)
	if after := strings.Join(f.tables(), ","); after != before {
		t.Errorf("tables before %s, after the refused migration %s", before, after)
	}
}

func TestRefusals(t *testing.T) {
	f := newFixture(t, 100)
	f.exec("CREATE TABLE nokey (a INT, b INT)")
	f.exec("CREATE TABLE nullkey (a INT NULL, UNIQUE KEY (a))")

	t.Run("no key", func(t *testing.T) {
		m := f.migration("ADD COLUMN c INT")
		m.Table = "nokey"
		refused(t, f, m, "no primary key")
		m = f.migration("ADD COLUMN c INT")
		m.Table = "nullkey"
		refused(t, f, m, "no primary key")
	})
	t.Run("unapproved rename", func(t *testing.T) {
		refused(t, f, f.migration("CHANGE c c_new VARCHAR(100)"), "renames column c to c_new")
		refused(t, f, f.migration("RENAME COLUMN `c` TO `c new`"), "renames column c to c new")
	})
	t.Run("leftover ghost", func(t *testing.T) {
		f.exec("CREATE TABLE _t_gho (id INT PRIMARY KEY)")
		defer f.exec("DROP TABLE _t_gho")
		refused(t, f, f.migration("ADD COLUMN z INT"), "_t_gho` exists and nothing marks it as ferry's")
	})
	t.Run("foreign keys and triggers", func(t *testing.T) {
		f.exec("CREATE TRIGGER trg BEFORE INSERT ON t FOR EACH ROW SET NEW.a = NEW.a")
		refused(t, f, f.migration("ADD COLUMN z INT"), "trigger")
		f.exec("DROP TRIGGER trg")
		f.exec("CREATE TABLE child (id INT PRIMARY KEY, tid BIGINT, FOREIGN KEY (tid) REFERENCES t (id)) ENGINE=InnoDB")
		refused(t, f, f.migration("ADD COLUMN z INT"), "foreign key")
		f.exec("DROP TABLE child")
	})
	t.Run("table rename and ALGORITHM", func(t *testing.T) {
		refused(t, f, f.migration("RENAME TO t2"), "renames the table")
		refused(t, f, f.migration("ADD COLUMN z INT, ALGORITHM=INPLACE"), "ALGORITHM")
	})
	// These are refused after the empty ghost table was created (and dropped again).
	t.Run("not null without default", func(t *testing.T) {
		refused(t, f, f.migration("ADD COLUMN z INT NOT NULL"), "NOT NULL without a DEFAULT")
	})
	t.Run("new unique key", func(t *testing.T) {
		refused(t, f, f.migration("ADD UNIQUE KEY uk_a (a)"), "adds unique key uk_a")
		m := f.migration("ADD UNIQUE KEY uk_a (a)")
		m.AllowNewUniqueKey = true
		f.exec("UPDATE t SET a = 1 WHERE id IN (1, 2)")
		refused(t, f, m, "duplicates on the new unique key")
	})
	t.Run("primary key changed", func(t *testing.T) {
		refused(t, f, f.migration("DROP PRIMARY KEY, DROP KEY uk_u, ADD PRIMARY KEY (a, id)"), "share no usable unique key")
		f.exec("CREATE TABLE fkey (f FLOAT NOT NULL PRIMARY KEY, v INT) ENGINE=InnoDB")
		m := f.migration("ENGINE=InnoDB")
		m.Table = "fkey"
		refused(t, f, m, "cannot be used whatever the ALTER: the server orders SET, FLOAT")
	})
	t.Run("bad alter", func(t *testing.T) {
		refused(t, f, f.migration("ADD COLUMN"), "the ALTER fails on the (empty) ghost table")
	})
}

func TestDryRun(t *testing.T) {
	f := newFixture(t, 100)
	m := f.migration("ADD COLUMN z INT, DROP COLUMN c")
	m.Execute = false
	res, err := m.Run(context.Background())
	must(t, err)
	if got := strings.Join(f.tables(), ","); got != "t,twin" {
		t.Errorf("tables after a dry run: %s", got)
	}
	if len(res.Plan.Added) != 1 || len(res.Plan.Dropped) != 1 || !res.Plan.InstantPossible {
		t.Errorf("plan %s", res.Plan)
	}
}

// A new unique key, allowed: rows that collide on it during the migration make the cut-over refuse.
func TestNewUniqueKeyCollision(t *testing.T) {
	f := newFixture(t, 2000)
	m := f.migration("ADD UNIQUE KEY uk_a2 (a, b)")
	m.AllowNewUniqueKey = true
	m.Postpone = true
	m.SkipVerification = true // (it finds the collision too, before the lock: the row count is tested here)
	go func() {
		for m.Status().State != StatePostponed {
			time.Sleep(20 * time.Millisecond)
		}
		f.exec("UPDATE t SET a = 5, b = 'same' WHERE id IN (10, 11)")
		time.Sleep(300 * time.Millisecond)
		m.Unpostpone()
	}()
	_, err := m.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "collided on the new or changed unique key") {
		t.Fatalf("error %v", err)
	}
	t.Log(err)
	var cols int
	f.db.QueryRow("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 't'", f.name).Scan(&cols)
	if cols != 7 {
		t.Errorf("original table has %d columns, want 7", cols)
	}
}

// Hooks (funcs and executables), the postpone flag file and the unix-socket commands.
func TestOperability(t *testing.T) {
	t.Setenv("MYSQL_PWD", "hook-must-not-see-this") // the CLI's password source; hooks must not inherit it
	t.Setenv("FERRY_SOURCE_PASSWORD", "hook-must-not-see-this")
	f := newFixture(t, 5000)
	dir := t.TempDir()
	flag := filepath.Join(dir, "postpone")
	must(t, os.WriteFile(flag, nil, 0o644))
	envFile := filepath.Join(dir, "env")
	hook := filepath.Join(dir, "hook.sh")
	must(t, os.WriteFile(hook, []byte("#!/bin/sh\nenv | grep -E 'FERRY_|MYSQL_PWD' | sort > "+envFile+"\n"), 0o755))
	sock := filepath.Join(dir, "osc.sock")

	m := f.migration("ADD COLUMN z INT NULL")
	m.PostponeFlagFile = flag
	m.SocketPath = sock
	var mu sync.Mutex
	var points []HookPoint
	m.Hooks = Hooks{
		Func: func(ctx context.Context, p HookPoint, st Status, err error) error {
			mu.Lock()
			defer mu.Unlock()
			if p != HookStatus {
				points = append(points, p)
			}
			return nil
		},
		Commands: map[HookPoint]string{HookSuccess: hook},
		Timeout:  5 * time.Second,
	}
	done := make(chan error, 1)
	var res *Result
	go func() {
		var err error
		res, err = m.Run(context.Background())
		done <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for m.Status().State != StatePostponed {
		if time.Now().After(deadline) {
			t.Fatal("never postponed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if m.Status().State != StatePostponed {
		t.Fatalf("state %s while the flag file exists", m.Status().State)
	}
	c, err := net.Dial("unix", sock)
	must(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	ask := func(cmd string) string {
		fmt.Fprintln(c, cmd)
		line, err := r.ReadString('\n')
		must(t, err)
		return strings.TrimSpace(line)
	}
	if s := ask("status"); !strings.HasPrefix(s, "postponed: copied 5000/") {
		t.Errorf("status: %q", s)
	}
	if s := ask("chunk-size=500"); s != "chunk size 500" || m.Status().ChunkSize != 500 {
		t.Errorf("chunk-size: %q", s)
	}
	if s := ask("chunk-size=5"); !strings.HasPrefix(s, "error:") {
		t.Errorf("chunk-size=5: %q", s)
	}
	ask("throttle")
	if m.Status().Throttled == "" {
		t.Error("not throttled after the throttle command")
	}
	ask("no-throttle")
	if s := ask("bogus"); !strings.HasPrefix(s, "error: unknown command") {
		t.Errorf("bogus: %q", s)
	}
	if s := ask("cut-over"); s != "cut-over allowed" {
		t.Errorf("cut-over: %q", s)
	}
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("no cut-over after the cut-over command")
	}
	if _, err := os.Stat(flag); !os.IsNotExist(err) {
		t.Errorf("flag file still there: %v", err)
	}
	want := []HookPoint{HookStartup, HookValidated, HookRowCopyComplete, HookBeforeCutover, HookSuccess}
	if fmt.Sprint(points) != fmt.Sprint(want) {
		t.Errorf("hooks ran at %v, want %v", points, want)
	}
	env, err := os.ReadFile(envFile)
	must(t, err)
	for _, w := range []string{"FERRY_OSC_HOOK=success", "FERRY_OSC_TABLE=t", "FERRY_OSC_DATABASE=" + f.name, "FERRY_OSC_OLD_TABLE=t_del", "FERRY_OSC_ROWS_COPIED=5000"} {
		if !strings.Contains(string(env), w+"\n") {
			t.Errorf("hook environment lacks %s:\n%s", w, env)
		}
	}
	if strings.Contains(string(env), "hook-must-not-see-this") {
		t.Errorf("the hook inherited a password through its environment:\n%s", env)
	}
	t.Logf("blocked %v", res.WriteBlocked)
}

// A failing or hanging hook at a step that may abort stops the migration before the cut-over.
func TestHookAborts(t *testing.T) {
	f := newFixture(t, 100)
	dir := t.TempDir()
	slow := filepath.Join(dir, "slow.sh")
	must(t, os.WriteFile(slow, []byte("#!/bin/sh\nsleep 10\n"), 0o755))
	m := f.migration("ADD COLUMN z INT NULL")
	m.Hooks = Hooks{Commands: map[HookPoint]string{HookBeforeCutover: slow}, Timeout: 300 * time.Millisecond}
	var failed error
	m.Hooks.Func = func(ctx context.Context, p HookPoint, st Status, err error) error {
		if p == HookFailure {
			failed = err
		}
		return nil
	}
	_, err := m.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "before-cut-over hook") || !strings.Contains(err.Error(), "killed after") {
		t.Fatalf("error %v", err)
	}
	if failed == nil {
		t.Error("failure hook not run")
	}
	var cols int
	f.db.QueryRow("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 't'", f.name).Scan(&cols)
	if cols != 7 {
		t.Errorf("original table has %d columns, want 7", cols)
	}
	t.Log(err)
}

// A write that reaches the original table after the last change was applied (simulated through the
// locking session itself) is reported, not silently lost.
func TestSlippedWriteDetected(t *testing.T) {
	f := newFixture(t, 1000)
	m := f.migration("ADD COLUMN z INT NULL")
	m.testAfterMarker = func(lock *sql.Conn) {
		if _, err := lock.ExecContext(context.Background(), "UPDATE "+q(f.name)+".t SET a = a + 1 WHERE id = 1"); err != nil {
			t.Error(err)
		}
	}
	_, err := m.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "1 row change(s) reached the old table") {
		t.Fatalf("error %v", err)
	}
	t.Log(err)
}

func TestInstant(t *testing.T) {
	f := newFixture(t, 20_000)
	alter := "ADD COLUMN z INT NULL DEFAULT 3"
	m := f.migration(alter)
	m.UseInstant = true
	l := f.startLoad(2)
	time.Sleep(200 * time.Millisecond)
	res, err := m.Run(context.Background())
	must(t, err)
	time.Sleep(200 * time.Millisecond)
	l.stop()
	l.check(t)
	if !res.Instant || res.RowsCopied != 0 {
		t.Errorf("instant %v, rows copied %d", res.Instant, res.RowsCopied)
	}
	t.Logf("instant ALTER blocked writes %v", res.WriteBlocked)
	f.expect(alter)
	if got := strings.Join(f.tables(), ","); got != "t,twin" {
		t.Errorf("tables: %s", got)
	}
}

// Types that move as bytes or numbers in the binlog: ENUM/SET reordered (written by label), JSON,
// BINARY(N), BIT, FLOAT, TIMESTAMP, a latin1 TEXT turned utf8mb4, generated columns old and new.
func TestTypes(t *testing.T) {
	f := newFixture(t, 0)
	f.exec("DROP TABLE t")
	f.exec("DROP TABLE twin")
	f.exec(`CREATE TABLE t (
		id BIGINT NOT NULL PRIMARY KEY,
		e ENUM('x','y','z') NOT NULL DEFAULT 'x',
		st SET('a','b','c') NULL,
		j JSON NULL,
		bn BINARY(4) NULL,
		bt BIT(10) NULL,
		fl FLOAT NULL,
		ts TIMESTAMP(6) NULL DEFAULT NULL,
		g INT AS (id * 2) VIRTUAL,
		txt TEXT CHARACTER SET latin1 NULL
	) ENGINE=InnoDB`)
	f.exec(`INSERT INTO t (id, e, st, j, bn, bt, fl, ts, txt) SELECT seq, ELT(1 + seq % 3, 'x','y','z'), IF(seq % 4 = 0, NULL, 'a,c'),
		JSON_OBJECT('n', seq, 'f', 1.0), UNHEX(IF(seq % 2 = 0, 'AB000000', 'ABCD')), seq % 1024, seq / 7, '2021-03-04 05:06:07.123456' + INTERVAL seq SECOND,
		CONCAT('é', seq) FROM seq_1_to_5000`)
	f.exec("CREATE TABLE twin LIKE t")
	f.exec("INSERT INTO twin (id, e, st, j, bn, bt, fl, ts, txt) SELECT id, e, st, j, bn, bt, fl, ts, txt FROM t")

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ops, fails atomic.Int64
	var firstErr atomic.Value
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			for ctx.Err() == nil {
				id := 1 + rng.Intn(5500)
				var q string
				var args []any
				switch rng.Intn(4) {
				case 0, 1:
					q = "UPDATE %s SET e = ELT(?, 'x','y','z'), st = ?, j = JSON_OBJECT('k', ?, 'f', 2.50), bn = UNHEX(?), bt = ?, fl = ?, ts = ?, txt = ? WHERE id = ?"
					args = []any{1 + rng.Intn(3), []string{"", "a", "b,c", "a,b,c"}[rng.Intn(4)], rng.Intn(100), []string{"00", "FF00", "01020300"}[rng.Intn(3)],
						rng.Intn(1024), float32(rng.Intn(1000)) / 8, time.Date(2022, 1, 1, 0, 0, rng.Intn(1e6), rng.Intn(1e9)/1000*1000, time.UTC).Format("2006-01-02 15:04:05.000000"),
						[]string{"ñ", "Ça va", "plain", "ü-ÿ"}[rng.Intn(4)], id}
				case 2:
					q = "DELETE FROM %s WHERE id = ?"
					args = []any{id}
				default:
					q = "INSERT IGNORE INTO %s (id, e, j, bn, txt) VALUES (?, 'z', '[1.0, \"x\"]', UNHEX('0A'), 'ß')"
					args = []any{id}
				}
				err := func() error {
					tx, err := f.db.Begin()
					if err != nil {
						return err
					}
					for _, table := range []string{"t", "twin"} {
						if _, err := tx.Exec(strings.ReplaceAll(q, "%s", table), args...); err != nil {
							tx.Rollback()
							return err
						}
					}
					return tx.Commit()
				}()
				if err != nil && !(retry.Transient(err) || retry.Code(err) == retry.CodeTableDefChanged) {
					fails.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				ops.Add(1)
				time.Sleep(time.Millisecond)
			}
		}(int64(w))
	}
	alter := "MODIFY e ENUM('z','y','x','w') NOT NULL DEFAULT 'x', MODIFY st SET('c','b','a','d') NULL, MODIFY txt MEDIUMTEXT CHARACTER SET utf8mb4 NULL, ADD COLUMN g2 BIGINT AS (id + 1) STORED"
	m := f.migration(alter)
	m.ChunkSize = 500
	time.Sleep(200 * time.Millisecond)
	res, err := m.Run(context.Background())
	time.Sleep(200 * time.Millisecond)
	cancel()
	wg.Wait()
	must(t, err)
	if n := fails.Load(); n > 0 {
		t.Fatalf("%d load transactions failed: %v", n, firstErr.Load())
	}
	t.Logf("load %d transactions; plan %s; blocked %v", ops.Load(), res.Plan, res.WriteBlocked)
	f.expect(alter)
}

// A composite key with a case-insensitive string column, paged and applied in the server's order;
// key updates to collation-equal values with other bytes; leftovers dropped on request.
func TestStringKeyAndDropLeftovers(t *testing.T) {
	f := newFixture(t, 0)
	f.exec("DROP TABLE t")
	f.exec("DROP TABLE twin")
	f.exec(`CREATE TABLE t (
		k VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL,
		n INT NOT NULL,
		v INT NOT NULL DEFAULT 0,
		PRIMARY KEY (k, n)
	) ENGINE=InnoDB`)
	f.exec(`INSERT INTO t SELECT ELT(1 + seq % 6, 'apple', 'Äpfel', 'zebra', 'Zürich', 'ñandú', 'éclair'), seq, 0 FROM seq_1_to_6000`)
	f.exec("CREATE TABLE twin LIKE t")
	f.exec("INSERT INTO twin SELECT * FROM t")
	alter := "ADD COLUMN w VARCHAR(10) NOT NULL DEFAULT 'w', ADD INDEX (v)"
	// Tables ferry did not create are never dropped, even with DropLeftovers.
	f.exec("CREATE TABLE _t_gho (x INT PRIMARY KEY)")
	f.exec("CREATE TABLE t_del (x INT PRIMARY KEY)")
	m0 := f.migration(alter)
	m0.DropLeftovers = true
	refused(t, f, m0, "`_t_gho` exists and nothing marks it as ferry's")
	f.exec("DROP TABLE _t_gho")
	m0 = f.migration(alter)
	m0.DropLeftovers = true
	refused(t, f, m0, "`t_del` exists and nothing marks it as ferry's")
	f.exec("DROP TABLE t_del")
	// Leftovers of a run that was stopped are ferry's: DropLeftovers drops them.
	stopped := f.migration(alter)
	stopped.Postpone = true
	sctx, stop := context.WithCancel(context.Background())
	go func() {
		for stopped.Status().State != StatePostponed {
			time.Sleep(10 * time.Millisecond)
		}
		stop()
	}()
	if _, err := stopped.Run(sctx); err == nil {
		t.Fatal("the stopped run succeeded")
	}
	tt := f.tables()
	sort.Strings(tt)
	if got := strings.Join(tt, ","); got != "_t_ghc,_t_gho,t,twin" {
		t.Fatalf("tables after the stopped run: %s", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var fails atomic.Int64
	var firstErr atomic.Value
	words := []string{"apple", "APPLE", "Äpfel", "äpfel", "zebra", "Zürich", "ñandú", "éclair", "new"}
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			for ctx.Err() == nil {
				var q string
				var args []any
				switch rng.Intn(4) {
				case 0:
					q, args = "UPDATE %s SET v = v + 1 WHERE k = ? AND n = ?", []any{words[rng.Intn(len(words))], rng.Intn(6500)}
				case 1: // key change to a collation-equal value with other bytes, or another word
					q, args = "UPDATE IGNORE %s SET k = ? WHERE n = ?", []any{words[rng.Intn(len(words))], rng.Intn(6500)}
				case 2:
					q, args = "DELETE FROM %s WHERE k = ? AND n = ?", []any{words[rng.Intn(len(words))], rng.Intn(6500)}
				default:
					q, args = "INSERT IGNORE INTO %s (k, n, v) VALUES (?, ?, 7)", []any{words[rng.Intn(len(words))], rng.Intn(6500)}
				}
				err := func() error {
					tx, err := f.db.Begin()
					if err != nil {
						return err
					}
					for _, table := range []string{"t", "twin"} {
						if _, err := tx.Exec(strings.ReplaceAll(q, "%s", table), args...); err != nil {
							tx.Rollback()
							return err
						}
					}
					return tx.Commit()
				}()
				if err != nil && !(retry.Transient(err) || retry.Code(err) == retry.CodeTableDefChanged) {
					fails.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				time.Sleep(time.Millisecond)
			}
		}(int64(w))
	}
	m := f.migration(alter)
	m.ChunkSize = 400
	m.DropLeftovers = true
	time.Sleep(200 * time.Millisecond)
	res, err := m.Run(context.Background())
	time.Sleep(200 * time.Millisecond)
	cancel()
	wg.Wait()
	must(t, err)
	if n := fails.Load(); n > 0 {
		t.Fatalf("%d load transactions failed: %v", n, firstErr.Load())
	}
	t.Logf("plan %s; rows copied %d; blocked %v", res.Plan, res.RowsCopied, res.WriteBlocked)
	f.exec("ALTER TABLE twin " + alter)
	var nt, ntwin, nmatch int
	must(t, f.db.QueryRow(`SELECT (SELECT COUNT(*) FROM t), (SELECT COUNT(*) FROM twin),
		(SELECT COUNT(*) FROM t JOIN twin ON BINARY t.k = BINARY twin.k AND t.n = twin.n AND t.v = twin.v AND t.w = twin.w)`).Scan(&nt, &ntwin, &nmatch))
	if nt != ntwin || nt != nmatch {
		t.Fatalf("t has %d rows, expected %d; %d equal", nt, ntwin, nmatch)
	}
	t.Logf("%d rows as expected", nt)
}

// The two-step cut-over: the table is missing for a moment (the load retries), nothing is lost.
func TestTwoStepCutover(t *testing.T) {
	f := newFixture(t, 20_000)
	alter := "ADD COLUMN z INT NULL, MODIFY a BIGINT NOT NULL DEFAULT 0"
	m := f.migration(alter)
	m.CutoverTwoStep = true
	l := f.startLoad(3, true)
	time.Sleep(200 * time.Millisecond)
	res, err := m.Run(context.Background())
	must(t, err)
	time.Sleep(200 * time.Millisecond)
	l.stop()
	l.check(t)
	t.Logf("two-step cut-over: writes blocked %v", res.WriteBlocked)
	f.expect(alter)
	tt := f.tables()
	sort.Strings(tt)
	if got := strings.Join(tt, ","); got != "t,t_del,twin" {
		t.Errorf("tables: %s", got)
	}
}

// A cut-over marker that comes back after the attempt gave up must not stop the apply: the
// attempt fails, the stream restarts, the next attempt succeeds and nothing is lost.
func TestLateMarker(t *testing.T) {
	f := newFixture(t, 20_000)
	alter := "ADD COLUMN z INT NULL"
	m := f.migration(alter)
	m.CutoverLockTimeout = time.Second
	var markers atomic.Int64
	m.testMarkerDelay = func() time.Duration {
		if markers.Add(1) == 1 {
			return 1500 * time.Millisecond
		}
		return 0
	}
	res := runUnderLoad(t, f, m, alter)
	if res.CutoverAttempts < 2 {
		t.Errorf("cut-over attempts %d, want at least 2", res.CutoverAttempts)
	}
}

// The Throttler pauses the copy (and its reason shows in the status); the panic command stops the
// migration with the original table unchanged.
func TestThrottlerAndPanic(t *testing.T) {
	f := newFixture(t, 3000)
	m := f.migration("ADD COLUMN z INT NULL")
	m.ChunkSize = 100
	m.Postpone = true
	var checks atomic.Int64
	release := make(chan struct{})
	m.Throttler = throttler.Func(func(ctx context.Context) (throttler.Status, error) {
		checks.Add(1)
		select {
		case <-release:
			return throttler.Status{}, nil
		default:
			return throttler.Status{Throttled: true, Reason: "test says wait"}, nil
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := m.Run(context.Background())
		done <- err
	}()
	deadline := time.Now().Add(20 * time.Second)
	for m.Status().Throttled != "test says wait" {
		if time.Now().After(deadline) {
			t.Fatalf("never throttled: %s", m.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := m.Status().RowsCopied; n != 0 {
		t.Errorf("copied %d rows while throttled", n)
	}
	close(release)
	for m.Status().State != StatePostponed {
		if time.Now().After(deadline) {
			t.Fatalf("never postponed: %s", m.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ans, err := m.Command("panic"); err != nil || ans != "stopping" {
		t.Fatalf("panic: %q %v", ans, err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "panic command") {
			t.Fatalf("error %v", err)
		}
		t.Log(err)
	case <-time.After(20 * time.Second):
		t.Fatal("panic did not stop the migration")
	}
	var cols int
	f.db.QueryRow("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 't'", f.name).Scan(&cols)
	if cols != 7 {
		t.Errorf("original table has %d columns, want 7", cols)
	}
}
