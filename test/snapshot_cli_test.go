package test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/snapshot"
)

// The CLI's split writes one snapshot per range; a shard restores into a renamed database
// (-rewrite-databases), and the CLI's verify with servers proves that the renamed target holds
// exactly its range of the source — and fails once it holds a row of another range.
func TestCLISplitRestoreRenamedAndVerify(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db, renamed := "snap_cli", "snap_cli_s1"
	createSnapshotSchema(t, db, 3000)
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "DROP DATABASE IF EXISTS "+renamed, "DROP DATABASE IF EXISTS _ferry"))
	bin := buildSnapshotCLI(t)
	dir := t.TempDir()
	srcFlags := []string{"-source-host", source.Host, "-source-port", strconv.Itoa(source.Port), "-source-user", source.User}
	tgtFlags := []string{"-target-host", target.Host, "-target-port", strconv.Itoa(target.Port), "-target-user", target.User}
	run := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, bin, append(args, "-log-level", "warn")...).CombinedOutput()
		return string(out), err
	}
	out, err := run(append([]string{"split", "-to", dir, "-databases", db, "-split-column", "tenant", "-split-bounds", "1,3"}, srcFlags...)...)
	if err != nil {
		t.Fatalf("split: %v\n%s", err, out)
	}
	if n := strings.Count(out, "snapshot "); n != 3 {
		t.Fatalf("split printed %d snapshots, want 3:\n%s", n, out)
	}
	shard := filepath.Join(dir, snapshot.ShardLocation(1))
	if out, err := run(append([]string{"restore", "-from", shard, "-rewrite-databases", db + "=" + renamed}, tgtFlags...)...); err != nil {
		t.Fatalf("restore -rewrite-databases: %v\n%s", err, out)
	}
	if n := count(t, target, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '"+db+"'"); n != 0 {
		t.Errorf("restore into %s created the source's database %s too", renamed, db)
	}
	if n := count(t, target, "SELECT COUNT(*) FROM "+renamed+".big WHERE tenant < 1 OR tenant >= 3"); n != 0 {
		t.Errorf("shard 1 restored %d rows of other ranges", n)
	}
	verify := append(append([]string{"verify", "-from", shard, "-rewrite-databases", db + "=" + renamed}, srcFlags...), tgtFlags...)
	if out, err := run(verify...); err != nil {
		t.Fatalf("verify of shard 1 against its renamed target: %v\n%s", err, out)
	}
	if out, err := run("verify", "-from", shard); err != nil || !strings.Contains(out, "every file present") {
		t.Fatalf("verify of the files: %v\n%s", err, out)
	}
	must(t, target.Exec(ctx, "INSERT INTO "+renamed+".big (id, u, tenant) VALUES (999999999, 999999999, 0)"))
	if out, err := run(verify...); err == nil {
		t.Fatalf("verify passed with a row of shard 0 on shard 1's target:\n%s", out)
	} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("verify with a foreign row: %v, want exit status 1\n%s", err, out)
	}
	out, err = run(append([]string{"restore", "-from", shard, "-rewrite-databases", "nosuchdb=x"}, tgtFlags...)...)
	if err == nil || !strings.Contains(out, "no database nosuchdb") {
		t.Fatalf("restore with a rewrite of a database not in the snapshot: %v\n%s", err, out)
	}
}

// A whole snapshot restores into a renamed database byte for byte, and a clone into a renamed
// database catches up the changes made after the snapshot.
func TestRestoreAndCloneIntoRenamedDatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db, renamed := "snap_ren", "snap_ren_copy"
	createSnapshotSchema(t, db, 3000)
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "DROP DATABASE IF EXISTS "+renamed, "DROP DATABASE IF EXISTS _ferry"))
	dir := &snapshot.Dir{Path: t.TempDir()}
	takeSnapshot(t, ctx, dir, snapshot.Options{Tables: ferry.TableFilter{Databases: []string{db}}, MaxFileSize: 32 << 10})
	o := restoreOpts(t, target, dir)
	o.DatabaseRewrites = map[string]string{db: renamed}
	_, err := snapshot.Restore(ctx, o)
	must(t, err)
	for _, name := range snapshotTables {
		sameRowsAs(t, source, db+"."+name, target, renamed+"."+name)
	}
	if n := count(t, target, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '"+db+"'"); n != 0 {
		t.Errorf("restore into %s created the source's database %s too", renamed, db)
	}

	// Clone: restore into the renamed database, then catch up changes made after the snapshot.
	must(t, target.Exec(ctx, "DROP DATABASE "+renamed, "DROP DATABASE _ferry"))
	must(t, source.Exec(ctx, "UPDATE "+db+".big SET payload = 'after the snapshot' WHERE id % 31 = 0",
		"DELETE FROM "+db+".strkey WHERE v % 7 = 0", "INSERT INTO "+db+".indexed VALUES (100000, 1, 'new')"))
	f, _, err := snapshot.Clone(ctx, snapshot.CloneOptions{Restore: o,
		Ferry: ferry.Config{Source: conn(source), Target: conn(target), Logger: testLogger(t)}})
	must(t, err)
	defer f.Close()
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()
	_, err = (&ferry.Cutover{Ferry: f, Hooks: ferry.HookFuncs{}}).Run(ctx)
	must(t, err)
	must(t, <-runErr)
	for _, name := range snapshotTables {
		sameRowsAs(t, source, db+"."+name, target, renamed+"."+name)
	}
}

