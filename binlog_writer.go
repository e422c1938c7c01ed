package ferry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry/internal/apply"
	"github.com/ferrykit/ferry/throttler"
	"github.com/ferrykit/ferry/verifier"
)

// BinlogWriter applies the streamer's row changes to the target, in binlog order.
type BinlogWriter interface {
	// Write queues a batch (it is the writer's BinlogListener); it blocks while the queue is full.
	Write(ctx context.Context, b *BinlogBatch) error
	// Run applies queued batches until Close has been called and the queue is drained (nil), or
	// ctx ends, or applying fails after retries.
	Run(ctx context.Context) error
	// Close lets Run return once everything queued is applied.
	Close()
	// Applied is the last transaction boundary whose changes are all committed on the target.
	Applied() Position
}

// TargetBinlogWriter is the default BinlogWriter.
//
// Each row change becomes "set the row to this image" or "delete the row with this key": an insert
// or update is applied as REPLACE of the full after-image, a delete (or the old key of an update
// that changed the key) as DELETE by key. Applying such a change is idempotent, and applying the
// changes of a stretch of binlog in order leaves every row as the source left it at the end of the
// stretch, whatever the target held before — which is why a copied row and a racing change always
// converge, why a transaction that swaps unique values between rows never fails (REPLACE removes
// the transient conflict; the row it removed is rewritten by its own change), and why replaying the
// binlog from a checkpoint is harmless. Consecutive changes of one table and kind are sent as one
// multi-row statement; changes are never reordered.
type TargetBinlogWriter struct {
	DB *sql.DB
	// Filter decides which row images belong on the target (nil: all).
	Filter CopyFilter
	// FilterSource is where Filter evaluates SQL: the source server (see SourceEvaluator).
	FilterSource SourceEvaluator
	// BatchSize is the most row changes applied in one target transaction; default 1000.
	BatchSize int
	// Workers is how many target transactions are applied at once (default 1: one at a time, in
	// binlog order). With more, source transactions whose writesets (the unique values their row
	// images hold, see writeset.go) are disjoint are applied concurrently, each in one target
	// transaction; per-row order is kept, and Applied only moves past a transaction once it and
	// every transaction before it are committed. See apply.Parallel and docs/design.md.
	Workers    int
	MaxRetries int
	Throttler  throttler.Throttler
	OnThrottle func(throttler.Status)
	// Observer, when set, is told the key of every row changed, after the change is committed.
	Observer verifier.BinlogObserver
	// OnApplied, when set, is told of each committed apply: its row changes by kind and how long
	// it took.
	OnApplied func(byKind map[DMLType]int, took time.Duration)
	Logger    logrus.FieldLogger
	// MaxPacket is the target's max_allowed_packet (0: unknown): statements stay under it, and a
	// row image larger fails with ErrRowTooLarge.
	MaxPacket int

	once     sync.Once
	queue    chan *BinlogBatch
	closed   chan struct{}
	mu       sync.Mutex
	received []queuedBatch // queued batches, oldest first
	applying queuedBatch
	applied  Position
	// appliedEvent is the source timestamp of the last batch applied that had one.
	appliedEvent time.Time
	events       atomic.Int64
	// gate, when set (by Ferry.Start), is shared with the copy's writers: see apply.Gate.
	gate *apply.Gate
	// deadlocks counts apply transactions rolled back by a deadlock between parallel workers.
	deadlocks atomic.Int64
	// notify serialises the Observer and OnApplied calls of concurrent workers.
	notify sync.Mutex
}

func (w *TargetBinlogWriter) init() {
	w.once.Do(func() {
		w.queue = make(chan *BinlogBatch, 4096)
		w.closed = make(chan struct{})
	})
}

// Write implements BinlogWriter.
func (w *TargetBinlogWriter) Write(ctx context.Context, b *BinlogBatch) error {
	w.init()
	w.mu.Lock()
	w.received = append(w.received, queuedBatch{received: b.Received, event: b.EventTime})
	w.mu.Unlock()
	select {
	case w.queue <- b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close implements BinlogWriter.
func (w *TargetBinlogWriter) Close() {
	w.init()
	select {
	case <-w.closed:
	default:
		close(w.closed)
	}
}

// Applied implements BinlogWriter.
func (w *TargetBinlogWriter) Applied() Position {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.applied
}

// SetApplied sets the starting position (the position the stream starts from).
func (w *TargetBinlogWriter) SetApplied(p Position) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.applied = p
}

// DeadlocksRerun counts the apply transactions the target rolled back to break a deadlock between
// two parallel workers (next-key locks on neighbouring keys), each run again at once.
func (w *TargetBinlogWriter) DeadlocksRerun() int64 { return w.deadlocks.Load() }

// EventsApplied counts the row changes applied so far.
func (w *TargetBinlogWriter) EventsApplied() int64 { return w.events.Load() }

// Backlog is the number of queued batches not yet applied.
func (w *TargetBinlogWriter) Backlog() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.received)
}

