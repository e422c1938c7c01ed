package osc

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry/internal/retry"
)

// nativeCase is one ALTER checked against the server's own ALTER TABLE: the table t and its twin
// get the same rows and, while ferry copies t, the same writes; then the twin is altered natively.
// Either both succeed and t equals the twin (definition, AUTO_INCREMENT, every byte of every
// row), or both fail with the same server error and t is untouched (equal to the unaltered twin).
type nativeCase struct {
	name   string
	create string   // CREATE TABLE %s (...): created as t and twin
	rows   []string // statements on %s run before the migration
	writes []string // statements on %s run (in one transaction per table) during the copy
	alter  string
	setup  func(m *Migration)
	// errContains, when the native ALTER fails, must be in ferry's error (besides the errno).
	errContains string
	// after are statements on %s run once both tables are altered (writes after the cut-over).
	after []string
	// also are more tables to compare, as "%s_name" (t_name with twin_name).
	also []string
	// globals are server settings (SET GLOBAL ...) for the case, reset afterwards: the migration
	// and the native ALTER both see them.
	globals []string
}

func runNativeCases(t *testing.T, cases []nativeCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runNative(t, c) })
	}
}

func runNative(t *testing.T, c nativeCase) {
	t.Helper()
	f := newFixture(t, 0)
	f.exec("DROP TABLE t")
	f.exec("DROP TABLE twin")
	for _, g := range c.globals {
		name := strings.TrimSpace(g[:strings.Index(g, "=")])
		var old string
		must(t, f.db.QueryRow("SELECT @@GLOBAL."+name).Scan(&old))
		f.exec("SET GLOBAL " + g)
		t.Cleanup(func() { srv.Exec(context.Background(), "SET GLOBAL "+name+" = '"+old+"'") })
	}
	native, err := srv.DB(f.name) // sessions opened from here see the globals
	must(t, err)
	defer native.Close()
	for _, table := range []string{"t", "twin"} {
		f.exec(strings.ReplaceAll(c.create, "%s", table))
		for _, s := range c.rows {
			f.exec(strings.ReplaceAll(s, "%s", table))
		}
	}
	m := f.migration(c.alter)
	m.ChunkSize = 10
	var once sync.Once
	wrote := false
	m.testAfterChunk = func(time.Duration) {
		once.Do(func() {
			wrote = true
			for _, table := range []string{"t", "twin"} {
				for _, s := range c.writes {
					f.exec(strings.ReplaceAll(s, "%s", table))
				}
			}
		})
	}
	if c.setup != nil {
		c.setup(m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, runErr := m.Run(ctx)
	if len(c.writes) > 0 && runErr == nil && !wrote {
		t.Fatal("no chunk was copied: the writes did not run during the copy")
	}
	_, nativeErr := native.Exec("ALTER TABLE twin " + c.alter)
	switch {
	case nativeErr != nil && runErr == nil:
		t.Fatalf("the native ALTER fails (%v) but the migration succeeded", nativeErr)
	case nativeErr == nil && runErr != nil:
		t.Fatalf("the native ALTER succeeds but the migration failed: %v", runErr)
	case nativeErr != nil:
		if got, want := retry.Code(runErr), retry.Code(nativeErr); got != want {
			t.Fatalf("migration failed with error %d (%v), the native ALTER with %d (%v)", got, runErr, want, nativeErr)
		}
		if c.errContains != "" && !strings.Contains(runErr.Error(), c.errContains) {
			t.Fatalf("migration error %q does not contain %q", runErr, c.errContains)
		}
		t.Logf("both fail: %v", runErr)
	}
	for _, table := range []string{"t", "twin"} {
		for _, s := range c.after {
			if _, err := native.Exec(strings.ReplaceAll(s, "%s", table)); err != nil && nativeErr == nil {
				t.Fatalf("after the migration: %v", err)
			}
		}
	}
	sameTable(t, f, "t", "twin")
	for _, a := range c.also {
		sameTable(t, f, strings.ReplaceAll(a, "%s", "t"), strings.ReplaceAll(a, "%s", "twin"))
	}
	if got, want := f.triggersOf("t"), f.triggersOf("twin"); got != want {
		t.Errorf("triggers of t:\n%s\nexpected (as on twin):\n%s", got, want)
	}
}

// triggersOf lists a table's triggers (name, timing, event, order, statement), with the table's own
// name written as %s.
func (f *fixture) triggersOf(table string) string {
	var out []string
	for _, r := range f.rowsQuery("SELECT TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER, ACTION_STATEMENT, SQL_MODE, DEFINER FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = '" + table + "' ORDER BY 1") {
		out = append(out, regexp.MustCompile(`\b`+table+`(_|\b)`).ReplaceAllString(string(r), "%s$1"))
	}
	return strings.Join(out, "\n")
}

// sameTable checks that two tables have the same definition (AUTO_INCREMENT counter included) and
// the same rows, byte for byte.
func sameTable(t *testing.T, f *fixture, a, b string) {
	t.Helper()
	createOf := func(table string) string {
		var s string
		must(t, f.db.QueryRow("SHOW CREATE TABLE "+table).Scan(new(string), &s))
		return strings.Replace(s, "CREATE TABLE `"+table+"`", "CREATE TABLE x", 1)
	}
	if ca, cb := createOf(a), createOf(b); ca != cb {
		t.Fatalf("definition of %s:\n%s\nexpected (%s):\n%s", a, ca, b, cb)
	}
	ra, rb := f.rowsOrdered(a), f.rowsOrdered(b)
	if len(ra) != len(rb) {
		t.Errorf("%s has %d rows, %s %d", a, len(ra), b, len(rb))
	}
	for i := 0; i < len(ra) && i < len(rb); i++ {
		if string(ra[i]) != string(rb[i]) {
			t.Errorf("row %d: %s has %q, %s %q", i, a, ra[i], b, rb[i])
		}
	}
}

// rowsOrdered reads a table ordered by all its columns, values as bytes.
func (f *fixture) rowsOrdered(table string) [][]byte {
	var n int
	must(f.t, f.db.QueryRow("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?", table).Scan(&n))
	order := make([]string, n)
	for i := range order {
		order[i] = fmt.Sprint(i + 1)
	}
	return f.rowsQuery("SELECT * FROM " + table + " ORDER BY " + strings.Join(order, ", "))
}

// Issue 11 item 1: the copy is strict like ALTER TABLE: a value the new column cannot hold fails
// the migration with the server's error naming the row (it was truncated, or the row dropped on a
// unique key, by INSERT IGNORE), and the original table is untouched.
func TestNativeStrictCopy(t *testing.T) {
	runNativeCases(t, []nativeCase{{
		name:        "narrowed unique column",
		create:      "CREATE TABLE %s (id INT PRIMARY KEY, name VARCHAR(255) NOT NULL, UNIQUE KEY (name)) ENGINE=InnoDB",
		rows:        []string{"INSERT INTO %s VALUES (1, 'John Smith'), (2, 'John Travolta')"},
		alter:       "MODIFY name VARCHAR(4) NOT NULL",
		errContains: "row id=1",
	}, {
		name:        "narrowed column with writes during the copy",
		create:      "CREATE TABLE %s (id INT PRIMARY KEY, name VARCHAR(255) NOT NULL) ENGINE=InnoDB",
		rows:        []string{"INSERT INTO %s SELECT seq, CONCAT('n', seq) FROM seq_1_to_40", "UPDATE %s SET name = 'much too long' WHERE id = 33"},
		writes:      []string{"UPDATE %s SET name = 'x' WHERE id = 3"},
		alter:       "MODIFY name VARCHAR(4) NOT NULL",
		errContains: "row id=33",
	}, {
		name:        "a too-long value written during the copy",
		create:      "CREATE TABLE %s (id INT PRIMARY KEY, name VARCHAR(255) NOT NULL) ENGINE=InnoDB",
		rows:        []string{"INSERT INTO %s SELECT seq, CONCAT('n', seq) FROM seq_1_to_40"},
		writes:      []string{"UPDATE %s SET name = 'much too long' WHERE id = 3"},
		alter:       "MODIFY name VARCHAR(4) NOT NULL",
		errContains: "row id=3",
	}, {
		name:   "narrowed column, values fit",
		create: "CREATE TABLE %s (id INT PRIMARY KEY, name VARCHAR(255) NOT NULL, UNIQUE KEY (name)) ENGINE=InnoDB",
		rows:   []string{"INSERT INTO %s SELECT seq, CONCAT('n', seq) FROM seq_1_to_40"},
		writes: []string{"UPDATE %s SET name = 'x' WHERE id = 3", "DELETE FROM %s WHERE id = 35", "INSERT INTO %s VALUES (41, 'y')"},
		alter:  "MODIFY name VARCHAR(4) NOT NULL",
	}, {
		name:   "out of range",
		create: "CREATE TABLE %s (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB",
		rows:   []string{"INSERT INTO %s SELECT seq, seq * 10 FROM seq_1_to_30"},
		alter:  "MODIFY v TINYINT NOT NULL",
	}, {
		name:   "collation change makes a unique key collide",
		create: "CREATE TABLE %s (id INT PRIMARY KEY, k VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, UNIQUE KEY uk (k)) ENGINE=InnoDB",
		rows:   []string{"INSERT INTO %s SELECT seq, CONCAT('k', seq) FROM seq_1_to_30", "INSERT INTO %s VALUES (31, 'K7')"},
		alter:  "MODIFY k VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL",
	}})
}

// Issue 11 item 4: the AUTO_INCREMENT counter is carried over under the cut-over lock, as ALTER
// TABLE keeps it: ids of rows deleted from the end are not handed out again.
func TestNativeAutoIncrement(t *testing.T) {
	runNativeCases(t, []nativeCase{{
		name:   "highest ids deleted",
		create: "CREATE TABLE %s (id INT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB",
		rows:   []string{"INSERT INTO %s (v) SELECT seq FROM seq_1_to_25", "DELETE FROM %s WHERE id > 20"},
		writes: []string{"UPDATE %s SET v = v + 1 WHERE id = 3", "DELETE FROM %s WHERE id = 20"},
		alter:  "ADD COLUMN w INT NULL",
	}})
}

// Issue 11 item 3: the column mapping follows the ALTER's meaning, not names alone: a column
// dropped and added again under its name is a new column (ALTER gives it its default), whatever
// the old values and whatever the writes during the copy put there.
func TestNativeDropAndReAdd(t *testing.T) {
	runNativeCases(t, []nativeCase{{
		name:   "drop and re-add with a default",
		create: "CREATE TABLE %s (id INT PRIMARY KEY, c1 INT NULL, c2 VARCHAR(10) NOT NULL DEFAULT '') ENGINE=InnoDB",
		rows:   []string{"INSERT INTO %s SELECT seq, IF(seq % 2, 0, 5), 'x' FROM seq_1_to_30"},
		writes: []string{"UPDATE %s SET c1 = NULL WHERE id = 25", "INSERT INTO %s VALUES (31, NULL, 'y')"},
		alter:  "DROP COLUMN c1, ADD COLUMN c1 INT NOT NULL DEFAULT 47",
	}, {
		name:   "several columns re-added in one clause",
		create: "CREATE TABLE %s (id INT PRIMARY KEY, a INT NULL, b VARCHAR(10) NULL) ENGINE=InnoDB",
		rows:   []string{"INSERT INTO %s SELECT seq, seq, 'old' FROM seq_1_to_30"},
		writes: []string{"UPDATE %s SET a = 1000, b = 'w' WHERE id = 29"},
		alter:  "DROP COLUMN a, DROP b, ADD COLUMN (a INT NOT NULL DEFAULT 1, `b` VARCHAR(10) NOT NULL DEFAULT 'new')",
	}})
}

// Issue 11 item 6: a primary key widened from (id) to (id, i) is accepted (id still identifies
// each row); updates that change i, and deletes, during the copy land as ALTER TABLE has them.
func TestNativeWidenedKey(t *testing.T) {
	runNativeCases(t, []nativeCase{{
		name:   "primary key (id) to (id, i)",
		create: "CREATE TABLE %s (id INT NOT NULL, i INT NOT NULL, v VARCHAR(10) NULL, PRIMARY KEY (id)) ENGINE=InnoDB",
		rows:   []string{"INSERT INTO %s SELECT seq, seq % 3, 'v' FROM seq_1_to_30"},
		writes: []string{"UPDATE %s SET i = 7 WHERE id = 25", "UPDATE %s SET i = 8, v = 'w' WHERE id = 2", "DELETE FROM %s WHERE id = 26", "INSERT INTO %s VALUES (40, 1, 'n')"},
		alter:  "DROP PRIMARY KEY, ADD PRIMARY KEY (id, i)",
	}, {
		name:   "ENUM primary key, ENGINE=InnoDB",
		create: "CREATE TABLE %s (e ENUM('b','a','c') NOT NULL, n INT NOT NULL, v INT NULL, PRIMARY KEY (e, n)) ENGINE=InnoDB",
		rows:   []string{"INSERT INTO %s SELECT ELT(1 + seq % 3, 'a', 'b', 'c'), seq, seq FROM seq_1_to_40"},
		writes: []string{"UPDATE %s SET v = 0 WHERE e = 'c' AND n = 38", "UPDATE %s SET e = 'b' WHERE e = 'a' AND n = 39", "DELETE FROM %s WHERE e = 'b' AND n = 36", "INSERT INTO %s VALUES ('a', 41, 1)"},
		alter:  "ENGINE=InnoDB, ADD COLUMN z INT NULL",
	}})
}

// Issue 11 item 2: values are converted as the native ALTER converts them: under the server's
// time zone (not UTC) and sql_mode, through the same expression for copied rows and for rows
// changed during the copy.
func TestNativeConversions(t *testing.T) {
	runNativeCases(t, []nativeCase{{
		name:    "TIMESTAMP to DATETIME in a +05:00 server",
		globals: []string{"time_zone = '+05:00'"},
		create:  "CREATE TABLE %s (id INT PRIMARY KEY, ts TIMESTAMP(3) NULL, ts0 TIMESTAMP NULL) ENGINE=InnoDB",
		rows:    []string{"INSERT INTO %s SELECT seq, '2020-01-01 00:00:00.125' + INTERVAL seq HOUR, '2021-06-01 23:30:00' FROM seq_1_to_30"},
		writes:  []string{"UPDATE %s SET ts = ts + INTERVAL 1 MINUTE, ts0 = '2022-02-02 02:02:02' WHERE id IN (2, 25)", "INSERT INTO %s VALUES (31, '2023-03-03 03:03:03.5', NULL)"},
		alter:   "MODIFY ts DATETIME(3) NULL, MODIFY ts0 VARCHAR(30) NULL",
	}, {
		name:    "DATETIME to TIMESTAMP in a +05:00 server",
		globals: []string{"time_zone = '+05:00'"},
		create:  "CREATE TABLE %s (id INT PRIMARY KEY, dt DATETIME NULL) ENGINE=InnoDB",
		rows:    []string{"INSERT INTO %s SELECT seq, '2020-01-01 10:00:00' + INTERVAL seq DAY FROM seq_1_to_30"},
		writes:  []string{"UPDATE %s SET dt = '2024-04-04 04:04:04' WHERE id IN (3, 26)"},
		alter:   "MODIFY dt TIMESTAMP NULL",
	}, {
		name:   "FLOAT and DOUBLE to strings, DECIMAL to INT",
		create: "CREATE TABLE %s (id INT PRIMARY KEY, f FLOAT NULL, d DOUBLE NULL, n DECIMAL(10,2) NULL) ENGINE=InnoDB",
		rows:   []string{"INSERT INTO %s SELECT seq, seq / 10, seq / 3, seq + 0.5 FROM seq_1_to_30"},
		writes: []string{"UPDATE %s SET f = 0.1, d = 0.3, n = 2.5 WHERE id IN (1, 27)", "INSERT INTO %s VALUES (31, 1.1, 2.2, 7.49)"},
		alter:  "MODIFY f VARCHAR(40) NULL, MODIFY d VARCHAR(40) NULL, MODIFY n INT NULL",
	}, {
		name:   "strings to numbers and a charset change",
		create: "CREATE TABLE %s (id INT PRIMARY KEY, s VARCHAR(20) CHARACTER SET latin1 NULL, l VARCHAR(20) CHARACTER SET latin1 NULL) ENGINE=InnoDB",
		rows:   []string{"INSERT INTO %s SELECT seq, CONCAT(seq, '.5'), CONCAT('caf', CHAR(233 USING latin1), seq) FROM seq_1_to_30"},
		writes: []string{"UPDATE %s SET s = '12.25', l = CONCAT('na', CHAR(239 USING latin1), 've') WHERE id IN (4, 28)"},
		alter:  "MODIFY s DECIMAL(8,1) NULL, MODIFY l VARCHAR(20) CHARACTER SET utf8mb4 NULL",
	}, {
		name:   "ENUM reordered and to VARCHAR",
		create: "CREATE TABLE %s (id INT PRIMARY KEY, e ENUM('a','b','c') NOT NULL, e2 ENUM('x','y') NULL) ENGINE=InnoDB",
		rows:   []string{"INSERT INTO %s SELECT seq, ELT(1 + seq % 3, 'a', 'b', 'c'), IF(seq % 2, 'x', 'y') FROM seq_1_to_30"},
		writes: []string{"UPDATE %s SET e = 'c', e2 = 'y' WHERE id IN (5, 29)"},
		alter:  "MODIFY e ENUM('c','b','a','d') NOT NULL, MODIFY e2 VARCHAR(5) NULL",
	}, {
		name:    "zero dates refused under the server's NO_ZERO_DATE",
		globals: []string{"sql_mode = 'STRICT_TRANS_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,NO_ENGINE_SUBSTITUTION'"},
		create:  "CREATE TABLE %s (id INT PRIMARY KEY, d DATE NULL) ENGINE=InnoDB",
		rows:    []string{"SET SESSION sql_mode = ''; INSERT INTO %s SELECT seq, IF(seq = 20, '0000-00-00', '2020-01-01') FROM seq_1_to_30"},
		alter:   "MODIFY d DATETIME NULL",
	}})
}

// Issue 11 item 5: with IncludeTriggers the triggers are on the new table after the cut-over,
// under their own names, as ALTER TABLE keeps them; they never fire on ferry's own writes (a BEFORE
// trigger's change is copied once, not applied twice), and the old table keeps none.
func TestNativeTriggers(t *testing.T) {
	runNativeCases(t, []nativeCase{{
		name: "before and after triggers",
		create: "CREATE TABLE %s (id INT PRIMARY KEY, v INT NOT NULL, w VARCHAR(10) NULL) ENGINE=InnoDB; " +
			"CREATE TABLE %s_audit (n INT AUTO_INCREMENT PRIMARY KEY, id INT, what VARCHAR(10)) ENGINE=InnoDB; " +
			"CREATE TRIGGER %s_double BEFORE INSERT ON %s FOR EACH ROW SET NEW.v = NEW.v * 2; " +
			"CREATE TRIGGER %s_log AFTER UPDATE ON %s FOR EACH ROW INSERT INTO %s_audit (id, what) VALUES (NEW.id, 'update')",
		rows:   []string{"INSERT INTO %s (id, v) SELECT seq, seq FROM seq_1_to_30"},
		writes: []string{"INSERT INTO %s (id, v) VALUES (31, 100)", "UPDATE %s SET w = 'x' WHERE id IN (2, 28)"},
		alter:  "ADD COLUMN z INT NULL, MODIFY w VARCHAR(20) NULL",
		setup:  func(m *Migration) { m.IncludeTriggers = true },
		after:  []string{"INSERT INTO %s (id, v) VALUES (32, 7)", "UPDATE %s SET w = 'after' WHERE id = 3"},
		also:   []string{"%s_audit"},
	}})
	t.Run("the old table keeps none", func(t *testing.T) {
		f := newFixture(t, 10)
		f.exec("CREATE TRIGGER trg BEFORE UPDATE ON t FOR EACH ROW SET NEW.a = NEW.a + 1")
		m := f.migration("ADD COLUMN z INT NULL")
		m.IncludeTriggers = true
		m.CutoverTwoStep = true
		_, err := m.Run(context.Background())
		must(t, err)
		if got := f.triggersOf("t"); !strings.HasPrefix(got, "'trg'|'BEFORE'|'UPDATE'") {
			t.Errorf("triggers of t: %s", got)
		}
		if got := f.triggersOf("t_del"); got != "" {
			t.Errorf("triggers of t_del: %s", got)
		}
	})
}
