package test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

// sobjSchema is a database with a view over a view (created in dependency order), a procedure, a
// function, an event and two triggers: one rewrites the row being inserted, one writes a row of
// another table. If either fired on a copied or applied row the target would differ.
var sobjSchema = []string{
	"CREATE TABLE %[1]s.t (id INT PRIMARY KEY, v VARCHAR(40))",
	"CREATE TABLE %[1]s.audit (id INT AUTO_INCREMENT PRIMARY KEY, t_id INT, note VARCHAR(40))",
	"CREATE VIEW %[1]s.z_base AS SELECT id, v FROM %[1]s.t WHERE id > 0",
	"CREATE VIEW %[1]s.a_over AS SELECT COUNT(*) AS n FROM %[1]s.z_base",
	"CREATE PROCEDURE %[1]s.add_row(IN i INT) INSERT INTO t VALUES (i, 'from procedure')",
	"CREATE FUNCTION %[1]s.twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
	"CREATE EVENT %[1]s.nightly ON SCHEDULE EVERY 1 DAY DO DELETE FROM audit WHERE id < 0",
	"CREATE TRIGGER %[1]s.t_mark BEFORE INSERT ON %[1]s.t FOR EACH ROW SET NEW.v = CONCAT(NEW.v, '+')",
	"CREATE TRIGGER %[1]s.t_audit AFTER INSERT ON %[1]s.t FOR EACH ROW INSERT INTO audit (t_id, note) VALUES (NEW.id, 'inserted')",
}

func sobjCreate(t *testing.T, ctx context.Context, db string) {
	stmts := []string{"DROP DATABASE IF EXISTS " + db, "CREATE DATABASE " + db}
	for _, s := range sobjSchema {
		stmts = append(stmts, fmt.Sprintf(s, db))
	}
	stmts = append(stmts, "INSERT INTO "+db+".t SELECT seq, CONCAT('row ', seq) FROM mysql.seq_1_to_500")
	must(t, source.Exec(ctx, stmts...))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
}

func targetObjects(t *testing.T, db string) map[string]bool {
	out := map[string]bool{}
	pool, err := target.DB("")
	must(t, err)
	defer pool.Close()
	rows, err := pool.Query(`SELECT CONCAT('view ', TABLE_NAME) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ?
		UNION ALL SELECT CONCAT(LOWER(ROUTINE_TYPE), ' ', ROUTINE_NAME) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?
		UNION ALL SELECT CONCAT('event ', EVENT_NAME) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?
		UNION ALL SELECT CONCAT('trigger ', TRIGGER_NAME) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?`, db, db, db, db)
	must(t, err)
	defer rows.Close()
	for rows.Next() {
		var s string
		must(t, rows.Scan(&s))
		out[s] = true
	}
	must(t, rows.Err())
	return out
}

// With CreateSchemaObjects, views (in dependency order) and routines are on the target before the
// copy, triggers and events appear only with writes stopped right before Swap — and are dropped
// again when Swap fails — so no trigger ever fires on a copied or applied row: under inserts that
// fire both source triggers, the target ends byte-identical, and every object is listed as created.
func TestCreateSchemaObjects(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const db = "sobj"
	sobjCreate(t, ctx, db)
	f, err := ferry.New(ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{db}},
		CreateTargetTables: true, Logger: testLogger(t),
		CreateSchemaObjects: []string{ferry.ObjectViews, ferry.ObjectRoutines, ferry.ObjectEvents, ferry.ObjectTriggers}})
	must(t, err)
	defer f.Close()
	must(t, f.Initialize(ctx))
	early := targetObjects(t, db)
	for _, o := range []string{"view z_base", "view a_over", "procedure add_row", "function twice"} {
		if !early[o] {
			t.Errorf("%s is not on the target after Initialize", o)
		}
	}
	for _, o := range []string{"event nightly", "trigger t_mark", "trigger t_audit"} {
		if early[o] {
			t.Errorf("%s is on the target before the copy", o)
		}
	}
	must(t, f.Start(ctx))
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()

	var next atomic.Int64
	next.Store(1000)
	insert := func(n int) {
		for i := 0; i < n; i++ {
			id := next.Add(1)
			must(t, source.Exec(ctx, fmt.Sprintf("INSERT INTO %s.t VALUES (%d, 'live %d')", db, id, id),
				fmt.Sprintf("UPDATE %s.t SET v = CONCAT(v, '!') WHERE id = %d", db, id%500+1)))
		}
	}
	insert(100)
	swaps := 0
	var atSwap map[string]bool
	hooks := ferry.HookFuncs{SwapFunc: func(context.Context) error {
		swaps++
		atSwap = targetObjects(t, db)
		if swaps == 1 {
			return errors.New("swap refused")
		}
		return nil
	}}
	cut := &ferry.Cutover{Ferry: f, Hooks: hooks}
	if _, err := cut.Run(ctx); err == nil {
		t.Fatal("the first cut-over did not fail")
	}
	if !atSwap["trigger t_mark"] || !atSwap["trigger t_audit"] || !atSwap["event nightly"] {
		t.Errorf("triggers and event not on the target at Swap: %v", atSwap)
	}
	after := targetObjects(t, db)
	if after["trigger t_mark"] || after["trigger t_audit"] || after["event nightly"] {
		t.Fatalf("triggers or event left on the target after the failed Swap: %v", after)
	}
	insert(50) // applied with the Ferry still streaming: the triggers must not be there
	_, err = cut.Run(ctx)
	must(t, err)
	must(t, <-runErr)
	for _, tb := range []string{"t", "audit"} {
		assertSameRows(t, db+"."+tb, "", db+"."+tb)
	}
	final := targetObjects(t, db)
	for _, o := range f.SchemaObjects() {
		if !o.Created {
			t.Errorf("%s %s not created: %s", o.Kind, o.Name, o.Note)
		}
		name := o.Name[strings.LastIndex(o.Name, ".")+1:]
		if !final[o.Kind+" "+name] {
			t.Errorf("%s %s reported created but not on the target", o.Kind, o.Name)
		}
	}
	if len(f.SchemaObjects()) != 7 {
		t.Errorf("listed %d schema objects, want 7: %+v", len(f.SchemaObjects()), f.SchemaObjects())
	}
	// The created objects work on the target.
	if n := count(t, target, "SELECT "+db+".twice(21)"); n != 42 {
		t.Errorf("twice(21) on the target = %d", n)
	}
	if n := count(t, target, "SELECT n FROM "+db+".a_over"); n != count(t, source, "SELECT n FROM "+db+".a_over") {
		t.Errorf("the view a_over differs: %d on the target", n)
	}
}

