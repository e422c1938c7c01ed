package test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrykit/ferry/sandbox"
)

func serverArgs(flagPrefix string, s *sandbox.Server) []string {
	return []string{"-" + flagPrefix + "-host", s.Host, "-" + flagPrefix + "-port", fmt.Sprint(s.Port), "-" + flagPrefix + "-user", s.User}
}

// Every failure copydb reports states one cause and one next step that works: -resume is suggested
// only when resuming can succeed. (A purged binlog used to say "the copy must start over" and then
// "run the same command with -resume"; a corrupt state file got "-resume to continue"; resuming
// against the wrong server was reported as a purged binlog.)
func TestCopydbMessagesGiveOneCauseAndOneNextStep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := rsBuildCopydb(t, t.TempDir())
	const db = "msg_steps"
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db,
		"CREATE TABLE "+db+".t (id INT PRIMARY KEY, v VARCHAR(20))",
		"INSERT INTO "+db+".t SELECT seq, CONCAT('v', seq) FROM "+db+".seq_1_to_2000"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
	resumeHint := "with -resume to continue"

	t.Run("corrupt state file", func(t *testing.T) {
		state := filepath.Join(t.TempDir(), "state.json")
		must(t, os.WriteFile(state, []byte(`{"version": 2, "tables": {`), 0o600))
		out, code := runCopydb(t, ctx, bin, "-databases", db, "-create-tables", "-state-file", state, "-resume")
		if code != 1 || !strings.Contains(out, "the state file "+state+" cannot be used") || !strings.Contains(out, "run without -resume") || strings.Contains(out, resumeHint) {
			t.Fatalf("exit %d, want 1 with one cause and the step to start over:\n%s", code, out)
		}
	})

	t.Run("resume against the wrong server", func(t *testing.T) {
		state := filepath.Join(t.TempDir(), "state.json")
		if out, code := runCopydb(t, ctx, bin, "-databases", db, "-create-tables", "-state-file", state, "-verify", "none"); code != 0 {
			t.Fatalf("first run: exit %d\n%s", code, out)
		}
		// The servers swapped: the copied database exists on both, but the checkpoint's source is
		// the other one. (An earlier read-only cut-over leaves the source read-only; it is the
		// target here.)
		must(t, source.Exec(ctx, "SET GLOBAL read_only = 0"))
		out, code := runCopydb(t, ctx, bin, append(append(serverArgs("source", target), serverArgs("target", source)...),
			"-databases", db, "-state-file", state, "-resume", "-verify", "none")...)
		if code != 1 || !strings.Contains(out, "the checkpoint was taken from the source server") || strings.Contains(out, "purged") || strings.Contains(out, resumeHint) {
			t.Fatalf("exit %d, want 1 naming the wrong server:\n%s", code, out)
		}
	})

	// The checkpoint is before the statement-format event, so a resume would stop at it again.
	t.Run("statement-format DML on a copied table", func(t *testing.T) {
		must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
		state := filepath.Join(t.TempDir(), "state.json")
		r := rsStartCopydb(t, bin, copydbArgs("-databases", db, "-create-tables", "-state-file", state,
			"-cutover", "wait", "-verify", "none", "-log-level", "info")...)
		for !strings.Contains(r.output(), "send SIGUSR1 to cut over") {
			if !r.running() {
				t.Fatalf("copydb ended early:\n%s", r.output())
			}
			time.Sleep(20 * time.Millisecond)
		}
		must(t, source.Exec(ctx, "SET SESSION binlog_format = 'STATEMENT';\nUPDATE "+db+".t SET v = 'stmt' WHERE id < 10"))
		select {
		case <-r.exited:
		case <-time.After(time.Minute):
			t.Fatalf("copydb still running a minute after the statement-format UPDATE:\n%s", r.output())
		}
		out := r.output()
		if code := r.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(out, "statement-format DML on copied table "+db+".t") ||
			!strings.Contains(out, "binlog_format=ROW") || !strings.Contains(out, "start the copy over") || strings.Contains(out, resumeHint) {
			t.Fatalf("exit %d, want 1 with the statement, binlog_format=ROW and the step to start over, and no -resume:\n%s", code, out)
		}
	})

	t.Run("binlog purged while streaming", func(t *testing.T) {
		src := rsOwnServer(t)
		must(t, src.Exec(ctx, "CREATE DATABASE "+db, "CREATE TABLE "+db+".t (id INT PRIMARY KEY, v VARCHAR(20))",
			"INSERT INTO "+db+".t SELECT seq, CONCAT('v', seq) FROM "+db+".seq_1_to_200"))
		must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
		state := filepath.Join(t.TempDir(), "state.json")
		r := rsStartCopydb(t, bin, copydbArgs(append(serverArgs("source", src), "-databases", db, "-create-tables", "-state-file", state,
			"-cutover", "wait", "-verify", "none", "-log-level", "info")...)...)
		for !strings.Contains(r.output(), "send SIGUSR1 to cut over") {
			if !r.running() {
				t.Fatalf("copydb ended early:\n%s", r.output())
			}
			time.Sleep(20 * time.Millisecond)
		}
		rsPurgeUnderStreamer(t, ctx, src, r)
		select {
		case <-r.exited:
		case <-time.After(time.Minute):
			t.Fatalf("copydb still running a minute after its binlog was purged:\n%s", r.output())
		}
		out := r.output()
		if code := r.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(out, "purged") || !strings.Contains(out, "start the copy over") || strings.Contains(out, resumeHint) {
			t.Fatalf("exit %d, want 1 with the purge and the step to start over, and no -resume:\n%s", code, out)
		}
	})
}

