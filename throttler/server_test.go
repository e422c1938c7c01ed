package throttler_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry/throttler"
)

func TestQueryPausesAndResumesCopy(t *testing.T) {
	ctx := testContext(t, time.Minute)
	s := standalone(t)
	if err := s.Exec(ctx, "CREATE DATABASE ctl", "CREATE TABLE ctl.throttle (v VARCHAR(10))", "INSERT INTO ctl.throttle VALUES ('0')"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Exec(context.Background(), "DROP DATABASE ctl") })
	db := openDB(t, s, "")
	q, err := throttler.NewQuery(throttler.QueryConfig{DB: db, Query: "SELECT v FROM ctl.throttle", CheckInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	set := func(stmts ...string) {
		t.Helper()
		if err := s.Exec(ctx, stmts...); err != nil {
			t.Fatal(err)
		}
	}
	c := startCopy(t, q, 0, nil)
	set("UPDATE ctl.throttle SET v = '1'")
	ch := c.expectPaused(t, "throttle query returned non-zero")
	if ch.st.Detail != "value 1" {
		t.Fatalf("detail %q", ch.st.Detail)
	}
	set("UPDATE ctl.throttle SET v = '0'")
	c.expectResumed(t)
	set("DROP TABLE ctl.throttle") // a failing query fails closed
	ch = c.expectPaused(t, "throttle query failed")
	if !strings.Contains(ch.st.Detail, "1146") {
		t.Fatalf("detail %q, want the server's error", ch.st.Detail)
	}
	set("CREATE TABLE ctl.throttle (v VARCHAR(10))") // no row counts as zero
	c.expectResumed(t)
	set("INSERT INTO ctl.throttle VALUES ('yes')") // not a number: fails closed
	ch = c.expectPaused(t, "throttle query failed")
	if !strings.Contains(ch.st.Detail, `"yes" is not a number`) {
		t.Fatalf("detail %q", ch.st.Detail)
	}
	set("UPDATE ctl.throttle SET v = NULL") // NULL counts as zero
	c.expectResumed(t)
	set("UPDATE ctl.throttle SET v = '0.5'")
	c.expectPaused(t, "throttle query returned non-zero")
}

// holdRunning keeps n sessions running (each waiting on a table another session has locked) until
// release is called, to raise Threads_running by n.
func holdRunning(t *testing.T, ctx context.Context, db *sql.DB, n int) (release func()) {
	t.Helper()
	locker, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := locker.ExecContext(ctx, "LOCK TABLES ctl_load.t WRITE"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c int
			if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM ctl_load.t").Scan(&c); err != nil && ctx.Err() == nil {
				t.Error(err)
			}
		}()
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			locker.ExecContext(ctx, "UNLOCK TABLES")
			locker.Close()
			wg.Wait()
		})
	}
	t.Cleanup(release)
	return release
}

func threadsRunning(t *testing.T, db *sql.DB) int {
	t.Helper()
	var name string
	var v int
	if err := db.QueryRow("SHOW GLOBAL STATUS LIKE 'Threads_running'").Scan(&name, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestLoadPausesResumesAndAbortsAtCriticalLevel(t *testing.T) {
	ctx := testContext(t, time.Minute)
	s := standalone(t)
	if err := s.Exec(ctx, "CREATE DATABASE ctl_load", "CREATE TABLE ctl_load.t (id INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Exec(context.Background(), "DROP DATABASE ctl_load") })
	db := openDB(t, s, "")
	sessions := openDB(t, s, "")

	base := threadsRunning(t, db) // counts the reading session itself, as Load's reading will
	spec := fmt.Sprintf("Threads_running=%d, Threads_connected=100000", base+3)
	maxLoad, err := throttler.ParseThresholds(spec)
	if err != nil {
		t.Fatal(err)
	}
	critical, _ := throttler.ParseThresholds(fmt.Sprintf("Threads_running=%d", base+7))
	load, err := throttler.NewLoad(throttler.LoadConfig{DB: db, Max: maxLoad, Critical: critical, CheckInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if st := mustCheck(t, load); st.Throttled {
		t.Fatalf("throttled with no load: %+v", st)
	}
	c := startCopy(t, load, 0, nil)

	release := holdRunning(t, ctx, sessions, 4)
	ch := c.expectPaused(t, fmt.Sprintf("max-load Threads_running>=%d", base+3))
	if !strings.HasPrefix(ch.st.Detail, "Threads_running=") {
		t.Fatalf("detail %q", ch.st.Detail)
	}
	release()
	c.expectResumed(t)

	release = holdRunning(t, ctx, sessions, 8)
	err = c.wait(t, 20*time.Second)
	var cle *throttler.CriticalLoadError
	if !errors.As(err, &cle) {
		t.Fatalf("copy ended with %v, want a *CriticalLoadError", err)
	}
	if cle.Variable != "Threads_running" || cle.Threshold != float64(base+7) || cle.Value < float64(base+7) {
		t.Fatalf("critical load error %+v", cle)
	}
	want := fmt.Sprintf("Threads_running=%g reached critical level %d", cle.Value, base+7)
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
	release()
}

func TestLoadConfigurationErrors(t *testing.T) {
	for _, bad := range []string{"Threads_running", "Threads_running=x", "Threads_running=-1", "a b=1", "x=1,X=2"} {
		if _, err := throttler.ParseThresholds(bad); err == nil {
			t.Errorf("ParseThresholds(%q) accepted", bad)
		}
	}
	got, err := throttler.ParseThresholds(" Threads_running=25 ,, Threads_connected=500,")
	if err != nil || len(got) != 2 || got[0].String() != "Threads_running=25" || got[1].String() != "Threads_connected=500" {
		t.Fatalf("ParseThresholds = %v, %v", got, err)
	}

	s := standalone(t)
	db := openDB(t, s, "")
	if _, err := throttler.NewLoad(throttler.LoadConfig{DB: db}); err == nil {
		t.Fatal("NewLoad without thresholds accepted")
	}
	// A status variable the server does not have aborts at the first check instead of never throttling.
	load, err := throttler.NewLoad(throttler.LoadConfig{DB: db, Max: []throttler.Threshold{{Variable: "No_such_status", Value: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := load.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "No_such_status") {
		t.Fatalf("Check = %v, want an error naming the unknown variable", err)
	}
	// A server that cannot be read fails closed.
	down, err := sql.Open("mysql", "root@tcp("+closedAddr(t)+")/?timeout=1s")
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	load, _ = throttler.NewLoad(throttler.LoadConfig{DB: down, Max: []throttler.Threshold{{Variable: "Threads_running", Value: 25}}})
	if st := mustCheck(t, load); !st.Throttled || st.Reason != "load: cannot read global status" || !strings.Contains(st.Detail, "refused") {
		t.Fatalf("status %+v, want throttled because the status cannot be read", st)
	}
}
