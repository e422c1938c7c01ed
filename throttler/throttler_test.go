package throttler_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry/throttler"
)

func TestWaitReportsStateAndReasonChangesNotDetail(t *testing.T) {
	var n atomic.Int32
	th := throttler.Func(func(context.Context) (throttler.Status, error) {
		switch i := n.Add(1); {
		case i <= 3:
			return throttler.Status{Throttled: true, Reason: "a", Detail: fmt.Sprint("value ", i)}, nil
		case i <= 5:
			return throttler.Status{Throttled: true, Reason: "b"}, nil
		default:
			return throttler.Status{}, nil
		}
	})
	var got []string
	if err := throttler.Wait(context.Background(), th, func(st throttler.Status) { got = append(got, st.String()) }); err != nil {
		t.Fatal(err)
	}
	want := []string{"a (value 1)", "b", "running"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("onChange calls %q, want %q", got, want)
	}
	if n.Load() != 6 {
		t.Fatalf("Wait checked %d times, want 6", n.Load())
	}
}

func TestWaitReturnsThrottlerErrorAndContextError(t *testing.T) {
	boom := errors.New("boom")
	if err := throttler.Wait(context.Background(), throttler.Func(func(context.Context) (throttler.Status, error) {
		return throttler.Status{}, boom
	}), nil); !errors.Is(err, boom) {
		t.Fatalf("Wait = %v, want %v", err, boom)
	}
	var p throttler.Pauser
	p.Pause("")
	ctx, cancel := context.WithTimeout(context.Background(), 5*pollInterval)
	defer cancel()
	if err := throttler.Wait(ctx, &p, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on a paused Pauser = %v, want deadline exceeded", err)
	}
}

func TestPauserPausesAndResumesCopy(t *testing.T) {
	var p throttler.Pauser
	c := startCopy(t, &p, 0, nil)
	p.Pause("operator asked")
	c.expectPaused(t, "operator asked")
	p.Resume()
	c.expectResumed(t)
	p.Pause("")
	c.expectPaused(t, "paused by host")
	p.Resume()
	c.expectResumed(t)
}

func TestFlagFilePausesAndResumesCopy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ferry.throttle")
	ff := throttler.FlagFile{Path: path}
	c := startCopy(t, ff, 0, nil)
	eventually(t, 5*time.Second, func() string {
		if c.units.Load() < 3 {
			return "copy did not start"
		}
		return ""
	})
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ch := c.expectPaused(t, "flag file "+path+" exists")
	if ch.units < 3 {
		t.Fatalf("paused after %d units", ch.units)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	c.expectResumed(t)
}

func TestFlagFileFailsClosedWhenItCannotBeChecked(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "plain-file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A path below a regular file cannot be stat'ed (ENOTDIR), which is not "does not exist".
	st := mustCheck(t, throttler.FlagFile{Path: filepath.Join(notDir, "flag")})
	if !st.Throttled || !strings.Contains(st.Reason, "cannot be checked") || st.Detail == "" {
		t.Fatalf("status %+v, want throttled because the flag file cannot be checked", st)
	}
	if st := mustCheck(t, throttler.FlagFile{}); st.Throttled {
		t.Fatalf("empty FlagFile throttles: %+v", st)
	}
}

func TestCompositeFirstReasonWinsAndAnyErrorAborts(t *testing.T) {
	var host throttler.Pauser
	path := filepath.Join(t.TempDir(), "flag")
	var critical atomic.Bool
	abort := errors.New("critical")
	errs := throttler.Func(func(context.Context) (throttler.Status, error) {
		if critical.Load() {
			return throttler.Status{}, abort
		}
		return throttler.Status{}, nil
	})
	c := throttler.NewComposite(&host, nil, throttler.FlagFile{Path: path}, errs)

	if st := mustCheck(t, c); st.Throttled {
		t.Fatalf("nothing set, yet throttled: %+v", st)
	}
	loop := startCopy(t, c, 0, nil)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	loop.expectPaused(t, "flag file")
	host.Pause("maintenance")
	loop.expectPaused(t, "maintenance") // both throttle: the first member's reason wins
	if st := mustCheck(t, c); st.Reason != "maintenance" {
		t.Fatalf("reason %q, want the first member's", st.Reason)
	}
	host.Resume()
	loop.expectPaused(t, "flag file")
	os.Remove(path)
	loop.expectResumed(t)

	// An error from a later member aborts even while an earlier one throttles.
	host.Pause("maintenance")
	loop.expectPaused(t, "maintenance")
	critical.Store(true)
	if err := loop.wait(t, 5*time.Second); !errors.Is(err, abort) {
		t.Fatalf("copy ended with %v, want %v", err, abort)
	}
	if st := mustCheck(t, throttler.Composite{}); st.Throttled {
		t.Fatal("empty Composite throttles")
	}
}

type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) Infof(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.l = append(l.l, fmt.Sprintf(format, args...))
}

func (l *lines) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.l...)
}