// rsPurgeUnderStreamer purges the binlog file a running copydb streams from: copydb is frozen
// (SIGSTOP), its dump thread killed, the binlog rotated and every older file purged; thawed, its
// streamer reconnects to a file that is gone.
func rsPurgeUnderStreamer(t *testing.T, ctx context.Context, src *sandbox.Server, r *rsCopydbRun) {
	t.Helper()
	sdb, err := src.DB("")
	must(t, err)
	defer sdb.Close()
	must(t, r.cmd.Process.Signal(syscall.SIGSTOP))
	defer r.cmd.Process.Signal(syscall.SIGCONT)
	for i := 0; rsKillDumpThreads(t, ctx, sdb) > 0; i++ {
		if i == 100 {
			t.Fatal("the dump thread survives KILL")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err = sdb.ExecContext(ctx, "FLUSH BINARY LOGS")
	must(t, err)
	var file string
	var pos, doDB, ignoreDB any
	must(t, sdb.QueryRowContext(ctx, "SHOW MASTER STATUS").Scan(&file, &pos, &doDB, &ignoreDB))
	rsPurgeBinlogsTo(t, ctx, src, sdb, file)
}

// rsKillDumpThreads kills the server's binlog dump threads and returns how many there were.
func rsKillDumpThreads(t *testing.T, ctx context.Context, db *sql.DB) int {
	t.Helper()
	var ids []int64
	rows, err := db.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump'")
	must(t, err)
	for rows.Next() {
		var id int64
		must(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	rows.Close()
	for _, id := range ids {
		db.ExecContext(ctx, fmt.Sprintf("KILL %d", id))
	}
	return len(ids)
}

// rsPurgeBinlogsTo purges every binlog file before file until none is left on disk. The server keeps
// a file a dump thread still reads (a closed streamer's thread may linger a moment), and one whose
// transactions it has not yet checkpointed: kill such threads and retry.
func rsPurgeBinlogsTo(t *testing.T, ctx context.Context, src *sandbox.Server, db *sql.DB, file string) {
	t.Helper()
	for i := 0; ; i++ {
		_, err := db.ExecContext(ctx, "PURGE BINARY LOGS TO '"+file+"'")
		must(t, err)
		all, err := filepath.Glob(filepath.Join(src.Dir, "data", "binlog.0*"))
		must(t, err)
		var left []string
		for _, f := range all {
			if filepath.Base(f) < file {
				left = append(left, filepath.Base(f))
			}
		}
		if len(left) == 0 {
			return
		}
		if i == 100 {
			t.Fatalf("binlogs %v still on disk after PURGE BINARY LOGS TO '%s'", left, file)
		}
		rsKillDumpThreads(t, ctx, db)
		time.Sleep(50 * time.Millisecond)
	}
}
