package throttler

import (
	"context"
	"time"
)

// DefaultCheckInterval is how long the throttlers that query a server or a service reuse their last
// reading when their config leaves the interval at zero.
const DefaultCheckInterval = 200 * time.Millisecond

// DefaultTimeout bounds one reading (a query, an HTTP request) when a config leaves it at zero.
const DefaultTimeout = time.Second

// cached runs an expensive check at most once per interval, whatever the number of concurrent
// callers. One caller refreshes while the others wait for its result (or for their own context);
// a refresh cut short by the refreshing caller's context is not cached.
type cached struct {
	every time.Duration
	sem   chan struct{} // holds one token; the holder may read and refresh the fields below
	at    time.Time
	valid bool
	st    Status
	err   error
}

func newCached(every time.Duration) *cached {
	if every <= 0 {
		every = DefaultCheckInterval
	}
	c := &cached{every: every, sem: make(chan struct{}, 1)}
	c.sem <- struct{}{}
	return c
}

func (c *cached) check(ctx context.Context, refresh func(context.Context) (Status, error)) (Status, error) {
	if err := ctx.Err(); err != nil {
		return Status{}, err
	}
	select {
	case <-c.sem:
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
	defer func() { c.sem <- struct{}{} }()
	if c.valid && time.Since(c.at) < c.every {
		return c.st, c.err
	}
	st, err := refresh(ctx)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return Status{}, ctxErr
	}
	c.at, c.valid, c.st, c.err = time.Now(), true, st, err
	return st, err
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
