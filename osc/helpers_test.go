package osc

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/internal/retry"
	"github.com/ferrykit/ferry/sandbox"
)

var srv *sandbox.Server

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	var err error
	srv, err = sandbox.Start(ctx, sandbox.Options{ExtraArgs: []string{"--max-binlog-size=64M"}})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start sandbox server:", err)
		os.Exit(1)
	}
	code := m.Run()
	if code != 0 || !srv.Running() {
		if b, err := os.ReadFile(srv.Dir + "/error.log"); err == nil {
			os.WriteFile(os.TempDir()+"/ferry-osc-test-server-error.log", b, 0o644)
			fmt.Fprintln(os.Stderr, "server error log kept in", os.TempDir()+"/ferry-osc-test-server-error.log")
		}
	}
	srv.Stop()
	os.Exit(code)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testConn() ferry.ConnConfig {
	return ferry.ConnConfig{Host: srv.Host, Port: srv.Port, User: srv.User}
}

func testLogger(t testing.TB) logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	if testing.Verbose() {
		l.SetLevel(logrus.InfoLevel)
	}
	return l.WithField("test", t.Name())
}

// fixture is a test database with the table t and its twin: every write of the load goes to both in
// one transaction, and the twin is altered offline at the end, which gives the expected rows.
type fixture struct {
	t     testing.TB
	name  string
	db    *sql.DB
	rows  int
	start time.Time
}

const fixtureTable = `CREATE TABLE %s (
	id BIGINT NOT NULL,
	u INT NOT NULL,
	a INT NOT NULL DEFAULT 0,
	b VARCHAR(64) NOT NULL DEFAULT '',
	c VARCHAR(100) NULL,
	d DATETIME(6) NULL,
	n DECIMAL(10,2) NULL,
	PRIMARY KEY (id),
	UNIQUE KEY uk_u (u)
) ENGINE=InnoDB DEFAULT CHARSET=latin1`

func newFixture(t testing.TB, rows int) *fixture {
	t.Helper()
	name := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "_"))
	if len(name) > 40 {
		name = name[:40]
	}
	ctx := context.Background()
	start := time.Now()
	must(t, srv.Exec(ctx, "DROP DATABASE IF EXISTS "+q(name), "CREATE DATABASE "+q(name)))
	db, err := srv.DB(name)
	must(t, err)
	db.SetMaxOpenConns(8)
	t.Cleanup(func() {
		db.Close()
		srv.Exec(context.Background(), "DROP DATABASE IF EXISTS "+q(name), "PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 DAY")
	})
	traceMu.Lock()
	traceLog = map[string][]string{}
	traceMu.Unlock()
	f := &fixture{t: t, name: name, db: db, rows: rows, start: start}
	f.exec(fmt.Sprintf(fixtureTable, "t"))
	if rows > 0 {
		f.exec(fmt.Sprintf(`INSERT INTO t SELECT seq, seq, seq %% 1000, CONCAT('bé', seq, 'ñ'), CONCAT('c-', seq),
			'2020-01-01 00:00:00' + INTERVAL seq SECOND + INTERVAL seq MICROSECOND, seq / 100 FROM seq_1_to_%d`, rows))
	}
	f.exec("CREATE TABLE twin LIKE t")
	f.exec("INSERT INTO twin SELECT * FROM t")
	return f
}

func (f *fixture) exec(query string, args ...any) {
	f.t.Helper()
	if _, err := f.db.Exec(query, args...); err != nil {
		f.t.Fatalf("%s: %v", query, err)
	}
}

func (f *fixture) migration(alter string) *Migration {
	return &Migration{Conn: testConn(), Database: f.name, Table: "t", Alter: alter, Execute: true,
		ChunkSize: 2000, CutoverLockTimeout: 2 * time.Second, Logger: testLogger(f.t), StatusInterval: time.Second}
}

// load writes to t and twin in the same transactions until stopped.
type load struct {
	maxNanos atomic.Int64 // slowest transaction
	// tolerateMissing retries transactions that find no table t (two-step cut-over).
	tolerateMissing bool
	cancel          context.CancelFunc
	wg              sync.WaitGroup
	ops             atomic.Int64
	errs            atomic.Int64
	first           atomic.Value
}

func (f *fixture) startLoad(workers int, tolerateMissing ...bool) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel, tolerateMissing: len(tolerateMissing) > 0 && tolerateMissing[0]}
	pool, err := srv.DB(f.name)
	must(f.t, err)
	pool.SetMaxOpenConns(workers + 1)
	for w := 0; w < workers; w++ {
		rng := rand.New(rand.NewSource(int64(w) + 1))
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				start := time.Now()
				err := l.one(pool, rng, f.rows, l.tolerateMissing)
				if d := time.Since(start).Nanoseconds(); d > l.maxNanos.Load() {
					l.maxNanos.Store(d)
				}
				if err != nil {
					l.errs.Add(1)
					l.first.CompareAndSwap(nil, err.Error())
				}
				l.ops.Add(1)
				time.Sleep(time.Duration(rng.Intn(2000)) * time.Microsecond)
			}
		}()
	}
	f.t.Cleanup(func() { l.stop(); pool.Close() })
	return l
}

