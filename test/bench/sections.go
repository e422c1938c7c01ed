package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/verifier"
)

const (
	srcDB = "bench"
	// one-line target strings quoted in the table
	tgtCopy     = ">= 1.0x best plain copier; >= 2x dump-pipe"
	tgtLoad     = ">= 0.8x idle"
	tgtLag      = "< 1 s"
	tgtApply    = ">= 10,000 events/s with lag < 1 s"
	tgtCutover  = "p99 <= 200 ms"
	tgtChecksum = ">= 5x copy rate"
	tgtRSS      = "<= 256 MiB, flat in table size"
)

func (b *bench) setup() error {
	ctx := b.ctx
	if err := b.src.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+srcDB,
		fmt.Sprintf(ordersDDL, srcDB+".orders"), fmt.Sprintf(narrowDDL, srcDB+".narrow"),
		fmt.Sprintf(ordersDDL, srcDB+".orders_small")); err != nil {
		return err
	}
	db, err := b.src.DB(srcDB)
	if err != nil {
		return err
	}
	defer db.Close()
	start := time.Now()
	if err := generate(ctx, db, "orders", b.rows, ordersCols, orderRow, 3); err != nil {
		return err
	}
	if err := generate(ctx, db, "narrow", b.narrow, 3, narrowRow, 3); err != nil {
		return err
	}
	small := max(b.rows/10, 1000)
	if err := b.src.Exec(ctx, "SET SESSION sql_log_bin = 0", fmt.Sprintf("INSERT INTO %s.orders_small SELECT * FROM %s.orders WHERE id <= %d", srcDB, srcDB, small)); err != nil {
		return err
	}
	b.src.Exec(ctx, "ANALYZE TABLE bench.orders, bench.narrow, bench.orders_small")
	db.QueryRowContext(ctx, "SELECT DATA_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'orders'", srcDB).Scan(&b.dataLen)
	logf("generated %d orders rows (%.0f MiB DATA_LENGTH), %d narrow rows, %d orders_small rows in %s", b.rows, float64(b.dataLen)/(1<<20), b.narrow, small, time.Since(start).Round(time.Second))
	return b.src.Exec(ctx, "RESET MASTER")
}

func rate(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() }

// ceilings measures what this machine can do without ferry: the bounds each ferry figure is
// divided by. Each is the median of -runs runs; the plain copier variants run interleaved, and the
// fastest (by median) is re-run next to each ferry copy in the copy section.
func (b *bench) ceilings() error {
	ctx := b.ctx
	sum0, err := checksumTable(ctx, b.src, srcDB+".orders")
	if err != nil {
		return err
	}
	_, figs, err := b.measureAll("ceilings: INSERT…SELECT, dump pipe", nil, b.insertSelectRun,
		func(int) (Sample, error) {
			cpu := startCPU(b.src, b.dst)
			d, clients, err := dumpPipe(ctx, b.src, b.dst, srcDB, "orders", "dump")
			if err != nil {
				return Sample{}, err
			}
			c := cpu.stop(clients) // the mariadb-dump and mariadb clients count as the "Go" (client) side
			c.Rows = b.rows
			s := Sample{Value: rate(b.rows, d), CPU: &c}
			if sum, _ := checksumTable(ctx, b.dst, "dump.orders"); sum != sum0 {
				s.Note = "CHECKSUM TABLE differs from the source!"
			}
			b.dst.Exec(ctx, "DROP DATABASE dump")
			b.purgeBinlogs()
			return s, nil
		})
	if err != nil {
		return err
	}
	b.addSeries(&Figure{Name: figInsertSelect, Unit: "rows/s"}, figs[0], nil)
	b.addSeries(&Figure{Name: figDumpPipe, Unit: "rows/s"}, figs[1], nil)

	variants := []struct {
		mode    copyMode
		workers int
	}{{modeText, *workersFlag}, {modePrepared, *workersFlag}, {modeLoadData, *workersFlag}}
	if *fullFlag { // the single-connection variants too
		variants = append(variants, []struct {
			mode    copyMode
			workers int
		}{{modeText, 1}, {modeLoadData, 1}}...)
	}
	var runs []runFn
	for _, v := range variants {
		runs = append(runs, func(int) (Sample, error) { return b.plainCopyRun(v.mode, v.workers, "plain", sum0) })
	}
	_, figs, err = b.measureAll("ceilings: plain copiers", nil, runs...)
	if err != nil {
		return err
	}
	var best *Series
	bestName := ""
	for k, v := range variants {
		name := fmt.Sprintf("ceiling: plain copier, %s, %d worker(s), 1000 rows/chunk", v.mode, v.workers)
		f := b.addSeries(&Figure{Name: name, Unit: "rows/s"}, figs[k], nil)
		if strings.Contains(f.Note, "not counted") {
			continue
		}
		if cheapest := b.named[b.cheapestPlain]; cheapest == nil || f.CPU.perRow() < cheapest.CPU.perRow() {
			b.cheapestPlain = name
		}
		if best == nil || figs[k].Median() > best.Median() {
			best, bestName = figs[k], fmt.Sprintf("plain %s x%d", v.mode, v.workers)
			b.bestMode, b.bestWorkers = v.mode, v.workers
		}
	}
	if best == nil {
		return errors.New("no plain copier copied the table exactly")
	}
	b.addSeries(&Figure{Name: "ceiling: best plain copier (orders)", Unit: "rows/s", Note: bestName + " (highest median); cheapest in CPU per row: " + b.cheapestPlain}, best, nil)
	return nil
}

