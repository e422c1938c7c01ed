package main

import (
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ferrykit/ferry"
)

// loadRuns is how many idle and how many loaded copies the loaddata-load section interleaves.
const loadRuns = 3

// retryCount is a ferry Observer that counts retried transient errors of the binlog apply and of
// the copy's writes to the target (deadlocks, lock-wait timeouts).
type retryCount struct{ apply, write atomic.Int64 }

func (r *retryCount) BatchCopied(string, int, int64, time.Duration)       {}
func (r *retryCount) ChangesApplied(map[ferry.DMLType]int, time.Duration) {}
func (r *retryCount) Retried(what string) {
	switch {
	case what == "target transaction":
		r.apply.Add(1)
	case len(what) > 5 && what[:5] == "load " || len(what) > 6 && what[:6] == "write ":
		r.write.Add(1)
	}
}

// loadedCopy is one copy of orders with the default (LOAD DATA) writer.
type loadedCopy struct {
	rate                       float64
	lagMax, lag99              time.Duration
	applyRetries, writeRetries int64
	achieved                   float64
	note                       string
}

// copyDefaultWriterUnderLoad measures the default copy writer (LOAD DATA) under the mixed load
// against the same in-process copy idle, interleaved (idle, loaded, idle, loaded, ...): copy rate
// medians with their ranges and the ratio of the medians, binlog lag p99 and max, and how often
// the apply and the copy had to retry (deadlocks between them show up there).
func (b *bench) copyDefaultWriterUnderLoad() error {
	var idle, loaded []loadedCopy
	for i := 0; i < loadRuns; i++ {
		r, err := b.oneDefaultWriterCopy(-1)
		if err != nil {
			return err
		}
		idle = append(idle, r)
		if r, err = b.oneDefaultWriterCopy(i); err != nil {
			return err
		}
		loaded = append(loaded, r)
	}
	rates := func(xs []loadedCopy) []float64 {
		var out []float64
		for _, x := range xs {
			out = append(out, x.rate)
		}
		return out
	}
	durs := func(xs []loadedCopy, f func(loadedCopy) time.Duration) []float64 {
		var out []float64
		for _, x := range xs {
			out = append(out, ms(f(x)))
		}
		return out
	}
	var applyRetries, writeRetries int64
	achieved := []float64{}
	notes := map[string]bool{}
	for _, x := range loaded {
		applyRetries += x.applyRetries
		writeRetries += x.writeRetries
		achieved = append(achieved, x.achieved)
		notes[x.note] = true
	}
	im, ilo, ihi := medianRange(rates(idle))
	lm, llo, lhi := medianRange(rates(loaded))
	busy := fmt.Sprintf("median of %d runs interleaved with the idle ones, range %.0f–%.0f; loadavg %s (shared machine)", loadRuns, llo, lhi, loadAvg())
	b.add(&Figure{Name: "ferry copy idle, default LOAD DATA writer, in-process (orders)", Value: im, Unit: "rows/s",
		Note: fmt.Sprintf("median of %d runs, range %.0f–%.0f", loadRuns, ilo, ihi)})
	am, _, _ := medianRange(achieved)
	b.add(&Figure{Name: fmt.Sprintf("ferry copy under %.0f writes/s, default LOAD DATA writer (orders)", *loadFlag), Value: lm, Unit: "rows/s",
		Ceiling: im, CeilingName: "same copy idle (median)", Target: tgtLoad,
		Note: fmt.Sprintf("%s; load achieved %.0f writes/s (median); retries under load: apply %d, copy writes %d (all runs); %s", busy, am, applyRetries, writeRetries, joinKeys(notes))})
	for _, l := range []struct {
		name string
		f    func(loadedCopy) time.Duration
	}{{"p99", func(x loadedCopy) time.Duration { return x.lag99 }}, {"max", func(x loadedCopy) time.Duration { return x.lagMax }}} {
		m, lo, hi := medianRange(durs(loaded, l.f))
		b.add(&Figure{Name: "binlog lag during the default-writer copy under load, " + l.name, Value: m, Unit: "ms", Target: tgtLag,
			Note: fmt.Sprintf("median of %d runs, range %.0f–%.0f ms", loadRuns, lo, hi)})
	}
	return nil
}

// oneDefaultWriterCopy copies orders idle (run < 0) or under the load (run ≥ 0: the run's inserts
// take keys no earlier run used).
func (b *bench) oneDefaultWriterCopy(run int) (loadedCopy, error) {
	ctx := b.ctx
	defer b.purge()
	underLoad := run >= 0
	var load *loadGen
	if underLoad {
		db, err := b.src.DB(srcDB)
		if err != nil {
			return loadedCopy{}, err
		}
		defer db.Close()
		db.SetMaxOpenConns(16)
		load = startLoadFrom(db, "orders", *loadFlag, b.rows, b.rows+10_000_000+int64(run+1)*1_000_000, 8)
		time.Sleep(time.Second) // the load is steady before the copy starts
	}
	stopLoad := func() (float64, error) {
		if load == nil {
			return 0, nil
		}
		a, err := load.Stop()
		load = nil
		return a, err
	}
	defer stopLoad()
	retries := &retryCount{}
	r, err := startFerry(ctx, ferryOpts{SrcPort: b.src.Port, DstPort: b.dst.Port, Table: srcDB + ".orders", DstDB: "ferry_ldload", Workers: *workersFlag, Writer: "loaddata", Observer: retries})
	if err != nil {
		return loadedCopy{}, err
	}
	lag := sampleLag(r.F)
	if err := r.F.WaitUntilRowCopyIsComplete(ctx); err != nil {
		lag.Stop()
		return loadedCopy{}, err
	}
	d := time.Since(r.t0)
	n := r.rowsCopied()
	out := loadedCopy{rate: rate(n, d), applyRetries: retries.apply.Load(), writeRetries: retries.write.Load()}
	out.lagMax, out.lag99 = lag.Stop()
	achieved, lerr := stopLoad()
	out.achieved = achieved
	if err := r.finish(ctx); err != nil {
		return loadedCopy{}, err
	}
	if lerr != nil {
		out.note = fmt.Sprintf("load error: %v", lerr)
	}
	if underLoad {
		out.note = strings.TrimPrefix(out.note+"; "+b.checksumNote("orders", "ferry_ldload"), "; ")
	}
	logf("default writer copy (under load %v): %.0f rows/s, lag p99 %s max %s, retries apply %d copy %d", underLoad, out.rate, out.lag99, out.lagMax, out.applyRetries, out.writeRetries)
	return out, nil
}

func joinKeys(m map[string]bool) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// medianRange returns the median, lowest and highest of xs.
func medianRange(xs []float64) (median, lo, hi float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	s := append([]float64{}, xs...)
	sort.Float64s(s)
	return s[len(s)/2], s[0], s[len(s)-1]
}
