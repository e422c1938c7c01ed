package osc

import (
	"context"
	"fmt"
	"time"
)

// Status is a snapshot of a running migration.
type Status struct {
	State         string
	RowsCopied    int64
	RowsEstimated int64
	// Percent of the estimated rows copied (100 once the copy is complete).
	Percent       float64
	EventsApplied int64
	// Backlog is the number of binlog row changes received but not yet applied.
	Backlog int64
	// Lag is how far the binlog apply trails the server (heartbeat through the binlog).
	Lag       time.Duration
	Throttled string // reason, or ""
	Elapsed   time.Duration
	// ETA of the row copy, 0 when unknown or done.
	ETA       time.Duration
	ChunkSize int
}

// String is the one-line status the CLI prints.
func (s Status) String() string {
	eta := "-"
	if s.ETA > 0 {
		eta = s.ETA.Round(time.Second).String()
	}
	th := ""
	if s.Throttled != "" {
		th = "; throttled: " + s.Throttled
	}
	return fmt.Sprintf("%s: copied %d/%d rows (%.1f%%), applied %d events, backlog %d, lag %s, elapsed %s, ETA %s%s",
		s.State, s.RowsCopied, s.RowsEstimated, s.Percent, s.EventsApplied, s.Backlog,
		s.Lag.Round(time.Millisecond), s.Elapsed.Round(time.Second), eta, th)
}

// Status returns the migration's current status; safe to call from any goroutine while Run runs.
func (m *Migration) Status() Status {
	st := Status{State: m.stateName(), RowsCopied: m.rowsCopied.Load(), RowsEstimated: m.rowsEstimated.Load(),
		ChunkSize: int(m.chunkSize.Load())}
	if ns := m.startedNano.Load(); ns != 0 {
		st.Elapsed = time.Since(time.Unix(0, ns))
	}
	if a := m.applierP.Load(); a != nil {
		st.EventsApplied = a.events.Load()
		st.Backlog = a.backlog()
		st.Lag = a.lag()
	}
	if r, ok := m.throttleReason.Load().(string); ok {
		st.Throttled = r
	}
	if m.userThrottled.Load() {
		st.Throttled = "throttled by command"
	}
	switch {
	case m.copyDone.Load():
		st.Percent = 100
	case st.RowsEstimated > 0:
		st.Percent = min(100*float64(st.RowsCopied)/float64(st.RowsEstimated), 99.9)
		if st.RowsCopied > 0 && st.Elapsed > 0 {
			rate := float64(st.RowsCopied) / st.Elapsed.Seconds()
			left := float64(max(st.RowsEstimated-st.RowsCopied, 0))
			st.ETA = time.Duration(left / rate * float64(time.Second))
		}
	}
	return st
}

func (m *Migration) statusLoop(ctx context.Context) {
	t := time.NewTicker(m.StatusInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			st := m.Status()
			if m.OnStatus != nil {
				m.OnStatus(st)
			}
			m.runHook(ctx, HookStatus, nil)
		}
	}
}

// Throttle pauses (true) or resumes (false) the row copy, like the "throttle" command.
func (m *Migration) Throttle(on bool) { m.userThrottled.Store(on) }

// SetChunkSize changes the rows per copy chunk (10..100000) from the next chunk on.
func (m *Migration) SetChunkSize(n int) error {
	if n < 10 || n > 100000 {
		return fmt.Errorf("chunk size %d out of range 10..100000", n)
	}
	m.chunkSize.Store(int64(n))
	return nil
}

// Unpostpone lets a postponed cut-over go (the postpone flag file, if set, is removed too).
func (m *Migration) Unpostpone() {
	m.init()
	m.postponed.Store(false)
	if m.PostponeFlagFile != "" {
		removeFile(m.PostponeFlagFile)
	}
	select {
	case m.cutoverNow <- struct{}{}:
	default:
	}
}

// Panic stops the migration at once, as the "panic" command does; Run returns an error and the
// original table is unchanged (unless the cut-over already renamed it).
func (m *Migration) Panic() {
	m.init()
	m.panicOnce.Do(func() { close(m.panicked) })
}
