package verifier

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ferrykit/ferry/schema"
)

// Incremental proves at a cut-over that both sides hold the same rows with a full comparison
// before the lock and, under the lock, a re-check of only what may have changed since — so the
// write-blocked part is proportional to the rows changed, never to the table size.
//
//   - Verify(BeforeCutover) first starts remembering the key of every row the binlog writer applies
//     (RowChanged; a Ferry reports every applied change to its Verifier), then runs Checksum over
//     every row of every table pair, and remembers the chunks that still differ after its rechecks.
//     Right after, still before the lock, it runs a catch-up pass over those chunks and the rows
//     changed during the full pass (which under load can be thousands), so that the pass under the
//     lock only has the changes since the catch-up began. The Result is the full pass's, with the
//     differences as the catch-up found them.
//   - Verify(DuringCutover), after such a pass, re-checksums those chunks and reads on both sides,
//     by key, the rows the binlog changed since the pass began. Without an earlier pass (or after
//     one that failed) it runs the full Checksum instead. Keys and chunks that differ stay pending
//     for the next pass, so passes chain.
//
// Why the two passes prove equality at the lock. Let T0 be the moment tracking starts, before the
// full pass reads anything. Take a row r that differs between the sides at the lock, after every
// binlog event up to the lock was applied. Either the full pass saw r differ (its chunk is pending
// and is checked again), or it saw r equal at some moment after T0. In the second case r changed on
// one side afterwards. On the target only ferry writes, and every ferry write after T0 is a binlog
// event whose key is remembered (rows the copy writes after T0 are remembered too). On the source, a
// change visible at the lock but not when the pass read r committed after T0; if it is in the binlog
// its event is applied by the lock, so its key is remembered. So r is re-checked under the lock
// unless it was changed by something that never reaches the binlog after the full pass read it.
//
// What it cannot see: changes that never reach the binlog made after the full pass compared a row —
// foreign-key ON UPDATE/ON DELETE actions (InnoDB applies them without logging them), changes made
// with sql_log_bin=0, writes to the target by anything but ferry — and two different chunks with
// equal 64-bit checksums. Such changes made before the full pass are seen by it. A host that cannot
// exclude them after the pass uses Checksum under the lock (a full pass with writes stopped).
//
// Incremental must be the Verifier a Ferry has when Start runs (that is the one the binlog writer
// reports to); ferry's Cutover refuses a verifier that observes changes but is not wired.
// RowChanged costs nothing until the first pass starts; afterwards each distinct key changed costs
// its bytes plus about 60 bytes until the next pass.
type Incremental struct {
	// Checksum runs the full passes and re-checks differing chunks; its Source, Target, Strict,
	// SampleSize, MaxRetries and Logger apply to the re-checks by key too. Its Throttler paces the
	// full passes only: the pass over changed rows runs with writes stopped, where waiting would
	// only lengthen the write-blocked window. Required.
	Checksum *Checksum
	// BatchSize is the number of keys read per query under the lock; default 200.
	BatchSize int

	mu     sync.Mutex
	armed  bool
	tables map[string]*incTable
}

// incTable is what an Incremental remembers of one table since its last full pass.
type incTable struct {
	key     []keyCol
	keyPos  []int             // index of each key column among the table's writable columns
	touched map[string]keyVal // keys the binlog changed since the pass began
	keys    map[string]keyVal // keys that differed at the last incremental pass
	ranges  [][2]keyVal       // chunks (lo, hi] that differed at the last pass
	base    int64             // rows compared by the last full pass
	proven  bool              // a full pass completed since tracking started
	err     error
}

const incrementalCannotSee = "changes that never reach the binlog (foreign-key cascades, sql_log_bin=0 sessions on the source, " +
	"triggers or other writers on the target) made after the full pass compared a row; two unequal chunks whose 64-bit checksums collide"

// RowChanged implements BinlogObserver.
func (v *Incremental) RowChanged(table *schema.Table, key []any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.armed {
		return
	}
	st := v.table(table)
	if st.err != nil {
		return
	}
	k, err := canonicalKey(st.key, key)
	if err != nil {
		st.err = fmt.Errorf("verifier: incremental: %s: %w", table, err)
		return
	}
	st.touched[k.id()] = k
}

