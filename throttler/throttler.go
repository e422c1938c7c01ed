// Package throttler decides when ferry must pause its work to protect the production database.
//
// Row copy, binlog apply and the checksum verifier all call Wait before each unit of work (a batch
// of rows, a batch of events, a chunk). A Throttler only answers "should work pause now, and why";
// it never sleeps itself, so several can be combined (Composite) and the first reason wins.
//
// Guarantee: a throttler that cannot tell (a replica unreachable, a query failing) reports itself
// throttled rather than letting work run blind — it fails closed. An error from Check means "stop the
// run" (for example a critical load level); the caller checkpoints and returns it.
//
// Implementations:
//
//   - ReplicationLag: lag of one or more replicas from a heartbeat ferry writes on the source,
//     falling back to the replica's own status; the slowest replica counts; fails closed after a
//     grace period without a reading.
//   - Load: thresholds on global status variables (gh-ost's max-load), and a critical level that
//     aborts the run with a *CriticalLoadError (gh-ost's critical-load).
//   - FlagFile: throttled while a file exists.
//   - Query: throttled while a query returns a non-zero value; a failing query throttles.
//   - HTTP: throttled unless a URL answers 200.
//   - TimeWindow: throttled inside a daily window (for example office hours).
//   - Pauser: paused and resumed by the host.
//   - Composite: any of the above together.
//
// All of them are safe for concurrent use. The ones that query a server or a service cache their
// last reading for a short interval (200 ms by default), so many copy workers calling Check at once
// cost one query per interval. LogChanges turns Wait's onChange into one log line per change.
package throttler

import (
	"context"
	"time"
)

// Status is the answer of a Throttler.
type Status struct {
	Throttled bool
	// Reason says why work is paused, e.g. "replica db2 lag above 1s (heartbeat)"; empty when not
	// throttled. It stays the same while the cause stays the same, so that changes of Reason are
	// worth logging.
	Reason string
	// Detail, optional, is the live measurement behind Reason (e.g. "lag 2.31s"), for progress
	// reports and log lines. It may change on every check; Wait does not report a change of Detail
	// alone.
	Detail string
}

// String renders the status for logs and progress: "running", or the reason and detail.
func (s Status) String() string {
	if !s.Throttled {
		return "running"
	}
	r := s.Reason
	if r == "" {
		r = "throttled"
	}
	if s.Detail != "" {
		r += " (" + s.Detail + ")"
	}
	return r
}

// sameState reports whether a and b are the same throttle state for change reporting: same
// Throttled and same Reason (Detail is ignored).
func sameState(a, b Status) bool { return a.Throttled == b.Throttled && a.Reason == b.Reason }

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
// state or reason changes (so callers log transitions once, not every tick): first when the first
// check is throttled, then on each change of Throttled or Reason, including the final un-throttle.
// A change of Detail alone is not reported. A nil t never throttles.
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
		if onChange != nil && (first && st.Throttled || !first && !sameState(st, last)) {
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