func (l *load) maxLatency() time.Duration { return time.Duration(l.maxNanos.Load()) }

func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

func (l *load) check(t testing.TB) {
	t.Helper()
	if n := l.errs.Load(); n > 0 {
		t.Fatalf("%d load transactions failed; first: %v", n, l.first.Load())
	}
	if l.ops.Load() < 50 {
		t.Fatalf("only %d load transactions ran", l.ops.Load())
	}
	t.Logf("load: %d transactions", l.ops.Load())
}

var words = []string{"é", "ñ", "ü", "abc", "x", "Ça", "ß", "zz"}

func (l *load) one(db *sql.DB, rng *rand.Rand, rows int, tolerateMissing bool) error {
	id := func() int { return 1 + rng.Intn(rows+rows/5+10) }
	var stmts []struct {
		q    string
		args []any
	}
	add := func(q string, args ...any) {
		stmts = append(stmts, struct {
			q    string
			args []any
		}{q, args})
	}
	var swap [2]int
	tmp := -1 - rng.Intn(1e9)
	switch rng.Intn(10) {
	case 0, 1, 2:
		add("UPDATE %s SET a = a + 1, b = ? WHERE id = ?", fmt.Sprintf("%s-%d", words[rng.Intn(len(words))], rng.Intn(1e6)), id())
	case 3:
		add("DELETE FROM %s WHERE id = ?", id())
	case 4, 5:
		add("INSERT IGNORE INTO %s (id, u, a, b, d, n) VALUES (?, ?, ?, ?, ?, ?)", id(), 10_000_000+rng.Intn(1e8), rng.Intn(1000),
			words[rng.Intn(len(words))], time.Date(2021, 1, 1, 0, 0, rng.Intn(1e6), rng.Intn(1e6)*1000, time.UTC).Format("2006-01-02 15:04:05.000000"), float64(rng.Intn(1e6))/100)
	case 6: // primary key change
		add("UPDATE IGNORE %s SET id = ? WHERE id = ?", rows*2+rng.Intn(rows+10), id())
	case 7: // swap the unique values of two rows in one transaction (read inside it, below)
		x, y := id(), id()
		if x == y {
			return nil
		}
		swap = [2]int{x, y}
	default:
		add("UPDATE %s SET n = n + 1, d = d + INTERVAL 1 SECOND WHERE id BETWEEN ? AND ?", id(), 0)
		stmts[len(stmts)-1].args[1] = stmts[len(stmts)-1].args[0].(int) + 3
	}
	for attempt := 0; ; attempt++ {
		err := func() error {
			tx, err := db.Begin()
			if err != nil {
				return err
			}
			if swap[0] != 0 {
				var ux, uy int
				if err := tx.QueryRow("SELECT u FROM t WHERE id = ? FOR UPDATE", swap[0]).Scan(&ux); err != nil {
					tx.Rollback()
					return nil
				}
				if err := tx.QueryRow("SELECT u FROM t WHERE id = ? FOR UPDATE", swap[1]).Scan(&uy); err != nil {
					tx.Rollback()
					return nil
				}
				stmts = nil
				add("UPDATE %s SET u = ? WHERE id = ?", tmp, swap[0])
				add("UPDATE %s SET u = ? WHERE id = ?", ux, swap[1])
				add("UPDATE %s SET u = ? WHERE id = ?", uy, swap[0])
			}
			for _, s := range stmts {
				for _, table := range []string{"t", "twin"} {
					q := strings.ReplaceAll(s.q, "%s", table)
					if _, err := tx.Exec(q, s.args...); err != nil {
						tx.Rollback()
						return err
					}
				}
			}
			return tx.Commit()
		}()
		if tolerateMissing && retry.Code(err) == 1146 && attempt < 200 {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if err == nil || attempt > 20 || !(retry.Transient(err) || retry.Code(err) == retry.CodeTableDefChanged) {
			return err // 1412: the table was swapped under a transaction's snapshot; retry
		}
	}
}

// expect alters the twin with the same ALTER and checks t has its schema and exactly its rows.
func (f *fixture) expect(alter string) {
	f.t.Helper()
	f.exec("ALTER TABLE twin " + alter)
	createOf := func(table string) string {
		var s string
		must(f.t, f.db.QueryRow("SHOW CREATE TABLE "+table).Scan(new(string), &s))
		s = regexp.MustCompile(` AUTO_INCREMENT=\d+`).ReplaceAllString(s, "")
		return strings.Replace(s, "CREATE TABLE `"+table+"`", "CREATE TABLE x", 1)
	}
	if a, b := createOf("t"), createOf("twin"); a != b {
		f.t.Fatalf("schema after the migration:\n%s\nexpected:\n%s", a, b)
	}
	// Fast path: the server compares every column byte for byte.
	var cols []string
	rows, err := f.db.Query("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'twin' ORDER BY ORDINAL_POSITION", f.name)
	must(f.t, err)
	for rows.Next() {
		var c string
		must(f.t, rows.Scan(&c))
		cols = append(cols, "BINARY t."+q(c)+" <=> BINARY twin."+q(c))
	}
	rows.Close()
	var nt, ntwin, nmatch int
	must(f.t, f.db.QueryRow("SELECT (SELECT COUNT(*) FROM t), (SELECT COUNT(*) FROM twin), (SELECT COUNT(*) FROM t JOIN twin ON t.id = twin.id WHERE "+strings.Join(cols, " AND ")+")").Scan(&nt, &ntwin, &nmatch))
	if nt == ntwin && nt == nmatch {
		f.t.Logf("%d rows as expected", nt)
		return
	}
	f.t.Errorf("t has %d rows, expected %d; %d rows equal", nt, ntwin, nmatch)
	defer f.traceDiff()
	got, want := f.rowsOf("t"), f.rowsOf("twin")
	if len(got) != len(want) {
		f.t.Errorf("t has %d rows, expected %d", len(got), len(want))
	}
	bad := 0
	if true {
		gm := map[string]bool{}
		for _, r := range got {
			gm[string(r)] = true
		}
		wm := map[string]bool{}
		for _, r := range want {
			wm[string(r)] = true
			if !gm[string(r)] && bad < 10 {
				f.t.Errorf("missing row %q", r)
				bad++
			}
		}
		for _, r := range got {
			if !wm[string(r)] && bad < 15 {
				f.t.Errorf("extra row %q", r)
				bad++
			}
		}
	}
	f.t.Logf("%d rows as expected", len(want))
}

// rowsOf reads a table in key order, each row encoded as bytes (values in the column's own
// character set).
func (f *fixture) rowsOf(table string) [][]byte {
	f.t.Helper()
	return f.rowsQuery("SELECT * FROM " + table + " ORDER BY id")
}

// rowsQuery runs a query and returns its rows, each encoded as bytes.
func (f *fixture) rowsQuery(query string) [][]byte {
	f.t.Helper()
	conn, err := f.db.Conn(context.Background())
	must(f.t, err)
	defer conn.Close()
	_, err = conn.ExecContext(context.Background(), "SET character_set_results = binary")
	must(f.t, err)
	rows, err := conn.QueryContext(context.Background(), query)
	must(f.t, err)
	defer rows.Close()
	cols, _ := rows.Columns()
	var out [][]byte
	for rows.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		must(f.t, rows.Scan(ptrs...))
		var b []byte
		for _, v := range vals {
			if v == nil {
				b = append(b, "NULL|"...)
			} else {
				b = append(b, '\'')
				b = append(b, v...)
				b = append(b, "'|"...)
			}
		}
		out = append(out, b)
	}
	must(f.t, rows.Err())
	return out
}