// queuedBatch is when a batch was received, and its source timestamp.
type queuedBatch struct{ received, event time.Time }

// Lag is how long the oldest change not yet applied has been waiting inside ferry (0 when none
// waits). It is not how far the target is behind the source: a stream reading old binlog hands
// over changes the moment it reads them. EventTimes gives that.
func (w *TargetBinlogWriter) Lag() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	oldest := w.applying.received
	if len(w.received) > 0 && (oldest.IsZero() || w.received[0].received.Before(oldest)) {
		oldest = w.received[0].received
	}
	if oldest.IsZero() {
		return 0
	}
	return time.Since(oldest)
}

// EventTimes gives the source timestamps (second precision) of the oldest change received and not
// yet applied (zero when none) and of the last change applied.
func (w *TargetBinlogWriter) EventTimes() (oldestUnapplied, lastApplied time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	oldestUnapplied = w.applying.event
	for _, q := range w.received {
		if !q.event.IsZero() && (oldestUnapplied.IsZero() || q.event.Before(oldestUnapplied)) {
			oldestUnapplied = q.event
			break
		}
	}
	return oldestUnapplied, w.appliedEvent
}

// Run implements BinlogWriter.
func (w *TargetBinlogWriter) Run(ctx context.Context) error {
	w.init()
	limit := w.BatchSize
	if limit <= 0 {
		limit = 1000
	}
	log := w.Logger
	if log == nil {
		log = logrus.StandardLogger()
	}
	if w.Workers > 1 {
		return w.runParallel(ctx, limit, log)
	}
	for {
		pending, n, done, err := apply.Take(ctx, w.queue, w.closed, batchEvents, limit)
		if err != nil || done {
			return err
		}
		w.mu.Lock()
		w.applying = w.received[0]
		for _, q := range w.received[:len(pending)] {
			if w.applying.event.IsZero() {
				w.applying.event = q.event
			}
		}
		w.received = w.received[len(pending):]
		w.mu.Unlock()

		if n > 0 {
			if err := throttler.Wait(ctx, w.Throttler, w.OnThrottle); err != nil {
				return fmt.Errorf("binlog apply: %w", err)
			}
		}
		began := time.Now()
		if err := w.apply(ctx, pending, log); err != nil {
			return err
		}
		w.reportApplied(pending, began)
		w.mu.Lock()
		w.applying = queuedBatch{}
		for _, b := range pending {
			if b.Commit != nil && b.Commit.Compare(w.applied) > 0 {
				w.applied = *b.Commit
			}
			if !b.EventTime.IsZero() {
				w.appliedEvent = b.EventTime
			}
		}
		w.mu.Unlock()
		w.events.Add(int64(n))
	}
}

func batchEvents(b *BinlogBatch) int { return len(b.Events) }

// reportApplied tells OnApplied of the row changes of batches, committed since began.
func (w *TargetBinlogWriter) reportApplied(batches []*BinlogBatch, began time.Time) {
	if w.OnApplied == nil {
		return
	}
	byKind := map[DMLType]int{}
	for _, b := range batches {
		for _, e := range b.Events {
			byKind[e.Type]++
		}
	}
	if len(byKind) == 0 {
		return
	}
	w.notify.Lock()
	defer w.notify.Unlock()
	w.OnApplied(byKind, time.Since(began))
}

// txn is one unit of the parallel apply: the batches of one source transaction up to its commit
// (or one piece of a transaction larger than BatchSize), and the row changes they make.
type txn struct {
	batches []*BinlogBatch
	events  int
	ops     []rowOp
}

