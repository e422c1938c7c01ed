package test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

// assertRefusal checks that err is an OptionError for option naming every object in want and
// none in notWant.
func assertRefusal(t *testing.T, err error, option string, want, notWant []string) {
	t.Helper()
	var oe *ferry.OptionError
	if !errors.As(err, &oe) || oe.Option != option {
		t.Fatalf("want a refusal naming %s, got %v", option, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("refusal does not name %s: %v", w, err)
		}
	}
	for _, w := range notWant {
		if strings.Contains(err.Error(), w) {
			t.Errorf("refusal names %s, which changes nothing by cascade: %v", w, err)
		}
	}
}

// Foreign keys that cascade (ON DELETE CASCADE, ON UPDATE SET NULL, ...) change child rows inside
// the server without a binlog event. Initialize refuses the child tables before writing anything,
// naming each constraint, its action and its parent (selected or not); copydb names its flag; and
// with the option set the copy runs, exact as long as no parent row is deleted or re-keyed, while a
// parent delete leaves the target with the children the source cascaded away — the divergence the
// option accepts.
func TestForeignKeyCascadesAreRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	must(t, source.Exec(ctx,
		"DROP DATABASE IF EXISTS fkc", "DROP DATABASE IF EXISTS fkc_other", "CREATE DATABASE fkc", "CREATE DATABASE fkc_other",
		"CREATE TABLE fkc_other.owner (id INT PRIMARY KEY)",
		"CREATE TABLE fkc.parent (id INT PRIMARY KEY, name VARCHAR(20))",
		"CREATE TABLE fkc.child (id INT PRIMARY KEY, parent_id INT NOT NULL, v INT, CONSTRAINT child_parent FOREIGN KEY (parent_id) REFERENCES fkc.parent (id) ON DELETE CASCADE)",
		"CREATE TABLE fkc.note (id INT PRIMARY KEY, owner_id INT NULL, CONSTRAINT note_owner FOREIGN KEY (owner_id) REFERENCES fkc_other.owner (id) ON UPDATE SET NULL)",
		"CREATE TABLE fkc.plain (id INT PRIMARY KEY, parent_id INT, CONSTRAINT plain_parent FOREIGN KEY (parent_id) REFERENCES fkc.parent (id))",
		"INSERT INTO fkc_other.owner VALUES (1), (2)",
		"INSERT INTO fkc.parent SELECT seq, CONCAT('p', seq) FROM mysql.seq_1_to_20",
		"INSERT INTO fkc.child SELECT seq, 1 + seq % 20, seq FROM mysql.seq_1_to_200",
		"INSERT INTO fkc.note VALUES (1, 1), (2, 2)",
		"INSERT INTO fkc.plain VALUES (1, 1)"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS fkc"))
	cfg := ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{"fkc"}},
		CreateTargetTables: true, Logger: testLogger(t)}

	f, err := ferry.New(cfg)
	must(t, err)
	err = f.Initialize(ctx)
	f.Close()
	assertRefusal(t, err, "ApplyForeignKeyCascades",
		[]string{"fkc.child.child_parent (ON DELETE CASCADE from fkc.parent)", "fkc.note.note_owner (ON UPDATE SET NULL from fkc_other.owner, not selected)"},
		[]string{"plain_parent"})
	if n := count(t, target, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'fkc'"); n != 0 {
		t.Fatal("the refusal came after writing: the target database was created")
	}

	bin := rsBuildCopydb(t, t.TempDir())
	out, code := runCopydb(t, ctx, bin, "-databases", "fkc", "-create-tables")
	if code != 1 || !strings.Contains(out, "set -allow-fk-cascades to copy anyway") || strings.Contains(out, "AllowForeignKeyCascades") ||
		!strings.Contains(out, "fkc.child.child_parent") {
		t.Fatalf("copydb exit %d; want 1 and a refusal naming -allow-fk-cascades and the constraint:\n%s", code, out)
	}
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS fkc_other", "CREATE DATABASE fkc_other"))
	out, code = runCopydb(t, ctx, bin, "-databases", "fkc_other")
	if code != 1 || !strings.Contains(out, "set -create-tables to create it") || strings.Contains(out, "CreateTargetTables") {
		t.Fatalf("copydb exit %d; want 1 and a refusal naming -create-tables:\n%s", code, out)
	}

	// Accepted: children and parents' other columns change under the copy; identical at the end.
	cfg.AllowForeignKeyCascades = true
	f, err = ferry.New(cfg)
	must(t, err)
	defer f.Close()
	must(t, f.Initialize(ctx))
	must(t, f.Start(ctx))
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()
	for i := 0; i < 50; i++ {
		must(t, source.Exec(ctx, "BEGIN",
			fmt.Sprintf("UPDATE fkc.child SET v = v + 1, parent_id = %d WHERE id = %d", 1+i%20, 1+i*4),
			fmt.Sprintf("INSERT INTO fkc.child VALUES (%d, %d, 0)", 1000+i, 1+i%20),
			fmt.Sprintf("UPDATE fkc.parent SET name = 'renamed %d' WHERE id = %d", i, 1+i%20),
			"COMMIT"))
	}
	must(t, f.WaitUntilRowCopyIsComplete(ctx))
	_, err = f.FlushBinlog(ctx)
	must(t, err)
	for _, tb := range []string{"parent", "child", "note", "plain"} {
		assertSameRows(t, "fkc."+tb, "", "fkc."+tb)
	}
	// The stated hazard: a parent delete cascades on the source only.
	must(t, source.Exec(ctx, "DELETE FROM fkc.child WHERE id = 1000", "DELETE FROM fkc.parent WHERE id = 7"))
	_, err = f.FlushBinlog(ctx)
	must(t, err)
	src, dst := count(t, source, "SELECT COUNT(*) FROM fkc.child WHERE parent_id = 7"), count(t, target, "SELECT COUNT(*) FROM fkc.child WHERE parent_id = 7")
	if src != 0 || dst == 0 {
		t.Fatalf("children of the deleted parent: source %d, target %d; the cascade was expected to be lost on the target", src, dst)
	}
	must(t, f.FlushBinlogAndStopStreaming(ctx))
	must(t, <-runErr)
}