// RowsCopied implements CopyObserver: rows copied after tracking started count as changed (a host
// may start the full pass before the copy ends).
func (v *Incremental) RowsCopied(table *schema.Table, rows [][]any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.armed {
		return
	}
	st := v.table(table)
	for _, row := range rows {
		if st.err != nil {
			return
		}
		key := make([]any, len(st.keyPos))
		for i, p := range st.keyPos {
			if p < 0 || p >= len(row) {
				st.err = fmt.Errorf("verifier: incremental: %s: a copied row lacks key column %s", table, st.key[i].col.Name)
				return
			}
			key[i] = row[p]
		}
		k, err := canonicalKey(st.key, key)
		if err != nil {
			st.err = fmt.Errorf("verifier: incremental: %s: %w", table, err)
			return
		}
		st.touched[k.id()] = k
	}
}

// table returns the state of t; v.mu must be held.
func (v *Incremental) table(t *schema.Table) *incTable {
	if v.tables == nil {
		v.tables = map[string]*incTable{}
	}
	name := t.String()
	st := v.tables[name]
	if st == nil {
		st = &incTable{touched: map[string]keyVal{}, keys: map[string]keyVal{}}
		cols := t.WritableColumns()
		for _, kc := range t.KeyColumns() {
			k, err := newKeyCol(kc)
			if err != nil && st.err == nil {
				st.err = fmt.Errorf("verifier: incremental: %s: %w", t, err)
			}
			st.key = append(st.key, k)
			p := -1
			for i, c := range cols {
				if c.Name == kc.Name {
					p = i
				}
			}
			st.keyPos = append(st.keyPos, p)
		}
		v.tables[name] = st
	}
	return st
}

// Verify implements Verifier.
func (v *Incremental) Verify(ctx context.Context, phase Phase, tables []TablePair) (*Result, error) {
	c := v.Checksum
	if c == nil {
		return nil, errors.New("verifier: Incremental.Checksum must be set")
	}
	start := time.Now()
	plans, err := newPlans(ctx, newRetrier(c.MaxRetries, c.Logger), c.Target, tables, c.Strict)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	full := phase == BeforeCutover || !v.armed
	for _, pl := range plans {
		st := v.table(pl.src)
		if st.err != nil {
			err := st.err
			v.mu.Unlock()
			return nil, err
		}
		full = full || !st.proven
	}
	v.mu.Unlock()
	var trs []*TableResult
	scope, cannotSee := AllRows, checksumCannotSee
	if full {
		trs, err = v.full(ctx, phase, plans)
		if err == nil && phase == BeforeCutover {
			err = v.catchUp(ctx, plans, trs)
		}
	} else {
		scope, cannotSee = ChangedRows, incrementalCannotSee
		trs, err = v.changes(ctx, phase, plans)
	}
	if err != nil {
		return nil, err
	}
	return &Result{Verifier: "checksum", Phase: phase, Scope: scope, CannotSee: withFilterBlindSpot(cannotSee, tables, c.Strict), Tables: trs, Duration: time.Since(start)}, nil
}

// Progress is the progress of the full passes (run by Checksum); a pass of changed rows only is not
// tracked.
func (v *Incremental) Progress() Progress { return v.Checksum.Progress() }

