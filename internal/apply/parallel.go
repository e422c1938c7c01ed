package apply

import (
	"context"
	"sync"
)

// Parallel applies units of work (source transactions) on several workers at once, writeset-style:
// a unit waits for every earlier unit that shares one of its keys, so the changes of any one key
// (any one row, any one unique value) reach the target in source order, while units on disjoint
// keys commit in whatever order their workers finish.
//
// The invariants it keeps, and why they are enough:
//
//   - Per-key order. A unit's Keys name everything its changes can conflict on (the caller's
//     writeset). Submit makes the unit depend on the last earlier unit of each of its keys, and a
//     worker starts a unit only once all its dependencies are committed; a chain of units on one
//     key is therefore applied in order, one after the other. Two units with disjoint keys touch
//     disjoint rows and disjoint unique values, so applying them in either order, or at once,
//     leaves the target as the source order would.
//   - Barriers. A unit whose effect a writeset cannot describe (Barrier) depends on every earlier
//     unit and every later unit depends on it: it runs alone, exactly where it is in the stream.
//   - Low-water mark. Retire is called for each unit in submission order, and only once the unit
//     and every unit before it are committed. A position reported from Retire is therefore one
//     below which everything is applied: resuming there never skips a unit.
//   - Atomicity. A unit is never split: it is applied by one call of Exec (one target transaction).
//     A worker may add to a unit the units queued behind it whose dependencies are committed or in
//     the same call, up to Limit in size (fewer commits; order within the call is submission
//     order).
//   - Shutdown. The first error of Exec stops every worker; Submit and Close then return it, and
//     Close returns only once no worker runs.
type Parallel[T any] struct {
	// Exec applies one or more units, in order, in one target transaction.
	Exec func(ctx context.Context, units []T) error
	// Retire is called, in submission order and from one goroutine at a time, for each unit once it
	// and every unit before it are applied.
	Retire func(unit T)
	// Limit is the most size merged into one Exec call (a single unit may be larger).
	Limit int

	ctx     context.Context
	cancel  context.CancelFunc
	workers []*worker[T]
	wg      sync.WaitGroup

	mu      sync.Mutex
	err     error
	last    map[uint64]*unit[T] // the last submitted unit of each key, while it is not committed
	barrier *unit[T]            // the last barrier submitted, while it is not committed
	fill    int                 // the worker independent units go to while its queue has room
	order   []*unit[T]          // submitted units not yet retired, in submission order
	seq     uint64
}

type unit[T any] struct {
	seq    uint64
	val    T
	size   int
	keys   []uint64
	deps   []*unit[T]
	worker int
	done   chan struct{} // closed once committed
	ok     bool          // committed (under Parallel.mu)
}

type worker[T any] struct {
	queue   chan *unit[T]
	pending int // units queued or running (under Parallel.mu)
	queued  int // size of the units in queue, not yet taken (under Parallel.mu)
}

// NewParallel starts n workers (at least 1). Stop them with Close.
func NewParallel[T any](ctx context.Context, n int, exec func(ctx context.Context, units []T) error, retire func(T), limit int) *Parallel[T] {
	p := &Parallel[T]{Exec: exec, Retire: retire, Limit: max(limit, 1), last: map[uint64]*unit[T]{}}
	p.ctx, p.cancel = context.WithCancel(ctx)
	for i := 0; i < max(n, 1); i++ {
		w := &worker[T]{queue: make(chan *unit[T], 64)}
		p.workers = append(p.workers, w)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.run(w)
		}()
	}
	return p
}

// Context is done once the workers stop: ctx ended, or a unit failed (Close then returns why).
func (p *Parallel[T]) Context() context.Context { return p.ctx }

