package verifier

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry/throttler"
)

// Checksum compares tables chunk by chunk with checksums computed by the servers, and reads single
// rows only from chunks whose checksums differ.
//
// Chunks are ranges of the key chosen on the source (`ORDER BY key LIMIT 1 OFFSET ChunkSize-1`
// finds each upper bound); the same key range is checksummed on the target, the first chunk is open
// below and the last open above, so every target row falls in some chunk, whatever its key. A chunk's
// checksum is COUNT(*) and the BIT_XOR of the first 64 bits of each row's SHA-1, taken over the row's
// compact encoding (NULL markers, the lengths of free-form values, then the values: see
// compactRowSQL; it is injective, so NULL, the empty string, 'NULL' and a separator inside a value all differ), so
// equal chunks never cross the wire and two different chunks compare equal with probability about
// 2^-64: the key is unique, so the rows that differ contribute distinct hashes that cancel only by
// chance. A differing chunk is read again row by row on both sides (key + one token per column) and
// merged by key to name the missing, extra and different rows and the differing columns.
//
// The row hash is deliberately not CRC32 (pt-table-checksum's) nor any CRC pair: a CRC is linear, so
// under the XOR of a chunk the same change made to two rows, or two equal-length values swapped
// between rows, cancel exactly and are never seen, and 32 bits leave a 2^-32 chance per differing
// chunk. SHA-1 rather than MD5 because MariaDB 10.11 spends less per row on it (neither
// is asked to resist an attacker here: the verifier checks ferry, not a forger of rows). docs/design.md
// has the measured costs.
//
// In the BeforeCutover phase the source still takes writes, so a differing chunk is checksummed again
// up to Rechecks times, RecheckDelay apart, before it is drilled into, unless the comparison reads
// consistent snapshots taken where both sides must be equal (Snapshot); DuringCutover reports the
// first difference.
//
// Cost: one index scan of the source to find chunk bounds, one read of every row on each server
// (done by the servers, Concurrency chunks at a time), and network traffic proportional to the number
// of chunks plus the rows of differing chunks. Memory: Concurrency chunks of keys and hashes.
type Checksum struct {
	Source, Target *sql.DB
	// ChunkSize is the number of source rows per chunk; default 1000.
	ChunkSize int
	// Concurrency is how many chunks are checksummed at once; default 4. Each uses one connection
	// to each server, plus one source connection finds chunk bounds.
	Concurrency int
	// SampleSize caps the keys kept per category and table; default DefaultSampleSize, negative
	// keeps none (counts are always complete).
	SampleSize int
	// Strict requires the target to hold only the rows the copy filter (TablePair.Where) selects:
	// the filter is applied to the source only, and every target row outside it is reported as extra.
	// Without Strict the filter is applied to both sides and target rows outside it are not looked at.
	Strict bool
	// Rechecks is how many times a differing chunk is checked again in the BeforeCutover phase;
	// default 2, negative for none. RecheckDelay is the pause before each; default 200ms.
	Rechecks     int
	RecheckDelay time.Duration
	// Snapshot, if set, makes the BeforeCutover comparison exact while both sides still take writes.
	// It is called once, before any chunk is compared, with begin, which starts a consistent-snapshot
	// transaction (REPEATABLE READ, read only) on every session that compares chunks; the host calls
	// begin at a moment when both sides are equal if the copy is correct (writes to the source
	// stopped and every change up to then applied to the target), and may resume writes once begin
	// returned. Every chunk is then compared in those snapshots, so a difference is real: it is
	// reported without rechecks, and a session lost on the way fails the pass (a new one could not
	// see the snapshot). A rechecked comparison of live tables can report a false difference
	// whenever the apply lags behind the rechecks; this one cannot.
	Snapshot func(ctx context.Context, begin func(ctx context.Context) error) error
	// Throttler, if set, is waited on before each chunk.
	Throttler throttler.Throttler
	// MaxRetries bounds the attempts at one chunk on transient errors (lost connections, a server
	// restart, deadlocks); default 10. Logger receives the retries; default logrus's standard logger.
	MaxRetries int
	Logger     logrus.FieldLogger

	stats    stats
	progress progressTracker
}

// Stats reports the work done so far.
func (c *Checksum) Stats() Stats { return c.stats.snapshot() }

// Progress reports how far the running (or last) pass has got, table by table.
func (c *Checksum) Progress() Progress { return c.progress.snapshot() }