// full starts tracking changes, then compares every row.
func (v *Incremental) full(ctx context.Context, phase Phase, plans []*plan) ([]*TableResult, error) {
	v.mu.Lock()
	v.armed = true
	for _, pl := range plans {
		st := v.table(pl.src)
		st.touched, st.keys, st.ranges, st.proven = map[string]keyVal{}, map[string]keyVal{}, nil, false
	}
	v.mu.Unlock()
	trs, err := v.Checksum.verifyPlans(ctx, phase, plans, func(pl *plan, lo, hi keyVal) {
		v.mu.Lock()
		st := v.table(pl.src)
		st.ranges = append(st.ranges, [2]keyVal{lo, hi})
		v.mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	for i, pl := range plans {
		st := v.table(pl.src)
		st.base, st.proven = trs[i].RowsCompared, true
	}
	v.mu.Unlock()
	return trs, nil
}

// catchUp runs, right after a full pass before the lock, a pass over what changed during it (and
// what differed in it), so that the pass under the lock has only the changes since the catch-up
// began to read. The differences it finds replace the full pass's: every row the full pass saw
// differ lies in a chunk the catch-up checked again, and every other row was equal in the full pass
// and untouched since, or touched and checked again.
func (v *Incremental) catchUp(ctx context.Context, plans []*plan, trs []*TableResult) error {
	ctrs, err := v.changes(ctx, BeforeCutover, plans)
	if err != nil {
		return err
	}
	for i, tr := range trs {
		c := ctrs[i]
		tr.Missing, tr.Extra, tr.Different = c.Missing, c.Extra, c.Different
		tr.MissingCount, tr.ExtraCount, tr.DifferentCount = c.MissingCount, c.ExtraCount, c.DifferentCount
	}
	return nil
}

// changes re-checks, table by table, the chunks that differed and the keys changed since the last
// pass.
func (v *Incremental) changes(ctx context.Context, phase Phase, plans []*plan) ([]*TableResult, error) {
	c := v.Checksum
	r := newRetrier(c.MaxRetries, c.Logger)
	src, tgt := newConn(c.Source, &c.stats.s), newConn(c.Target, &c.stats.t)
	defer src.release()
	defer tgt.release()
	capN := sampleSize(c.SampleSize)
	out := make([]*TableResult, len(plans))
	for i, pl := range plans {
		v.mu.Lock()
		st := v.table(pl.src)
		keys, ranges, base := st.touched, st.ranges, st.base
		for id, k := range st.keys {
			keys[id] = k
		}
		st.touched, st.keys, st.ranges = map[string]keyVal{}, map[string]keyVal{}, nil
		v.mu.Unlock()
		tr, err := v.changesOf(ctx, phase, r, src, tgt, pl, keys, ranges, capN)
		if err != nil {
			// Nothing taken for this pass is lost: the next pass checks it.
			v.mu.Lock()
			for id, k := range keys {
				st.touched[id] = k
			}
			st.ranges = append(st.ranges, ranges...)
			v.mu.Unlock()
			return nil, err
		}
		tr.BaseRowsCompared = base
		if err := pl.checkCompared(ctx, r, src, tr); err != nil {
			return nil, err
		}
		out[i] = tr
	}
	return out, nil
}

// changesOf re-checks the given chunks and keys of one table. Before the lock (phase
// BeforeCutover) a difference is checked again Rechecks times, RecheckDelay apart, as rows may be in
// flight; under the lock nothing is throttled or re-tried for being different.
func (v *Incremental) changesOf(ctx context.Context, phase Phase, r retrier, src, tgt *conn, pl *plan, keys map[string]keyVal, ranges [][2]keyVal, capN int) (*TableResult, error) {
	c := v.Checksum
	locked := phase == DuringCutover
	thr := c.Throttler
	if locked {
		thr = nil
	}
	smp := &samples{cap: capN}
	var differingRanges [][2]keyVal
	for i, rg := range ranges {
		ck := chunk{pl: pl, smp: smp, idx: i, lo: rg[0], hi: rg[1], unthrottled: locked}
		err := c.checkWithRetries(ctx, r, phase, src, tgt, ck, func(_ *plan, lo, hi keyVal) {
			differingRanges = append(differingRanges, [2]keyVal{lo, hi})
		})
		if err != nil {
			return nil, err
		}
	}
	d, differing, err := pl.compareKeys(ctx, r, src, tgt, keys, v.BatchSize, thr, capN)
	if err != nil {
		return nil, err
	}
	for attempt := 0; len(differing) > 0 && !locked && attempt < rechecks(c.Rechecks); attempt++ {
		if err := sleep(ctx, recheckDelay(c.RecheckDelay)); err != nil {
			return nil, err
		}
		if d, differing, err = pl.compareKeys(ctx, r, src, tgt, differing, v.BatchSize, thr, capN); err != nil {
			return nil, err
		}
	}
	d.compared = int64(len(keys))
	smp.add(d, len(ranges))
	v.mu.Lock()
	st := v.table(pl.src)
	for id, k := range differing {
		st.keys[id] = k
	}
	st.ranges = append(st.ranges, differingRanges...)
	v.mu.Unlock()
	tr := pl.newResult()
	smp.fill(tr)
	return tr, nil
}