// insertSelectRun is one run of the same-server ceiling: INSERT INTO a copy SELECT * FROM orders.
func (b *bench) insertSelectRun(int) (Sample, error) {
	cpu := startCPU(b.src, b.dst)
	d, err := insertSelect(b.ctx, b.src, srcDB, "orders", ordersDDL)
	c := cpu.stop(0)
	c.Rows = b.rows
	b.src.Exec(b.ctx, "RESET MASTER")
	return Sample{Value: rate(b.rows, d), CPU: &c}, err
}

// Names of figures other sections refer to.
const (
	figInsertSelect = "ceiling: same-server INSERT…SELECT (orders)"
	figDumpPipe     = "ceiling: mariadb-dump | mariadb (orders)"
	figCopyIdle     = "ferry copy, idle (orders)"
)

// plainCopyRun is one run of the plain copier on orders into dstDB (dropped afterwards); a copy
// whose CHECKSUM TABLE differs from sum0 says so in its note and is not counted as a ceiling.
func (b *bench) plainCopyRun(mode copyMode, workers int, dstDB string, sum0 int64) (Sample, error) {
	ctx := b.ctx
	if err := b.dst.Exec(ctx, "DROP DATABASE IF EXISTS "+dstDB, "CREATE DATABASE "+dstDB, fmt.Sprintf(ordersDDL, dstDB+".orders")); err != nil {
		return Sample{}, err
	}
	defer func() {
		b.dst.Exec(ctx, "DROP DATABASE IF EXISTS "+dstDB)
		b.purgeBinlogs()
	}()
	cpu := startCPU(b.src, b.dst)
	n, d, err := plainCopy(ctx, b.src, b.dst, srcDB, "orders", dstDB, b.rows, ordersCols, workers, 1000, mode)
	if err != nil {
		return Sample{}, err
	}
	c := cpu.stop(0)
	c.Rows = n
	s := Sample{Value: rate(n, d), CPU: &c}
	if sum0 != 0 {
		if sum, _ := checksumTable(ctx, b.dst, dstDB+".orders"); sum != sum0 || n != b.rows {
			s.Note = fmt.Sprintf("copied %d rows; CHECKSUM TABLE differs from the source — not counted as a ceiling", n)
		}
	}
	return s, nil
}

func (b *bench) profilePath(name string) string {
	if *profileFlag == "" {
		return ""
	}
	return filepath.Join(*profileFlag, name)
}

// copyIdle is ferry's cross-server copy of orders with no other load, in a child process (peak
// RSS), with the default LOAD DATA writer and with the INSERT writer, each run interleaved with a
// run of the fastest plain copier (LOAD DATA x -workers if the ceilings section did not run). The
// last default-writer copy stays (database ferry_idle) for the verify section.
func (b *bench) copyIdle() error {
	mode, workers := b.bestMode, b.bestWorkers
	if mode == "" {
		mode, workers = modeLoadData, *workersFlag
	}
	ceilingName := fmt.Sprintf("plain %s x%d, interleaved", mode, workers)
	ferryRun := func(writer, dstDB, profile string) runFn {
		return func(i int) (Sample, error) {
			b.dst.Exec(b.ctx, "DROP DATABASE IF EXISTS "+dstDB)
			b.purgeBinlogs()
			cpu := startCPU(b.src, b.dst)
			res, rss, childCPU, err := childCopy(b.ctx, ferryOpts{SrcPort: b.src.Port, DstPort: b.dst.Port, Table: srcDB + ".orders", DstDB: dstDB, Workers: *workersFlag, Writer: writer}, b.profilePath(profile))
			if err != nil {
				return Sample{}, err
			}
			c := cpu.stop(childCPU)
			c.Rows = res.Rows
			s := Sample{Value: float64(res.Rows) / res.Seconds, CPU: &c, Also: map[string]float64{"rss_mib": float64(rss) / (1 << 20), "rows": float64(res.Rows)}}
			if i == *runsFlag-1 {
				s.Note = b.checksumNote("orders", dstDB) + " (last run)"
			}
			return s, nil
		}
	}
	ceil, figs, err := b.measureAll("copy idle", func(int) (Sample, error) { return b.plainCopyRun(mode, workers, "plain_adj", 0) },
		ferryRun("loaddata", "ferry_idle", "copy-loaddata.pprof"), ferryRun("", "ferry_ins", "copy.pprof"))
	b.dst.Exec(b.ctx, "DROP DATABASE IF EXISTS ferry_ins")
	b.purgeBinlogs()
	if err != nil {
		return err
	}
	b.addSeries(&Figure{Name: "ceiling, re-run next to each ferry copy: " + ceilingName, Unit: "rows/s"}, ceil, nil)
	ld, ins := figs[0], figs[1]
	b.addSeries(&Figure{Name: figCopyIdle, Unit: "rows/s", CeilingName: ceilingName, Target: tgtCopy, Ref: b.cheapestPlain,
		Note: "the default writer (LOAD DATA)"}, ld, ceil)
	if dp := b.named[figDumpPipe]; dp != nil {
		b.addSeries(&Figure{Name: "ferry copy, idle, vs dump-pipe", Unit: "rows/s", CeilingName: "dump-pipe (ceilings section)", Target: ">= 2x", Ref: figDumpPipe},
			ld, &Series{Samples: seriesOf(dp.Samples)})
	}
	b.addSeries(&Figure{Name: "ferry copy, idle (orders), MiB/s of DATA_LENGTH", Unit: "MiB/s"},
		ld.Map(func(x Sample) float64 { return x.Value * float64(b.dataLen) / float64(b.rows) / (1 << 20) }), nil)
	b.addSeries(&Figure{Name: "ferry copy, idle, INSERT writer (orders)", Unit: "rows/s", CeilingName: ceilingName, Target: tgtCopy, Ref: b.cheapestPlain}, ins, ceil)
	b.addSeries(&Figure{Name: fmt.Sprintf("ferry peak RSS, copy of %d rows (child process, LOAD DATA writer)", b.rows), Unit: "MiB", Target: tgtRSS}, ld.Of("rss_mib"), nil)
	b.addSeries(&Figure{Name: fmt.Sprintf("ferry peak RSS, copy of %d rows (child process, INSERT writer)", b.rows), Unit: "MiB", Target: tgtRSS}, ins.Of("rss_mib"), nil)
	return nil
}

