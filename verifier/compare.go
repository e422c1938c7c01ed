package verifier

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrykit/ferry/throttler"
)

// DefaultSampleSize is how many keys per category (missing, extra, different) a TableResult keeps
// when a verifier's SampleSize is zero. Counts always cover every difference found.
const DefaultSampleSize = 100

// Stats counts the work a verifier did since it was created, per side: statements run and rows read
// over the wire (rows the servers only checksummed are not counted). Tests and benchmarks use it to
// show what a pass cost.
type Stats struct {
	SourceQueries, SourceRows int64
	TargetQueries, TargetRows int64
}

type sideStats struct{ queries, rows atomic.Int64 }

type stats struct{ s, t sideStats }

func (st *stats) snapshot() Stats {
	return Stats{
		SourceQueries: st.s.queries.Load(), SourceRows: st.s.rows.Load(),
		TargetQueries: st.t.queries.Load(), TargetRows: st.t.rows.Load(),
	}
}

func sampleSize(n int) int {
	if n == 0 {
		return DefaultSampleSize
	}
	if n < 0 {
		return 0
	}
	return n
}

func rechecks(n int) int {
	if n == 0 {
		return 2
	}
	if n < 0 {
		return 0
	}
	return n
}

func recheckDelay(d time.Duration) time.Duration {
	if d <= 0 {
		return 200 * time.Millisecond
	}
	return d
}

// ---- samples ----

// pos orders a sample in server key order: the range (chunk or page, numbered in key order) and
// the position inside it. Keys are never compared in Go.
type pos struct{ chunk, row int }

func (a pos) less(b pos) bool { return a.chunk < b.chunk || a.chunk == b.chunk && a.row < b.row }

type sampled[T any] struct {
	at pos
	v  T
}

// samples keeps, per category, the first cap differences in key order and counts all of them. It is
// safe for concurrent use by chunk workers.
type samples struct {
	mu        sync.Mutex
	cap       int
	missing   []sampled[Key]
	extra     []sampled[Key]
	different []sampled[RowDiff]
	nMissing  int64
	nExtra    int64
	nDiff     int64
	compared  int64
}

func keep[T any](list []sampled[T], cap int, at pos, v T) []sampled[T] {
	if cap <= 0 {
		return list
	}
	if len(list) >= cap && !at.less(list[len(list)-1].at) {
		return list
	}
	i := sort.Search(len(list), func(i int) bool { return at.less(list[i].at) })
	list = append(list, sampled[T]{})
	copy(list[i+1:], list[i:])
	list[i] = sampled[T]{at, v}
	if len(list) > cap {
		list = list[:cap]
	}
	return list
}

// wantsDifferent reports whether a different row at this position would be kept (so its columns
// are worth looking up).
func (s *samples) wantsDifferent(at pos) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cap > 0 && (len(s.different) < s.cap || at.less(s.different[len(s.different)-1].at))
}

func (s *samples) add(d *rangeDiff, chunk int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.compared += d.compared
	s.nMissing += d.nMissing
	s.nExtra += d.nExtra
	s.nDiff += d.nDiff
	for _, m := range d.missing {
		s.missing = keep(s.missing, s.cap, pos{chunk, m.at}, m.v)
	}
	for _, m := range d.extra {
		s.extra = keep(s.extra, s.cap, pos{chunk, m.at}, m.v)
	}
	for _, m := range d.different {
		s.different = keep(s.different, s.cap, pos{chunk, m.at}, m.v)
	}
}

func (s *samples) addCompared(n int64) {
	s.mu.Lock()
	s.compared += n
	s.mu.Unlock()
}

func (s *samples) fill(r *TableResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.RowsCompared = s.compared
	r.MissingCount, r.ExtraCount, r.DifferentCount = s.nMissing, s.nExtra, s.nDiff
	r.Missing, r.Extra, r.Different = nil, nil, nil
	for _, m := range s.missing {
		r.Missing = append(r.Missing, m.v)
	}
	for _, m := range s.extra {
		r.Extra = append(r.Extra, m.v)
	}
	for _, m := range s.different {
		r.Different = append(r.Different, m.v)
	}
}

// ---- comparing one key range ----

type at[T any] struct {
	at int
	v  T
}

// rangeDiff is what comparing one key range found. Samples are bounded by cap, counts are not.
type rangeDiff struct {
	compared                int64
	missing, extra          []at[Key]
	different               []at[RowDiff]
	nMissing, nExtra, nDiff int64
}