// A snapshot stores the definitions of its databases' views and routines; a restore creates them
// only when asked (views over views in dependency order), and refuses to create them in a renamed
// database, whose definitions would name the source's objects.
func TestSnapshotRestoresViewsAndRoutinesWhenAsked(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const db = "snap_obj"
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db,
		"CREATE TABLE "+db+".t (id INT PRIMARY KEY, v VARCHAR(40))",
		"INSERT INTO "+db+".t SELECT seq, CONCAT('row ', seq) FROM mysql.seq_1_to_200",
		"CREATE VIEW "+db+".z_base AS SELECT id, v FROM "+db+".t WHERE id > 10",
		"CREATE VIEW "+db+".a_over AS SELECT COUNT(*) AS n FROM "+db+".z_base", // created after z_base
		"CREATE PROCEDURE "+db+".add_row(IN i INT) INSERT INTO t VALUES (i, 'from procedure')",
		"CREATE FUNCTION "+db+".twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "DROP DATABASE IF EXISTS "+db+"_copy", "DROP DATABASE IF EXISTS _ferry"))
	dir := &snapshot.Dir{Path: t.TempDir()}
	ms := takeSnapshot(t, ctx, dir, snapshot.Options{Tables: ferry.TableFilter{Databases: []string{db}}})
	if n := len(ms[0].Objects); n != 4 {
		t.Fatalf("the manifest holds %d views and routines, want 4: %+v", n, ms[0].Objects)
	}
	objects := func() int {
		return count(t, target, "SELECT (SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '"+db+"') + "+
			"(SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '"+db+"')")
	}

	o := restoreOpts(t, target, dir)
	o.CreateSchemaObjects = []string{ferry.ObjectViews, ferry.ObjectRoutines}
	o.DatabaseRewrites = map[string]string{db: db + "_copy"}
	if _, err := snapshot.Restore(ctx, o); err == nil || !strings.Contains(err.Error(), "-rewrite-databases") {
		t.Fatalf("creating views and routines in a renamed database: got %v, want a refusal", err)
	}
	if n := count(t, target, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '"+db+"%'"); n != 0 {
		t.Fatalf("the refused restore created %d databases", n)
	}
	o.DatabaseRewrites = nil
	o.CreateSchemaObjects = []string{ferry.ObjectEvents}
	if _, err := snapshot.Restore(ctx, o); err == nil {
		t.Fatal("a restore asked for events (a snapshot holds none) did not fail")
	}

	// Not asked: tables only.
	_, err := snapshot.Restore(ctx, restoreOpts(t, target, dir))
	must(t, err)
	if n := objects(); n != 0 {
		t.Fatalf("a restore not asked for views and routines created %d", n)
	}
	must(t, target.Exec(ctx, "DROP DATABASE "+db, "DROP DATABASE _ferry"))
	o.CreateSchemaObjects = []string{ferry.ObjectViews, ferry.ObjectRoutines}
	rep, err := snapshot.Restore(ctx, o)
	must(t, err)
	if len(rep.ObjectsCreated) != 4 || objects() != 4 {
		t.Fatalf("created %v; %d on the target, want 4", rep.ObjectsCreated, objects())
	}
	if n := count(t, target, "SELECT "+db+".twice(21)"); n != 42 {
		t.Errorf("twice(21) on the target = %d", n)
	}
	if a, b := count(t, target, "SELECT n FROM "+db+".a_over"), count(t, source, "SELECT n FROM "+db+".a_over"); a != b {
		t.Errorf("the view a_over gives %d on the target, %d on the source", a, b)
	}
	must(t, target.Exec(ctx, "CALL "+db+".add_row(1000)"))
	if n := count(t, target, "SELECT COUNT(*) FROM "+db+".t WHERE id = 1000"); n != 1 {
		t.Errorf("the procedure add_row did not insert its row on the target")
	}
}