// runParallel is Run with several workers (apply.Parallel): the batches are cut into source
// transactions at their commits, each transaction's writeset computed here, in binlog order, and
// the transactions applied by the workers; Applied follows the low-water mark (retire).
//
// What a writeset cannot describe is a barrier, applied alone in its place: a change of a table
// whose unique keys writesets cannot describe (writeset.go), a string key value outside what the
// conservative normalisation covers, and a transaction larger than BatchSize — applied, like the
// serial writer does, as several target transactions of at most BatchSize changes, each a barrier,
// so that nothing runs between or beside its pieces.
func (w *TargetBinlogWriter) runParallel(ctx context.Context, limit int, log logrus.FieldLogger) error {
	p := apply.NewParallel(ctx, w.Workers, func(ctx context.Context, units []*txn) error {
		return w.applyUnits(ctx, units, log)
	}, w.retire, limit)
	ctx = p.Context() // ends when a worker fails, too
	var cur *txn
	large := false // cur continues a transaction already split into pieces
	submit := func() error {
		t := cur
		cur = nil
		var keys []uint64
		barrier := large
		for i := range t.batches {
			for j := range t.batches[i].Events {
				e := &t.batches[i].Events[j]
				ws := e.Table.writeset()
				ok := ws.serial == ""
				if ok {
					keys, ok = ws.hashRow(keys, e.Before)
				}
				if ok {
					keys, ok = ws.hashRow(keys, e.After)
				}
				barrier = barrier || !ok
			}
		}
		if t.events > 0 {
			var events []DMLEvent
			for _, b := range t.batches {
				events = append(events, b.Events...)
			}
			ops, err := w.ops(ctx, events)
			if err != nil {
				return err
			}
			t.ops = ops
		}
		if barrier {
			keys = nil
		}
		return p.Submit(t, len(t.ops), keys, barrier)
	}
	run := func() error {
		for {
			pending, n, done, err := apply.Take(ctx, w.queue, w.closed, batchEvents, limit)
			if err != nil {
				return err
			}
			if done {
				if cur != nil { // changes without their commit (the stream ended mid-transaction)
					return submit()
				}
				return nil
			}
			if n > 0 {
				if err := throttler.Wait(ctx, w.Throttler, w.OnThrottle); err != nil {
					return fmt.Errorf("binlog apply: %w", err)
				}
			}
			for _, b := range pending {
				if cur == nil {
					cur = &txn{}
				}
				cur.batches = append(cur.batches, b)
				cur.events += len(b.Events)
				switch {
				case b.Commit != nil:
					err = submit()
					large = false
				case cur.events >= limit:
					large = true
					err = submit()
				}
				if err != nil {
					return err
				}
			}
		}
	}
	err := run()
	if cerr := p.Close(); cerr != nil && (err == nil || errors.Is(err, context.Canceled)) {
		err = cerr
	}
	return err
}

// applyUnits applies the row changes of units in one target transaction.
func (w *TargetBinlogWriter) applyUnits(ctx context.Context, units []*txn, log logrus.FieldLogger) error {
	var ops []rowOp
	var batches []*BinlogBatch
	for _, u := range units {
		ops = append(ops, u.ops...)
		batches = append(batches, u.batches...)
	}
	if len(ops) == 0 {
		return nil
	}
	began := time.Now()
	last := batches[len(batches)-1]
	for _, b := range batches {
		if len(b.Events) > 0 {
			last = b
		}
	}
	if err := w.applyOps(ctx, ops, last.Events[len(last.Events)-1].Position, log); err != nil {
		return err
	}
	w.reportApplied(batches, began)
	return nil
}

// retire records a unit of the parallel apply as applied: it and everything before it are
// committed on the target.
func (w *TargetBinlogWriter) retire(t *txn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.received = w.received[min(len(t.batches), len(w.received)):]
	for _, b := range t.batches {
		if b.Commit != nil && b.Commit.Compare(w.applied) > 0 {
			w.applied = *b.Commit
		}
		if !b.EventTime.IsZero() {
			w.appliedEvent = b.EventTime
		}
	}
	w.events.Add(int64(t.events))
}

// rowOp is one idempotent change (package apply) of a copied table: set a row to the image of
// table.Columns, or delete the row with the key.
type rowOp struct {
	table *TableCopy
	apply.Change
	// raw, when set, is a foreign-key cascade carried out on table's children (cascadeOps) instead
	// of Change.
	raw *apply.Statement
}

