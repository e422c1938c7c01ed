package test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// copydbArgs are the connection flags of a copydb run against the test servers.
func copydbArgs(args ...string) []string {
	return append([]string{
		"-source-host", "127.0.0.1", "-source-port", fmt.Sprint(source.Port), "-source-user", "root",
		"-target-host", "127.0.0.1", "-target-port", fmt.Sprint(target.Port), "-target-user", "root",
		"-progress", "1h", "-log-level", "warn"}, args...)
}

// runCopydb runs copydb to its end and returns its output and exit status.
func runCopydb(t *testing.T, ctx context.Context, bin string, args ...string) (string, int) {
	t.Helper()
	r := rsStartCopydb(t, bin, copydbArgs(args...)...)
	select {
	case <-r.exited:
	case <-ctx.Done():
		t.Fatalf("copydb did not finish:\n%s", rsTailString(r.output(), 3000))
	}
	var ee *exec.ExitError
	if r.err != nil && !errors.As(r.err, &ee) {
		t.Fatalf("copydb: %v", r.err)
	}
	return r.output(), r.cmd.ProcessState.ExitCode()
}

// A difference found by verification is a failure whatever the cut-over mode: copydb exits 3 and
// never prints "ok". The target already holds a row the source does not have and a row with other
// values (copied with -allow-nonempty-target, which never overwrites).
func TestCopydbMismatchExitsNonZero(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := rsBuildCopydb(t, t.TempDir())
	for _, c := range []struct{ cutover, verify string }{
		{"none", "checksum"},
		{"none", "inline"},
		{"read-only", "checksum"},
	} {
		t.Run(c.cutover+"_"+c.verify, func(t *testing.T) {
			const db = "cdmismatch"
			must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db,
				"CREATE TABLE "+db+".t (id INT PRIMARY KEY, v VARCHAR(20))",
				"INSERT INTO "+db+".t SELECT seq, CONCAT('v', seq) FROM "+db+".seq_1_to_500"))
			must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db,
				"CREATE TABLE "+db+".t (id INT PRIMARY KEY, v VARCHAR(20))",
				"INSERT INTO "+db+".t VALUES (7, 'not v7'), (1000, 'only on the target')"))
			out, code := runCopydb(t, ctx, bin, "-databases", db, "-allow-nonempty-target",
				"-cutover", c.cutover, "-verify", c.verify)
			if code != 3 {
				t.Errorf("exit status %d, want 3", code)
			}
			if !strings.Contains(out, "MISMATCH") || strings.Contains(out, "copydb: ok") {
				t.Errorf("want a MISMATCH and no \"copydb: ok\":\n%s", rsTailString(out, 3000))
			}
			if n := count(t, source, "SELECT @@GLOBAL.read_only"); n != 0 {
				t.Errorf("the source was left read-only")
			}
		})
	}
}

// When the cut-over bound is reached, copydb says which bound (the flag and its value) and what to
// do, and leaves the source writable.
func TestCopydbCutoverTimeoutNamesTheBound(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := rsBuildCopydb(t, t.TempDir())
	const db = "cdtimeout"
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db,
		"CREATE TABLE "+db+".t (id INT PRIMARY KEY, v VARCHAR(20))",
		"INSERT INTO "+db+".t SELECT seq, CONCAT('v', seq) FROM "+db+".seq_1_to_500"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
	// A bound no cut-over can meet: it is reached before the last changes are applied.
	out, code := runCopydb(t, ctx, bin, "-databases", db, "-create-tables", "-cutover", "read-only", "-cutover-timeout", "1ns")
	if code == 0 {
		t.Fatalf("copydb exited 0 with a 1ns cut-over bound:\n%s", rsTailString(out, 3000))
	}
	for _, want := range []string{"-cutover-timeout 1ns was hit", "raise -cutover-timeout"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, rsTailString(out, 3000))
		}
	}
	if n := count(t, source, "SELECT @@GLOBAL.read_only"); n != 0 {
		t.Errorf("the source was left read-only")
	}
}
