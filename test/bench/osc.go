package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/ferrykit/ferry/osc"
)

var (
	oscWorkers   = flag.Int("osc-workers", 0, "CopyWorkers of the online schema change (0: the library's default)")
	childOSCFlag = flag.String("child-osc", "", "internal: run one online schema change described by this JSON and print the result")
)

// oscOpts describes one online schema change run in a child process.
type oscOpts struct {
	Port      int    `json:"port"`
	Table     string `json:"table"`
	Alter     string `json:"alter"`
	ChunkSize int    `json:"chunk_size,omitempty"`
	Workers   int    `json:"workers,omitempty"`
}

// oscChildResult is what the osc child prints.
type oscChildResult struct {
	Rows          int64     `json:"rows"`
	CopySeconds   float64   `json:"copy_s"`  // from the start until the copy was complete
	TotalSeconds  float64   `json:"total_s"` // the whole migration, cut-over included
	LagP99        float64   `json:"lag_p99_ms"`
	LagMax        float64   `json:"lag_max_ms"`
	Blocked       []float64 `json:"blocked_ms"`
	VerifySeconds float64   `json:"verify_s"`       // in the verification pass before the cut-over
	PeakRSS       int64     `json:"peak_rss_bytes"` // the child's own VmHWM
	// Phases is the time spent in each state of the migration (sampled every 20ms).
	Phases map[string]float64 `json:"phases_s"`
	Error  string             `json:"error,omitempty"`
}

// oscChildMain runs one migration in its own process, so that its peak RSS and CPU are its alone.
// It samples the apply lag every 20ms while the copy and catch-up run.
func oscChildMain(spec, cpuProfile string) {
	res := oscChildResult{}
	defer func() { json.NewEncoder(os.Stdout).Encode(res) }()
	var o oscOpts
	if err := json.Unmarshal([]byte(spec), &o); err != nil {
		res.Error = err.Error()
		return
	}
	defer startProfile(cpuProfile)()
	var mu sync.Mutex
	var copyEnd time.Time
	var lags []time.Duration
	var verifying time.Duration
	phases := map[string]float64{}
	last := time.Now()
	start := last
	m := &osc.Migration{Conn: conn(o.Port), Database: srcDB, Table: o.Table, Alter: o.Alter, Execute: true, DropOldTable: true,
		ChunkSize: o.ChunkSize, CopyWorkers: o.Workers, StatusInterval: 20 * time.Millisecond, Logger: quietLogger(),
		OnStatus: func(s osc.Status) {
			mu.Lock()
			defer mu.Unlock()
			now := time.Now()
			if s.State == osc.StateVerifying {
				verifying += now.Sub(last)
			}
			phases[s.State] += now.Sub(last).Seconds()
			last = now
			if s.State == osc.StateCopying || s.State == osc.StateCatchingUp {
				lags = append(lags, s.Lag)
			}
			if copyEnd.IsZero() && s.State != osc.StateCopying && s.State != osc.StateValidating && s.RowsCopied > 0 {
				copyEnd = time.Now()
			}
		}}
	r, err := m.Run(context.Background())
	if err != nil {
		res.Error = err.Error()
		return
	}
	mu.Lock()
	defer mu.Unlock()
	if copyEnd.IsZero() {
		copyEnd = start.Add(r.Elapsed)
	}
	res.Rows = r.RowsCopied
	res.CopySeconds = copyEnd.Sub(start).Seconds()
	res.TotalSeconds = r.Elapsed.Seconds()
	res.VerifySeconds = verifying.Seconds()
	res.Phases = phases
	res.LagP99, res.LagMax = ms(percentile(lags, 0.99)), ms(percentile(lags, 1))
	for _, d := range r.WriteBlocked {
		res.Blocked = append(res.Blocked, ms(d))
	}
	res.PeakRSS = peakRSS()
}

// peakRSS is this process's peak resident set (VmHWM). Unlike the rusage of a child, which starts
// from the RSS of the parent that forked it, it counts this program's own memory only.
func peakRSS() int64 {
	return vmHWMKB("/proc/self/status") << 10
}

// oscChild runs a migration in a child process and returns its result and the child's CPU time.
func oscChild(ctx context.Context, o oscOpts, cpuProfile string) (oscChildResult, time.Duration, error) {
	var res oscChildResult
	ps, err := runChild(ctx, "-child-osc", o, cpuProfile, &res)
	if err == nil && res.Error != "" {
		err = errors.New("osc child: " + res.Error)
	}
	if err != nil {
		return res, 0, err
	}
	return res, ps.UserTime() + ps.SystemTime(), nil
}

