package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// Many ferries on one source: moving N shards (or tenants) at once means N Ferries, each with its
// own binlog stream. The source's binlog dump thread sends every stream the whole binlog (a Ferry
// filters the events of its tables on its side), so each stream costs the source CPU and binlog
// bandwidth in proportion to all the source's writes, not to its shard's. This section measures
// that cost.

// shardCount is how many shard databases the source holds; the section runs 1, 2 and 4 Ferries.
const shardCount = 4

var shardLoadFlag = flag.Float64("shard-load", 2000, "writes/s of the mixed load, over all shards, in the shards section (the binlog every stream receives)")

// shardStream is how long each run streams under the load after the copies, to measure the
// source's CPU per binlog stream (shorter in a -quick smoke run).
func shardStream() time.Duration {
	if *quickFlag {
		return 4 * time.Second
	}
	return 10 * time.Second
}

func shardDB(i int) string { return fmt.Sprintf("shard_%d", i+1) }

// shards: the source holds shardCount databases shard_1..shard_4, each an orders table of rows/4
// rows; the mixed load (-shard-load writes/s in total) runs on all of them. A run with k Ferries copies
// shards 1..k concurrently (each Ferry its own binlog stream, its own target database), then
// streams for shardStream() with the copies done. Interleaved with the k-Ferry runs, a
// baseline run streams nothing (the load alone): the source CPU per MiB of binlog written above
// the baseline's, divided by k, is the CPU one binlog stream costs the source per MiB it is sent.
func (b *bench) shards() error {
	ctx := b.ctx
	per := max(b.rows/shardCount, 1000)
	for i := 0; i < shardCount; i++ {
		db := shardDB(i)
		if err := b.src.Exec(ctx, "SET SESSION sql_log_bin = 0", "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db, fmt.Sprintf(ordersDDL, db+".orders"),
			fmt.Sprintf("INSERT INTO %s.orders SELECT * FROM %s.orders WHERE id <= %d", db, srcDB, per)); err != nil {
			return err
		}
	}
	defer func() {
		for i := 0; i < shardCount; i++ {
			b.src.Exec(context.WithoutCancel(ctx), "SET SESSION sql_log_bin = 0", "DROP DATABASE IF EXISTS "+shardDB(i))
		}
	}()
	b.src.Exec(ctx, "RESET MASTER")
	counts := []int{1, 2, 4}
	runs := []runFn{}
	for _, k := range counts {
		runs = append(runs, func(i int) (Sample, error) { return b.shardRun(k, per, i == *runsFlag-1) })
	}
	base, figs, err := b.measureAll("shards", func(int) (Sample, error) { return b.shardRun(0, per, false) }, runs...)
	if err != nil {
		return err
	}
	b.addSeries(&Figure{Name: "shards: source mariadbd CPU under the load alone, no binlog stream", Unit: "% of a core",
		Note: fmt.Sprintf("baseline of the per-stream figures; %d shards of %d rows, load %.0f writes/s over all shards (-shard-load); binlog written %s KiB/s",
			shardCount, per, *shardLoadFlag, base.Of("binlog_kib_per_s").Summary())}, base.Of("src_cpu_pct"), nil)
	for k, n := range counts {
		fig := figs[k]
		// Per run: the source CPU above the baseline run of the same round, per stream. The
		// load's own cost grows with the writes it gets done, and a loaded machine does not get
		// the same number done in every run: so both runs' CPU is taken per MiB of binlog
		// written (the writes' measure), and the difference is per MiB sent to each stream.
		perStream := &Series{Load: fig.Load, batch: fig.batch}
		perMiB := &Series{Load: fig.Load, batch: fig.batch}
		for i, s := range fig.Samples {
			c, c0 := s.Also["src_cpu_pct"], base.Samples[i].Also["src_cpu_pct"]
			mib, mib0 := s.Also["binlog_kib_per_s"]/1024, base.Samples[i].Also["binlog_kib_per_s"]/1024
			if mib <= 0 || mib0 <= 0 { // the binlog rotated during a run: no rate, plain difference
				perStream.Samples = append(perStream.Samples, Sample{Value: (c - c0) / float64(n)})
				continue
			}
			extra := (c/mib - c0/mib0) / float64(n)                                   // % of a core per MiB/s, per stream
			perStream.Samples = append(perStream.Samples, Sample{Value: extra * mib}) // at this run's binlog rate
			perMiB.Samples = append(perMiB.Samples, Sample{Value: 10 * extra})        // CPU-ms per MiB
		}
		label := fmt.Sprintf("shards: %d concurrent Ferr%s", n, map[bool]string{true: "y", false: "ies"}[n == 1])
		b.addSeries(&Figure{Name: label + ", aggregate copy rate under the load", Unit: "rows/s",
			Note: fmt.Sprintf("%d×%d rows; source mariadbd during the copies %s%% of a core; binlog lag max during the copies %s ms",
				n, per, fig.Of("src_cpu_copy_pct").Summary(), fig.Of("lag_max_ms").Summary())}, fig, nil)
		b.addSeries(&Figure{Name: label + ", source CPU while streaming", Unit: "% of a core",
			Note: fmt.Sprintf("binlog written %s KiB/s, sent %d× (once per stream); lag max while streaming %s ms",
				fig.Of("binlog_kib_per_s").Summary(), n, fig.Of("stream_lag_max_ms").Summary()), CeilingName: "the load alone, no stream, interleaved"}, fig.Of("src_cpu_pct"), base.Of("src_cpu_pct"))
		b.addSeries(&Figure{Name: label + ", source CPU per binlog stream (above the baseline, per MiB written)", Unit: "% of a core"}, perStream, nil)
		if len(perMiB.Samples) > 0 {
			b.addSeries(&Figure{Name: label + ", source CPU per MiB of binlog sent, per stream", Unit: "CPU-ms/MiB"}, perMiB, nil)
		}
	}
	return nil
}