// A target table with triggers is refused, naming each trigger, before anything is written; copydb
// names its flag; with the option the copy runs and the trigger fires on every copied row — here a
// BEFORE INSERT trigger that rewrites a column rewrites all of them.
func TestTargetTriggersAreRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS trg", "CREATE DATABASE trg",
		"CREATE TABLE trg.t (id INT PRIMARY KEY, v VARCHAR(20))", "CREATE TABLE trg.u (id INT PRIMARY KEY)",
		"INSERT INTO trg.t SELECT seq, CONCAT('v', seq) FROM mysql.seq_1_to_100", "INSERT INTO trg.u VALUES (1)"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS trg", "CREATE DATABASE trg",
		"CREATE TABLE trg.t (id INT PRIMARY KEY, v VARCHAR(20))", "CREATE TABLE trg.u (id INT PRIMARY KEY)",
		"CREATE TRIGGER trg.t_stamp BEFORE INSERT ON trg.t FOR EACH ROW SET NEW.v = 'rewritten'",
		"CREATE TRIGGER trg.t_audit AFTER DELETE ON trg.t FOR EACH ROW SET @deleted = OLD.id"))
	cfg := ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{"trg"}}, Logger: testLogger(t)}
	f, err := ferry.New(cfg)
	must(t, err)
	err = f.Initialize(ctx)
	f.Close()
	assertRefusal(t, err, "AllowTargetTriggers", []string{"trg.t.t_audit (AFTER DELETE)", "trg.t.t_stamp (BEFORE INSERT)"}, nil)

	out, code := runCopydb(t, ctx, rsBuildCopydb(t, t.TempDir()), "-databases", "trg")
	if code != 1 || !strings.Contains(out, "set -allow-target-triggers to copy anyway") || !strings.Contains(out, "trg.t.t_stamp") {
		t.Fatalf("copydb exit %d; want 1 and a refusal naming -allow-target-triggers and the trigger:\n%s", code, out)
	}

	cfg.AllowTargetTriggers = true
	f, err = ferry.New(cfg)
	must(t, err)
	defer f.Close()
	must(t, f.Initialize(ctx))
	must(t, f.Start(ctx))
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()
	must(t, f.WaitUntilRowCopyIsComplete(ctx))
	must(t, f.FlushBinlogAndStopStreaming(ctx))
	must(t, <-runErr)
	if n := count(t, target, "SELECT COUNT(*) FROM trg.t WHERE v = 'rewritten'"); n != 100 {
		t.Fatalf("%d of 100 copied rows were rewritten by the target's trigger; want all (what the option accepts)", n)
	}
}
