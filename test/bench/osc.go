package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ferrykit/ferry/osc"
)

// osc measures the online schema change: its copy rate idle and under the mixed load (on the orders
// table itself), and the atomic cut-over's write-blocked window over -cutovers migrations of a
// 10k-row table under load.
func (b *bench) osc() error {
	ctx := b.ctx
	run := func(table, alter string) (*osc.Result, float64, error) {
		var mu sync.Mutex
		var copyEnd time.Time
		start := time.Now()
		m := &osc.Migration{Conn: conn(b.src.Port), Database: srcDB, Table: table, Alter: alter, Execute: true, DropOldTable: true,
			StatusInterval: 50 * time.Millisecond, Logger: quietLogger(),
			OnStatus: func(s osc.Status) {
				mu.Lock()
				defer mu.Unlock()
				if copyEnd.IsZero() && s.State != osc.StateCopying && s.State != osc.StateValidating && s.RowsCopied > 0 {
					copyEnd = time.Now()
				}
			}}
		res, err := m.Run(ctx)
		if err != nil {
			return nil, 0, err
		}
		mu.Lock()
		end := copyEnd
		mu.Unlock()
		if end.IsZero() {
			end = start.Add(res.Elapsed)
		}
		return res, float64(res.RowsCopied) / end.Sub(start).Seconds(), nil
	}
	// The ceiling (one INSERT…SELECT of the whole table), the OSC copy idle and under the load,
	// interleaved. Successive migrations alternate ADD COLUMN and DROP COLUMN of osc_c.
	hasCol := false
	alter := func() string {
		hasCol = !hasCol
		if hasCol {
			return "ADD COLUMN osc_c INT NULL"
		}
		return "DROP COLUMN osc_c"
	}
	db, err := b.src.DB(srcDB)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(16)
	oscRun := func(underLoad bool) runFn {
		return func(int) (Sample, error) {
			var load *loadGen
			if underLoad {
				load = startLoad(db, "orders", *loadFlag, b.rows, 8)
				time.Sleep(time.Second)
			}
			stopProf := func() {}
			if !underLoad {
				stopProf = startProfile(b.profilePath("osc.pprof"))
			}
			cpu := startCPU(b.src, b.dst)
			res, r, err := run("orders", alter())
			stopProf()
			c := cpu.stop(0)
			var achieved float64
			if load != nil {
				achieved, _ = load.Stop()
			}
			b.src.Exec(ctx, "RESET MASTER")
			if err != nil {
				return Sample{}, err
			}
			c.Rows = res.RowsCopied
			return Sample{Value: r, CPU: &c, Also: map[string]float64{"achieved": achieved, "elapsed_s": res.Elapsed.Seconds()}}, nil
		}
	}
	ceil, figs, err := b.measureAll("osc copy", b.insertSelectRun, oscRun(false), oscRun(true))
	if hasCol { // leave orders as it was
		if _, _, err := run("orders", alter()); err != nil {
			return err
		}
		b.src.Exec(ctx, "RESET MASTER")
	}
	if err != nil {
		return err
	}
	b.addSeries(&Figure{Name: "ceiling: same-server INSERT…SELECT (orders), interleaved with the OSC runs", Unit: "rows/s"}, ceil, nil)
	b.addSeries(&Figure{Name: "OSC copy, idle (orders, ADD/DROP COLUMN)", Unit: "rows/s", CeilingName: "INSERT…SELECT, interleaved", Target: ">= 0.9x INSERT…SELECT",
		Ref: figInsertSelect, Note: "whole migration " + figs[0].Of("elapsed_s").Summary() + " s"}, figs[0], ceil)
	b.addSeries(&Figure{Name: fmt.Sprintf("OSC copy under %.0f writes/s (orders, ADD/DROP COLUMN)", *loadFlag), Unit: "rows/s", CeilingName: "INSERT…SELECT, interleaved", Target: ">= 0.9x INSERT…SELECT",
		Note: "load achieved " + figs[1].Of("achieved").Summary() + " writes/s"}, figs[1], ceil)

	const cutRows = 10_000
	if err := b.src.Exec(ctx, fmt.Sprintf(ordersDDL, srcDB+".osc_cut"),
		fmt.Sprintf("INSERT INTO %s.osc_cut SELECT * FROM %s.orders ORDER BY id LIMIT %d", srcDB, srcDB, cutRows)); err != nil {
		return err
	}
	defer b.src.Exec(context.WithoutCancel(ctx), "DROP TABLE "+srcDB+".osc_cut")
	hasCol = false
	_, cut, err := b.measure("osc cut-overs", nil, func(int) (Sample, error) {
		load := startLoad(db, "osc_cut", *loadFlag, cutRows, 8)
		var blocked []time.Duration
		attempts := 0
		for i := 0; i < *cutoversFlag; i++ {
			res, _, err := run("osc_cut", alter())
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
