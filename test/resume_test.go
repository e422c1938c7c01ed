package test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

// rsBuildCopydb returns the path of the examples/copydb binary, built on first use: one build
// serves every test (the directory argument is not used).
func rsBuildCopydb(t *testing.T, _ string) string {
	t.Helper()
	copydbBuild.once.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			copydbBuild.err = err
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		if root == "." || root == "" {
			root = ".."
		}
		dir, err := os.MkdirTemp("", "ferry-test-copydb-")
		if err != nil {
			copydbBuild.err = err
			return
		}
		copydbBuild.dir = dir
		bin := filepath.Join(dir, "copydb")
		build := exec.Command("go", "build", "-o", bin, "./examples/copydb")
		build.Dir = root
		if b, err := build.CombinedOutput(); err != nil {
			copydbBuild.err = fmt.Errorf("go build ./examples/copydb: %v\n%s", err, b)
			return
		}
		copydbBuild.bin = bin
	})
	if copydbBuild.err != nil {
		t.Fatal(copydbBuild.err)
	}
	return copydbBuild.bin
}

// copydbBuild is the copydb binary the tests run, built once per test process (each build costs
// seconds of link time) and removed by TestMain.
var copydbBuild struct {
	once     sync.Once
	dir, bin string
	err      error
}

// rsCopydbRun is one copydb process.
type rsCopydbRun struct {
	cmd    *exec.Cmd
	out    bytes.Buffer // stdout and stderr
	exited chan struct{}
	err    error
}

