package test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/osc"
	"github.com/ferrykit/ferry/sandbox"
)

// The online schema change on a replica (issue 14 item 2), against a sandbox primary and a replica
// with log_slave_updates, while a load writes to the primary and replication carries it to the
// replica's table during the whole migration. Each part compares with the server's own ALTER TABLE.
func TestOSCOnReplica(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	primary, err := sandbox.Start(ctx, sandbox.Options{})
	must(t, err)
	defer primary.Stop()
	replica, err := sandbox.StartReplica(ctx, primary, sandbox.Options{}) // (with log_slave_updates)
	must(t, err)
	defer replica.Stop()
	pdb, err := primary.DB("")
	must(t, err)
	defer pdb.Close()
	rdb, err := replica.DB("")
	must(t, err)
	defer rdb.Close()

	// MigrateOnReplica: the replica's table ends migrated, equal row by row (and in definition) to
	// a native ALTER TABLE of the primary's table once replication has caught up — including the
	// changes replication wrote into the new table after the cut-over. The primary's table is
	// untouched.
	t.Run("migrate", func(t *testing.T) {
		const alter = "ADD COLUMN note VARCHAR(20) NOT NULL DEFAULT 'n', ADD INDEX by_u (u)"
		replicaFixture(t, ctx, primary, pdb, rdb, "mor", 3000)
		l := startReplicatedLoad(t, pdb, "mor", 3000)
		m := &osc.Migration{Conn: conn(replica), Database: "mor", Table: "t", Alter: alter, Execute: true,
			MigrateOnReplica: true, ChunkSize: 100, Logger: testLogger(t)}
		res, err := m.Run(ctx)
		if err != nil {
			l.stop(t)
			t.Fatal(err)
		}
		l.waitForMore(t, ctx) // replication writes into the migrated table after the cut-over
		l.stop(t)
		if res.EventsApplied == 0 {
			t.Fatal("no replicated change was applied to the ghost table: the load did not run during the migration")
		}
		t.Logf("%d rows copied, %d replicated changes applied, %d writes on the primary", res.RowsCopied, res.EventsApplied, l.ops.Load())
		waitReplicaCaughtUp(t, ctx, pdb, rdb)
		// (kept out of the primary's binlog: on the replica, LIKE mor.t would copy the migrated table)
		must(t, primary.Exec(ctx, "SET SESSION sql_log_bin = 0", "CREATE TABLE mor.native LIKE mor.t", "INSERT INTO mor.native SELECT * FROM mor.t", "ALTER TABLE mor.native "+alter))
		sameTableOn(t, replica, "mor.t", primary, "mor.native")
		if strings.Contains(createTable(t, pdb, "mor.t"), "note") {
			t.Fatal("the primary's table was migrated too")
		}
		if res.OldTable != "t_del" || !tableExistsOn(t, rdb, "mor", "t_del") {
			t.Fatalf("the replica's original table is not kept as t_del (OldTable %q)", res.OldTable)
		}
	})

	// TestOnReplica: replication stops at a position, both tables stay: the original equal to the
	// primary's table at that position (the load writes t and its twin in one transaction, so the
	// replica's twin is the primary's t there), the migrated table equal to the native ALTER of it,
	// built and compared by the statements the report prints; those and the printed resume
	// statement then resume replication.
	t.Run("test", func(t *testing.T) {
		const alter = "MODIFY s VARCHAR(60) NOT NULL DEFAULT '', ADD COLUMN n2 INT NULL, DROP COLUMN d"
		replicaFixture(t, ctx, primary, pdb, rdb, "tor", 3000)
		l := startReplicatedLoad(t, pdb, "tor", 3000)
		m := &osc.Migration{Conn: conn(replica), Database: "tor", Table: "t", Alter: alter, Execute: true,
			TestOnReplica: true, ChunkSize: 100, Logger: testLogger(t)}
		res, err := m.Run(ctx)
		if err != nil {
			l.stop(t)
			t.Fatal(err)
		}
		stoppedAt := replicaGTID(t, rdb)
		l.waitForMore(t, ctx)
		l.stop(t)
		rt := res.ReplicaTest
		if rt == nil {
			t.Fatal("no ReplicaTest report")
		}
		t.Logf("report:\n%s", rt)
		if res.EventsApplied == 0 {
			t.Fatal("no replicated change was applied to the ghost table: the load did not run during the migration")
		}
		st, err := sandbox.SlaveStatus(ctx, rdb)
		must(t, err)
		if st["Slave_SQL_Running"] != "No" || st["Slave_IO_Running"] != "No" {
			t.Fatalf("replication runs after the test (IO %s, SQL %s); it must stay stopped", st["Slave_IO_Running"], st["Slave_SQL_Running"])
		}
		if got := replicaGTID(t, rdb); got != stoppedAt || got != rt.GTIDPosition {
			t.Fatalf("replication stopped at %q (reported %q), now at %q", stoppedAt, rt.GTIDPosition, got)
		}
		var primaryPos string
		must(t, pdb.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&primaryPos))
		if primaryPos == stoppedAt {
			t.Fatal("the primary wrote nothing after replication stopped: the test cannot tell a stopped replica")
		}
		if want := st["Relay_Master_Log_File"] + ":" + st["Exec_Master_Log_Pos"]; len(rt.StoppedAt) != 1 || rt.StoppedAt[0] != want {
			t.Fatalf("StoppedAt = %q, want the primary's binlog position the replica applied up to, %s", rt.StoppedAt, want)
		}
		if tableExistsOn(t, rdb, "tor", "t_del") || tableExistsOn(t, rdb, "tor", "_t_ghc") || res.OldTable != "" {
			t.Fatalf("leftovers after the swap back (OldTable %q)", res.OldTable)
		}
		// The original: exactly the primary's table at the stop position, old definition.
		sameTableOn(t, replica, "tor.t", replica, "tor.twin")
		// The migrated table: the native ALTER of the original, by the printed statements.
		c, err := rdb.Conn(ctx)
		must(t, err)
		var sums []string
		for _, s := range rt.Compare {
			if !strings.HasPrefix(s, "CHECKSUM") {
				_, err := c.ExecContext(ctx, s)
				must(t, err)
				continue
			}
			rows, err := c.QueryContext(ctx, s)
			must(t, err)
			for rows.Next() {
				var table string
				var sum sql.NullString
				must(t, rows.Scan(&table, &sum))
				sums = append(sums, sum.String)
			}
			must(t, rows.Err())
			rows.Close()
		}
		c.Close()
		if len(sums) != 2 || sums[0] != sums[1] || sums[0] == "" {
			t.Fatalf("the printed comparison's checksums: %q, want two equal ones", sums)
		}
		sameTableOn(t, replica, "tor._t_gho", replica, "tor._t_cmp")
		// The printed clean-up and resume statements work: replication catches up.
		for _, s := range append(rt.Cleanup, rt.Resume) {
			_, err := rdb.ExecContext(ctx, s)
			must(t, err)
		}
		waitReplicaCaughtUp(t, ctx, pdb, rdb)
		sameTableOn(t, replica, "tor.t", primary, "tor.t")
	})

	// TestOnReplica whose cut-over fails (a transaction on the replica holds the table's metadata
	// lock, so LOCK TABLES times out): replication, stopped for the cut-over, runs again, and the
	// original table is in place.
	t.Run("test fails", func(t *testing.T) {
		replicaFixture(t, ctx, primary, pdb, rdb, "tfail", 200)
		var holder *sql.Tx
		defer func() {
			if holder != nil {
				holder.Rollback()
			}
		}()
		m := &osc.Migration{Conn: conn(replica), Database: "tfail", Table: "t", Alter: "ADD COLUMN x INT", Execute: true,
			TestOnReplica: true, CutoverAttempts: 1, CutoverLockTimeout: time.Second, Logger: testLogger(t),
			Hooks: osc.Hooks{Func: func(ctx context.Context, p osc.HookPoint, _ osc.Status, _ error) error {
				if p != osc.HookBeforeCutover {
					return nil
				}
				tx, err := rdb.BeginTx(ctx, nil)
				if err == nil {
					_, err = tx.ExecContext(ctx, "SELECT * FROM tfail.t LIMIT 1")
				}
				holder = tx
				return err
			}}}
		_, err := m.Run(ctx)
		if err == nil || !strings.Contains(err.Error(), "cut-over failed") {
			t.Fatalf("the cut-over did not fail: %v", err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		waitFor(t, wctx, "replication runs again after the failed cut-over", func() bool {
			st, err := sandbox.SlaveStatus(ctx, rdb)
			return err == nil && st["Slave_SQL_Running"] == "Yes" && st["Slave_IO_Running"] == "Yes"
		})
		holder.Rollback()
		holder = nil
		must(t, primary.Exec(ctx, "INSERT INTO tfail.t VALUES (100000, 1, 'after', NULL)"))
		waitReplicaCaughtUp(t, ctx, pdb, rdb)
		sameTableOn(t, replica, "tfail.t", primary, "tfail.t")
	})

	// Refusals, before anything is written, naming the flag.
	t.Run("refusals", func(t *testing.T) {
		replicaFixture(t, ctx, primary, pdb, rdb, "ref", 10)
		for _, s := range []string{"CREATE USER osc_ro@'127.0.0.1'", "GRANT ALL ON ref.* TO osc_ro@'127.0.0.1'",
			"GRANT SLAVE MONITOR, BINLOG MONITOR, REPLICATION SLAVE ON *.* TO osc_ro@'127.0.0.1'"} {
			_, err := pdb.ExecContext(ctx, s)
			must(t, err)
		}
		waitReplicaCaughtUp(t, ctx, pdb, rdb)
		noLog, err := sandbox.StartReplica(ctx, primary, sandbox.Options{ExtraArgs: []string{"--skip-log-slave-updates"}})
		must(t, err)
		defer noLog.Stop()
		waitFor(t, ctx, "the replica without log_slave_updates has the table", func() bool {
			return count(t, noLog, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'ref' AND TABLE_NAME = 't'") == 1
		})
		ro := conn(replica)
		ro.User = "osc_ro"
		cases := []struct {
			name     string
			server   *sandbox.Server
			conn     ferry.ConnConfig
			setup    func(m *osc.Migration)
			globals  []string // on the replica, reset afterwards
			alter    string
			refusal  []string // in the error; none: a dry run passes
			dontTest bool
		}{
			{name: "test on the primary", server: primary, setup: func(m *osc.Migration) { m.TestOnReplica = true },
				refusal: []string{"-test-on-replica", "is not a replica", "SHOW ALL SLAVES STATUS"}},
			{name: "migrate on the primary", server: primary, setup: func(m *osc.Migration) { m.MigrateOnReplica = true },
				refusal: []string{"-migrate-on-replica", "is not a replica"}},
			{name: "replica without log_slave_updates", server: noLog, setup: func(m *osc.Migration) { m.TestOnReplica = true },
				refusal: []string{"-test-on-replica", "log_slave_updates is OFF"}},
			{name: "read_only without the privilege", server: replica, conn: ro, globals: []string{"read_only = 1"},
				setup: func(m *osc.Migration) { m.MigrateOnReplica = true }, refusal: []string{"-migrate-on-replica", "read_only", "READ_ONLY ADMIN", "osc_ro"}},
			{name: "read_only with the privilege", server: replica, globals: []string{"read_only = 1"},
				setup: func(m *osc.Migration) { m.MigrateOnReplica = true }},
			{name: "gtid_strict_mode in replication's domain", server: replica, globals: []string{"gtid_strict_mode = 1"},
				setup: func(m *osc.Migration) { m.TestOnReplica = true }, refusal: []string{"-test-on-replica", "gtid_strict_mode"}},
			{name: "a column added before the end", server: replica, alter: "ADD COLUMN x INT FIRST",
				setup: func(m *osc.Migration) { m.MigrateOnReplica = true }, refusal: []string{"-migrate-on-replica", "column 1 `x` instead of `id`"}},
			{name: "a column dropped before the end", server: replica, alter: "DROP COLUMN u",
				setup: func(m *osc.Migration) { m.MigrateOnReplica = true }, refusal: []string{"-migrate-on-replica", "column 2 `s` instead of `u`"}},
			{name: "the last column dropped and another added", server: replica, alter: "DROP COLUMN d, ADD COLUMN x INT",
				setup: func(m *osc.Migration) { m.MigrateOnReplica = true }, refusal: []string{"-migrate-on-replica", "column 4 `x` instead of `d`"}},
			{name: "a column added at the end", server: replica, alter: "ADD COLUMN x INT, ADD INDEX (u), MODIFY s VARCHAR(50) NOT NULL DEFAULT ''",
				setup: func(m *osc.Migration) { m.MigrateOnReplica = true }},
			{name: "the last column dropped", server: replica, alter: "DROP COLUMN d",
				setup: func(m *osc.Migration) { m.MigrateOnReplica = true }},
			{name: "both options", server: replica, setup: func(m *osc.Migration) { m.MigrateOnReplica, m.TestOnReplica = true, true },
				refusal: []string{"-migrate-on-replica", "-test-on-replica"}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				sdb, err := c.server.DB("")
				must(t, err)
				defer sdb.Close()
				for _, g := range c.globals {
					name := strings.TrimSpace(g[:strings.Index(g, "=")])
					var old string
					must(t, sdb.QueryRowContext(ctx, "SELECT @@GLOBAL."+name).Scan(&old))
					_, err := sdb.ExecContext(ctx, "SET GLOBAL "+g)
					must(t, err)
					defer sdb.ExecContext(context.Background(), "SET GLOBAL "+name+" = "+old)
				}
				cc := c.conn
				if cc.User == "" {
					cc = conn(c.server)
				}
				alter := c.alter
				if alter == "" {
					alter = "ADD COLUMN x INT"
				}
				m := &osc.Migration{Conn: cc, Database: "ref", Table: "t", Alter: alter, Logger: testLogger(t)}
				c.setup(m)
				_, err = m.Run(ctx)
				if len(c.refusal) == 0 {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					return
				}
				if err == nil {
					t.Fatal("not refused")
				}
				for _, want := range c.refusal {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("the refusal does not say %q: %v", want, err)
					}
				}
				var n int
				must(t, sdb.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'ref' AND TABLE_NAME NOT IN ('t', 'twin')").Scan(&n))
				if n != 0 {
					t.Errorf("%d table(s) created before the refusal", n)
				}
			})
		}
	})
}

const replicaFixtureTable = `CREATE TABLE %s (
	id INT NOT NULL PRIMARY KEY,
	u INT NOT NULL,
	s VARCHAR(40) NOT NULL DEFAULT '',
	d DECIMAL(10,2) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`

// replicaFixture creates db.t and db.twin on the primary with the same rows and waits until the
// replica has them.
func replicaFixture(t *testing.T, ctx context.Context, primary *sandbox.Server, pdb, rdb *sql.DB, db string, rows int) {
	t.Helper()
	must(t, primary.Exec(ctx, "CREATE DATABASE "+db))
	for _, table := range []string{"t", "twin"} {
		must(t, primary.Exec(ctx, fmt.Sprintf(replicaFixtureTable, db+"."+table)))
		must(t, primary.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.%s SELECT seq, seq %% 97, CONCAT('s', seq), IF(seq %% 5 = 0, NULL, seq / 4) FROM mysql.seq_1_to_%d`, db, table, rows)))
	}
	waitReplicaCaughtUp(t, ctx, pdb, rdb)
}

// replicatedLoad writes to t and twin on the primary, the same change to both in one transaction,
// until stopped.
type replicatedLoad struct {
	ops   atomic.Int64
	stopc chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error
}

func startReplicatedLoad(t *testing.T, pdb *sql.DB, db string, rows int) *replicatedLoad {
	l := &replicatedLoad{stopc: make(chan struct{})}
	for w := 0; w < 2; w++ {
		l.wg.Add(1)
		go func(seed int64) {
			defer l.wg.Done()
			rng := rand.New(rand.NewSource(seed))
			for {
				select {
				case <-l.stopc:
					return
				default:
				}
				id := rng.Intn(rows * 2)
				var stmt string
				var args []any
				switch rng.Intn(3) {
				case 0:
					stmt, args = "REPLACE INTO %s (id, u, s, d) VALUES (?, ?, ?, ?)", []any{id, rng.Intn(1000), fmt.Sprint("r", rng.Int()), rng.Intn(10000)}
				case 1:
					stmt, args = "UPDATE %s SET u = u + 1, s = CONCAT(LEFT(s, 30), 'x'), d = NULL WHERE id = ?", []any{id}
				default:
					stmt, args = "DELETE FROM %s WHERE id = ?", []any{id}
				}
				tx, err := pdb.Begin()
				if err == nil {
					_, err = tx.Exec(fmt.Sprintf(stmt, db+".t"), args...)
				}
				if err == nil {
					_, err = tx.Exec(fmt.Sprintf(stmt, db+".twin"), args...)
				}
				if err == nil {
					err = tx.Commit()
				} else if tx != nil {
					tx.Rollback()
				}
				if err != nil {
					l.mu.Lock()
					l.err = err
					l.mu.Unlock()
					return
				}
				l.ops.Add(1)
				time.Sleep(time.Millisecond)
			}
		}(int64(w + 1))
	}
	return l
}

// waitForMore waits until the load has committed some more transactions.
func (l *replicatedLoad) waitForMore(t *testing.T, ctx context.Context) {
	t.Helper()
	n := l.ops.Load()
	waitFor(t, ctx, "the load writes on", func() bool { return l.ops.Load() >= n+50 })
}

func (l *replicatedLoad) stop(t *testing.T) {
	t.Helper()
	close(l.stopc)
	l.wg.Wait()
	if l.err != nil {
		t.Fatalf("load: %v", l.err)
	}
}

// waitReplicaCaughtUp waits until the replica has applied everything the primary has binlogged.
func waitReplicaCaughtUp(t *testing.T, ctx context.Context, pdb, rdb *sql.DB) {
	t.Helper()
	var pos string
	must(t, pdb.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&pos))
	var res sql.NullInt64
	must(t, rdb.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 20)", pos).Scan(&res))
	if !res.Valid || res.Int64 != 0 {
		st, _ := sandbox.SlaveStatus(ctx, rdb)
		t.Fatalf("the replica did not reach the primary's position %s: IO %s, SQL %s, %s %s", pos, st["Slave_IO_Running"], st["Slave_SQL_Running"], st["Last_IO_Error"], st["Last_SQL_Error"])
	}
}

func replicaGTID(t *testing.T, rdb *sql.DB) string {
	t.Helper()
	var pos string
	must(t, rdb.QueryRow("SELECT @@GLOBAL.gtid_slave_pos").Scan(&pos))
	return pos
}

func createTable(t *testing.T, db *sql.DB, table string) string {
	t.Helper()
	var name, create string
	must(t, db.QueryRow("SHOW CREATE TABLE "+table).Scan(&name, &create))
	return strings.Replace(create, "CREATE TABLE `"+name+"`", "CREATE TABLE %s", 1)
}

func tableExistsOn(t *testing.T, db *sql.DB, schema, table string) bool {
	t.Helper()
	var n int
	must(t, db.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", schema, table).Scan(&n))
	return n == 1
}

// sameTableOn checks that table a on server sa and table b on server sb have the same definition
// (but the name and the AUTO_INCREMENT counter) and byte-identical rows.
func sameTableOn(t *testing.T, sa *sandbox.Server, a string, sb *sandbox.Server, b string) {
	t.Helper()
	da, err := sa.DB("")
	must(t, err)
	defer da.Close()
	db, err := sb.DB("")
	must(t, err)
	defer db.Close()
	if ca, cb := createTable(t, da, a), createTable(t, db, b); ca != cb {
		t.Fatalf("%s is\n%s\nbut %s is\n%s", a, ca, b, cb)
	}
	ra, rb := rowsOf(t, sa, a, ""), rowsOf(t, sb, b, "")
	if len(ra) == 0 {
		t.Fatalf("%s has no rows: nothing compared", a)
	}
	diffs := 0
	for i := 0; i < len(ra) || i < len(rb); i++ {
		if i >= len(ra) || i >= len(rb) {
			t.Fatalf("%s has %d rows, %s %d", a, len(ra), b, len(rb))
		}
		for j := range ra[i] {
			if !bytes.Equal(ra[i][j], rb[i][j]) || (ra[i][j] == nil) != (rb[i][j] == nil) {
				if diffs++; diffs <= 5 {
					t.Errorf("row %d (key %q / %q) column %d: %s has %q, %s %q", i, trunc(ra[i][0]), trunc(rb[i][0]), j, a, trunc(ra[i][j]), b, trunc(rb[i][j]))
				}
			}
		}
	}
	if diffs > 0 {
		t.Fatalf("%s and %s: %d differing values", a, b, diffs)
	}
}
