// Package chunk sizes the row copy's batches by time and caps its rate.
//
// Each copy batch holds share locks on its source rows until the target has committed them, so the
// time a batch takes is also how long an application UPDATE or DELETE of those rows may wait. A
// fixed row count cannot bound that time: rows differ in width from table to table and the target
// slows down under load. Sizer instead aims every batch at a target duration: after each batch it
// estimates the copy's rows per second from the recent batches and sizes the next batch to take
// the target time, growing by at most MaxGrowth per step (a fast sample must not jump the size
// into a lock-holding giant) and shrinking at once when a batch takes over twice the target.
package chunk

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const (
	// DefaultMin and DefaultMax bound an adaptive batch size.
	DefaultMin = 100
	DefaultMax = 100000
	// MaxGrowth caps how much the batch size grows from one batch to the next.
	MaxGrowth = 1.5
	// window is how many recent batches the rows-per-second estimate is taken over.
	window = 5
)

type sample struct {
	rows int
	took time.Duration
}

// Sizer computes the next batch size from the durations of recent batches; it is safe for
// concurrent use by several copy workers.
type Sizer struct {
	target time.Duration
	// Min and Max bound the sizes Next returns.
	Min, Max int

	mu     sync.Mutex
	recent []sample
}

// NewSizer returns a Sizer aiming at target per batch, within minRows..maxRows (0: DefaultMin,
// DefaultMax).
func NewSizer(target time.Duration, minRows, maxRows int) *Sizer {
	if minRows <= 0 {
		minRows = DefaultMin
	}
	if maxRows <= 0 {
		maxRows = DefaultMax
	}
	maxRows = max(maxRows, minRows)
	return &Sizer{target: target, Min: minRows, Max: maxRows}
}

// Next records that a batch of rows took took, and returns the batch size to use after a batch of
// size current.
func (s *Sizer) Next(current, rows int, took time.Duration) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rows <= 0 || took <= 0 {
		return current
	}
	s.recent = append(s.recent, sample{rows, took})
	if len(s.recent) > window {
		s.recent = s.recent[len(s.recent)-window:]
	}
	var sumRows int
	var sumTook time.Duration
	for _, c := range s.recent {
		sumRows += c.rows
		sumTook += c.took
	}
	perSecond := float64(sumRows) / sumTook.Seconds()
	// A batch well over the target means the copy just got slower (a loaded target, lock waits):
	// react to that batch alone instead of averaging it away with the fast ones before it.
	if took > 2*s.target {
		perSecond = float64(rows) / took.Seconds()
		s.recent = s.recent[len(s.recent)-1:]
	}
	ideal := perSecond * s.target.Seconds()
	if limit := float64(current) * MaxGrowth; ideal > limit {
		ideal = limit
	}
	return min(max(int(ideal), s.Min), s.Max)
}

// WaitRows blocks until the limiter allows n more rows, in steps of at most its burst.
func WaitRows(ctx context.Context, l *rate.Limiter, n int) error {
	for n > 0 {
		k := min(n, max(l.Burst(), 1))
		if err := l.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// NewLimiter returns a limiter of perSecond rows per second, or nil for no limit. Its burst is a
// tenth of a second's rows, so the rate holds from the start of the copy.
func NewLimiter(perSecond float64) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSecond), max(int(perSecond/10), 1))
}
