package verifier

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry/throttler"
)

// Differ compares every row: both sides are read in key order, page by page, and merged by key,
// reporting every missing, extra and different row (samples capped by SampleSize, counts complete).
//
// The merge never compares keys in Go. The source is paged (`ORDER BY key LIMIT PageSize`); the last
// key of a page bounds it, and the target's rows of the same key range (lo, hi] are read, ordered and
// selected by the target server; rows are matched by their key bytes. The first page is open below
// and the last open above, so every target row is looked at exactly once. This is exact only if both
// servers order the key the same way, so the Differ (like Checksum) requires identical key column
// definitions: the same types, and for character keys the same collation; it returns an error
// otherwise.
//
// Each row crosses the wire as its key and one hash (128 bits of the SHA-1 of its compact encoding,
// the encoding Checksum's chunks hash); the columns of a different row are looked up by key, for the
// rows the sample keeps. Memory is bounded by two pages, whatever the table's size or the number of
// extra rows on the target. Use it where Checksum's shortcut is not wanted, or on its own
// (examples/diff) on any two tables with compatible keys.
type Differ struct {
	Source, Target *sql.DB
	// PageSize is the number of source rows per page; default 1000.
	PageSize int
	// SampleSize caps the keys kept per category and table; default DefaultSampleSize.
	SampleSize int
	// Strict: see Checksum.Strict.
	Strict bool
	// Rechecks and RecheckDelay: a page that differs in the BeforeCutover phase is read again on
	// both sides up to Rechecks times (default 2), RecheckDelay apart (default 200ms).
	Rechecks     int
	RecheckDelay time.Duration
	// Throttler, if set, is waited on before each page.
	Throttler throttler.Throttler
	// MaxRetries bounds the attempts at one page on transient errors (lost connections, a server
	// restart, deadlocks); default 10. Logger receives the retries; default logrus's standard logger.
	MaxRetries int
	Logger     logrus.FieldLogger

	stats stats
}

// Stats reports the work done so far.
func (d *Differ) Stats() Stats { return d.stats.snapshot() }

// Verify implements Verifier.
func (d *Differ) Verify(ctx context.Context, phase Phase, tables []TablePair) (*Result, error) {
	start := time.Now()
	res := &Result{Verifier: "rowdiff", Phase: phase, Scope: AllRows, CannotSee: withFilterBlindSpot("two unequal rows whose 128-bit hashes collide", tables, d.Strict)}
	for _, p := range tables {
		pl, err := newPlan(ctx, newRetrier(d.MaxRetries, d.Logger), d.Target, p, d.Strict)
		if err != nil {
			return nil, err
		}
		tr, err := d.verifyTable(ctx, phase, pl)
		if err != nil {
			return nil, err
		}
		res.Tables = append(res.Tables, tr)
	}
	res.Duration = time.Since(start)
	return res, nil
}

type page struct {
	idx    int
	lo, hi keyVal
	rows   []row
}

func (d *Differ) verifyTable(ctx context.Context, phase Phase, pl *plan) (*TableResult, error) {
	size := d.PageSize
	if size <= 0 {
		size = 1000
	}
	if n := poolLimit(d.Source); n == 1 {
		return nil, errors.New("verifier: rowdiff needs 2 source connections; the source pool allows 1")
	}
	capN := sampleSize(d.SampleSize)
	smp := &samples{cap: capN}
	r := newRetrier(d.MaxRetries, d.Logger)
	g, gctx := newGroup(ctx)
	pages := make(chan page, 1)
	g.Go(func() error { // reads source pages ahead of the merge
		defer close(pages)
		sc := newConn(d.Source, &d.stats.s)
		defer sc.release()
		var lo keyVal
		for idx := 0; ; idx++ {
			if err := throttler.Wait(gctx, d.Throttler, nil); err != nil {
				return err
			}
			p := page{idx: idx, lo: lo}
			err := r.do(gctx, "read "+pl.s.table, func() error {
				p.rows = p.rows[:0]
				s, err := sc.get(gctx)
				if err != nil {
					return err
				}
				return pl.readRows(gctx, s, &pl.s, lo, nil, false, size, func(r row) error {
					p.rows = append(p.rows, r)
					return nil
				})
			}, sc)
			if err != nil {
				return err
			}
			if len(p.rows) == size {
				p.hi = p.rows[len(p.rows)-1].key
			}
			select {
			case pages <- p:
			case <-gctx.Done():
				return gctx.Err()
			}
			if p.hi == nil {
				return nil
			}
			lo = p.hi
		}
	})
	g.Go(func() error { // merges each page with the target's rows of the same range
		srcC, tgtC := newConn(d.Source, &d.stats.s), newConn(d.Target, &d.stats.t)
		defer srcC.release()
		defer tgtC.release()
		for p := range pages {
			wants := func(row int) bool { return smp.wantsDifferent(pos{p.idx, row}) }
			var rd *rangeDiff
			err := r.do(gctx, "compare "+pl.s.table, func() error {
				src, tgt, err := sessions(gctx, srcC, tgtC)
				if err != nil {
					return err
				}
				rd, err = pl.compareRows(gctx, src, tgt, p.rows, p.lo, p.hi, false, capN, wants)
				for attempt := 0; err == nil && !rd.empty() && phase == BeforeCutover && attempt < rechecks(d.Rechecks); attempt++ {
					if err = sleep(gctx, recheckDelay(d.RecheckDelay)); err == nil {
						rd, err = pl.compareRange(gctx, src, tgt, p.lo, p.hi, false, capN, wants)
					}
				}
				return err
			}, srcC, tgtC)
			if err != nil {
				return err
			}
			smp.add(rd, p.idx)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	tr := pl.newResult()
	smp.fill(tr)
	src := newConn(d.Source, &d.stats.s)
	defer src.release()
	if err := pl.checkCompared(ctx, r, src, tr); err != nil {
		return nil, err
	}
	return tr, nil
}