// copydb -create-tables without -create-objects lists every view, routine, event and trigger it did
// not create, and creates none of them.
func TestCopydbListsSchemaObjectsNotCreated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const db = "sobjcli"
	sobjCreate(t, ctx, db)
	bin := rsBuildCopydb(t, t.TempDir())
	out, code := runCopydb(t, ctx, bin, "-databases", db, "-create-tables", "-cutover", "none", "-verify", "none")
	if code != 0 {
		t.Fatalf("copydb exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "schema objects NOT created on the target (-create-objects") {
		t.Fatalf("copydb does not list the schema objects it did not create:\n%s", out)
	}
	for _, o := range []string{"view sobjcli.z_base: not requested (views)", "view sobjcli.a_over", "procedure sobjcli.add_row: not requested (routines)",
		"function sobjcli.twice", "event sobjcli.nightly: not requested (events)", "trigger sobjcli.t.t_mark: not requested (triggers)", "trigger sobjcli.t.t_audit"} {
		if !strings.Contains(out, o) {
			t.Errorf("copydb output does not list %q:\n%s", o, out)
		}
	}
	if objs := targetObjects(t, db); len(objs) != 0 {
		t.Errorf("objects created without -create-objects: %v", objs)
	}
	// With -create-objects all and -cutover none the triggers and event are created after the
	// stream stopped.
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
	out, code = runCopydb(t, ctx, bin, "-databases", db, "-create-tables", "-create-objects", "all", "-cutover", "none", "-verify", "none")
	if code != 0 || strings.Contains(out, "NOT created") || len(targetObjects(t, db)) != 7 {
		t.Fatalf("copydb -create-objects all: exit %d, target objects %v:\n%s", code, targetObjects(t, db), out)
	}
	assertSameRows(t, db+".t", "", db+".t")
	assertSameRows(t, db+".audit", "", db+".audit")
}

// A requested view that reads a table not copied cannot be created: Initialize fails naming the
// view and what to do, and the list says why other objects were left out.
func TestCreateSchemaObjectsViewOverUncopiedTable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS sobjv", "CREATE DATABASE sobjv",
		"CREATE TABLE sobjv.a (id INT PRIMARY KEY)", "CREATE TABLE sobjv.b (id INT PRIMARY KEY)",
		"CREATE VIEW sobjv.v AS SELECT id FROM sobjv.b"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS sobjv"))
	f, err := ferry.New(ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Include: []string{"sobjv.[av]"}},
		CreateTargetTables: true, CreateSchemaObjects: []string{ferry.ObjectViews}, Logger: testLogger(t)})
	must(t, err)
	defer f.Close()
	err = f.Initialize(ctx)
	if err == nil || !strings.Contains(err.Error(), "create view sobjv.v") || !strings.Contains(err.Error(), "every table and view it reads") {
		t.Fatalf("want a refusal naming the view and its cause, got %v", err)
	}
}
