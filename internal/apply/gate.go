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
// Copy writes of one table share it (copy batches of one table still run side by side: they cover
// disjoint key ranges), and so do apply transactions (the parallel apply runs several at once on
// disjoint keys: see Parallel); a copy write and an apply transaction never share a table. The
// apply goes first: a waiting apply keeps new copy writes out, so it waits at most for the writes
// in flight, never for a backoff. The copy is not starved either: copy writes that wait while
// apply transactions run go next, before applies that arrive after them (phase-fair), so under a
// saturated apply the copy still gets one batch per worker between apply phases — as with one
// apply transaction at a time. A nil Gate does nothing.
type Gate struct {
	mu     sync.Mutex
	tables map[string]*tableGate
}

// tableGate is the state of one table: how many copy writes and apply transactions hold it or wait
// for it, and whether the waiting copy writes have the next turn.
type tableGate struct {
	cond                        sync.Cond
	copies, applies             int
	copiesWaiting, applyWaiting int
	copyTurn                    bool
}

func (g *Gate) table(name string) *tableGate {
	if g.tables == nil {
		g.tables = map[string]*tableGate{}
	}
	l := g.tables[name]
	if l == nil {
		l = &tableGate{}
		l.cond.L = &g.mu
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
	g.mu.Lock()
	l := g.table(table)
	if l.applies > 0 || l.applyWaiting > 0 {
		l.copiesWaiting++
		for l.applies > 0 || l.applyWaiting > 0 && !l.copyTurn {
			if l.applies > 0 {
				l.copyTurn = true // the running apply phase is followed by the waiting copies
			}
			l.cond.Wait()
		}
		l.copiesWaiting--
		if l.copiesWaiting == 0 {
			l.copyTurn = false
		}
	}
	l.copies++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		l.copies--
		l.cond.Broadcast()
		g.mu.Unlock()
	}()
	return write()
}

// Apply runs an apply transaction on tables (with its retries: the copy waits meanwhile) while no
// copy write to any of them runs; other apply transactions may run at the same time.
func (g *Gate) Apply(tables []string, apply func() error) error {
	if g == nil {
		return apply()
	}
	names := slices.Clone(tables)
	slices.Sort(names) // one order: an apply holding one table never waits crosswise for another
	names = slices.Compact(names)
	held := make([]*tableGate, 0, len(names))
	g.mu.Lock()
	for _, n := range names {
		l := g.table(n)
		if l.copies > 0 || l.copyTurn {
			l.applyWaiting++
			for l.copies > 0 || l.copyTurn {
				l.cond.Wait()
			}
			l.applyWaiting--
		}
		if l.copiesWaiting > 0 {
			l.copyTurn = true
		}
		l.applies++
		held = append(held, l)
	}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		for _, l := range held {
			l.applies--
			l.cond.Broadcast()
		}
		g.mu.Unlock()
	}()
	return apply()
}