// seriesOf makes a Series (of no measurement: not paired) from the values of another figure.
func seriesOf(values []float64) []Sample {
	out := make([]Sample, len(values))
	for i, v := range values {
		out[i] = Sample{Value: v}
	}
	return out
}

// checksumNote verifies a copy of srcDB.table with the Checksum verifier and says how it went.
func (b *bench) checksumNote(table, dstDB string) string {
	return b.checksumNoteIn(srcDB, table, dstDB)
}

// checksumNoteIn verifies the copy of database.table in dstDB with the Checksum verifier.
func (b *bench) checksumNoteIn(database, table, dstDB string) string {
	ctx := b.ctx
	s, err := conn(b.src.Port).Open(ctx)
	if err != nil {
		return "checksum not run: " + err.Error()
	}
	defer s.Close()
	t, err := conn(b.dst.Port).Open(ctx)
	if err != nil {
		return "checksum not run: " + err.Error()
	}
	defer t.Close()
	st, err := schema.Load(ctx, s, database, table)
	if err != nil {
		return "checksum not run: " + err.Error()
	}
	pairs := []verifier.TablePair{{Source: st, TargetDatabase: dstDB, TargetTable: table}}
	res, err := (&verifier.Checksum{Source: s, Target: t}).Verify(ctx, verifier.DuringCutover, pairs)
	switch {
	case err != nil:
		return "checksum after the run failed: " + err.Error()
	case !res.Match():
		return "CHECKSUM MISMATCH after the run: " + res.String()
	}
	return "target equals source (Checksum verifier)"
}

func (b *bench) pairs(ctx context.Context, srcConn, dstConn *sql.DB, table, dstDB string) ([]verifier.TablePair, error) {
	t, err := schema.Load(ctx, srcConn, srcDB, table)
	if err != nil {
		return nil, err
	}
	return []verifier.TablePair{{Source: t, TargetDatabase: dstDB, TargetTable: table}}, nil
}

