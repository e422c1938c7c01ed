package apply

import (
	"slices"
	"sync"
)

// Gate keeps the copy's writes to a target table and the apply's transactions on it from running
// at the same time, and lets the apply go first.
//
// The hazard it answers is a lock-order deadlock on the target that InnoDB always resolves against
// the apply. A copy batch (LOAD DATA IGNORE or INSERT) takes row locks in ascending key order and
// holds them to its commit: an exclusive lock on every row it inserts, and a shared lock on every
// row it finds already there (the duplicate check, taken at every isolation level). An apply
// transaction takes exclusive locks in binlog order. When the apply has written a row just ahead
// of the copy's position (the copy then waits for it) and next writes a row the copy has already
// inserted in its open batch (waiting for the copy), the two wait for each other; InnoDB rolls back
// the transaction with fewer changes — nearly always the apply, whose retries then back off while
// the copy goes on. These are record locks, not gap locks, so READ COMMITTED does not prevent
// them, and the apply cannot reorder its changes without giving up applying them in binlog order.
//
// Copy holds a table shared (copy batches of one table still run side by side: they cover disjoint
// key ranges); Apply holds every table an apply transaction writes exclusively. A waiting Apply
// keeps new copy batches out (sync.RWMutex), so the apply waits at most for the batches in flight,
// never for a backoff. A nil Gate does nothing.
type Gate struct {
	mu     sync.Mutex
	tables map[string]*sync.RWMutex
}

func (g *Gate) table(name string) *sync.RWMutex {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tables == nil {
		g.tables = map[string]*sync.RWMutex{}
	}
	l := g.tables[name]
	if l == nil {
		l = &sync.RWMutex{}
		g.tables[name] = l
	}
	return l
}

// Copy runs one attempt of a copy write to table (its whole target transaction) while no apply
// transaction on table runs.
func (g *Gate) Copy(table string, write func() error) error {
	if g == nil {
		return write()
	}
	l := g.table(table)
	l.RLock()
	defer l.RUnlock()
	return write()
}

// Apply runs an apply transaction on tables (with its retries: the copy waits meanwhile) while no
// copy write to any of them runs.
func (g *Gate) Apply(tables []string, apply func() error) error {
	if g == nil {
		return apply()
	}
	names := slices.Clone(tables)
	slices.Sort(names) // one lock order: two appliers never wait for each other crosswise
	names = slices.Compact(names)
	for _, n := range names {
		l := g.table(n)
		l.Lock()
		defer l.Unlock()
	}
	return apply()
}
