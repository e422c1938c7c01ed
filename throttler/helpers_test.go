package throttler_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry/sandbox"
	"github.com/ferrykit/ferry/throttler"
)

// pollInterval is Wait's poll interval in these tests, short so that tests stay fast.
const pollInterval = 10 * time.Millisecond

// pausedFor is how long a paused copy loop is watched to make sure it does not move.
const pausedFor = 15 * pollInterval

var (
	standaloneOnce sync.Once
	standaloneSrv  *sandbox.Server
	standaloneErr  error
)

func TestMain(m *testing.M) {
	throttler.PollInterval = pollInterval
	code := m.Run()
	if standaloneSrv != nil {
		standaloneSrv.Stop()
	}
	os.Exit(code)
}

// standalone returns a server shared by the tests that need one plain server (Load, Query); they
// do not run in parallel.
func standalone(t *testing.T) *sandbox.Server {
	t.Helper()
	standaloneOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		standaloneSrv, standaloneErr = sandbox.Start(ctx, sandbox.Options{})
	})
	if standaloneErr != nil {
		t.Fatal(standaloneErr)
	}
	return standaloneSrv
}

func openDB(t *testing.T, s *sandbox.Server, database string) *sql.DB {
	t.Helper()
	db, err := s.DB(database)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// change is one call of Wait's onChange in a copy loop.
type change struct {
	st    throttler.Status
	units int64 // units of work done when the change was reported
}

// copyLoop simulates a ferry copy worker: before each unit of work it calls throttler.Wait, exactly
// as the row copier does, then does the unit and counts it.
type copyLoop struct {
	units   atomic.Int64
	changes chan change
	done    chan error
	cancel  context.CancelFunc
}

// startCopy runs n units of work (n <= 0: until the test ends) through Wait(th). work, if not nil,
// does unit i. The loop is stopped when the test ends.
func startCopy(t *testing.T, th throttler.Throttler, n int, work func(ctx context.Context, i int) error) *copyLoop {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &copyLoop{changes: make(chan change, 1000), done: make(chan error, 1), cancel: cancel}
	go func() {
		onChange := func(st throttler.Status) {
			select {
			case c.changes <- change{st: st, units: c.units.Load()}:
			case <-ctx.Done():
			}
		}
		for i := 0; n <= 0 || i < n; i++ {
			if ctx.Err() != nil {
				c.done <- ctx.Err()
				return
			}
			if err := throttler.Wait(ctx, th, onChange); err != nil {
				c.done <- err
				return
			}
			if work != nil {
				if err := work(ctx, i); err != nil {
					c.done <- fmt.Errorf("unit %d: %w", i, err)
					return
				}
			} else {
				time.Sleep(time.Millisecond)
			}
			c.units.Add(1)
		}
		c.done <- nil
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Error("copy loop did not stop")
		}
	})
	return c
}

// nextChange waits for a reported change that satisfies ok, skipping others.
func (c *copyLoop) nextChange(t *testing.T, what string, ok func(throttler.Status) bool) change {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ch := <-c.changes:
			if ok(ch.st) {
				return ch
			}
			t.Logf("copy loop: change %+v (waiting for %s)", ch.st, what)
		case err := <-c.done:
			c.done <- err // for Cleanup
			t.Fatalf("copy loop ended (err %v) while waiting for %s", err, what)
		case <-timeout:
			t.Fatalf("no %s within 20s; %d units done", what, c.units.Load())
		}
	}
}

// expectPaused waits until the loop reports being throttled with a reason containing reason, then
// checks that no unit of work is done for a while (the condition must be kept by the caller).
func (c *copyLoop) expectPaused(t *testing.T, reason string) change {
	t.Helper()
	ch := c.nextChange(t, fmt.Sprintf("throttle %q", reason), func(st throttler.Status) bool {
		return st.Throttled && strings.Contains(st.Reason, reason)
	})
	// onChange runs inside Wait: at ch.units the loop was paused. It must stay so.
	time.Sleep(pausedFor)
	if got := c.units.Load(); got != ch.units {
		t.Fatalf("copy went on while throttled (%q): %d units when throttled, %d after %s",
			ch.st.Reason, ch.units, got, pausedFor)
	}
	return ch
}

// expectResumed waits until the loop reports being un-throttled and does more work.
func (c *copyLoop) expectResumed(t *testing.T) {
	t.Helper()
	ch := c.nextChange(t, "un-throttle", func(st throttler.Status) bool { return !st.Throttled })
	deadline := time.Now().Add(10 * time.Second)
	for c.units.Load() <= ch.units {
		select {
		case err := <-c.done:
			c.done <- err
			if err != nil {
				t.Fatalf("copy loop failed after resuming: %v", err)
			}
			return // finished: it did resume
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("copy did not resume: still %d units", ch.units)
		}
		time.Sleep(time.Millisecond)
	}
}

// wait waits for the loop to end and returns its error.
func (c *copyLoop) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-c.done:
		c.done <- err
		return err
	case <-time.After(d):
		t.Fatalf("copy loop did not end within %s (%d units)", d, c.units.Load())
		return nil
	}
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// mustCheck calls Check and fails the test on error.
func mustCheck(t *testing.T, th throttler.Throttler) throttler.Status {
	t.Helper()
	st, err := th.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// eventually polls f until it returns "" or the timeout passes, then fails with f's last message.
func eventually(t *testing.T, d time.Duration, f func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		msg := f()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
