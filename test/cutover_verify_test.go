package test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/verifier"
)

// cvTable creates db.t with n rows on the source (and drops db on the target).
func cvTable(t *testing.T, ctx context.Context, db string, n int) {
	t.Helper()
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db,
		"CREATE TABLE "+db+".t (id INT PRIMARY KEY, v INT NOT NULL, note VARCHAR(40))",
		fmt.Sprintf("INSERT INTO %s.t SELECT seq, seq, CONCAT('n', seq) FROM %s.seq_1_to_%d", db, db, n)))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
}

// cvLoad updates random rows of db.t until stopped.
type cvLoad struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	writes atomic.Int64
}

func cvStartLoad(t *testing.T, db string, n int) *cvLoad {
	t.Helper()
	conn, err := source.DB(db)
	must(t, err)
	l := &cvLoad{stop: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer conn.Close()
		rng := rand.New(rand.NewSource(1))
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			if _, err := conn.Exec("UPDATE t SET v = v + 1 WHERE id = ?", 1+rng.Intn(n)); err == nil {
				l.writes.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return l
}

func (l *cvLoad) close() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// The default cut-over verification: a full checksum pass before the lock, and under the lock only
// the rows the binlog changed since. Under a write load the pass under the lock re-checks a number
// of rows that follows the writes, not the table; and a change that never reached the binlog before
// the lock (made with sql_log_bin=0, as a cascade or a filter bug would lose one) is found before the
// lock and still reported under it, so nothing is swapped.
func TestCutoverVerifiesBeforeTheLockAndChangesUnderIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const db, rows = "cutover_verify", 20000
	for _, lost := range []bool{false, true} {
		t.Run(fmt.Sprintf("change_outside_binlog=%v", lost), func(t *testing.T) {
			cvTable(t, ctx, db, rows)
			f, err := ferry.New(ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{db}},
				CreateTargetTables: true, Logger: testLogger(t)})
			must(t, err)
			defer f.Close()
			must(t, f.Initialize(ctx))
			f.Verifier = &verifier.Incremental{Checksum: &verifier.Checksum{Source: f.Source, Target: f.Target, Logger: testLogger(t)}}
			must(t, f.Start(ctx))
			runCtx, stopRun := context.WithCancel(ctx)
			defer stopRun()
			runErr := make(chan error, 1)
			go func() { runErr <- f.Run(runCtx) }()
			load := cvStartLoad(t, db, rows)
			defer load.close()
			must(t, f.WaitUntilRowCopyIsComplete(ctx))
			if lost {
				must(t, source.Exec(ctx, "SET SESSION sql_log_bin = 0", "UPDATE "+db+".t SET note = 'not in the binlog' WHERE id = 4321"))
			}
			// A verifier that is told no changes cannot be trusted under the lock: refused.
			_, err = (&ferry.Cutover{Ferry: f, Hooks: ferry.HookFuncs{},
				Verifier: &verifier.Incremental{Checksum: &verifier.Checksum{Source: f.Source, Target: f.Target}}}).Run(ctx)
			if err == nil || !strings.Contains(err.Error(), "Ferry.Verifier before Start") {
				t.Fatalf("a verifier the binlog writer does not report to was not refused: %v", err)
			}
			time.Sleep(300 * time.Millisecond) // writes go on
			rep, err := (&ferry.Cutover{Ferry: f, Hooks: ferry.HookFuncs{LockFunc: func(context.Context) error { load.close(); return nil }}}).Run(ctx)
			before, under := rep.ResultBeforeLock, rep.Result
			if before == nil || under == nil {
				t.Fatalf("report lacks a pass: before %v, under %v, err %v", before, under, err)
			}
			t.Logf("%d writes; blocked %s (verify under the lock %s, before it %s)\n%s%s", load.writes.Load(), rep.Blocked, rep.Verify, rep.VerifyBeforeLock, before, under)
			if before.Scope != verifier.AllRows || before.Tables[0].RowsCompared < rows {
				t.Errorf("the pass before the lock compared %d rows (%s), want all %d", before.Tables[0].RowsCompared, before.Scope, rows)
			}
			if under.Scope != verifier.ChangedRows || under.Tables[0].BaseRowsCompared != before.Tables[0].RowsCompared {
				t.Errorf("the pass under the lock: scope %q, builds on %d rows", under.Scope, under.Tables[0].BaseRowsCompared)
			}
			if n := under.Tables[0].RowsCompared; n >= rows/2 {
				t.Errorf("the pass under the lock re-checked %d of %d rows after %d writes: not proportional to the changes", n, rows, load.writes.Load())
			}
			if !lost {
				must(t, err)
				must(t, <-runErr)
				assertSameRows(t, db+".t", "", db+".t")
				return
			}
			if !errors.Is(err, ferry.ErrVerificationFailed) || rep.Swapped {
				t.Fatalf("a change outside the binlog was not caught: swapped=%v err=%v", rep.Swapped, err)
			}
			// Under the lock both sides are settled: exactly the lost change differs. Before it, writes
			// still go on and the pass compares live rows (rechecked RecheckDelay apart), so besides
			// the lost change it may name rows whose change the binlog writer had not applied yet;
			// the pass under the lock re-checks each of those (they are changed rows) and found them equal.
			if d := under.Tables[0].Different; len(d) != 1 || d[0].Key.String() != "(4321)" || under.Tables[0].MissingCount+under.Tables[0].ExtraCount != 0 {
				t.Errorf("under the lock: want exactly row 4321 reported different:\n%s", under)
			}
			found := false
			for _, d := range before.Tables[0].Different {
				found = found || d.Key.String() == "(4321)"
			}
			if !found || before.Tables[0].MissingCount+before.Tables[0].ExtraCount != 0 {
				t.Errorf("before the lock: want row 4321 reported different:\n%s", before)
			}
			stopRun()
			if err := <-runErr; err != nil && !errors.Is(err, context.Canceled) {
				t.Fatal(err)
			}
		})
	}
}