// verifiers runs each verifier on orders vs the idle copy (equal tables: the full cost of proving it).
func (b *bench) verifiers() error {
	ctx := b.ctx
	if !b.want("copy") {
		return errors.New("needs the copy section (the idle copy is what is verified)")
	}
	s, err := conn(b.src.Port).Open(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	t, err := conn(b.dst.Port).Open(ctx)
	if err != nil {
		return err
	}
	defer t.Close()
	pairs, err := b.pairs(ctx, s, t, "orders", "ferry_idle")
	if err != nil {
		return err
	}
	var copyRate *Series
	if f := b.named[figCopyIdle]; f != nil {
		copyRate = &Series{Samples: seriesOf(f.Samples)}
	}
	verifiers := []struct {
		name string
		v    verifier.Verifier
	}{
		{"Checksum", &verifier.Checksum{Source: s, Target: t}},
		{"Checksum, ChunkSize 5000", &verifier.Checksum{Source: s, Target: t, ChunkSize: 5000}},
		{"ChecksumTable", &verifier.ChecksumTable{Source: s, Target: t}},
		{"Differ", &verifier.Differ{Source: s, Target: t}},
	}
	var runs []runFn
	for _, v := range verifiers {
		runs = append(runs, func(int) (Sample, error) {
			cpu := startCPU(b.src, b.dst)
			start := time.Now()
			res, err := v.v.Verify(ctx, verifier.BeforeCutover, pairs)
			if err != nil {
				return Sample{}, fmt.Errorf("%s: %w", v.name, err)
			}
			d := time.Since(start)
			c := cpu.stop(0)
			c.Rows = b.rows
			out := Sample{Value: rate(b.rows, d), CPU: &c}
			if !res.Match() {
				out.Note = "MISMATCH reported: " + res.String()
			}
			return out, nil
		})
	}
	// The chunk checksum candidates run in the same rounds: what the Checksum verifier's hash costs
	// beside the others (issue: cheaper checksum).
	cands := checksumCandidates()
	for _, c := range cands {
		runs = append(runs, c.run(b, s, t, "ferry_idle"))
	}
	_, figs, err := b.measureAll("verifiers", nil, runs...)
	if err != nil {
		return err
	}
	for k, v := range verifiers {
		tgt := ""
		if v.name == "Checksum" {
			tgt = tgtChecksum
		}
		b.addSeries(&Figure{Name: "verifier " + v.name + " (orders, equal tables)", Unit: "rows/s", CeilingName: "ferry copy rate (copy section)", Target: tgt, Ref: figCopyIdle, Note: b.cpuRatioNote(figs[k], figCopyIdle)}, figs[k], copyRate)
	}
	for k, c := range cands {
		fig := figs[len(verifiers)+k]
		b.addSeries(&Figure{Name: "chunk checksum cost: " + c.name, Unit: "rows/s", Ref: figCopyIdle, Note: b.cpuRatioNote(fig, figCopyIdle)}, fig, nil)
	}
	return nil
}

// rss copies a table a tenth the size in a child process: peak RSS should not grow with table size.
func (b *bench) rss() error {
	small := max(b.rows/10, 1000)
	_, fig, err := b.measure("rss", nil, func(int) (Sample, error) {
		defer b.purge()
		_, rss, _, err := childCopy(b.ctx, ferryOpts{SrcPort: b.src.Port, DstPort: b.dst.Port, Table: srcDB + ".orders_small", DstDB: "ferry_small", Workers: *workersFlag, Writer: "loaddata"}, "")
		return Sample{Value: float64(rss) / (1 << 20)}, err
	})
	if err != nil {
		return err
	}
	b.addSeries(&Figure{Name: fmt.Sprintf("ferry peak RSS, copy of %d rows (child process, LOAD DATA writer)", small), Unit: "MiB", Target: tgtRSS}, fig, nil)
	return nil
}

// narrowCopy copies the narrow table: INSERT…SELECT, the plain copiers and ferry, interleaved; ferry's
// ceiling is the plain copier with the highest median.
func (b *bench) narrowCopy() error {
	ctx := b.ctx
	plain := func(mode copyMode) runFn {
		return func(int) (Sample, error) {
			defer b.purge()
			if err := b.dst.Exec(ctx, "CREATE DATABASE plain", fmt.Sprintf(narrowDDL, "plain.narrow")); err != nil {
				return Sample{}, err
			}
			cpu := startCPU(b.src, b.dst)
			n, d, err := plainCopy(ctx, b.src, b.dst, srcDB, "narrow", "plain", b.narrow, 3, *workersFlag, 1000, mode)
			c := cpu.stop(0)
			c.Rows = n
			return Sample{Value: rate(n, d), CPU: &c}, err
		}
	}
	modes := []copyMode{modeText, modeLoadData}
	runs := []runFn{func(int) (Sample, error) {
		d, err := insertSelect(ctx, b.src, srcDB, "narrow", narrowDDL)
		b.src.Exec(ctx, "RESET MASTER")
		return Sample{Value: rate(b.narrow, d)}, err
	}}
	for _, m := range modes {
		runs = append(runs, plain(m))
	}
	runs = append(runs, func(int) (Sample, error) {
		defer b.purge()
		cpu := startCPU(b.src, b.dst)
		res, _, childCPU, err := childCopy(ctx, ferryOpts{SrcPort: b.src.Port, DstPort: b.dst.Port, Table: srcDB + ".narrow", DstDB: "ferry_narrow", Workers: *workersFlag, Writer: "loaddata"}, "")
		if err != nil {
			return Sample{}, err
		}
		c := cpu.stop(childCPU)
		c.Rows = res.Rows
		return Sample{Value: float64(res.Rows) / res.Seconds, CPU: &c}, nil
	})
	_, figs, err := b.measureAll("narrow", nil, runs...)
	if err != nil {
		return err
	}
	b.addSeries(&Figure{Name: "ceiling: same-server INSERT…SELECT (narrow)", Unit: "rows/s"}, figs[0], nil)
	var best *Series
	bestName, bestFig := "", ""
	for k, m := range modes {
		name := fmt.Sprintf("ceiling: plain copier, %s, %d workers (narrow)", m, *workersFlag)
		b.addSeries(&Figure{Name: name, Unit: "rows/s"}, figs[1+k], nil)
		if best == nil || figs[1+k].Median() > best.Median() {
			best, bestName, bestFig = figs[1+k], fmt.Sprintf("plain %s x%d, interleaved", m, *workersFlag), name
		}
	}
	b.addSeries(&Figure{Name: "ferry copy, idle (narrow)", Unit: "rows/s", CeilingName: bestName, Target: ">= 1.0x best plain copier", Ref: bestFig}, figs[len(figs)-1], best)
	return nil
}

// inline copies a table with the Inline verifier attached, runs its BeforeCutover pass, changes 1,000
// rows on the source, and times the DuringCutover pass (the part that runs with writes stopped).
func (b *bench) inline() error {
	small := max(b.rows/10, 1000)
	for _, tc := range []struct {
		table string
		rows  int64
	}{{"orders_small", small}, {"orders", b.rows}} {
		_, fig, err := b.measure("inline "+tc.table, nil, func(int) (Sample, error) {
			defer b.purge()
			return b.inlineOne(tc.table)
		})
		if err != nil {
			return err
		}
		if tc.table == "orders" {
			var idle *Series
			if f := b.named[figCopyIdle]; f != nil {
				idle = &Series{Samples: seriesOf(f.Samples)}
			}
			b.addSeries(&Figure{Name: "ferry copy with Inline verifier attached (orders, LOAD DATA writer, in-process)", Unit: "rows/s", CeilingName: "ferry idle, no verifier (copy section)"}, fig.Of("copy_rows_per_s"), idle)
			b.addSeries(&Figure{Name: "verifier Inline BeforeCutover pass (orders)", Unit: "rows/s", CeilingName: "ferry copy rate (copy section)"}, fig.Of("before_rows_per_s"), idle)
		}
		b.addSeries(&Figure{Name: fmt.Sprintf("verifier Inline DuringCutover pass, 1k changed rows, %d-row table", tc.rows), Unit: "ms"}, fig, nil)
	}
	return nil
}

// inlineOne is one run: a copy of table with the Inline verifier attached, its BeforeCutover
// pass, 1,000 changed rows, and the DuringCutover pass (Sample.Value, ms).
func (b *bench) inlineOne(table string) (Sample, error) {
	ctx := b.ctx
	s, err := conn(b.src.Port).Open(ctx)
	if err != nil {
		return Sample{}, err
	}
	defer s.Close()
	t, err := conn(b.dst.Port).Open(ctx)
	if err != nil {
		return Sample{}, err
	}
	defer t.Close()
	iv := &verifier.Inline{Source: s, Target: t}
	stopProf := func() {}
	if table == "orders" {
		stopProf = startProfile(b.profilePath("copy-inline.pprof"))
	}
	r, err := startFerry(ctx, ferryOpts{SrcPort: b.src.Port, DstPort: b.dst.Port, Table: srcDB + "." + table, DstDB: "ferry_inline", Workers: *workersFlag, Writer: "loaddata", Verifier: iv})
	if err != nil {
		return Sample{}, err
	}
	defer func() {
		if r != nil {
			r.finish(ctx)
		}
	}()
	if err := r.F.WaitUntilRowCopyIsComplete(ctx); err != nil {
		return Sample{}, err
	}
	copied := r.rowsCopied()
	copyRate := rate(copied, time.Since(r.t0))
	stopProf()
	if _, err := r.F.FlushBinlog(ctx); err != nil {
		return Sample{}, err
	}
	pairs := r.F.TablePairs()
	start := time.Now()
	res, err := iv.Verify(ctx, verifier.BeforeCutover, pairs)
	if err != nil {
		return Sample{}, err
	}
	full := time.Since(start)
	if !res.Match() {
		return Sample{}, fmt.Errorf("inline BeforeCutover found differences: %s", res)
	}
	// 1,000 changed rows, spread over the table, in 10 transactions.
	db, err := b.src.DB(srcDB)
	if err != nil {
		return Sample{}, err
	}
	defer db.Close()
	rng := rand.New(rand.NewSource(7))
	var maxID int64
	db.QueryRowContext(ctx, "SELECT MAX(id) FROM "+table).Scan(&maxID)
	for i := 0; i < 10; i++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return Sample{}, err
		}
		for j := 0; j < 100; j++ {
			if _, err := tx.ExecContext(ctx, "UPDATE "+table+" SET quantity = COALESCE(quantity, 0) + 1, updated_at = NOW(6) WHERE id = ?", 1+rng.Int63n(maxID)); err != nil {
				tx.Rollback()
				return Sample{}, err
			}
		}
		if err := tx.Commit(); err != nil {
			return Sample{}, err
		}
	}
	if _, err := r.F.FlushBinlog(ctx); err != nil {
		return Sample{}, err
	}
	start = time.Now()
	res, err = iv.Verify(ctx, verifier.DuringCutover, pairs)
	if err != nil {
		return Sample{}, err
	}
	during := time.Since(start)
	note := ""
	if !res.Match() {
		note = "MISMATCH: " + res.String()
	}
	err = r.finish(ctx)
	r = nil
	if err != nil {
		return Sample{}, err
	}
	return Sample{Value: ms(during), Note: note, Also: map[string]float64{"copy_rows_per_s": copyRate, "before_rows_per_s": rate(copied, full)}}, nil
}