// Verify implements Verifier.
func (c *Checksum) Verify(ctx context.Context, phase Phase, tables []TablePair) (*Result, error) {
	start := time.Now()
	plans, err := newPlans(ctx, newRetrier(c.MaxRetries, c.Logger), c.Target, tables, c.Strict)
	if err != nil {
		return nil, err
	}
	results, err := c.verifyPlans(ctx, phase, plans, nil)
	if err != nil {
		return nil, err
	}
	return &Result{Verifier: "checksum", Phase: phase, Scope: AllRows, CannotSee: withFilterBlindSpot(checksumCannotSee, tables, c.Strict), Tables: results, Duration: time.Since(start)}, nil
}

const checksumCannotSee = "two unequal chunks whose 64-bit checksums collide (about 2^-64 per chunk)"

// withFilterBlindSpot adds to what a verifier cannot see the target rows outside a copy filter when
// the filter is applied to both sides (not Strict): such rows are never read.
func withFilterBlindSpot(cannotSee string, tables []TablePair, strict bool) string {
	if strict {
		return cannotSee
	}
	for _, p := range tables {
		if p.Where != "" {
			return cannotSee + "; target rows outside the copy filter (they are not read unless Strict)"
		}
	}
	return cannotSee
}

type chunk struct {
	pl          *plan
	smp         *samples
	idx         int
	lo, hi      keyVal
	unthrottled bool // checked with writes stopped: waiting would only lengthen the lock
}

