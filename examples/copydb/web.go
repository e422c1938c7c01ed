package main

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/metrics"
	"github.com/ferrykit/ferry/statuspage"
	"github.com/ferrykit/ferry/throttler"
	"github.com/ferrykit/ferry/verifier"
)

// controls are what the status page can do to a running copydb, and what it shows.
type controls struct {
	f         *ferry.Ferry
	paused    atomic.Pointer[string]
	phase     atomic.Pointer[string]
	cutoverCh chan struct{} // -cutover wait: start the cut-over
	abort     context.CancelFunc
	verifier  atomic.Pointer[func() verifier.Progress] // the verifier's progress, when it reports one
}

// watchVerifier shows v's progress on the status page; a nil controls (no -http) ignores it.
func (c *controls) watchVerifier(v metrics.ProgressReporter) {
	if c != nil {
		f := v.Progress
		c.verifier.Store(&f)
	}
}

func newControls(f *ferry.Ferry, abort context.CancelFunc, wait bool) *controls {
	c := &controls{f: f, abort: abort}
	if wait {
		c.cutoverCh = make(chan struct{}, 1)
	}
	c.setPhase("starting")
	return c
}

// setPhase records what copydb is doing; a nil controls (no -http) ignores it.
func (c *controls) setPhase(p string) {
	if c != nil {
		c.phase.Store(&p)
	}
}

// Check makes the controls a throttler: "pause" holds the copy and the binlog apply.
func (c *controls) Check(context.Context) (throttler.Status, error) {
	if r := c.paused.Load(); r != nil {
		return throttler.Status{Throttled: true, Reason: *r}, nil
	}
	return throttler.Status{}, nil
}

func (c *controls) server() *statuspage.Server {
	actions := map[string]statuspage.Action{
		"pause": func(string) (string, error) {
			r := "paused from the status page"
			c.paused.Store(&r)
			return "paused: the copy and the binlog apply stop after the batch in progress", nil
		},
		"resume": func(string) (string, error) {
			c.paused.Store(nil)
			return "resumed", nil
		},
		"chunk-size": func(v string) (string, error) {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1_000_000 {
				return "", fmt.Errorf("chunk size %q: want a number of rows from 1 to 1000000", v)
			}
			c.f.SetBatchSize(n)
			return fmt.Sprintf("batch size %d from the next batch", n), nil
		},
		"abort": func(string) (string, error) {
			c.abort()
			return "aborting: the run stops and saves its checkpoint (with -state-file)", nil
		},
	}
	if c.cutoverCh != nil {
		actions["cutover"] = func(string) (string, error) {
			select {
			case c.cutoverCh <- struct{}{}:
			default:
			}
			return "cut-over requested", nil
		}
	}
	return &statuspage.Server{Status: c.status, Actions: actions}
}

func (c *controls) status() statuspage.Status {
	p := c.f.Progress()
	phase := *c.phase.Load()
	if phase == "copying" && p.CopyComplete {
		phase = "streaming"
	}
	st := statuspage.Status{Tool: "copydb", Phase: phase, Elapsed: p.Elapsed, RowsCopied: p.RowsCopied, EstimatedRows: p.EstimatedRows,
		RowsPerSecond: p.RowsPerSecond, ETA: p.ETA, BinlogLag: p.BinlogLag, StreamSilence: p.StreamSilence, LastEventTime: p.LastEventTime,
		EventsApplied: p.EventsApplied, ChunkSize: c.f.BatchSize(), Stalls: stalls(p)}
	if p.EstimatedRows > 0 {
		st.Percent = 100 * float64(p.RowsCopied) / float64(p.EstimatedRows)
	}
	if p.Throttled {
		st.Paused = p.ThrottleReason
	}
	if p.Throttled || p.CopyIdle >= copyStall {
		st.ETA = 0 // no estimate while nothing moves (the page shows "-")
	}
	if get := c.verifier.Load(); get != nil {
		if vp := (*get)(); vp.Phase != "" {
			st.Verification = &vp
		}
	}
	for _, t := range p.Tables {
		state := "copying"
		if t.Completed {
			state = "done"
		}
		st.Tables = append(st.Tables, statuspage.Table{Name: t.Table, RowsCopied: t.RowsCopied, EstimatedRows: t.EstimatedRows, Percent: t.Percent, State: state})
	}
	return st
}