// copydb's default verification reports, per table, the rows each pass compared and what it
// cannot see, and cuts over.
func TestCopydbReportsBothVerificationPasses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := rsBuildCopydb(t, t.TempDir())
	const db = "cdpasses"
	cvTable(t, ctx, db, 3000)
	// A read-only cut-over leaves the source read-only after the swap; the next tests need it writable.
	t.Cleanup(func() { source.Exec(context.Background(), "SET GLOBAL read_only = 0") })
	out, code := runCopydb(t, ctx, bin, "-databases", db, "-create-tables", "-cutover", "read-only")
	if code != 0 {
		t.Fatalf("exit status %d:\n%s", code, rsTailString(out, 3000))
	}
	for _, want := range []string{
		"checksum verification (before-cutover, all rows): MATCH",
		"checksum verification (during-cutover, rows changed since the full pass): MATCH",
		"3000", "cannot see: changes that never reach the binlog",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, rsTailString(out, 3000))
		}
	}
	assertSameRows(t, db+".t", "", db+".t")
}

// stalledVerifier never finishes its pass under the lock (as a whole-table pass on a slow network).
type stalledVerifier struct{}

func (stalledVerifier) Verify(ctx context.Context, phase verifier.Phase, _ []verifier.TablePair) (*verifier.Result, error) {
	if phase == verifier.DuringCutover {
		<-ctx.Done()
		return nil, fmt.Errorf("chunk bounds of t: %w", ctx.Err())
	}
	return &verifier.Result{Verifier: "stalled", Phase: phase}, nil
}

// When the write-blocked window reaches Cutover.Timeout, Run says so (CutoverTimeoutError: the
// bound, the step), unlocks without swapping, and the Ferry keeps streaming: a second cut-over
// succeeds.
func TestCutoverTimeoutIsNamedAndRetryable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const db = "cutover_timeout"
	cvTable(t, ctx, db, 2000)
	f, err := ferry.New(ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{db}},
		CreateTargetTables: true, Logger: testLogger(t)})
	must(t, err)
	defer f.Close()
	must(t, f.Initialize(ctx))
	must(t, f.Start(ctx))
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()
	var unlocked []bool
	hooks := ferry.HookFuncs{UnlockFunc: func(_ context.Context, swapped bool) error { unlocked = append(unlocked, swapped); return nil }}
	rep, err := (&ferry.Cutover{Ferry: f, Hooks: hooks, Verifier: stalledVerifier{}, Timeout: 300 * time.Millisecond}).Run(ctx)
	var te *ferry.CutoverTimeoutError
	if !errors.Is(err, ferry.ErrCutoverTimeout) || !errors.As(err, &te) || te.Step != "verify" || te.Timeout != 300*time.Millisecond {
		t.Fatalf("want a CutoverTimeoutError in step verify with the 300ms bound, got %v", err)
	}
	if !strings.Contains(err.Error(), "cut-over bound (300ms)") || rep.Swapped || len(unlocked) != 1 || unlocked[0] {
		t.Fatalf("error %q, swapped %v, unlock calls %v", err, rep.Swapped, unlocked)
	}
	must(t, source.Exec(ctx, "UPDATE "+db+".t SET note = 'after the failed cut-over' WHERE id = 5"))
	if _, err := (&ferry.Cutover{Ferry: f, Hooks: hooks}).Run(ctx); err != nil {
		t.Fatalf("second cut-over: %v", err)
	}
	must(t, <-runErr)
	assertSameRows(t, db+".t", "", db+".t")
}
