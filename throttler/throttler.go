// Package throttler decides when ferry must pause its work to protect the production database.
//
// Row copy, binlog apply and the checksum verifier all call Wait before each unit of work (a batch
// of rows, a batch of events, a chunk). A Throttler only answers "should work pause now, and why";
// it never sleeps itself, so several can be combined (Composite) and the first reason wins.
//
// Guarantee: a throttler that cannot tell (a replica unreachable, a query failing) reports itself
// throttled rather than letting work run blind — it fails closed. An error from Check means "stop the
// run" (for example a critical load level); the caller checkpoints and returns it.
package throttler

import (
	"context"
	"time"
)

// Status is the answer of a Throttler.
type Status struct {
	Throttled bool
	// Reason says why work is paused, e.g. "replica 127.0.0.1:3307 lag 2.3s > 1s"; empty when not
	// throttled.
	Reason string
}

// Throttler tells whether work should pause. Implementations must be safe for concurrent use.
type Throttler interface {
	// Check reports the current state. A non-nil error aborts the run.
	Check(ctx context.Context) (Status, error)
}

// Func adapts a function to the Throttler interface.
type Func func(ctx context.Context) (Status, error)

// Check calls f.
func (f Func) Check(ctx context.Context) (Status, error) { return f(ctx) }

// PollInterval is how often Wait re-checks a throttled Throttler.
var PollInterval = 100 * time.Millisecond

// Wait blocks while t reports throttled. It returns nil when work may go on, the Throttler's error,
// or the context's error. onChange, if not nil, is called with the status each time the throttled
// state or reason changes (so callers log transitions once, not every tick). A nil t never throttles.
func Wait(ctx context.Context, t Throttler, onChange func(Status)) error {
	if t == nil {
		return ctx.Err()
	}
	var last Status
	first := true
	for {
		st, err := t.Check(ctx)
		if err != nil {
			return err
		}
		if onChange != nil && (first && st.Throttled || !first && st != last) {
			onChange(st)
		}
		if !st.Throttled {
			return nil
		}
		first = false
		last = st
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(PollInterval):
		}
	}
}
