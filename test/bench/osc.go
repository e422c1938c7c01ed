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
	is := b.value("ceiling: same-server INSERT…SELECT (orders)")
	stopProf := startProfile(b.profilePath("osc.pprof"))
	cpu := startCPU(b.src, b.dst)
	res, r, err := run("orders", "ADD COLUMN osc_c INT NULL")
	stopProf()
	if err != nil {
		return fmt.Errorf("osc idle: %w", err)
	}
	c := cpu.stop(0)
	c.Rows = res.RowsCopied
	b.add(&Figure{Name: "OSC copy, idle (orders, ADD COLUMN)", Value: r, Unit: "rows/s", Ceiling: is, CeilingName: "INSERT…SELECT", Target: ">= 0.9x INSERT…SELECT", CPU: &c, Ref: "ceiling: same-server INSERT…SELECT (orders)",
		Note: fmt.Sprintf("%d rows in %.1fs total; cut-over blocked %v", res.RowsCopied, res.Elapsed.Seconds(), res.WriteBlocked)})
	b.src.Exec(ctx, "RESET MASTER")

	db, err := b.src.DB(srcDB)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(16)
	load := startLoad(db, "orders", *loadFlag, b.rows, 8)
	time.Sleep(time.Second)
	cpu = startCPU(b.src, b.dst)
	res, r, err = run("orders", "DROP COLUMN osc_c")
	achieved, _ := load.Stop()
	if err != nil {
		return fmt.Errorf("osc under load: %w", err)
	}
	c = cpu.stop(0)
	c.Rows = res.RowsCopied
	b.add(&Figure{Name: fmt.Sprintf("OSC copy under %.0f writes/s (orders, DROP COLUMN)", *loadFlag), Value: r, Unit: "rows/s", Ceiling: is, CeilingName: "INSERT…SELECT", Target: ">= 50k rows/s", CPU: &c,
		Note: fmt.Sprintf("load achieved %.0f writes/s; cut-over blocked %v", achieved, res.WriteBlocked)})
	b.src.Exec(ctx, "RESET MASTER")

	const cutRows = 10_000
	if err := b.src.Exec(ctx, fmt.Sprintf(ordersDDL, srcDB+".osc_cut"),
		fmt.Sprintf("INSERT INTO %s.osc_cut SELECT * FROM %s.orders ORDER BY id LIMIT %d", srcDB, srcDB, cutRows)); err != nil {
		return err
	}
	defer b.src.Exec(context.WithoutCancel(ctx), "DROP TABLE "+srcDB+".osc_cut")
	load = startLoad(db, "osc_cut", *loadFlag, cutRows, 8)
	var blocked []time.Duration
	attempts := 0
	for i := 0; i < *cutoversFlag; i++ {
		alter := "ADD COLUMN osc_c INT NULL"
		if i%2 == 1 {
			alter = "DROP COLUMN osc_c"
		}
		res, _, err := run("osc_cut", alter)
		if err != nil {
			load.Stop()
			return fmt.Errorf("osc cut-over %d: %w", i, err)
		}
		attempts += res.CutoverAttempts
		blocked = append(blocked, res.WriteBlocked...)
	}
	achieved, _ = load.Stop()
	note := fmt.Sprintf("%d migrations of a 10k-row table, %d cut-over attempts; load achieved %.0f writes/s; max %.1f ms", *cutoversFlag, attempts, achieved, ms(percentile(blocked, 1)))
	b.add(&Figure{Name: "OSC atomic cut-over write-blocked window, p50", Value: ms(percentile(blocked, 0.5)), Unit: "ms", Target: tgtCutover})
	b.add(&Figure{Name: "OSC atomic cut-over write-blocked window, p99", Value: ms(percentile(blocked, 0.99)), Unit: "ms", Target: tgtCutover, Note: note})
	return nil
}
