package ferry

import (
	"time"
)

// TableProgress is the copy progress of one table.
type TableProgress struct {
	Table         string  `json:"table"`
	RowsCopied    int64   `json:"rows_copied"`
	EstimatedRows int64   `json:"estimated_rows"`
	Completed     bool    `json:"completed"`
	Percent       float64 `json:"percent"`
}

// Progress is a snapshot of a running Ferry, for status lines and monitoring.
type Progress struct {
	Tables        []TableProgress `json:"tables"`
	RowsCopied    int64           `json:"rows_copied"`
	EstimatedRows int64           `json:"estimated_rows"`
	Elapsed       time.Duration   `json:"elapsed_ns"`
	// RowsPerSecond is the copy's own rate: rows this run copied over the time the copy took (from
	// Start until the last row was written, or until now while copying). Catch-up and cut-over time
	// do not dilute it, and rows a resumed run found already copied do not inflate it.
	RowsPerSecond float64 `json:"rows_per_second"`
	// ETA estimates the time left for the copy (0 when done or unknown).
	ETA          time.Duration `json:"eta_ns"`
	CopyComplete bool          `json:"copy_complete"`
	// BinlogLag is how far the target is behind the source (Ferry.SourceLag): from the source's
	// binlog timestamps and heartbeats, growing while the stream is silent.
	BinlogLag time.Duration `json:"binlog_lag_ns"`
	// ApplyWait is how long the oldest received change has waited inside ferry (Ferry.BinlogLag).
	ApplyWait time.Duration `json:"apply_wait_ns"`
	// LastEventTime is the source's timestamp of the last binlog event received.
	LastEventTime time.Time `json:"last_event_time"`
	// StreamSilence is how long nothing, not even a heartbeat (sent every second while the source
	// is idle), came from the binlog connection: a few seconds or more is a stalled connection.
	StreamSilence time.Duration `json:"stream_silence_ns"`
	// CopyIdle is, while the copy runs, how long since it last wrote a batch of rows (a stall when
	// not throttled); 0 once the copy is complete.
	CopyIdle        time.Duration `json:"copy_idle_ns"`
	EventsApplied   int64         `json:"events_applied"`
	AppliedPosition Position      `json:"applied_position"`
	Throttled       bool          `json:"throttled"`
	ThrottleReason  string        `json:"throttle_reason,omitempty"`
}

// Progress reports how far the copy and the binlog apply are.
func (f *Ferry) Progress() Progress {
	var p Progress
	for _, t := range f.Tables {
		st := t.State()
		tp := TableProgress{Table: t.String(), RowsCopied: st.RowsCopied, EstimatedRows: t.EstimatedRows, Completed: st.Completed}
		if tp.EstimatedRows < tp.RowsCopied {
			tp.EstimatedRows = tp.RowsCopied
		}
		if tp.Completed {
			tp.Percent = 100
			tp.EstimatedRows = tp.RowsCopied
		} else if tp.EstimatedRows > 0 {
			tp.Percent = 100 * float64(tp.RowsCopied) / float64(tp.EstimatedRows)
		}
		p.Tables = append(p.Tables, tp)
		p.RowsCopied += tp.RowsCopied
		p.EstimatedRows += tp.EstimatedRows
	}
	if !f.startTime.IsZero() {
		p.Elapsed = time.Since(f.startTime)
	}
	select {
	case <-f.copyDone:
		p.CopyComplete = true
	default:
	}
	copyTime := p.Elapsed
	if p.CopyComplete {
		copyTime = f.copyEnd.Sub(f.startTime) // written before copyDone was closed
	}
	if copied := p.RowsCopied - f.rowsAtStart; copyTime > 0 && copied > 0 {
		p.RowsPerSecond = float64(copied) / copyTime.Seconds()
	}
	if !p.CopyComplete && p.RowsPerSecond > 0 && p.EstimatedRows > p.RowsCopied {
		p.ETA = time.Duration(float64(p.EstimatedRows-p.RowsCopied) / p.RowsPerSecond * float64(time.Second))
	}
	if !p.CopyComplete && f.started {
		p.CopyIdle = time.Since(time.Unix(0, f.lastBatch.Load()))
	}
	rp := f.parts()
	if s, ok := rp.streamer.(interface {
		StreamState() (time.Time, bool)
		LastEventTime() time.Time
	}); ok {
		p.LastEventTime = s.LastEventTime()
		if heard, _ := s.StreamState(); !heard.IsZero() {
			select {
			case <-f.streamDone:
			default:
				p.StreamSilence = time.Since(heard)
			}
		}
	}
	if rp.writer != nil {
		p.BinlogLag = f.SourceLag()
		p.ApplyWait = f.BinlogLag()
		p.AppliedPosition = rp.writer.Applied()
		if c, ok := rp.writer.(interface{ EventsApplied() int64 }); ok {
			p.EventsApplied = c.EventsApplied()
		}
	}
	f.mu.Lock()
	p.Throttled, p.ThrottleReason = f.throttle.Throttled, f.throttle.Reason
	f.mu.Unlock()
	return p
}
