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

// copydb pauses while its -throttle-flag-file exists, prints why in its progress lines, and
// finishes identical once the file is removed.
func TestCopydbThrottleFlagFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := rsBuildCopydb(t, dir)
	createSchema(t, source, "cdthr", 5000)
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS cdthr"))
	flag := filepath.Join(dir, "pause")
	must(t, os.WriteFile(flag, nil, 0o644))
	r := rsStartCopydb(t, bin,
		"-source-host", "127.0.0.1", "-source-port", fmt.Sprint(source.Port), "-source-user", "root",
		"-target-host", "127.0.0.1", "-target-port", fmt.Sprint(target.Port), "-target-user", "root",
		"-databases", "cdthr", "-create-tables", "-cutover", "none", "-verify", "checksum",
		"-throttle-flag-file", flag, "-progress", "100ms", "-log-level", "warn")
	rsWaitFor(t, r, time.Minute, "a throttled progress line", func() bool { return strings.Contains(r.output(), "throttled: ") })
	time.Sleep(500 * time.Millisecond)
	if n := r.lastProgressRows(); n != 0 {
		t.Fatalf("copydb copied %d rows while the flag file existed", n)
	}
	must(t, os.Remove(flag))
	select {
	case <-r.exited:
	case <-ctx.Done():
		t.Fatal("copydb did not finish")
	}
	if r.err != nil {
		t.Fatalf("copydb: %v\n%s", r.err, rsTailString(r.output(), 2000))
	}
	if !strings.Contains(r.output(), "MATCH") {
		t.Fatalf("copydb did not report a matching verification:\n%s", rsTailString(r.output(), 2000))
	}
	for _, tb := range []string{"types", "composite", "strkey", "big"} {
		assertSameRows(t, "cdthr."+tb, "", "cdthr."+tb)
	}
}