// apply measures the binlog apply rate of the serial writer (ApplyWorkers=1, the ceiling) and of
// the parallel one (-apply-workers) in the same runs. Two Ferries stream the same source table into
// two target databases, each behind its own gate. Burst: row events are written on the source while
// both gates are closed (events queue, nothing is applied), then each gate opens in turn and the
// time to apply the burst is measured (serial, then parallel, -runs times). Sustained: a paced
// stream at the load generator's rate with one writer open at a time (the other catches up
// unmeasured afterwards): the rate found for the parallel writer, and the serial writer's lag at
// that same rate.
func (b *bench) apply() error {
	ctx := b.ctx
	n := min(max(b.rows/20, 5000), 50_000)
	if err := b.src.Exec(ctx, fmt.Sprintf(ordersDDL, srcDB+".apply_t"),
		fmt.Sprintf("INSERT INTO %s.apply_t SELECT * FROM %s.orders ORDER BY id LIMIT %d", srcDB, srcDB, n)); err != nil {
		return err
	}
	defer b.src.Exec(context.WithoutCancel(ctx), "DROP TABLE "+srcDB+".apply_t")
	type writer struct {
		name string
		g    *gate
		r    *ferryRun
		w    *ferry.TargetBinlogWriter
	}
	var ws []*writer
	defer func() {
		for _, x := range ws {
			if x.r != nil {
				x.g.set(false)
				x.r.finish(ctx)
			}
		}
	}()
	for i, workers := range []int{1, *applyWorkersFlag} {
		x := &writer{name: fmt.Sprintf("ApplyWorkers=%d", workers), g: &gate{}}
		r, err := startFerry(ctx, ferryOpts{SrcPort: b.src.Port, DstPort: b.dst.Port, Table: srcDB + ".apply_t", DstDB: fmt.Sprintf("ferry_apply%d", i),
			Workers: *workersFlag, Throttler: x.g, ApplyWorkers: workers})
		if err != nil {
			return err
		}
		x.r = r
		ws = append(ws, x)
		if err := r.F.WaitUntilRowCopyIsComplete(ctx); err != nil {
			return err
		}
		if _, err := r.F.FlushBinlog(ctx); err != nil {
			return err
		}
		w, ok := r.F.BinlogWriter.(*ferry.TargetBinlogWriter)
		if !ok {
			return errors.New("binlog writer is not the default TargetBinlogWriter")
		}
		x.w = w
	}
	serial, parallel := ws[0], ws[1]
	db, err := b.src.DB(srcDB)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(8)
	// catchUp opens x's gate and applies what it queued while closed (not measured).
	catchUp := func(x *writer) error {
		x.g.set(false)
		_, err := x.r.F.FlushBinlog(ctx)
		return err
	}

	// The burst: UPDATEs of 100 rows per transaction, in key order sweeps, on 2 connections,
	// generated by the serial run of each pair; the parallel run applies the same events.
	burst := int64(200_000)
	if *quickFlag {
		burst = 50_000
	}
	genRate := 0.0
	applyBurst := func(x *writer) (Sample, error) {
		base := x.w.EventsApplied()
		stopProf := startProfile(b.profilePath("apply-" + x.name + ".pprof"))
		cpu := startCPU(b.src, b.dst)
		x.g.set(false)
		start := time.Now()
		if _, err := x.r.F.FlushBinlog(ctx); err != nil {
			stopProf()
			return Sample{}, err
		}
		d := time.Since(start)
		c := cpu.stop(0)
		stopProf()
		applied := x.w.EventsApplied() - base
		c.Rows = applied
		return Sample{Value: rate(applied, d), CPU: &c, Also: map[string]float64{"events": float64(applied), "generated_per_s": genRate}}, nil
	}
	ser, pars, err := b.measureAll("apply burst", func(int) (Sample, error) {
		serial.g.set(true)
		parallel.g.set(true)
		genStart := time.Now()
		if err := updateSweep(ctx, db, "apply_t", int64(n), burst, 2); err != nil {
			return Sample{}, err
		}
		genRate = rate(burst, time.Since(genStart))
		return applyBurst(serial)
	}, func(int) (Sample, error) { return applyBurst(parallel) })
	if err != nil {
		return err
	}
	b.addSeries(&Figure{Name: fmt.Sprintf("binlog apply, burst, parallel (%s; ceiling: ApplyWorkers=1)", parallel.name), Unit: "events/s", Target: tgtApply,
		Note: fmt.Sprintf("%d row events (orders-like rows, 100-row UPDATE transactions) queued behind a closed gate, then applied by each writer in turn; generated on the source at %s events/s; deadlocks between workers rerun: %d", burst, pars[0].Of("generated_per_s").Summary(), parallel.w.DeadlocksRerun())}, pars[0], ser)
	b.addSeries(&Figure{Name: "binlog apply, burst, serial (ApplyWorkers=1)", Unit: "events/s", Target: tgtApply}, ser, nil)

	// Sustained: a paced stream for 8 s per run, one writer open at a time. The rate is searched
	// for the parallel writer first (single runs, not figures): 80% of its burst median, 20% lower
	// each time lag passes 1 s; then -runs runs at the rate found, each writer in turn. The
	// generator needs CPU too (the source executes the UPDATEs): on a 2-core machine the sustained
	// rate is bounded by source + target + Go CPU together, not by the apply alone.
	paced := func(x, other *writer, target float64) (Sample, error) {
		if err := catchUp(x); err != nil {
			return Sample{}, err
		}
		other.g.set(true)
		lag := sampleLag(x.r.F)
		base := x.w.EventsApplied()
		cpu := startCPU(b.src, b.dst)
		got, err := pacedUpdates(ctx, db, "apply_t", int64(n), target, 8*time.Second)
		if err != nil {
			lag.Stop()
			return Sample{}, err
		}
		backlog := x.w.Backlog()
		if _, err := x.r.F.FlushBinlog(ctx); err != nil {
			lag.Stop()
			return Sample{}, err
		}
		c := cpu.stop(0)
		c.Rows = x.w.EventsApplied() - base
		maxLag, p99 := lag.Stop()
		return Sample{Value: got, CPU: &c, Also: map[string]float64{"lag_max_ms": ms(maxLag), "lag_p99_ms": ms(p99), "backlog": float64(backlog)}}, nil
	}
	target := pars[0].Median() * 0.8
	for attempt := 0; attempt < 6; attempt++ {
		s, err := paced(parallel, serial, target)
		if err != nil {
			return err
		}
		if s.Also["lag_max_ms"] < 1000 {
			break
		}
		logf("apply: parallel lag %.0f ms at %.0f events/s (writer backlog %.0f batches), trying lower", s.Also["lag_max_ms"], target, s.Also["backlog"])
		target *= 0.8
	}
	susSer, susPar, err := b.measureAll("apply sustained", func(int) (Sample, error) { return paced(serial, parallel, target) },
		func(int) (Sample, error) { return paced(parallel, serial, target) })
	if err != nil {
		return err
	}
	for _, f := range []struct {
		x *writer
		s *Series
	}{{parallel, susPar[0]}, {serial, susSer}} {
		name := fmt.Sprintf("binlog apply, sustained, %s, lag < 1 s", f.x.name)
		if _, _, hi := medianRange(f.s.Of("lag_max_ms").Values()); hi >= 1000 {
			name = fmt.Sprintf("binlog apply, sustained, %s (lag NOT under 1 s in every run)", f.x.name)
		}
		b.addSeries(&Figure{Name: name, Unit: "events/s", Target: tgtApply,
			Note: fmt.Sprintf("paced for 8 s per run at %.0f events/s (the rate the parallel writer keeps under 1 s of lag) in 50-row UPDATE transactions, the two writers in turn; lag max %s ms, p99 %s ms", target, f.s.Of("lag_max_ms").Summary(), f.s.Of("lag_p99_ms").Summary())}, f.s, nil)
	}
	for _, x := range ws {
		x.g.set(false)
		r := x.r
		x.r = nil
		if err := r.finish(ctx); err != nil {
			return err
		}
	}
	return nil
}

