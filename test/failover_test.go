package test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/sandbox"
)

// Failover: the source primary dies (kill -9) while ferry copies or streams, its replica is
// promoted, and ferry continues on the replica by GTID — or refuses, naming the transactions, when
// the target may hold changes the new primary never had.

var foTables = []string{"types", "composite", "strkey", "big"}

const foBigRows = 6000

// foCluster starts a primary with a GTID replica (log_slave_updates), the test schema on the
// primary, and waits until the replica has it.
func foCluster(t *testing.T, ctx context.Context, db string) (primary, replica *sandbox.Server) {
	t.Helper()
	primary = rsOwnServer(t)
	replica, err := sandbox.StartReplica(ctx, primary, sandbox.Options{BufferPool: "64M"})
	must(t, err)
	t.Cleanup(replica.Stop)
	// The replica's binlog has its own files and offsets (it rotated on its own): a position read
	// on the primary means nothing there.
	must(t, replica.Exec(ctx, "FLUSH BINARY LOGS", "FLUSH BINARY LOGS"))
	createSchema(t, primary, db, foBigRows)
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
	foWaitReplicated(t, ctx, primary, replica)
	return primary, replica
}

func foGTID(t *testing.T, ctx context.Context, s *sandbox.Server, variable string) string {
	t.Helper()
	db, err := s.DB("")
	must(t, err)
	defer db.Close()
	var v string
	must(t, db.QueryRowContext(ctx, "SELECT @@GLOBAL."+variable).Scan(&v))
	return v
}

