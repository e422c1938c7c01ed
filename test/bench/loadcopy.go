package main

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ferrykit/ferry"
)

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

// copyUnderLoad measures a copy of orders with the given writer ("" INSERT, "loaddata" the
// default LOAD DATA) under the mixed load, interleaved with the same in-process copy idle (idle,
// loaded, idle, loaded, ...): copy rate medians with their ranges and the per-pair ratio, binlog lag
// p99 and max, how often the apply and the copy had to retry (deadlocks between them show up
// there), and a Checksum of every loaded copy.
func (b *bench) copyUnderLoad(writer, label string) error {
	idle, loaded, err := b.measure("copy under load, "+label,
		func(i int) (Sample, error) { return b.oneLoadCopy(writer, -1) },
		func(i int) (Sample, error) { return b.oneLoadCopy(writer, i) })
	if err != nil {
		return err
	}
	idleName := "ferry copy idle, " + label + ", in-process (orders)"
	b.addSeries(&Figure{Name: idleName, Unit: "rows/s"}, idle, nil)
	var applyRetries, writeRetries float64
	for _, x := range loaded.Samples {
		applyRetries += x.Also["apply_retries"]
		writeRetries += x.Also["write_retries"]
	}
	b.addSeries(&Figure{Name: fmt.Sprintf("ferry copy under %.0f writes/s, %s (orders)", *loadFlag, label), Unit: "rows/s",
		CeilingName: "same copy idle, interleaved", Target: tgtLoad, Ref: idleName, // CPU per row includes the load's own cost: a lower bound
		Note: fmt.Sprintf("load achieved %s writes/s; retries under load, all runs: apply %.0f, copy writes %.0f", loaded.Of("achieved_writes_per_s").Summary(), applyRetries, writeRetries)}, loaded, idle)
	b.addSeries(&Figure{Name: "binlog lag during the " + label + " copy under load, p99", Unit: "ms", Target: tgtLag}, loaded.Of("lag_p99_ms"), nil)
	b.addSeries(&Figure{Name: "binlog lag during the " + label + " copy under load, max", Unit: "ms", Target: tgtLag}, loaded.Of("lag_max_ms"), nil)
	return nil
}

// oneLoadCopy copies orders idle (run < 0) or under the load (run ≥ 0).
func (b *bench) oneLoadCopy(writer string, run int) (Sample, error) {
	ctx := b.ctx
	defer b.purge()
	underLoad := run >= 0
	var load *loadGen
	if underLoad {
		db, err := b.src.DB(srcDB)
		if err != nil {
			return Sample{}, err
		}
		defer db.Close()
		db.SetMaxOpenConns(16)
		load = startLoad(db, "orders", *loadFlag, b.rows, 8)
	}
	// The load is steady before the copy starts; the idle run waits as long, so that both start
	// the same time after the previous run's DROP DATABASE and RESET MASTER.
	time.Sleep(time.Second)
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
	if underLoad {
		defer startProfile(b.profilePath("copy-load-" + map[string]string{"": "insert"}[writer] + writer + ".pprof"))()
	}
	cpu := startCPU(b.src, b.dst)
	r, err := startFerry(ctx, ferryOpts{SrcPort: b.src.Port, DstPort: b.dst.Port, Table: srcDB + ".orders", DstDB: "ferry_load", Workers: *workersFlag, Writer: writer, Observer: retries})
	if err != nil {
		return Sample{}, err
	}
	lag := sampleLag(r.F)
	if err := r.F.WaitUntilRowCopyIsComplete(ctx); err != nil {
		lag.Stop()
		r.finish(ctx)
		return Sample{}, err
	}
	d := time.Since(r.t0)
	c := cpu.stop(0)
	n := r.rowsCopied()
	c.Rows = n
	lagMax, lag99 := lag.Stop()
	achieved, lerr := stopLoad()
	if err := r.finish(ctx); err != nil {
		return Sample{}, err
	}
	out := Sample{Value: rate(n, d), CPU: &c, Also: map[string]float64{
		"lag_p99_ms": ms(lag99), "lag_max_ms": ms(lagMax), "achieved_writes_per_s": achieved,
		"apply_retries": float64(retries.apply.Load()), "write_retries": float64(retries.write.Load())}}
	if lerr != nil {
		out.Note = fmt.Sprintf("load error: %v", lerr)
	}
	if underLoad {
		out.Note = strings.TrimPrefix(out.Note+"; "+b.checksumNote("orders", "ferry_load"), "; ")
	}
	logf("    copy (%s, under load %v): %.0f rows/s, lag p99 %s max %s, retries apply %d copy %d", map[string]string{"": "insert"}[writer]+writer, underLoad, out.Value, lag99, lagMax, retries.apply.Load(), retries.write.Load())
	return out, nil
}