func (w *TargetBinlogWriter) ops(ctx context.Context, events []DMLEvent) ([]rowOp, error) {
	var out []rowOp
	for i := range events {
		e := &events[i]
		t := e.Table
		match := func(row []any) (bool, error) {
			if row == nil {
				return false, nil
			}
			if w.Filter == nil {
				return true, nil
			}
			return w.Filter.Matches(ctx, w.FilterSource, t.Source, row)
		}
		before, err := match(e.Before)
		if err != nil {
			return nil, fmt.Errorf("copy filter on %s: %w", t, err)
		}
		after, err := match(e.After)
		if err != nil {
			return nil, fmt.Errorf("copy filter on %s: %w", t, err)
		}
		if before && (!after || !t.applyMapping().SameKey(e.Before, e.After)) {
			m := t.applyMapping()
			out = append(out, rowOp{table: t, Change: apply.Change{Mapping: m, Delete: true, Values: m.KeyOf(e.Before)}})
		}
		if after {
			m := t.applyMapping()
			out = append(out, rowOp{table: t, Change: apply.Change{Mapping: m, Values: m.Image(e.After)}})
		}
		// What the source's storage engine did to the children, whether or not this row is in the
		// copy filter: the children on the target are whichever rows are.
		out = append(out, cascadeOps(t, e.Before, e.After)...)
	}
	return out, nil
}

func (w *TargetBinlogWriter) apply(ctx context.Context, pending []*BinlogBatch, log logrus.FieldLogger) error {
	var events []DMLEvent
	for _, b := range pending {
		events = append(events, b.Events...)
	}
	if len(events) == 0 {
		return nil
	}
	ops, err := w.ops(ctx, events)
	if err != nil {
		return err
	}
	return w.applyOps(ctx, ops, events[len(events)-1].Position, log)
}

// applyOps applies ops, the changes of the binlog up to at, in one target transaction (retried
// whole on a transient error) and tells the Observer of the rows changed.
func (w *TargetBinlogWriter) applyOps(ctx context.Context, ops []rowOp, at Position, log logrus.FieldLogger) error {
	stmts, err := w.statementsOf(ops)
	if err != nil {
		return fmt.Errorf("apply binlog events up to %s: %w", at, err)
	}
	// Under the gate the copy does not write these tables while this transaction (or its retries)
	// runs: the two cannot deadlock, and the apply never waits for more than the batches in flight.
	if err := w.gate.Apply(targetsOf(ops), func() error {
		if w.Workers > 1 {
			return apply.ExecRerunDeadlocks(ctx, w.DB, stmts, w.MaxRetries, log, "target transaction", func() { w.deadlocks.Add(1) })
		}
		return apply.Exec(ctx, w.DB, stmts, w.MaxRetries, log, "target transaction")
	}); err != nil {
		return fmt.Errorf("apply binlog events up to %s: %w", at, err)
	}
	if w.Observer != nil {
		w.notify.Lock()
		defer w.notify.Unlock()
		for _, op := range ops {
			if op.raw != nil {
				continue
			}
			if op.Delete {
				w.Observer.RowChanged(op.table.Source, op.Values)
			} else {
				w.Observer.RowChanged(op.table.Source, pick(op.Values, op.table.keyIndexes()))
			}
		}
	}
	return nil
}

func pick(vals []any, idx []int) []any {
	out := make([]any, len(idx))
	for i, j := range idx {
		out[i] = vals[j]
	}
	return out
}

// statementsOf turns ops into statements in order: runs of row changes through apply.Statements,
// foreign-key cascades as they are.
func (w *TargetBinlogWriter) statementsOf(ops []rowOp) ([]apply.Statement, error) {
	var out []apply.Statement
	start := 0
	for i := 0; i <= len(ops); i++ {
		if i < len(ops) && ops[i].raw == nil {
			continue
		}
		if i > start {
			stmts, err := apply.StatementsWithin(changesOf(ops[start:i]), w.MaxPacket)
			if err != nil {
				return nil, err
			}
			out = append(out, stmts...)
		}
		if i < len(ops) {
			out = append(out, *ops[i].raw)
		}
		start = i + 1
	}
	return out, nil
}

// targetsOf lists the target tables ops write (a cascade's op names the child it writes).
func targetsOf(ops []rowOp) []string {
	out := make([]string, len(ops))
	for i, op := range ops {
		out[i] = op.table.TargetName()
	}
	return out
}

func changesOf(ops []rowOp) []apply.Change {
	out := make([]apply.Change, len(ops))
	for i := range ops {
		out[i] = ops[i].Change
	}
	return out
}