// foWaitReplicated waits until the replica has applied everything the primary wrote.
func foWaitReplicated(t *testing.T, ctx context.Context, primary, replica *sandbox.Server) {
	t.Helper()
	want := foGTID(t, ctx, primary, "gtid_binlog_pos")
	deadline := time.Now().Add(time.Minute)
	for foGTID(t, ctx, replica, "gtid_slave_pos") != want {
		if time.Now().After(deadline) {
			t.Fatalf("the replica did not reach the primary's GTID position %s within a minute", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// foPromote makes the replica a primary, the way an operator (or orchestrator) does.
func foPromote(t *testing.T, ctx context.Context, replica *sandbox.Server) {
	t.Helper()
	must(t, replica.Exec(ctx, "STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only = 0"))
}

func foConfig(t *testing.T, src *sandbox.Server, db string) ferry.Config {
	cfg := rsFaultConfig(t, src, target, db)
	cfg.BatchSize = 100
	cfg.MaxRetries = 2
	return cfg
}

// foSameRows compares every table of db on the new primary and the target.
func foSameRows(t *testing.T, primary *sandbox.Server, db string) {
	t.Helper()
	total := 0
	for _, tbl := range foTables {
		total += rsSameRowsBetween(t, primary, target, db+"."+tbl, db+"."+tbl)
	}
	t.Logf("%d rows identical on the new primary and the target", total)
}

// foWaitFailed waits for the run to fail after the primary died, and returns its final state.
func foWaitFailed(t *testing.T, runErr chan error, stateFile string) *ferry.State {
	t.Helper()
	select {
	case err := <-runErr:
		if err == nil {
			t.Fatal("the run succeeded although its source was killed")
		}
		t.Logf("run stopped: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the run did not stop within 2 minutes of its source being killed")
	}
	st, err := ferry.LoadCheckpointFile(stateFile)
	must(t, err)
	if !st.Final || st.Applied.GTID == "" {
		t.Fatalf("the checkpoint saved when the run stopped is not final or has no GTID set: final %v, applied %+v", st.Final, st.Applied)
	}
	return st
}

// foContinue resumes the checkpoint on the promoted replica under a write load, cuts over, and
// compares every row with the new primary.
func foContinue(t *testing.T, ctx context.Context, newPrimary *sandbox.Server, db string, st *ferry.State) {
	t.Helper()
	load := rsStartLoad(t, newPrimary, db, 7, 2, foBigRows)
	cfg := foConfig(t, newPrimary, db)
	cfg.Resume = st
	f, runErr := rsStartFerry(t, ctx, cfg, filepath.Join(t.TempDir(), "resumed.json"))
	defer f.Close()
	if f.StartPosition().File != "" || f.StartPosition().GTID != st.Applied.GTID {
		t.Fatalf("the resumed stream starts at %+v, want the applied GTID set %s by GTID", f.StartPosition(), st.Applied.GTID)
	}
	must(t, f.WaitUntilRowCopyIsComplete(ctx))
	time.Sleep(300 * time.Millisecond) // let the stream apply some of the new primary's writes
	rsCutover(t, ctx, f, runErr, load.writeLoad)
	if load.ops.Load() == 0 {
		t.Fatal("the load wrote nothing on the new primary")
	}
	foSameRows(t, newPrimary, db)
}

// The primary dies mid-copy; a resume pointed at the promoted replica finishes the copy and the
// catch-up there, and the target equals the new primary.
func TestFailoverMidCopyResumesOnPromotedReplica(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const db = "fo_copy"
	primary, replica := foCluster(t, ctx, db)

	load := rsStartLoad(t, primary, db, 3, 2, foBigRows)
	cfg := foConfig(t, primary, db)
	cfg.MaxRowsPerSecond = 4000
	stateFile := filepath.Join(t.TempDir(), "state.json")
	f, runErr := rsStartFerry(t, ctx, cfg, stateFile)
	defer f.Close()
	rsWaitRows(t, f, runErr, 3000)
	// Every write reached the replica before the crash: nothing is lost in this failover.
	load.stop()
	foWaitReplicated(t, ctx, primary, replica)
	primary.Kill()
	st := foWaitFailed(t, runErr, stateFile)
	if total, _ := rsStateRows(st); total >= 13000 {
		t.Fatalf("the copy was finished (%d rows) before the primary died; the test wants it mid-copy", total)
	}
	// The load wrote while the copy read: the GTID position read with the copied rows moved on
	// from the one the stream started at.
	if st.CopyGTID == "" || st.CopyGTID == f.StartPosition().GTID {
		t.Fatalf("the checkpoint's GTID position of the copied rows is %q (the run started at %q)", st.CopyGTID, f.StartPosition().GTID)
	}
	foPromote(t, ctx, replica)
	foContinue(t, ctx, replica, db, st)
}

// The primary dies while ferry streams its binlog after the copy; copydb -resume with the promoted
// replica's -source-host/-source-port carries on there.
func TestCopydbFailoverMidCatchUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const db = "fo_catchup"
	primary, replica := foCluster(t, ctx, db)
	bin := rsBuildCopydb(t, t.TempDir())
	stateFile := filepath.Join(t.TempDir(), "state.json")
	common := []string{"-target-host", target.Host, "-target-port", fmt.Sprint(target.Port), "-target-user", target.User,
		"-databases", db, "-create-tables", "-state-file", stateFile, "-checkpoint-interval", "200ms",
		"-batch-size", "200", "-workers", "2", "-progress", "100ms", "-log-level", "warn"}

	load := rsStartLoad(t, primary, db, 5, 2, foBigRows)
	run := rsStartCopydb(t, bin, append(append(serverArgs("source", primary), common...), "-cutover", "wait", "-verify", "none")...)
	rsWaitFor(t, run, 2*time.Minute, "the copy to complete", func() bool {
		return rsAllCompleted(rsReadState(t, stateFile), len(foTables))
	})
	time.Sleep(500 * time.Millisecond) // the load's changes stream through the binlog
	load.stop()
	foWaitReplicated(t, ctx, primary, replica)
	before := rsReadState(t, stateFile)
	primary.Kill()
	time.Sleep(300 * time.Millisecond)
	run.cmd.Process.Signal(syscall.SIGTERM) // it may have given up by itself already
	<-run.exited
	st := rsReadState(t, stateFile)
	if !st.Final || st.Applied.GTID == "" || st.Applied.Compare(before.Applied) < 0 {
		t.Fatalf("copydb's last checkpoint: final %v, applied %+v (before the kill %+v)\n%s", st.Final, st.Applied, before.Applied, rsTailString(run.output(), 3000))
	}
	foPromote(t, ctx, replica)

	newLoad := rsStartLoad(t, replica, db, 9, 2, foBigRows)
	time.Sleep(300 * time.Millisecond)
	newLoad.stop()
	out, code := runCopydb(t, ctx, bin, append(append(serverArgs("source", replica), common...), "-resume", "-verify", "checksum")...)
	if code != 0 {
		t.Fatalf("copydb -resume against the promoted replica: exit %d\n%s", code, rsTailString(out, 3000))
	}
	foSameRows(t, replica, db)
}

// A write the replica never received (its IO thread stopped) is applied by ferry from the primary;
// the primary dies and the replica is promoted. The new primary lacks that transaction, so
// continuing there would leave its row on the target: the resume is refused, naming the GTID. A
// checkpoint whose copied rows saw it is refused the same way, and so is a resume against a server
// that has nothing to do with the source.
func TestFailoverWithErrantTransactionIsRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const db = "fo_errant"
	primary, replica := foCluster(t, ctx, db)
	cfg := foConfig(t, primary, db)
	stateFile := filepath.Join(t.TempDir(), "state.json")
	f, runErr := rsStartFerry(t, ctx, cfg, stateFile)
	defer f.Close()
	must(t, f.WaitUntilRowCopyIsComplete(ctx))
	beforeErrant := f.State()

	must(t, replica.Exec(ctx, "STOP SLAVE IO_THREAD"))
	must(t, primary.Exec(ctx, "INSERT INTO "+db+".big (id, u, tenant, payload, amount) VALUES (99999999, 99999999, 1, 'only on the old primary', 1)"))
	errant := foGTID(t, ctx, primary, "gtid_binlog_pos")
	deadline := time.Now().Add(time.Minute)
	for count(t, target, "SELECT COUNT(*) FROM "+db+".big WHERE id = 99999999") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("ferry did not apply the write within a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	primary.Kill()
	st := foWaitFailed(t, runErr, stateFile)
	foPromote(t, ctx, replica)
	// The new primary takes writes: its own transaction gets the lost one's sequence number (in
	// another server's name), which must not pass for it.
	must(t, replica.Exec(ctx, "UPDATE "+db+".big SET payload = 'new primary' WHERE id = 1"))
	if now := foGTID(t, ctx, replica, "gtid_binlog_pos"); now == errant || !strings.HasSuffix(now, "-"+errant[strings.LastIndexByte(errant, '-')+1:]) {
		t.Fatalf("the new primary's position is %s; the test wants the lost %s's sequence number reused", now, errant)
	}

	resume := func(t *testing.T, src *sandbox.Server, st *ferry.State) error {
		t.Helper()
		c := foConfig(t, src, db)
		c.Resume = st
		f := &ferry.Ferry{Config: c}
		err := f.Initialize(ctx)
		f.Close()
		return err
	}
	t.Run("applied", func(t *testing.T) {
		err := resume(t, replica, st)
		if !errors.Is(err, ferry.ErrErrantTransactions) || !errors.Is(err, ferry.ErrResumeMismatch) || !strings.Contains(err.Error(), errant+" (applied from the binlog") {
			t.Fatalf("want the resume refused naming %s, got %v", errant, err)
		}
		t.Logf("refused: %v", err)
	})
	t.Run("copied", func(t *testing.T) {
		// As if the write had reached the target only in a copied row (a copy batch read after it,
		// before the stream applied it): the applied set is from before the write.
		copied := *st
		copied.Applied, copied.StreamedGTID, copied.CopyGTID = beforeErrant.Applied, beforeErrant.StreamedGTID, errant
		err := resume(t, replica, &copied)
		if !errors.Is(err, ferry.ErrErrantTransactions) || !strings.Contains(err.Error(), errant+" (read by the row copy") {
			t.Fatalf("want the resume refused naming %s read by the copy, got %v", errant, err)
		}
		// Without the write in any set, the same checkpoint continues there.
		copied.CopyGTID = beforeErrant.CopyGTID
		must(t, resume(t, replica, &copied))
	})
	t.Run("streamed", func(t *testing.T) {
		// As if the writer had committed it past its applied position (in parallel, past the
		// low-water mark, or part of the transaction): only the streamed set has it.
		streamed := *st
		streamed.Applied, streamed.CopyGTID = beforeErrant.Applied, beforeErrant.CopyGTID
		if !strings.Contains(st.StreamedGTID, errant) {
			t.Fatalf("the checkpoint's streamed GTID set %q lacks the write's %s", st.StreamedGTID, errant)
		}
		err := resume(t, replica, &streamed)
		if !errors.Is(err, ferry.ErrErrantTransactions) || !strings.Contains(err.Error(), errant+" (handed to the binlog writer") {
			t.Fatalf("want the resume refused naming %s handed to the writer, got %v", errant, err)
		}
	})
	t.Run("not final", func(t *testing.T) {
		periodic := *st
		periodic.Applied, periodic.StreamedGTID, periodic.CopyGTID, periodic.Final = beforeErrant.Applied, beforeErrant.StreamedGTID, beforeErrant.CopyGTID, false
		err := resume(t, replica, &periodic)
		if !errors.Is(err, ferry.ErrResumeMismatch) || !strings.Contains(err.Error(), "not the one ferry saves when it stops") {
			t.Fatalf("want a periodic checkpoint refused on another server, got %v", err)
		}
	})
	t.Run("unrelated server", func(t *testing.T) {
		other := rsOwnServer(t)
		createSchema(t, other, db, foBigRows)
		ok := *st
		ok.Applied, ok.StreamedGTID, ok.CopyGTID = beforeErrant.Applied, beforeErrant.StreamedGTID, beforeErrant.CopyGTID
		err := resume(t, other, &ok)
		if !errors.Is(err, ferry.ErrResumeMismatch) || !strings.Contains(err.Error(), "the checkpoint was taken from the source server") {
			t.Fatalf("want a resume against an unrelated server refused, got %v", err)
		}
		t.Logf("refused: %v", err)
	})
}

// The primary dies mid-copy; Config.SourceResolver (the host's discovery) promotes the replica and
// names it, and the same Run continues there: the copy finishes, the new primary's writes stream
// in, and after the cut-over the target equals the new primary.
func TestFailoverInProcessWithSourceResolver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const db = "fo_inproc"
	primary, replica := foCluster(t, ctx, db)

	load := rsStartLoad(t, primary, db, 4, 2, foBigRows)
	cfg := foConfig(t, primary, db)
	cfg.MaxRowsPerSecond = 4000
	var asked atomic.Int32
	cfg.SourceResolver = func(ctx context.Context, lost error) (ferry.ConnConfig, error) {
		asked.Add(1)
		if err := replica.Exec(ctx, "STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only = 0"); err != nil {
			return ferry.ConnConfig{}, err
		}
		return conn(replica), nil
	}
	f, runErr := rsStartFerry(t, ctx, cfg, filepath.Join(t.TempDir(), "state.json"))
	defer f.Close()
	// A host's status page polls the Ferry throughout, the failover included (run with -race: the
	// swap of the source and the components must not race with these reads).
	pollDone, pollStop := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(pollDone)
		for {
			select {
			case <-pollStop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			_ = f.Progress()
			_ = f.State()
			_ = f.StartPosition()
		}
	}()
	defer func() { close(pollStop); <-pollDone }()
	rsWaitRows(t, f, runErr, 3000)
	load.stop()
	foWaitReplicated(t, ctx, primary, replica)
	primary.Kill()

	deadline := time.Now().Add(2 * time.Minute)
	for asked.Load() == 0 {
		select {
		case err := <-runErr:
			t.Fatalf("Run ended instead of failing over: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("SourceResolver was not asked within 2 minutes of the primary's death")
		}
		time.Sleep(20 * time.Millisecond)
	}
	newLoad := rsStartLoad(t, replica, db, 8, 2, foBigRows)
	if err := f.WaitUntilRowCopyIsComplete(ctx); err != nil {
		t.Fatalf("after the failover: %v", err)
	}
	time.Sleep(300 * time.Millisecond) // the new primary's writes stream in
	rsCutover(t, ctx, f, runErr, newLoad.writeLoad)
	if newLoad.ops.Load() == 0 || asked.Load() != 1 {
		t.Fatalf("the new primary took %d writes; SourceResolver was asked %d times", newLoad.ops.Load(), asked.Load())
	}
	foSameRows(t, replica, db)
}

// foHook closes done when a log entry with the message is written: the test then observes what
// the run did before it.
type foHook struct {
	msg  string
	once sync.Once
	done chan struct{}
}

func (h *foHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h *foHook) Fire(e *logrus.Entry) error {
	if e.Message == h.msg {
		h.once.Do(func() { close(h.done) })
	}
	return nil
}

// The source's address moves to the promoted replica (a virtual IP, a proxy) while ferry streams
// after the copy: the stream's reconnect reaches another server, whose binlog has other files and
// offsets. The stream stops (ErrSourceChanged) instead of reading there at the old offsets, and
// SourceResolver, handed that error, keeps the address: the run continues on the new server by
// GTID, and after the cut-over the target equals it.
func TestFailoverBehindAMovedAddress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const db = "fo_moved"
	primary, replica := foCluster(t, ctx, db)
	proxy := startFaultProxy(t, fmt.Sprintf("127.0.0.1:%d", primary.Port))
	src := conn(primary)
	src.Host, src.Port = "127.0.0.1", proxy.Port()

	cfg := foConfig(t, primary, db)
	cfg.Source = src
	l := logrus.New()
	l.SetOutput(io.Discard)
	moved := &foHook{msg: "ferry: failover: continuing on the new source", done: make(chan struct{})}
	l.AddHook(moved)
	cfg.Logger = l
	var lostErr atomic.Value
	cfg.SourceResolver = func(ctx context.Context, lost error) (ferry.ConnConfig, error) {
		lostErr.Store(lost.Error())
		if !errors.Is(lost, ferry.ErrSourceChanged) {
			return ferry.ConnConfig{}, fmt.Errorf("the test wants the stream to notice the moved address, got %w", lost)
		}
		return src, nil
	}
	load := rsStartLoad(t, primary, db, 6, 2, foBigRows)
	f, runErr := rsStartFerry(t, ctx, cfg, filepath.Join(t.TempDir(), "state.json"))
	defer f.Close()
	must(t, f.WaitUntilRowCopyIsComplete(ctx))
	time.Sleep(300 * time.Millisecond) // the load's changes stream in
	load.stop()
	foWaitReplicated(t, ctx, primary, replica)
	primary.Kill()
	proxy.Retarget(fmt.Sprintf("127.0.0.1:%d", replica.Port))
	foPromote(t, ctx, replica)
	select {
	case <-moved.done:
		t.Logf("the stream stopped with: %v", lostErr.Load())
	case err := <-runErr:
		t.Fatalf("Run ended instead of continuing on the server behind the moved address: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("no failover within 2 minutes")
	}
	newLoad := rsStartLoad(t, replica, db, 10, 2, foBigRows)
	time.Sleep(300 * time.Millisecond)
	rsCutover(t, ctx, f, runErr, newLoad.writeLoad)
	foSameRows(t, replica, db)
}
