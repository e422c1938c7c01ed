package osc

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/internal/retry"
)

// oscRun is one examples/osc process.
type oscRun struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer
	exited chan struct{}
	err    error
}

func (r *oscRun) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.Write(p)
}

func (r *oscRun) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

func startOSC(t *testing.T, bin string, args ...string) *oscRun {
	t.Helper()
	r := &oscRun{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	r.cmd.Stdout, r.cmd.Stderr = r, r
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

// TestResumeAfterSIGKILL runs examples/osc as a subprocess on 200k rows under a write load, copying
// 4 chunks at once, kills it with SIGKILL at random moments during the row copy and during the
// binlog catch-up (the cut-over held by the postpone flag file), resumes it with --resume each time,
// and checks the table ends with the new schema and exactly the rows the twin (same writes, altered
// offline) has.
func TestResumeAfterSIGKILL(t *testing.T) {
	const copyKills, catchUpKills = 3, 2
	dir := t.TempDir()
	bin := filepath.Join(dir, "osc")
	build := exec.Command("go", "build", "-o", bin, "../examples/osc")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ../examples/osc: %v\n%s", err, b)
	}
	f := newFixture(t, 200_000)
	alter := "ADD COLUMN x INT NOT NULL DEFAULT 7, MODIFY b VARCHAR(80) NOT NULL DEFAULT '', DROP COLUMN c"
	flag := filepath.Join(dir, "postpone")
	must(t, os.WriteFile(flag, nil, 0o644))
	args := []string{"--host", srv.Host, "--port", fmt.Sprint(srv.Port), "--user", srv.User, "--database", f.name, "--table", "t",
		"--alter", alter, "--execute", "--resume", "--chunk-size", "200", "--copy-workers", "4", "--postpone-cut-over-flag-file", flag,
		"--status-interval", "1s", "--cut-over-lock-timeout", "2s", "--verbose"}

	l := f.startLoad(3)
	time.Sleep(300 * time.Millisecond)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	readCP := func() *checkpoint {
		var v string
		err := f.db.QueryRow("SELECT value FROM _t_ghc WHERE id = ? AND hint = 'checkpoint'", checkpointID).Scan(&v)
		if err != nil {
			if errors.Is(err, sql.ErrNoRows) || retry.Code(err) == 1146 {
				return nil
			}
			t.Fatal(err)
		}
		var cp checkpoint
		must(t, json.Unmarshal([]byte(v), &cp))
		return &cp
	}
	kills, duringCopy := 0, 0
	var atKill []string
	deadline := time.Now().Add(4 * time.Minute)
	for i := 0; i < copyKills+catchUpKills; i++ {
		r := startOSC(t, bin, args...)
		start := readCP()
		startRows := int64(0)
		if start != nil {
			startRows = start.RowsCopied
		}
		target := startRows + int64(10_000+rng.Intn(25_000))
		catchUp := i >= copyKills
		var wait time.Duration
		if catchUp {
			wait = time.Duration(300+rng.Intn(1500)) * time.Millisecond
		}
		var doneAt time.Time
	poll:
		for {
			select {
			case <-r.exited:
				t.Fatalf("run %d exited early: %v\n%s", i+1, r.err, r.output())
			case <-time.After(time.Duration(5+rng.Intn(30)) * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %d: no progress\n%s", i+1, r.output())
			}
			cp := readCP()
			if cp == nil || (start != nil && !cp.Written.After(start.Written)) {
				continue // not this run's checkpoint yet
			}
			if !catchUp {
				if cp.RowsCopied >= target || cp.CopyDone {
					break poll
				}
				continue
			}
			if cp.CopyDone && (start == nil || cp.Position.Compare(start.Position) > 0) { // applying since the resume
				if doneAt.IsZero() {
					doneAt = time.Now()
				}
				if time.Since(doneAt) >= wait {
					break poll
				}
			}
		}
		must(t, r.cmd.Process.Signal(syscall.SIGKILL))
		<-r.exited
		kills++
		cp := readCP()
		phase := "copy"
		if cp.CopyDone {
			phase = "catch-up"
		} else {
			duringCopy++
		}
		atKill = append(atKill, fmt.Sprintf("%s: %d rows copied, position %s", phase, cp.RowsCopied, cp.Position))
		t.Logf("SIGKILL %d during the %s: checkpoint %d rows copied (run started at %d), copy done %v, position %s",
			kills, phase, cp.RowsCopied, startRows, cp.CopyDone, cp.Position)
		time.Sleep(time.Duration(rng.Intn(300)) * time.Millisecond)
		if os.Getenv("DEBUGRESUME") != "" {
			t.Log(r.output())
		}
	}
	// As if the last kill had hit a cut-over attempt while it held the lock: its sentry is left over
	// (the original was not renamed); the resume drops it.
	f.exec("CREATE TABLE t_del (id INT NOT NULL PRIMARY KEY) ENGINE=MEMORY COMMENT='" + sentryComment + "'")
	// Last run: let the cut-over happen.
	r := startOSC(t, bin, args...)
	time.Sleep(time.Duration(500+rng.Intn(1000)) * time.Millisecond)
	must(t, os.Remove(flag))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	select {
	case <-r.exited:
	case <-ctx.Done():
		t.Fatalf("the final run did not finish\n%s", r.output())
	}
	out := r.output()
	if r.err != nil || !strings.Contains(out, "done in ") {
		t.Fatalf("final run: %v\n%s", r.err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "done in ") || strings.Contains(line, "resuming from the checkpoint") {
			t.Log(line)
		}
	}
	time.Sleep(300 * time.Millisecond) // writes go on into the new table
	l.stop()
	l.check(t)
	t.Logf("%d SIGKILLs (%d during the copy), %d resumes: %s", kills, duringCopy, kills, strings.Join(atKill, "; "))
	if duringCopy == 0 {
		t.Error("no kill during the copy")
	}
	f.expect(alter)
	tt := f.tables()
	sort.Strings(tt)
	if got := strings.Join(tt, ","); got != "t,t_del,twin" {
		t.Errorf("tables after the migration: %s, want t,t_del,twin", got)
	}
}

// TestResumeRefusals: leftovers without Resume are refused with a hint to resume; a resume is
// refused when the ALTER differs, the original table's definition changed since the checkpoint, or
// the binlog file of the checkpoint is gone; nothing is written by a refused resume.
func TestResumeRefusals(t *testing.T) {
	f := newFixture(t, 5000)
	alter := "ADD COLUMN x INT NULL"
	m := f.migration(alter)
	m.Postpone = true
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := m.Run(ctx); done <- err }()
	for m.stateName() != StatePostponed {
		select {
		case err := <-done:
			t.Fatalf("the migration ended before the cut-over: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	time.Sleep(700 * time.Millisecond) // a checkpoint with the copy done
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the interrupted migration succeeded")
	}
	tt := f.tables()
	sort.Strings(tt)
	if got := strings.Join(tt, ","); got != "_t_ghc,_t_gho,t,twin" {
		t.Fatalf("tables after the interrupted migration: %s", got)
	}
	resume := func(alter string) *Migration {
		m := f.migration(alter)
		m.Resume = true
		return m
	}
	refused(t, f, f.migration(alter), "with Resume (--resume)")
	refusedResume(t, f, resume("ADD COLUMN y INT NULL"), "the checkpoint is of ALTER")
	// The server keeps a binlog file a dump thread reads (the interrupted run's may linger a moment):
	// kill such threads and purge until the checkpoint's file is gone.
	f.exec("FLUSH BINARY LOGS")
	flavor, err := ferry.DetectFlavor(context.Background(), f.db)
	must(t, err)
	pos, err := ferry.CurrentPosition(context.Background(), f.db, flavor)
	must(t, err)
	cpFile := ""
	must(t, f.db.QueryRow("SELECT JSON_VALUE(value, '$.position.file') FROM _t_ghc WHERE id = ?", checkpointID).Scan(&cpFile))
	for i := 0; ; i++ {
		f.exec("PURGE BINARY LOGS TO '" + pos.File + "'")
		if files, err := ferry.BinlogFiles(context.Background(), f.db); err != nil {
			t.Fatal(err)
		} else if !slices.Contains(files, cpFile) {
			break
		}
		if i == 100 {
			t.Fatalf("binlog %s still there after PURGE", cpFile)
		}
		rows, err := f.db.Query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
		must(t, err)
		var dumps []int64
		for rows.Next() {
			var id int64
			must(t, rows.Scan(&id))
			dumps = append(dumps, id)
		}
		rows.Close()
		for _, id := range dumps {
			f.db.Exec("KILL CONNECTION ?", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
	refusedResume(t, f, resume(alter), "is no longer on the server (purged?)", ferry.ErrBinlogPurged)
	f.exec("ALTER TABLE t ADD COLUMN z INT NULL")
	refusedResume(t, f, resume(alter), "the definition of `"+f.name+"`.`t` changed since the checkpoint")
}

// refusedResume is refused for a Resume the checkpoint does not fit: the error says why (want) and
// wraps ferry.ErrResumeMismatch and any other sentinel named, for hosts that test with errors.Is.
func refusedResume(t *testing.T, f *fixture, m *Migration, want string, also ...error) {
	t.Helper()
	before := strings.Join(f.tables(), ",")
	_, err := m.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want one containing %q", err, want)
	}
	for _, sentinel := range append([]error{ferry.ErrResumeMismatch}, also...) {
		if !errors.Is(err, sentinel) {
			t.Errorf("error %v does not wrap %v", err, sentinel)
		}
	}
	if after := strings.Join(f.tables(), ","); after != before {
		t.Errorf("tables before %s, after the refused migration %s", before, after)
	}
}