func (d *rangeDiff) empty() bool { return d.nMissing == 0 && d.nExtra == 0 && d.nDiff == 0 }

// compareRange compares the rows of (lo, hi] on both sides. The source's rows of the range are held
// in memory (a range is one chunk or page, bounded by its size); the target's are streamed and
// matched by their key bytes, so a target range holding many extra rows costs no memory. Ordering is
// left to the servers: each side returns its own rows of the same range.
//
// perColumn fetches a token per column (the differing columns are known at once); otherwise one hash
// per row is fetched and the columns of a different row are looked up by key afterwards, only for
// rows the sample keeps (wants).
func (pl *plan) compareRange(ctx context.Context, src, tgt *session, lo, hi keyVal, perColumn bool, capN int, wants func(row int) bool) (*rangeDiff, error) {
	var srows []row
	err := pl.readRows(ctx, src, &pl.s, lo, hi, perColumn, 0, func(r row) error {
		srows = append(srows, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return pl.compareRows(ctx, src, tgt, srows, lo, hi, perColumn, capN, wants)
}

// compareRows is compareRange with the source's rows of the range already read.
func (pl *plan) compareRows(ctx context.Context, src, tgt *session, srcRows []row, lo, hi keyVal, perColumn bool, capN int, wants func(row int) bool) (*rangeDiff, error) {
	type srow struct {
		row
		seen bool
	}
	srows := make([]srow, len(srcRows))
	index := make(map[string]int, len(srcRows))
	for i, r := range srcRows {
		srows[i].row = r
		index[r.key.id()] = i
	}
	d := &rangeDiff{compared: int64(len(srows))}
	var lookups []int // source positions of different rows whose columns must be looked up
	targetPos := 0
	err := pl.readRows(ctx, tgt, &pl.t, lo, hi, perColumn, 0, func(r row) error {
		targetPos++
		i, ok := index[r.key.id()]
		if !ok {
			d.nExtra++
			if len(d.extra) < capN {
				d.extra = append(d.extra, at[Key]{targetPos, pl.displayKey(r.key)})
			}
			return nil
		}
		s := &srows[i]
		s.seen = true
		if equalStrings(s.hashes, r.hashes) {
			return nil
		}
		d.nDiff++
		if len(d.different) < capN {
			var cols []string
			if perColumn {
				cols = pl.differingColumns(s.hashes, r.hashes)
			} else if wants == nil || wants(i) {
				lookups = append(lookups, len(d.different))
			}
			d.different = append(d.different, at[RowDiff]{i, RowDiff{Key: pl.displayKey(s.key), Columns: cols}})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range srows {
		if !srows[i].seen {
			d.nMissing++
			if len(d.missing) < capN {
				d.missing = append(d.missing, at[Key]{i, pl.displayKey(srows[i].key)})
			}
		}
	}
	if len(lookups) > 0 {
		keys := make([]keyVal, len(lookups))
		for j, li := range lookups {
			keys[j] = srows[d.different[li].at].key
		}
		cols, err := pl.columnsOf(ctx, src, tgt, keys)
		if err != nil {
			return nil, err
		}
		for j, li := range lookups {
			d.different[li].v.Columns = cols[j]
		}
	}
	return d, nil
}

// columnsOf looks up, by key, which columns differ for rows known to differ.
func (pl *plan) columnsOf(ctx context.Context, src, tgt *session, keys []keyVal) ([][]string, error) {
	sh := map[string][]string{}
	th := map[string][]string{}
	if err := pl.readKeys(ctx, src, &pl.s, keys, func(r row) error { sh[r.key.id()] = r.hashes; return nil }); err != nil {
		return nil, err
	}
	if err := pl.readKeys(ctx, tgt, &pl.t, keys, func(r row) error { th[r.key.id()] = r.hashes; return nil }); err != nil {
		return nil, err
	}
	out := make([][]string, len(keys))
	for i, k := range keys {
		a, b := sh[k.id()], th[k.id()]
		if a != nil && b != nil {
			out[i] = pl.differingColumns(a, b)
		}
	}
	return out, nil
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// compareKeys reads the given keys on both sides, batch keys per query (default 200), and compares
// them column by column. It returns what differs and the keys that still differ. Each batch is a
// unit of work retried on fresh connections after a transient error.
func (pl *plan) compareKeys(ctx context.Context, r retrier, src, tgt *conn, keys map[string]keyVal, batch int, thr throttler.Throttler, capN int) (*rangeDiff, map[string]keyVal, error) {
	if batch <= 0 {
		batch = 200
	}
	// A deterministic order for the batches (presentation only: which keys are read together).
	ids := make([]string, 0, len(keys))
	for id := range keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	d := &rangeDiff{}
	differing := map[string]keyVal{}
	for b := 0; b < len(ids); b += batch {
		if err := throttler.Wait(ctx, thr, nil); err != nil {
			return nil, nil, err
		}
		end := min(b+batch, len(ids))
		ks := make([]keyVal, 0, end-b)
		for _, id := range ids[b:end] {
			ks = append(ks, keys[id])
		}
		var srows, trows []row
		err := r.do(ctx, "read keys of "+pl.s.table, func() error {
			s, t, err := sessions(ctx, src, tgt)
			if err != nil {
				return err
			}
			srows, trows = nil, nil
			return both(ctx,
				func(ctx context.Context) error {
					return pl.readKeys(ctx, s, &pl.s, ks, func(r row) error { srows = append(srows, r); return nil })
				},
				func(ctx context.Context) error {
					return pl.readKeys(ctx, t, &pl.t, ks, func(r row) error { trows = append(trows, r); return nil })
				})
		}, src, tgt)
		if err != nil {
			return nil, nil, err
		}
		tindex := make(map[string]int, len(trows))
		for i, r := range trows {
			tindex[r.key.id()] = i
		}
		matched := make([]bool, len(trows))
		for _, s := range srows {
			id := s.key.id()
			i, ok := tindex[id]
			if !ok {
				d.nMissing++
				differing[id] = s.key
				if len(d.missing) < capN {
					d.missing = append(d.missing, at[Key]{b + len(d.missing), pl.displayKey(s.key)})
				}
				continue
			}
			matched[i] = true
			if cols := pl.differingColumns(s.hashes, trows[i].hashes); len(cols) > 0 {
				d.nDiff++
				differing[id] = s.key
				if len(d.different) < capN {
					d.different = append(d.different, at[RowDiff]{b + len(d.different), RowDiff{Key: pl.displayKey(s.key), Columns: cols}})
				}
			}
		}
		for i, t := range trows {
			if !matched[i] {
				d.nExtra++
				differing[t.key.id()] = t.key
				if len(d.extra) < capN {
					d.extra = append(d.extra, at[Key]{b + len(d.extra), pl.displayKey(t.key)})
				}
			}
		}
	}
	return d, differing, nil
}

// ---- tables with nothing compared ----

// unprovenEmpty is TableResult.Unproven of a table whose source has rows none of which were
// compared.
const unprovenEmpty = "the source holds rows (within the copy filter) but none were compared"

// checkCompared marks tr Unproven when no row was compared although the source holds rows: an empty
// comparison must never read as a pass. It costs one indexed probe, only for such tables.
func (pl *plan) checkCompared(ctx context.Context, r retrier, src *conn, tr *TableResult) error {
	if tr.RowsCompared+tr.BaseRowsCompared != 0 || !tr.Match() {
		return nil
	}
	var c cond
	pl.s.filter(&c)
	var has bool
	err := r.do(ctx, "probe "+pl.s.table, func() error {
		s, err := src.get(ctx)
		if err != nil {
			return err
		}
		rows, err := s.query(ctx, "SELECT 1 FROM "+pl.s.table+" WHERE "+c.String()+" LIMIT 1", c.args...)
		if err != nil {
			return fmt.Errorf("probe %s: %w", pl.s.table, err)
		}
		defer rows.Close()
		has = rows.Next()
		return rows.Err()
	}, src)
	if err != nil {
		return err
	}
	if has {
		tr.Unproven = unprovenEmpty
	}
	return nil
}

// ---- a small error group ----

// group runs functions concurrently and cancels the others on the first error.
type group struct {
	wg     sync.WaitGroup
	once   sync.Once
	err    error
	cancel context.CancelFunc
}

func newGroup(ctx context.Context) (*group, context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	return &group{cancel: cancel}, ctx
}

func (g *group) Go(f func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := f(); err != nil {
			g.once.Do(func() { g.err = err; g.cancel() })
		}
	}()
}

func (g *group) Wait() error {
	g.wg.Wait()
	g.cancel()
	return g.err
}

// both runs a source-side and a target-side function concurrently.
func both(ctx context.Context, s, t func(ctx context.Context) error) error {
	g, ctx := newGroup(ctx)
	g.Go(func() error { return s(ctx) })
	g.Go(func() error { return t(ctx) })
	return g.Wait()
}