// ptOSC runs pt-online-schema-change (its defaults: chunks sized to 0.5 s, triggers on the table)
// and returns its wall time.
func (b *bench) ptOSC(ctx context.Context, table, alter string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, "pt-online-schema-change", "--alter", alter, "--execute",
		"--recursion-method=none", "--no-check-replication-filters", "--set-vars", "sql_mode='STRICT_ALL_TABLES'",
		fmt.Sprintf("h=127.0.0.1,P=%d,u=root,D=%s,t=%s", b.src.Port, srcDB, table))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pt-online-schema-change: %w: %s", err, out)
	}
	return time.Since(start), nil
}

// osc measures the online schema change against its ceiling (a single INSERT … SELECT of the
// whole table) and against pt-online-schema-change as a peer, on the orders table, idle and under
// the mixed load, all interleaved (-runs times: ceiling, ferry idle, pt-osc idle, the load alone,
// ferry under load at chunk 1000 and 5000, pt-osc under load), so that every tool sees the same
// machine. Every migration adds a column, dropped again in place (metadata only) after it. Under
// load it reports what the application saw during each run (its writes/s and p99 latency),
// ferry's apply lag p99 and the migration's peak RSS (each migration runs in a child process).
// Then the atomic cut-over's write-blocked window over -cutovers migrations of a 10k-row table
// under load.
func (b *bench) osc() error {
	ctx := b.ctx
	db, err := b.src.DB(srcDB)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(16)
	_, ptErr := exec.LookPath("pt-online-schema-change")
	if ptErr != nil {
		logf("osc: pt-online-schema-change is not installed (scripts/bench-deps.sh installs it): the peer figures are not measured")
	}
	rows := float64(b.rows)
	dropCol := func(col string) error {
		return b.src.Exec(ctx, "ALTER TABLE "+srcDB+".orders DROP COLUMN "+col+", ALGORITHM=INSTANT", "RESET MASTER")
	}
	// withLoad runs f under the mixed load and returns what the application saw meanwhile.
	withLoad := func(f func() error) (ops, p99 float64, err error) {
		l := startLoad(db, "orders", *loadFlag, b.rows, 8)
		err = f()
		ops, _ = l.Stop()
		return ops, ms(l.Latency(0.99)), err
	}
	// sample runs a migration, under the load or not, recording what the application saw.
	sample := func(underLoad bool, run func() error) (Sample, error) {
		s := Sample{Also: map[string]float64{}}
		if !underLoad {
			return s, run()
		}
		ops, p99, err := withLoad(run)
		s.Also["app_ops"], s.Also["app_p99"] = ops, p99
		return s, err
	}
	ferryRun := func(underLoad bool, chunk int) runFn {
		return func(i int) (Sample, error) {
			prof := ""
			if i == 0 && !underLoad {
				prof = b.profilePath("osc.pprof")
			}
			var res oscChildResult
			var childCPU time.Duration
			cpu := startCPU(b.src, b.dst)
			s, err := sample(underLoad, func() error {
				var err error
				res, childCPU, err = oscChild(ctx, oscOpts{Port: b.src.Port, Table: "orders", Alter: "ADD COLUMN osc_c INT NULL", ChunkSize: chunk, Workers: *oscWorkers}, prof)
				return err
			})
			if err != nil {
				return s, err
			}
			if err := dropCol("osc_c"); err != nil {
				return s, err
			}
			c := cpu.stop(childCPU)
			c.Rows = res.Rows
			s.CPU = &c
			s.Value = float64(res.Rows) / res.CopySeconds
			s.Also["total"] = rows / res.TotalSeconds
			s.Also["unverified"] = rows / (res.TotalSeconds - res.VerifySeconds)
			s.Also["verify_s"] = res.VerifySeconds
			s.Also["elapsed_s"] = res.TotalSeconds
			s.Also["lag_p99"] = res.LagP99
			s.Also["rss"] = float64(res.PeakRSS) / (1 << 20)
			for _, st := range []string{osc.StateValidating, osc.StateCopying, osc.StateCatchingUp, osc.StateVerifying, osc.StateCutover} {
				s.Also["phase "+st] = res.Phases[st]
			}
			return s, nil
		}
	}
	ptRun := func(underLoad bool) runFn {
		return func(int) (Sample, error) {
			var took time.Duration
			s, err := sample(underLoad, func() error {
				var err error
				took, err = b.ptOSC(ctx, "orders", "ADD COLUMN pt_c INT NULL")
				return err
			})
			if err != nil {
				return s, err
			}
			s.Value = rows / took.Seconds()
			return s, dropCol("pt_c")
		}
	}
	loadAlone := func(int) (Sample, error) {
		ops, p99, err := withLoad(func() error {
			select {
			case <-time.After(5 * time.Second):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		return Sample{Value: ops, Also: map[string]float64{"app_p99": p99}}, err
	}
	runs := []runFn{ferryRun(false, 0), loadAlone, ferryRun(true, 1000), ferryRun(true, 5000)}
	if ptErr == nil {
		runs = append(runs, ptRun(false), ptRun(true))
	}
	ceil, figs, err := b.measureAll("osc", b.insertSelectRun, runs...)
	if err != nil {
		return err
	}
	idle, alone, load1k, load5k := figs[0], figs[1], figs[2], figs[3]
	phases := func(s *Series) string {
		var out []string
		for _, st := range []string{osc.StateValidating, osc.StateCopying, osc.StateCatchingUp, osc.StateVerifying, osc.StateCutover} {
			out = append(out, st+" "+s.Of("phase "+st).Summary())
		}
		return "; seconds per state (until the cut-over's end): " + strings.Join(out, ", ")
	}
	var ptIdle, ptLoad *Series
	if ptErr == nil {
		ptIdle, ptLoad = figs[4], figs[5]
	}
	b.addSeries(&Figure{Name: "ceiling: same-server INSERT…SELECT (orders), interleaved with the OSC runs", Unit: "rows/s"}, ceil, nil)
	b.addSeries(&Figure{Name: "OSC copy, idle (orders, ADD COLUMN)", Unit: "rows/s", CeilingName: "INSERT…SELECT, interleaved", Target: ">= 0.9x INSERT…SELECT",
		Ref: figInsertSelect, Note: "whole migration " + idle.Of("elapsed_s").Summary() + " s, of which the verification pass " + idle.Of("verify_s").Summary() + " s"}, idle, ceil)
	b.addSeries(&Figure{Name: fmt.Sprintf("OSC copy under %.0f writes/s (orders, ADD COLUMN, chunk 1000)", *loadFlag), Unit: "rows/s", CeilingName: "INSERT…SELECT, interleaved", Target: ">= 0.9x INSERT…SELECT",
		Note: "whole migration " + load1k.Of("elapsed_s").Summary() + " s, of which the verification pass " + load1k.Of("verify_s").Summary() + " s"}, load1k, ceil)
	b.addSeries(&Figure{Name: fmt.Sprintf("OSC copy under %.0f writes/s (orders, ADD COLUMN, chunk 5000)", *loadFlag), Unit: "rows/s", CeilingName: "INSERT…SELECT, interleaved"}, load5k, ceil)
	peer := func(name string, fig, pt *Series, note string) {
		f := &Figure{Name: name, Unit: "rows/s", CeilingName: "pt-online-schema-change, interleaved", Target: "faster than pt-osc", Note: note}
		if pt == nil {
			f.Note += "; pt-osc not measured (not installed)"
		}
		b.addSeries(f, fig, pt)
	}
	peer("OSC whole migration idle (table rows / wall time), ferry vs pt-osc", idle.Of("total"), ptIdle, "ferry verifies the copy before its cut-over (a checksum of both tables); pt-osc does not"+phases(idle))
	peer("OSC whole migration idle without ferry's verification pass, vs pt-osc", idle.Of("unverified"), ptIdle, "ferry's wall time minus its verification pass: the work pt-osc does")
	peer(fmt.Sprintf("OSC whole migration under %.0f writes/s, ferry vs pt-osc", *loadFlag), load1k.Of("total"), ptLoad, "ferry verifies, pt-osc does not"+phases(load1k))
	peer(fmt.Sprintf("OSC whole migration under %.0f writes/s without ferry's verification pass, vs pt-osc", *loadFlag), load1k.Of("unverified"), ptLoad, "")
	b.addSeries(&Figure{Name: "app writes/s, the load alone", Unit: "ops/s", Note: fmt.Sprintf("offered %.0f writes/s by 8 clients", *loadFlag)}, alone, nil)
	b.addSeries(&Figure{Name: "app writes/s during ferry's migration (chunk 1000)", Unit: "ops/s", CeilingName: "the load alone, interleaved", Target: "as the load alone"}, load1k.Of("app_ops"), alone)
	if ptLoad != nil {
		b.addSeries(&Figure{Name: "app writes/s during pt-osc's migration", Unit: "ops/s", CeilingName: "the load alone, interleaved"}, ptLoad.Of("app_ops"), alone)
	}
	b.addSeries(&Figure{Name: "app write latency p99, the load alone", Unit: "ms"}, alone.Of("app_p99"), nil)
	b.addSeries(&Figure{Name: "app write latency p99 during ferry's migration (chunk 1000)", Unit: "ms", Target: "as the load alone"}, load1k.Of("app_p99"), nil)
	if ptLoad != nil {
		b.addSeries(&Figure{Name: "app write latency p99 during pt-osc's migration", Unit: "ms"}, ptLoad.Of("app_p99"), nil)
	}
	b.addSeries(&Figure{Name: "OSC apply lag p99 under load, chunk 1000", Unit: "ms", Target: "< 200 ms"}, load1k.Of("lag_p99"), nil)
	b.addSeries(&Figure{Name: "OSC apply lag p99 under load, chunk 5000", Unit: "ms", Target: "< 200 ms"}, load5k.Of("lag_p99"), nil)
	b.addSeries(&Figure{Name: "OSC peak RSS under load, chunk 1000 (child process)", Unit: "MiB", Target: "flat in chunk size"}, load1k.Of("rss"), nil)
	b.addSeries(&Figure{Name: "OSC peak RSS under load, chunk 5000 (child process)", Unit: "MiB", Target: "flat in chunk size"}, load5k.Of("rss"), nil)

	// The cut-over window: in-process migrations of a small table, alternately adding and dropping
	// a column.
	hasCol := false
	alter := func() string {
		hasCol = !hasCol
		if hasCol {
			return "ADD COLUMN osc_c INT NULL"
		}
		return "DROP COLUMN osc_c"
	}
	run := func(table, alter string) (*osc.Result, error) {
		m := &osc.Migration{Conn: conn(b.src.Port), Database: srcDB, Table: table, Alter: alter, Execute: true, DropOldTable: true, Logger: quietLogger()}
		return m.Run(ctx)
	}
	const cutRows = 10_000
	if err := b.src.Exec(ctx, fmt.Sprintf(ordersDDL, srcDB+".osc_cut"),
		fmt.Sprintf("INSERT INTO %s.osc_cut SELECT * FROM %s.orders ORDER BY id LIMIT %d", srcDB, srcDB, cutRows)); err != nil {
		return err
	}
	defer b.src.Exec(context.WithoutCancel(ctx), "DROP TABLE "+srcDB+".osc_cut")
	_, cut, err := b.measure("osc cut-overs", nil, func(int) (Sample, error) {
		load := startLoad(db, "osc_cut", *loadFlag, cutRows, 8)
		var blocked []time.Duration
		attempts := 0
		for i := 0; i < *cutoversFlag; i++ {
			res, err := run("osc_cut", alter())
			if err != nil {
				load.Stop()
				return Sample{}, fmt.Errorf("osc cut-over %d: %w", i, err)
			}
			attempts += res.CutoverAttempts
			blocked = append(blocked, res.WriteBlocked...)
		}
		achieved, _ := load.Stop()
		return Sample{Value: ms(percentile(blocked, 0.5)), Also: map[string]float64{"p99": ms(percentile(blocked, 0.99)), "max": ms(percentile(blocked, 1)),
			"attempts": float64(attempts), "achieved": achieved}}, nil
	})
	if err != nil {
		return err
	}
	note := fmt.Sprintf("each run: %d migrations of a 10k-row table; percentiles per run, medians (range) of the runs: cut-over attempts %s, max %s ms; load achieved %s writes/s",
		*cutoversFlag, cut.Of("attempts").Summary(), cut.Of("max").Summary(), cut.Of("achieved").Summary())
	b.addSeries(&Figure{Name: "OSC atomic cut-over write-blocked window, p50", Unit: "ms", Target: tgtCutover}, cut, nil)
	b.addSeries(&Figure{Name: "OSC atomic cut-over write-blocked window, p99", Unit: "ms", Target: tgtCutover, Note: note}, cut.Of("p99"), nil)
	return nil
}