// Submit queues one unit of the given size, conflicting on keys (or, with barrier, on everything).
// It blocks while the chosen worker's queue is full. A unit of size 0 is not applied, only retired
// in its turn.
func (p *Parallel[T]) Submit(val T, size int, keys []uint64, barrier bool) error {
	p.mu.Lock()
	if p.err != nil {
		err := p.err
		p.mu.Unlock()
		return err
	}
	p.seq++
	u := &unit[T]{seq: p.seq, val: val, size: size, keys: keys, done: make(chan struct{})}
	seen := map[*unit[T]]bool{}
	dep := func(d *unit[T]) {
		if d != nil && d != u && !d.ok && !seen[d] {
			seen[d] = true
			u.deps = append(u.deps, d)
		}
	}
	if barrier {
		for _, d := range p.order {
			dep(d)
		}
		p.barrier = u
	} else {
		dep(p.barrier)
		for _, k := range keys {
			dep(p.last[k])
			p.last[k] = u
		}
	}
	p.order = append(p.order, u)
	if size == 0 && len(u.deps) == 0 {
		// Nothing to apply and nothing to wait for: only its turn in the retire order.
		u.ok = true
		close(u.done)
		p.retireLocked()
		p.mu.Unlock()
		return nil
	}
	// A unit goes to the worker of its newest dependency (a chain on one key stays on one worker,
	// which applies it in queue order without waiting), otherwise to the least busy worker.
	u.worker = -1
	var newest *unit[T]
	for _, d := range u.deps {
		if newest == nil || d.seq > newest.seq {
			newest = d
		}
	}
	if newest != nil {
		u.worker = newest.worker
	} else if f := p.workers[p.fill]; f.queued+size <= p.Limit {
		// Independent units fill one worker's queue while it is busy, up to what it applies in one
		// transaction, before the next worker gets any: as few target transactions as the serial
		// writer when the apply keeps up, all workers busy when it does not.
		u.worker = p.fill
	} else {
		for i, w := range p.workers {
			if u.worker < 0 || w.pending < p.workers[u.worker].pending {
				u.worker = i
			}
		}
		p.fill = u.worker
	}
	w := p.workers[u.worker]
	w.pending++
	w.queued += size
	p.mu.Unlock()
	select {
	case w.queue <- u:
		return nil
	case <-p.ctx.Done():
		return p.stopErr()
	}
}

func (p *Parallel[T]) stopErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	return p.ctx.Err()
}

// Close waits until every submitted unit is applied and retired (or a worker fails), stops the
// workers and returns the first error.
func (p *Parallel[T]) Close() error {
	for _, w := range p.workers {
		close(w.queue)
	}
	p.wg.Wait()
	p.cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *Parallel[T]) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
	p.cancel()
}

// ready reports whether every dependency of u is committed or in group.
func (p *Parallel[T]) ready(u *unit[T], group map[*unit[T]]bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range u.deps {
		if !d.ok && !group[d] {
			return false
		}
	}
	return true
}

func (p *Parallel[T]) run(w *worker[T]) {
	var next *unit[T] // taken from the queue but not yet ready
	for {
		u := next
		next = nil
		if u == nil {
			var ok bool
			select {
			case u, ok = <-w.queue:
				if !ok {
					return
				}
			case <-p.ctx.Done():
				return
			}
			p.mu.Lock()
			w.queued -= u.size
			p.mu.Unlock()
		}
		for _, d := range u.deps {
			select {
			case <-d.done:
			case <-p.ctx.Done():
				return
			}
		}
		group, in, n := []*unit[T]{u}, map[*unit[T]]bool{u: true}, u.size
	gather:
		for n < p.Limit {
			select {
			case v, ok := <-w.queue:
				if !ok {
					break gather
				}
				p.mu.Lock()
				w.queued -= v.size
				p.mu.Unlock()
				if n+v.size > p.Limit || !p.ready(v, in) {
					next = v
					break gather
				}
				group = append(group, v)
				in[v] = true
				n += v.size
			default:
				break gather
			}
		}
		vals := make([]T, 0, len(group))
		for _, g := range group {
			if g.size > 0 {
				vals = append(vals, g.val)
			}
		}
		if len(vals) > 0 {
			if err := p.Exec(p.ctx, vals); err != nil {
				p.fail(err)
				return
			}
		}
		p.mu.Lock()
		for _, g := range group {
			g.ok = true
			close(g.done)
			for _, k := range g.keys {
				if p.last[k] == g {
					delete(p.last, k)
				}
			}
			if p.barrier == g {
				p.barrier = nil
			}
			w.pending--
		}
		p.retireLocked()
		p.mu.Unlock()
		if next != nil && p.ctx.Err() != nil {
			return
		}
	}
}

// retireLocked retires the committed units at the head of the submission order.
func (p *Parallel[T]) retireLocked() {
	i := 0
	for i < len(p.order) && p.order[i].ok {
		if p.Retire != nil {
			p.Retire(p.order[i].val)
		}
		i++
	}
	if i > 0 {
		p.order = append(p.order[:0:0], p.order[i:]...)
	}
}