func (f *fixture) tables() []string {
	f.t.Helper()
	rows, err := f.db.Query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME", f.name)
	must(f.t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		must(f.t, rows.Scan(&n))
		out = append(out, n)
	}
	return out
}

var traceMu sync.Mutex
var traceLog = map[string][]string{}

func init() {
	testTrace = func(stage string, e *ferry.DMLEvent) {
		if e.Table.Source.Name != "t" {
			return
		}
		img := e.After
		if img == nil {
			img = e.Before
		}
		line := fmt.Sprintf("%s %s at %s: before=%v after=%v", stage, e.Type, e.Position, e.Before, e.After)
		traceMu.Lock()
		defer traceMu.Unlock()
		for _, im := range [][]any{e.Before, e.After} {
			if im != nil {
				k := fmt.Sprint(im[0])
				traceLog[k] = append(traceLog[k], line)
			}
		}
	}
}

// traceDiff logs what the applier saw of the rows that differ.
func (f *fixture) traceDiff() {
	rows, err := f.db.Query("SELECT id FROM t WHERE id NOT IN (SELECT id FROM twin) UNION SELECT id FROM twin WHERE id NOT IN (SELECT id FROM t) UNION SELECT t.id FROM t JOIN twin USING (id) WHERE t.a <> twin.a OR t.n <> twin.n OR t.u <> twin.u LIMIT 10")
	if err != nil {
		f.t.Log(err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		rows.Scan(&id)
		traceMu.Lock()
		f.t.Logf("id %s: %d trace lines", id, len(traceLog[id]))
		for _, l := range traceLog[id] {
			f.t.Log("   ", l)
		}
		traceMu.Unlock()
	}
}
