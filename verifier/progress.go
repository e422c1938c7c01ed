package verifier

import "sync"

// Progress is how far a verification pass has got, readable while Verify runs: the Result only
// comes at its end, and a pass over a large table can take as long as the copy did.
type Progress struct {
	// Phase of the pass running, or of the last one; empty before the first.
	Phase Phase `json:"phase,omitempty"`
	// Running is set while a pass runs.
	Running bool `json:"running"`
	// Tables are the pass's table pairs, in its order, with what was compared so far.
	Tables []TableProgress `json:"tables,omitempty"`
}

// TableProgress is what a pass compared of one table pair so far.
type TableProgress struct {
	Table  string `json:"table"`  // the source table, db.table
	Chunks int64  `json:"chunks"` // chunks compared (equal, or drilled into)
	Rows   int64  `json:"rows"`   // source rows in those chunks
}

// progressTracker records a verifier's Progress; safe for concurrent use.
type progressTracker struct {
	mu  sync.Mutex
	p   Progress
	idx map[*plan]int
}

func (t *progressTracker) start(phase Phase, plans []*plan) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p = Progress{Phase: phase, Running: true, Tables: make([]TableProgress, len(plans))}
	t.idx = make(map[*plan]int, len(plans))
	for i, pl := range plans {
		t.p.Tables[i].Table = pl.src.String()
		t.idx[pl] = i
	}
}

func (t *progressTracker) chunkDone(pl *plan, rows int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i, ok := t.idx[pl]; ok {
		t.p.Tables[i].Chunks++
		t.p.Tables[i].Rows += rows
	}
}

func (t *progressTracker) finish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.Running = false
}

func (t *progressTracker) snapshot() Progress {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.p
	p.Tables = append([]TableProgress(nil), t.p.Tables...)
	return p
}
