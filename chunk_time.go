package ferry

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Adaptive chunk size. Each copy batch holds share locks on its source rows until the target has
// committed them (see DataIterator), so the time a batch takes is also how long an application
// UPDATE or DELETE of those rows may wait. A fixed row count cannot bound that time: rows differ in
// width from table to table and the target slows down under load. chunkSizer instead aims every
// batch at a target duration: after each batch it estimates the copy's rows per second from the
// recent batches and sizes the next batch to take the target time, growing by at most
// maxChunkGrowth per step (a fast sample must not jump the size into a lock-holding giant) and
// shrinking at once when batches get slow.

const (
	// DefaultMinBatchSize and DefaultMaxBatchSize bound an adaptive batch size.
	DefaultMinBatchSize = 100
	DefaultMaxBatchSize = 100000
	// maxChunkGrowth caps how much the batch size grows from one batch to the next.
	maxChunkGrowth = 1.5
	// chunkSamples is how many recent batches the rows-per-second estimate is taken over.
	chunkSamples = 5
)

type chunkSample struct {
	rows int
	took time.Duration
}

// chunkSizer computes the next batch size from the durations of recent batches.
type chunkSizer struct {
	target   time.Duration
	min, max int

	mu      sync.Mutex
	samples []chunkSample
}

func newChunkSizer(target time.Duration, minRows, maxRows int) *chunkSizer {
	if minRows <= 0 {
		minRows = DefaultMinBatchSize
	}
	if maxRows <= 0 {
		maxRows = DefaultMaxBatchSize
	}
	maxRows = max(maxRows, minRows)
	return &chunkSizer{target: target, min: minRows, max: maxRows}
}

// next records that a batch of rows took took, and returns the batch size to use after a batch of
// size current.
func (s *chunkSizer) next(current, rows int, took time.Duration) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rows <= 0 || took <= 0 {
		return current
	}
	s.samples = append(s.samples, chunkSample{rows, took})
	if len(s.samples) > chunkSamples {
		s.samples = s.samples[len(s.samples)-chunkSamples:]
	}
	var sumRows int
	var sumTook time.Duration
	for _, c := range s.samples {
		sumRows += c.rows
		sumTook += c.took
	}
	perSecond := float64(sumRows) / sumTook.Seconds()
	// A batch well over the target means the copy just got slower (a loaded target, lock waits):
	// react to that batch alone instead of averaging it away with the fast ones before it.
	if took > 2*s.target {
		perSecond = float64(rows) / took.Seconds()
		s.samples = s.samples[len(s.samples)-1:]
	}
	ideal := perSecond * s.target.Seconds()
	if limit := float64(current) * maxChunkGrowth; ideal > limit {
		ideal = limit
	}
	return min(max(int(ideal), s.min), s.max)
}

// waitRows blocks until the limiter allows n more rows, in steps of at most its burst.
func waitRows(ctx context.Context, l *rate.Limiter, n int) error {
	for n > 0 {
		k := min(n, max(l.Burst(), 1))
		if err := l.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// newRowLimiter returns a limiter of perSecond rows per second, or nil for no limit. Its burst is a
// tenth of a second's rows, so the rate holds from the start of the copy.
func newRowLimiter(perSecond float64) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSecond), max(int(perSecond/10), 1))
}