func sourcePos(ctx context.Context, db *sql.DB) (ferry.Position, error) {
	rows, err := db.QueryContext(ctx, "SHOW MASTER STATUS")
	if err != nil {
		return ferry.Position{}, err
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if !rows.Next() {
		return ferry.Position{}, errors.New("SHOW MASTER STATUS: no row")
	}
	if err := rows.Scan(ptrs...); err != nil {
		return ferry.Position{}, err
	}
	var pos uint32
	fmt.Sscanf(string(vals[1]), "%d", &pos)
	return ferry.Position{File: string(vals[0]), Pos: pos}, nil
}

// updateSweep writes `events` row updates as 100-row UPDATE transactions over `workers` connections.
func updateSweep(ctx context.Context, db *sql.DB, table string, rows, events int64, workers int) error {
	per := int64(100)
	ch := make(chan int64)
	errc := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func() {
			var err error
			for lo := range ch {
				if err == nil {
					_, err = db.ExecContext(ctx, "UPDATE "+table+" SET quantity = COALESCE(quantity, 0) + 1, updated_at = NOW(6) WHERE id BETWEEN ? AND ?", lo, lo+per-1)
				}
			}
			errc <- err
		}()
	}
	for i := int64(0); i < events/per; i++ {
		ch <- 1 + (i*per)%max(rows-per, 1)
	}
	close(ch)
	var err error
	for w := 0; w < workers; w++ {
		err = errors.Join(err, <-errc)
	}
	return err
}