// shardRun is one run with k Ferries (k = 0: the baseline, the load alone for the streaming
// interval). Sample.Value is the aggregate copy rate (rows/s; for the baseline, the source's CPU
// in % of a core); Also has the
// source's CPU while streaming (src_cpu_pct, % of one core), during the copies (src_cpu_copy_pct),
// the binlog the source wrote while streaming (binlog_kib_per_s) and the lags.
func (b *bench) shardRun(k int, per int64, verify bool) (Sample, error) {
	ctx := b.ctx
	defer b.purge()
	var loads []*loadGen
	stopLoads := func() (err error) {
		for _, l := range loads {
			if _, lerr := l.Stop(); lerr != nil {
				err = lerr
			}
		}
		loads = nil
		return err
	}
	defer stopLoads()
	for i := 0; i < shardCount; i++ {
		db, err := b.src.DB(shardDB(i))
		if err != nil {
			return Sample{}, err
		}
		defer db.Close()
		db.SetMaxOpenConns(8)
		loads = append(loads, startLoad(db, "orders", *shardLoadFlag/shardCount, per, 4))
	}
	time.Sleep(time.Second) // the load is steady before the measurement
	out := Sample{Also: map[string]float64{}}
	var runs []*ferryRun
	defer func() {
		for _, r := range runs {
			r.finish(ctx)
		}
	}()
	if k > 0 {
		cpu := startCPU(b.src, b.dst)
		for i := 0; i < k; i++ {
			r, err := startFerry(ctx, ferryOpts{SrcPort: b.src.Port, DstPort: b.dst.Port, Table: shardDB(i) + ".orders", DstDB: shardDB(i), Workers: *workersFlag, Writer: "loaddata"})
			if err != nil {
				return Sample{}, err
			}
			runs = append(runs, r)
		}
		lags := make([]*lagSampler, k)
		for i, r := range runs {
			lags[i] = sampleLag(r.F)
		}
		start := time.Now()
		g, gctx := errgroup.WithContext(ctx)
		for _, r := range runs {
			g.Go(func() error { return r.F.WaitUntilRowCopyIsComplete(gctx) })
		}
		err := g.Wait()
		d := time.Since(start)
		c := cpu.stop(0)
		var lagMax time.Duration
		for _, l := range lags {
			m, _ := l.Stop()
			lagMax = max(lagMax, m)
		}
		if err != nil {
			return Sample{}, err
		}
		var n int64
		for _, r := range runs {
			n += r.rowsCopied()
		}
		out.Value = rate(n, d)
		out.Also["src_cpu_copy_pct"] = 100 * c.Source / c.Wall
		out.Also["lag_max_ms"] = ms(lagMax)
	}
	// Streaming: the copies are done, every Ferry tails the binlog the load writes.
	db, err := b.src.DB("")
	if err != nil {
		return Sample{}, err
	}
	defer db.Close()
	pos0, err := sourcePos(ctx, db)
	if err != nil {
		return Sample{}, err
	}
	lags := make([]*lagSampler, len(runs))
	for i, r := range runs {
		lags[i] = sampleLag(r.F)
	}
	cpu := startCPU(b.src, b.dst)
	select {
	case <-time.After(shardStream()):
	case <-ctx.Done():
		return Sample{}, ctx.Err()
	}
	c := cpu.stop(0)
	pos1, err := sourcePos(ctx, db)
	if err != nil {
		return Sample{}, err
	}
	var lagMax time.Duration
	for _, l := range lags {
		m, _ := l.Stop()
		lagMax = max(lagMax, m)
	}
	out.Also["src_cpu_pct"] = 100 * c.Source / c.Wall
	if k == 0 { // the baseline: its value is the source's CPU (what the log line shows)
		out.Value = out.Also["src_cpu_pct"]
	}
	if pos1.File == pos0.File {
		out.Also["binlog_kib_per_s"] = float64(pos1.Pos-pos0.Pos) / 1024 / c.Wall
	}
	out.Also["stream_lag_max_ms"] = ms(lagMax)
	if err := stopLoads(); err != nil {
		out.Note = fmt.Sprintf("load error: %v", err)
	}
	var errs []error
	for _, r := range runs {
		errs = append(errs, r.finish(ctx))
	}
	finished := runs
	runs = nil
	if err := errors.Join(errs...); err != nil {
		return Sample{}, err
	}
	if verify && k > 0 {
		var notes []string
		for i := range finished {
			notes = append(notes, b.checksumNoteIn(shardDB(i), "orders", shardDB(i)))
		}
		out.Note = strings.TrimPrefix(out.Note+"; last run, each shard: "+strings.Join(dedupe(notes), "; "), "; ")
	}
	copied := fmt.Sprintf("%.0f rows/s", out.Value)
	if k == 0 {
		copied = "no copy"
	}
	logf("    shards: %d Ferries: %s, source CPU streaming %.1f%%, binlog %.0f KiB/s, lag max %s", k, copied, out.Also["src_cpu_pct"], out.Also["binlog_kib_per_s"], lagMax)
	return out, nil
}

func dedupe(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