func TestLogChangesLogsEachChangeOnceAcrossWorkers(t *testing.T) {
	var p throttler.Pauser
	var detail atomic.Int64
	th := throttler.Func(func(ctx context.Context) (throttler.Status, error) {
		st, err := p.Check(ctx)
		if st.Throttled {
			st.Detail = fmt.Sprint("tick ", detail.Add(1)) // changes on every check: never logged alone
		}
		return st, err
	})
	log := &lines{}
	onChange := throttler.LogChanges(log)
	const workers = 4
	var wg sync.WaitGroup
	var units atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); wg.Wait() }()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if throttler.Wait(ctx, th, onChange) != nil {
					return
				}
				units.Add(1)
				time.Sleep(time.Millisecond)
			}
		}()
	}
	p.Pause("first")
	eventually(t, 5*time.Second, func() string {
		if detail.Load() < 4*workers { // every worker has seen the pause a few times
			return "workers did not see the pause"
		}
		return ""
	})
	p.Pause("second")
	eventually(t, 5*time.Second, func() string {
		if n := len(log.get()); n < 2 {
			return fmt.Sprintf("%d log lines: %q", n, log.get())
		}
		return ""
	})
	time.Sleep(5 * pollInterval) // every worker sees "second" a few times
	p.Resume()
	eventually(t, 5*time.Second, func() string {
		if n := len(log.get()); n < 3 {
			return fmt.Sprintf("%d log lines: %q", n, log.get())
		}
		return ""
	})
	before := units.Load()
	eventually(t, 5*time.Second, func() string {
		if units.Load() < before+2*workers {
			return "workers did not resume"
		}
		return ""
	})
	got := log.get()
	if len(got) != 3 || !strings.HasPrefix(got[0], "throttled: first (tick ") ||
		!strings.HasPrefix(got[1], "throttled: second (tick ") || got[2] != "throttle released (was: second)" {
		t.Fatalf("log lines %q, want one per change: first, second, released", got)
	}
}

func TestTimeWindowPausesAndResumesCopy(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone data:", err)
	}
	w, err := throttler.NewTimeWindow("09:00", "17:00", berlin)
	if err != nil {
		t.Fatal(err)
	}
	var now atomic.Int64 // unix nanoseconds of the injected clock
	set := func(s string) {
		tm, err := time.ParseInLocation("2006-01-02 15:04:05", s, berlin)
		if err != nil {
			t.Fatal(err)
		}
		now.Store(tm.UnixNano())
	}
	w.Now = func() time.Time { return time.Unix(0, now.Load()) }
	set("2026-03-02 08:59:59")
	c := startCopy(t, w, 0, nil)
	set("2026-03-02 09:00:00")
	ch := c.expectPaused(t, "inside time window 09:00-17:00 Europe/Berlin")
	if ch.st.Detail != "until 2026-03-02 17:00:00 CET" {
		t.Fatalf("detail %q", ch.st.Detail)
	}
	set("2026-03-02 17:00:00")
	c.expectResumed(t)
}

func TestTimeWindowBoundaries(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone data:", err)
	}
	office, _ := throttler.NewTimeWindow("09:00", "17:00", berlin)
	night, _ := throttler.NewTimeWindow("22:00", "06:30", berlin)
	weekdayNights, _ := throttler.NewTimeWindow("22:00", "06:00", berlin)
	weekdayNights.Weekdays = []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday}
	// 2026-03-06 is a Friday; 2026-03-29 02:00 is when Berlin moves to summer time.
	cases := []struct {
		w    *throttler.TimeWindow
		at   string
		want bool
	}{
		{office, "2026-03-06 08:59:59", false},
		{office, "2026-03-06 09:00:00", true},
		{office, "2026-03-06 16:59:59", true},
		{office, "2026-03-06 17:00:00", false},
		{office, "2026-03-29 12:00:00", true}, // the day clocks change: still local wall time
		{night, "2026-03-06 21:59:59", false},
		{night, "2026-03-06 22:00:00", true},
		{night, "2026-03-07 00:00:00", true},
		{night, "2026-03-07 06:29:59", true},
		{night, "2026-03-07 06:30:00", false},
		{night, "2026-03-07 12:00:00", false},
		{weekdayNights, "2026-03-06 23:00:00", true},  // Friday night
		{weekdayNights, "2026-03-07 02:00:00", true},  // began on Friday
		{weekdayNights, "2026-03-07 23:00:00", false}, // Saturday night
		{weekdayNights, "2026-03-09 02:00:00", false}, // Monday early: began on Sunday
		{weekdayNights, "2026-03-09 23:00:00", true},
	}
	for _, c := range cases {
		at, err := time.ParseInLocation("2006-01-02 15:04:05", c.at, berlin)
		if err != nil {
			t.Fatal(err)
		}
		c.w.Now = func() time.Time { return at.UTC() } // the clock's zone must not matter
		if st := mustCheck(t, c.w); st.Throttled != c.want {
			t.Errorf("%s at %s: throttled=%v, want %v (%+v)", c.w, c.at, st.Throttled, c.want, st)
		}
	}
	for _, bad := range [][2]string{{"9", "17:00"}, {"09:00", "24:00"}, {"09:60", "10:00"}, {"10:00", "10:00"}, {"ab:cd", "10:00"}} {
		if _, err := throttler.NewTimeWindow(bad[0], bad[1], time.UTC); err == nil {
			t.Errorf("NewTimeWindow(%q, %q) accepted", bad[0], bad[1])
		}
	}
}