// pacedUpdates writes about `rate` row updates per second for d, in 50-row UPDATEs, and returns the
// achieved rate.
func pacedUpdates(ctx context.Context, db *sql.DB, table string, rows int64, rate float64, d time.Duration) (float64, error) {
	per := int64(50)
	interval := time.Duration(float64(time.Second) * float64(per) / rate)
	start := time.Now()
	next := start
	var done int64
	i := int64(0)
	sem := make(chan struct{}, 4)
	errc := make(chan error, 1)
	for time.Since(start) < d {
		next = next.Add(interval)
		if w := time.Until(next); w > 0 {
			time.Sleep(w)
		}
		lo := 1 + (i*per*7919)%max(rows-per, 1)
		i++
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			if _, err := db.ExecContext(ctx, "UPDATE "+table+" SET quantity = COALESCE(quantity, 0) + 1, updated_at = NOW(6) WHERE id BETWEEN ? AND ?", lo, lo+per-1); err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		}()
		done += per
	}
	for j := 0; j < cap(sem); j++ {
		sem <- struct{}{}
	}
	select {
	case err := <-errc:
		return 0, err
	default:
	}
	return float64(done) / time.Since(start).Seconds(), nil
}

// cutovers runs -cutovers small ferry runs under the mixed load, each ending with Cutover; the lock
// hook pauses the load generator (waiting for in-flight writes), the unlock hook resumes it. The
// write-blocked window is CutoverReport.Blocked: from the lock to the unlock.
func (b *bench) cutovers() error {
	ctx := b.ctx
	const cutRows = 10_000
	if err := b.src.Exec(ctx, fmt.Sprintf(ordersDDL, srcDB+".cut"),
		fmt.Sprintf("INSERT INTO %s.cut SELECT * FROM %s.orders ORDER BY id LIMIT %d", srcDB, srcDB, cutRows)); err != nil {
		return err
	}
	defer b.src.Exec(context.WithoutCancel(ctx), "DROP TABLE "+srcDB+".cut")
	db, err := b.src.DB(srcDB)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(16)
	_, fig, err := b.measure("cut-overs", nil, func(int) (Sample, error) {
		load := startLoad(db, "cut", *loadFlag, cutRows, 8)
		var blocked, flush []time.Duration
		for i := 0; i < *cutoversFlag; i++ {
			dst := fmt.Sprintf("cut_%d", i)
			r, err := startFerry(ctx, ferryOpts{SrcPort: b.src.Port, DstPort: b.dst.Port, Table: srcDB + ".cut", DstDB: dst, Workers: *workersFlag})
			if err != nil {
				load.Stop()
				return Sample{}, err
			}
			time.Sleep(300 * time.Millisecond) // some streaming under load before the cut-over
			co := &ferry.Cutover{Ferry: r.F, Hooks: ferry.HookFuncs{
				LockFunc:   func(context.Context) error { load.Pause(); return nil },
				UnlockFunc: func(context.Context, bool) error { load.Resume(); return nil },
			}}
			rep, err := co.Run(ctx)
			if err == nil {
				err = <-r.done
			}
			r.F.Close()
			if err != nil {
				load.Stop()
				return Sample{}, fmt.Errorf("cut-over %d: %w", i, err)
			}
			blocked = append(blocked, rep.Blocked)
			flush = append(flush, rep.Flush)
			b.dst.Exec(ctx, "DROP DATABASE "+dst)
		}
		achieved, lerr := load.Stop()
		s := Sample{Value: ms(percentile(blocked, 0.5)), Also: map[string]float64{"p99": ms(percentile(blocked, 0.99)), "max": ms(percentile(blocked, 1)),
			"flush_p50": ms(percentile(flush, 0.5)), "flush_p99": ms(percentile(flush, 0.99)), "achieved": achieved}}
		if lerr != nil {
			s.Note = fmt.Sprintf("load error: %v", lerr)
		}
		return s, nil
	})
	if err != nil {
		return err
	}
	note := fmt.Sprintf("each run: %d cut-overs of a 10k-row table; percentiles per run, medians (range) of the runs: blocked max %s ms; flush-under-lock p50 %s ms, p99 %s ms; load achieved %s writes/s",
		*cutoversFlag, fig.Of("max").Summary(), fig.Of("flush_p50").Summary(), fig.Of("flush_p99").Summary(), fig.Of("achieved").Summary())
	b.addSeries(&Figure{Name: "Ferry cut-over write-blocked window, p50", Unit: "ms", Target: tgtCutover}, fig, nil)
	b.addSeries(&Figure{Name: "Ferry cut-over write-blocked window, p99", Unit: "ms", Target: tgtCutover, Note: note}, fig.Of("p99"), nil)
	return nil
}
