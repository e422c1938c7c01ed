package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// With a row filter, the checksum verification of a copy into empty target tables compares every
// target row, not only those inside the filter: a row outside the filter that reaches the target
// (here written there by hand while the copy waits on its throttle) is a difference, exit 3. It was
// never looked at, and copydb reported MATCH and ok.
func TestCopydbFilteredChecksumSeesRowsOutsideTheFilter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := rsBuildCopydb(t, dir)
	const db = "cdfiltstrict"
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db,
		"CREATE TABLE "+db+".t (id INT PRIMARY KEY, tenant VARCHAR(10) NOT NULL, v INT)",
		"INSERT INTO "+db+".t SELECT seq, IF(seq % 2, 'acme', 'other'), seq FROM "+db+".seq_1_to_200"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
	flag := filepath.Join(dir, "pause")
	must(t, os.WriteFile(flag, nil, 0o644))
	r := rsStartCopydb(t, bin, copydbArgs("-databases", db, "-create-tables", "-cutover", "none", "-verify", "checksum",
		"-filter-column", "tenant", "-filter-value", "acme", "-throttle-flag-file", flag, "-progress", "100ms")...)
	rsWaitFor(t, r, time.Minute, "a throttled progress line", func() bool { return strings.Contains(r.output(), "throttled: ") })
	must(t, target.Exec(ctx, "INSERT INTO "+db+".t VALUES (2, 'other', 2)"))
	must(t, os.Remove(flag))
	select {
	case <-r.exited:
	case <-ctx.Done():
		t.Fatal("copydb did not finish")
	}
	out := r.output()
	if code := r.cmd.ProcessState.ExitCode(); code != 3 || !strings.Contains(out, "MISMATCH") || strings.Contains(out, "copydb: ok") {
		t.Fatalf("exit status %d, want 3 with a MISMATCH and no \"copydb: ok\":\n%s", code, rsTailString(out, 3000))
	}
	if n := count(t, target, fmt.Sprintf("SELECT COUNT(*) FROM %s.t WHERE tenant <> 'acme'", db)); n != 1 {
		t.Fatalf("the target holds %d rows outside the filter, want the 1 written by hand", n)
	}
}
