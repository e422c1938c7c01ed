package test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry/snapshot"
)

func buildSnapshotCLI(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	must(t, err)
	bin := filepath.Join(t.TempDir(), "snapshot")
	build := exec.Command("go", "build", "-o", bin, "./examples/snapshot")
	build.Dir = filepath.Dir(strings.TrimSpace(string(out)))
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/snapshot: %v\n%s", err, b)
	}
	return bin
}

// killWhen starts the command and kills it with SIGKILL as soon as ready() holds.
func killWhen(t *testing.T, cmd *exec.Cmd, ready func() bool) {
	t.Helper()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	must(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(90 * time.Second)
	for !ready() {
		select {
		case err := <-exited:
			t.Fatalf("%s exited (%v) before it could be killed:\n%s", cmd.Args[1], err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("%s: never reached the point to kill it:\n%s", cmd.Args[1], out.String())
		}
	}
	must(t, cmd.Process.Signal(os.Kill))
	<-exited
}

// kill -9 during a snapshot leaves no snapshot (no manifest): it is refused, and a new run into the
// same location succeeds. kill -9 during a restore leaves whole files loaded; the restore is then
// refused without -resume, and with -resume loads exactly what is missing.
func TestSnapshotAndRestoreSurviveSIGKILL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	db := "snap_kill"
	createSnapshotSchema(t, db, 20000)
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "DROP DATABASE IF EXISTS _ferry"))
	bin := buildSnapshotCLI(t)
	dir := t.TempDir()
	srcFlags := []string{"-source-host", source.Host, "-source-port", strconv.Itoa(source.Port), "-source-user", source.User}
	tgtFlags := []string{"-target-host", target.Host, "-target-port", strconv.Itoa(target.Port), "-target-user", target.User}
	snap := append([]string{"snapshot", "-to", dir, "-databases", db, "-max-file-size", "16384", "-threads", "2", "-log-level", "warn"}, srcFlags...)

	hasDataFile := func() bool {
		found := false
		filepath.Walk(filepath.Join(dir, "data"), func(p string, fi os.FileInfo, err error) error {
			found = found || err == nil && strings.HasSuffix(p, ".zst")
			return nil
		})
		return found
	}
	killWhen(t, exec.Command(bin, append(snap, "-max-rows-per-second", "4000")...), hasDataFile)
	if _, err := os.Stat(filepath.Join(dir, snapshot.ManifestName)); err == nil {
		t.Fatal("a killed snapshot left a manifest")
	}
	if _, err := snapshot.Restore(ctx, restoreOpts(t, target, &snapshot.Dir{Path: dir})); !errors.Is(err, snapshot.ErrNoManifest) {
		t.Fatalf("restore of a killed snapshot: got %v, want ErrNoManifest", err)
	}
	if out, err := exec.Command(bin, snap...).CombinedOutput(); err != nil {
		t.Fatalf("snapshot again: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "verify", "-from", dir).CombinedOutput(); err != nil {
		t.Fatalf("verify of a complete snapshot: %v\n%s", err, out)
	}

	restore := append([]string{"restore", "-from", dir, "-threads", "2", "-log-level", "warn"}, tgtFlags...)
	loadedFiles := func() bool {
		return count(t, target, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '_ferry' AND TABLE_NAME = 'restored_files'") == 1 &&
			count(t, target, "SELECT COUNT(*) FROM _ferry.restored_files") >= 2
	}
	killWhen(t, exec.Command(bin, append(restore, "-max-rows-per-second", "4000")...), loadedFiles)
	out, err := exec.Command(bin, restore...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "-resume") {
		t.Fatalf("restore after a killed restore without -resume: got %v\n%s\nwant a refusal naming -resume", err, out)
	}
	if out, err := exec.Command(bin, append(restore, "-resume")...).CombinedOutput(); err != nil {
		t.Fatalf("restore -resume: %v\n%s", err, out)
	} else if !strings.Contains(string(out), "loaded earlier") || strings.Contains(string(out), "(0 loaded earlier)") {
		t.Errorf("restore -resume output: %s", out)
	}
	for _, name := range snapshotTables {
		sameRowsOn(t, source, target, db+"."+name)
	}

	// The CLI's clone: restore, catch up the changes made since the snapshot, cut over.
	must(t, target.Exec(ctx, "DROP DATABASE "+db, "DROP DATABASE _ferry"))
	must(t, source.Exec(ctx, "UPDATE "+db+".big SET payload = 'changed after the snapshot' WHERE id % 97 = 0",
		"DELETE FROM "+db+".strkey WHERE v % 11 = 0", "INSERT INTO "+db+".indexed VALUES (100000, 1, 'new')"))
	clone := append(append([]string{"clone", "-from", dir, "-cutover", "none", "-log-level", "warn"}, srcFlags...), tgtFlags...)
	if out, err := exec.Command(bin, clone...).CombinedOutput(); err != nil {
		t.Fatalf("clone: %v\n%s", err, out)
	}
	for _, name := range snapshotTables {
		sameRowsOn(t, source, target, db+"."+name)
	}
}