// verifyPlans checksums every chunk of every plan. onDiff, if set, is told each chunk found
// different (after the rechecks), whatever the drill-down then finds.
func (c *Checksum) verifyPlans(ctx context.Context, phase Phase, plans []*plan, onDiff func(pl *plan, lo, hi keyVal)) ([]*TableResult, error) {
	size := c.ChunkSize
	if size <= 0 {
		size = 1000
	}
	workers := c.Concurrency
	if workers <= 0 {
		workers = 4
	}
	// One source connection finds bounds, each worker holds one per server: stay within the pools.
	if n := poolLimit(c.Source); n > 0 {
		workers = min(workers, n-1)
	}
	if n := poolLimit(c.Target); n > 0 {
		workers = min(workers, n)
	}
	if workers < 1 {
		return nil, fmt.Errorf("verifier: checksum needs at least 2 source and 1 target connections; the pools allow %d and %d", poolLimit(c.Source), poolLimit(c.Target))
	}
	r := newRetrier(c.MaxRetries, c.Logger)
	c.progress.start(phase, plans)
	defer c.progress.finish()
	smps := make([]*samples, len(plans))
	for i := range plans {
		smps[i] = &samples{cap: sampleSize(c.SampleSize)}
	}
	// Each worker holds one session per side.
	srcs, tgts := make([]*conn, workers), make([]*conn, workers)
	for w := range srcs {
		srcs[w], tgts[w] = newConn(c.Source, &c.stats.s), newConn(c.Target, &c.stats.t)
		defer srcs[w].release()
		defer tgts[w].release()
	}
	if c.Snapshot != nil {
		begin := func(ctx context.Context) error {
			for _, cn := range append(append([]*conn{}, srcs...), tgts...) {
				if err := cn.beginSnapshot(ctx); err != nil {
					return err
				}
			}
			return nil
		}
		if err := c.Snapshot(ctx, begin); err != nil {
			return nil, fmt.Errorf("verifier: consistent snapshot: %w", err)
		}
		for _, cn := range append(append([]*conn{}, srcs...), tgts...) {
			if !cn.snapshot {
				return nil, errors.New("verifier: the Snapshot function returned without beginning the snapshot")
			}
		}
	}
	g, gctx := newGroup(ctx)
	chunks := make(chan chunk)
	g.Go(func() error {
		defer close(chunks)
		sc := newConn(c.Source, &c.stats.s)
		defer sc.release()
		for i, pl := range plans {
			var lo keyVal
			for idx := 0; ; idx++ {
				var hi keyVal
				err := r.do(gctx, "chunk bounds of "+pl.s.table, func() error {
					s, err := sc.get(gctx)
					if err != nil {
						return err
					}
					hi, err = pl.boundary(gctx, s, lo, size)
					return err
				}, sc)
				if err != nil {
					return err
				}
				select {
				case chunks <- chunk{pl: pl, smp: smps[i], idx: idx, lo: lo, hi: hi}:
				case <-gctx.Done():
					return gctx.Err()
				}
				if hi == nil {
					break
				}
				lo = hi
			}
		}
		return nil
	})
	for w := 0; w < workers; w++ {
		src, tgt := srcs[w], tgts[w]
		g.Go(func() error {
			for ck := range chunks {
				if err := c.checkWithRetries(gctx, r, phase, src, tgt, ck, onDiff); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := make([]*TableResult, len(plans))
	src := newConn(c.Source, &c.stats.s)
	defer src.release()
	for i, pl := range plans {
		out[i] = pl.newResult()
		smps[i].fill(out[i])
		if err := pl.checkCompared(ctx, r, src, out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkWithRetries checks one chunk, retrying it on fresh connections after a transient error.
func (c *Checksum) checkWithRetries(ctx context.Context, r retrier, phase Phase, src, tgt *conn, ck chunk, onDiff func(pl *plan, lo, hi keyVal)) error {
	return r.do(ctx, "checksum "+ck.pl.s.table, func() error {
		s, t, err := sessions(ctx, src, tgt)
		if err != nil {
			return err
		}
		return c.check(ctx, phase, s, t, ck, onDiff)
	}, src, tgt)
}

func (c *Checksum) check(ctx context.Context, phase Phase, src, tgt *session, ck chunk, onDiff func(pl *plan, lo, hi keyVal)) error {
	if !ck.unthrottled {
		if err := throttler.Wait(ctx, c.Throttler, nil); err != nil {
			return err
		}
	}
	pl := ck.pl
	var rows int64 // the source rows of the chunk
	for attempt := 0; ; attempt++ {
		var sc, tc chunkSum
		err := both(ctx,
			func(ctx context.Context) (err error) { sc, err = pl.checksum(ctx, src, &pl.s, ck.lo, ck.hi); return },
			func(ctx context.Context) (err error) { tc, err = pl.checksum(ctx, tgt, &pl.t, ck.lo, ck.hi); return })
		if err != nil {
			return err
		}
		if sc == tc {
			ck.smp.addCompared(sc.count)
			c.progress.chunkDone(pl, sc.count)
			return nil
		}
		rows = sc.count
		if phase != BeforeCutover || c.Snapshot != nil || attempt >= rechecks(c.Rechecks) {
			break
		}
		if err := sleep(ctx, recheckDelay(c.RecheckDelay)); err != nil {
			return err
		}
	}
	d, err := pl.compareRange(ctx, src, tgt, ck.lo, ck.hi, true, sampleSize(c.SampleSize), nil)
	if err != nil {
		return err
	}
	ck.smp.add(d, ck.idx)
	c.progress.chunkDone(pl, rows)
	if onDiff != nil {
		onDiff(pl, ck.lo, ck.hi)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// boundary returns the key of the n-th source row after lo (the inclusive upper bound of the chunk
// starting after lo), or nil when fewer rows remain (the chunk is open above).
func (pl *plan) boundary(ctx context.Context, s *session, lo keyVal, n int) (keyVal, error) {
	var c cond
	if err := pl.rangeCond(&c, lo, nil); err != nil {
		return nil, err
	}
	pl.s.filter(&c)
	q := fmt.Sprintf("SELECT %s FROM %s%s WHERE %s%s LIMIT 1 OFFSET %d", pl.keySelect(), pl.s.table, pl.s.index, c.String(), pl.orderBy(), n-1)
	rows, err := s.query(ctx, q, c.args...)
	if err != nil {
		return nil, fmt.Errorf("verifier: chunk bounds of %s: %w", pl.s.table, err)
	}
	var k keyVal
	err = scanRows(rows, len(pl.key), nil, func(r row) error { k = r.key; return nil })
	if err != nil {
		return nil, fmt.Errorf("verifier: chunk bounds of %s: %w", pl.s.table, err)
	}
	return k, nil
}

type chunkSum struct {
	count int64
	sum   string
}

// checksum has one side's server checksum the rows of (lo, hi].
func (pl *plan) checksum(ctx context.Context, s *session, sp *sidePlan, lo, hi keyVal) (chunkSum, error) {
	if err := sp.fitsPacket(s); err != nil {
		return chunkSum{}, err
	}
	var c cond
	if err := pl.rangeCond(&c, lo, hi); err != nil {
		return chunkSum{}, err
	}
	sp.filter(&c)
	q := "SELECT COUNT(*), COALESCE(BIT_XOR(" + chunkRowHash(sp.compact) + "), 0) FROM " +
		sp.table + sp.index + " WHERE " + c.String()
	var cs chunkSum
	if s.stats != nil {
		s.stats.queries.Add(1)
	}
	if err := s.conn.QueryRowContext(ctx, q, c.args...).Scan(&cs.count, &cs.sum); err != nil {
		return cs, fmt.Errorf("verifier: checksum %s: %w", sp.table, err)
	}
	return cs, nil
}