func rsStartCopydb(t *testing.T, bin string, args ...string) *rsCopydbRun {
	t.Helper()
	r := &rsCopydbRun{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	w := &rsLockedWriter{b: &r.out}
	r.cmd.Stdout, r.cmd.Stderr = w, w
	must(t, r.cmd.Start())
	go func() { r.err = r.cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() {
		select {
		case <-r.exited:
		default:
			r.cmd.Process.Kill()
			<-r.exited
		}
	})
	return r
}

// rsLockedWriter lets the test read a process's output while the process writes it.
type rsLockedWriter struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (w *rsLockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (r *rsCopydbRun) running() bool {
	select {
	case <-r.exited:
		return false
	default:
		return true
	}
}

func (r *rsCopydbRun) output() string {
	w := r.cmd.Stdout.(*rsLockedWriter)
	w.mu.Lock()
	defer w.mu.Unlock()
	return r.out.String()
}

// lastProgressRows is the rows-copied figure of the last progress line copydb printed.
var rsProgressLine = regexp.MustCompile(`(?m)^\[[^\]]*\] (\d+)/\d+ rows`)

func (r *rsCopydbRun) lastProgressRows() int64 {
	m := rsProgressLine.FindAllStringSubmatch(r.output(), -1)
	if len(m) == 0 {
		return -1
	}
	n, _ := strconv.ParseInt(m[len(m)-1][1], 10, 64)
	return n
}

// rsReadState reads the state file; nil if it does not exist yet.
func rsReadState(t *testing.T, path string) *ferry.State {
	t.Helper()
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return nil
	}
	st, err := ferry.LoadCheckpointFile(path)
	must(t, err)
	return st
}

func rsStateRows(st *ferry.State) (total int64, per map[string]int64) {
	per = map[string]int64{}
	if st == nil {
		return 0, per
	}
	for name, ts := range st.Tables {
		per[name] = ts.RowsCopied
		total += ts.RowsCopied
	}
	return total, per
}

func rsAllCompleted(st *ferry.State, n int) bool {
	if st == nil || len(st.Tables) < n {
		return false
	}
	for _, ts := range st.Tables {
		if !ts.Completed {
			return false
		}
	}
	return true
}

func rsDescribeState(st *ferry.State) string {
	if st == nil {
		return "no state"
	}
	var names []string
	for n := range st.Tables {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "applied %s;", st.Applied)
	for _, n := range names {
		ts := st.Tables[n]
		done := ""
		if ts.Completed {
			done = " (completed)"
		}
		fmt.Fprintf(&b, " %s=%d%s", n[strings.IndexByte(n, '.')+1:], ts.RowsCopied, done)
	}
	return b.String()
}

// rsWaitFor polls cond every 50ms until it holds or the run exits or the deadline passes.
func rsWaitFor(t *testing.T, r *rsCopydbRun, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if !r.running() {
			t.Fatalf("copydb exited (%v) while waiting for %s:\n%s", r.err, what, rsTailString(r.output(), 4000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s:\n%s", d, what, rsTailString(r.output(), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func rsTailString(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// TestCopydbResumesAfterSIGKILL runs examples/copydb as a subprocess under a write load, kills it
// with SIGKILL at random moments — during the row copy, and during the binlog catch-up after each
// resume — resumes it each time from its state file, and finally lets it finish with the load
// stopped: every row must be identical, and a table completed before a kill is never copied again.
func TestCopydbResumesAfterSIGKILL(t *testing.T) {
	const bigRows = 300_000
	const copyKills, streamKills = 4, 2
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	start := time.Now()
	bin := rsBuildCopydb(t, t.TempDir())
	db := "resume_kill"
	createSchema(t, source, db, bigRows)
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
	t.Logf("built copydb and loaded %d rows in %s", bigRows, time.Since(start).Round(time.Millisecond))

	dir := t.TempDir()
	stateFile := filepath.Join(dir, "state.json")
	args := []string{
		"-source-host", source.Host, "-source-port", strconv.Itoa(source.Port), "-source-user", source.User,
		"-target-host", target.Host, "-target-port", strconv.Itoa(target.Port), "-target-user", target.User,
		"-databases", db, "-create-tables", "-state-file", stateFile, "-checkpoint-interval", "200ms",
		"-batch-size", "200", "-workers", "4", "-progress", "100ms", "-log-level", "warn",
	}
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("kill schedule seed %d", seed)

	load := startLoad(t, source, db, 11, 3, bigRows)
	time.Sleep(300 * time.Millisecond)

	// completedAt remembers each table's rows_copied when a checkpoint first showed it completed.
	completedAt := map[string]int64{}
	checkCompleted := func(st *ferry.State, when string) {
		for name, ts := range st.Tables {
			if n, ok := completedAt[name]; ok && ts.RowsCopied != n {
				t.Errorf("%s: table %s was completed with %d rows copied, now the state says %d: it was copied again", when, name, n, ts.RowsCopied)
			}
		}
		for name, ts := range st.Tables {
			if _, ok := completedAt[name]; !ok && ts.Completed {
				completedAt[name] = ts.RowsCopied
			}
		}
	}

	var recopied int64
	var lost []int64
	kills := 0
	var prev *ferry.State
	const sigterm = 2 // this run is stopped with SIGTERM instead: copydb must save a final checkpoint
	for i := 0; i < copyKills+streamKills+1; i++ {
		runArgs := append([]string{}, args...)
		runArgs = append(runArgs, "-cutover", "wait", "-verify", "none")
		if i > 0 {
			runArgs = append(runArgs, "-resume")
		}
		r := rsStartCopydb(t, bin, runArgs...)
		streaming := i > copyKills
		if !streaming {
			// Kill when the copy reaches a random row count, a different stretch of the copy each
			// time (the counts include rows restored from the checkpoint), well before its end.
			target := int64(i*50_000 + 10_000 + rng.Intn(35_000))
			rsWaitFor(t, r, 2*time.Minute, fmt.Sprintf("run %d to copy %d rows", i+1, target), func() bool { return r.lastProgressRows() >= target })
			time.Sleep(time.Duration(rng.Intn(200)) * time.Millisecond)
		} else {
			// Let the copy finish and this run checkpoint once, then kill at a random moment of the
			// binlog catch-up/streaming.
			rsWaitFor(t, r, 3*time.Minute, "the row copy to complete", func() bool {
				st := rsReadState(t, stateFile)
				return rsAllCompleted(st, 4) && st.Written.After(prev.Written)
			})
			time.Sleep(time.Duration(100+rng.Intn(1500)) * time.Millisecond)
		}
		if !r.running() {
			t.Fatalf("run %d exited early (%v):\n%s", i+1, r.err, rsTailString(r.output(), 4000))
		}
		if i == sigterm {
			sent := time.Now()
			must(t, r.cmd.Process.Signal(syscall.SIGTERM))
			select {
			case <-r.exited:
			case <-time.After(30 * time.Second):
				t.Fatalf("copydb did not exit within 30s of SIGTERM:\n%s", rsTailString(r.output(), 4000))
			}
			st := rsReadState(t, stateFile)
			t.Logf("SIGTERM: copydb exited after %s (%v); checkpoint: %s", time.Since(sent).Round(time.Millisecond), r.err, rsDescribeState(st))
			if !st.Written.After(sent) {
				t.Errorf("no checkpoint was saved after SIGTERM (last written %s, signal sent %s)", st.Written, sent)
			}
			if r.err == nil || !strings.Contains(r.output(), "run the same command with -resume") {
				t.Errorf("after SIGTERM want a failed exit with a hint to resume, got %v:\n%s", r.err, rsTailString(r.output(), 2000))
			}
			checkCompleted(st, "after SIGTERM")
			prev = st
			continue
		}
		must(t, r.cmd.Process.Signal(syscall.SIGKILL))
		<-r.exited
		kills++
		st := rsReadState(t, stateFile)
		total, _ := rsStateRows(st)
		phase := "copy"
		if rsAllCompleted(st, 4) {
			phase = "streaming"
		}
		// Work lost to the kill (copied after the last checkpoint, so copied again on resume), as far
		// as the last progress line (every 100ms) shows it.
		if last := r.lastProgressRows(); last > total {
			recopied += last - total
			lost = append(lost, last-total)
		} else {
			lost = append(lost, 0)
		}
		t.Logf("kill %d (%s): last progress line %d rows, checkpoint: %s", kills, phase, r.lastProgressRows(), rsDescribeState(st))
		checkCompleted(st, fmt.Sprintf("after kill %d", kills))
		if streaming != (phase == "streaming") {
			t.Errorf("kill %d was meant to hit the %s phase, but the checkpoint shows %s", kills, map[bool]string{true: "streaming", false: "copy"}[streaming], rsDescribeState(st))
		}
		prev = st
	}
	if len(completedAt) == 0 {
		t.Errorf("no table was completed before a kill; the test did not show that completed tables are skipped")
	}

	// Finish: stop the writes, resume once more and let copydb cut over without touching the source.
	load.stop()
	t.Logf("load: %d transactions (%d unexpected errors, first: %v)", load.ops.Load(), load.errs.Load(), load.first.Load())
	summary := filepath.Join(dir, "summary.json")
	finalArgs := append(append([]string{}, args...), "-resume", "-cutover", "none", "-verify", "checksum", "-summary-json", summary)
	r := rsStartCopydb(t, bin, finalArgs...)
	select {
	case <-r.exited:
	case <-ctx.Done():
		t.Fatalf("final run did not finish:\n%s", rsTailString(r.output(), 4000))
	}
	if r.err != nil {
		t.Fatalf("final run failed: %v\n%s", r.err, rsTailString(r.output(), 4000))
	}
	st := rsReadState(t, stateFile)
	checkCompleted(st, "after the final run")
	total, _ := rsStateRows(st)
	t.Logf("final checkpoint: %s", rsDescribeState(st))
	t.Logf("%d SIGKILLs; %d rows copied in the final state (%d on the source now); rows copied after the last checkpoint before each kill, so copied again (as far as the last progress line shows): %v, %d in all", kills, total, count(t, source, "SELECT (SELECT COUNT(*) FROM "+db+".big) + (SELECT COUNT(*) FROM "+db+".composite) + (SELECT COUNT(*) FROM "+db+".strkey) + (SELECT COUNT(*) FROM "+db+".types)"), lost, recopied)
	if !strings.Contains(r.output(), "copydb: ok") {
		t.Errorf("final run did not report ok:\n%s", rsTailString(r.output(), 2000))
	}
	sc := bufio.NewScanner(strings.NewReader(r.output()))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "differ") || strings.Contains(sc.Text(), "mismatch") {
			t.Errorf("verification output: %s", sc.Text())
		}
	}
	for _, tb := range []string{"types", "composite", "strkey", "big"} {
		if n := assertSameRows(t, db+"."+tb, "", db+"."+tb); n == 0 {
			t.Errorf("%s: no rows compared", tb)
		}
	}
	if kills < 5 {
		t.Errorf("only %d kills", kills)
	}
}
