package test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

// A Swap hook that fails leaves the Ferry streaming: the changes made after the failed cut-over are
// applied, and a second Cutover.Run swaps and ends with identical tables.
func TestCutoverRetriesAfterFailedSwap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const db = "swapretry"
	createSchema(t, source, db, 3000)
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
	f, err := ferry.New(ferry.Config{Source: conn(source), Target: conn(target),
		Tables: ferry.TableFilter{Databases: []string{db}}, CreateTargetTables: true, Logger: testLogger(t)})
	must(t, err)
	defer f.Close()
	must(t, f.Initialize(ctx))
	must(t, f.Start(ctx))
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()

	load := startLoad(t, source, db, 7, 2, 3000)
	swaps, unlocks := 0, []bool{}
	hooks := ferry.HookFuncs{
		LockFunc: func(context.Context) error { load.stop(); return nil },
		SwapFunc: func(context.Context) error {
			swaps++
			if swaps == 1 {
				return errors.New("load balancer refused the change")
			}
			return nil
		},
		UnlockFunc: func(_ context.Context, swapped bool) error { unlocks = append(unlocks, swapped); return nil },
	}
	cut := &ferry.Cutover{Ferry: f, Hooks: hooks}
	rep, err := cut.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "load balancer refused") {
		t.Fatalf("first cut-over: want the Swap error, got %v", err)
	}
	if rep.Swapped || len(unlocks) != 1 || unlocks[0] {
		t.Fatalf("first cut-over: swapped=%v, unlock calls %v; want not swapped, one Unlock(false)", rep.Swapped, unlocks)
	}
	select {
	case err := <-runErr:
		t.Fatalf("Run returned after the failed Swap (%v); the Ferry must keep streaming", err)
	default:
	}

	// Writes go on after the failed cut-over; they must reach the target before the second one.
	load = startLoad(t, source, db, 8, 2, 3000)
	time.Sleep(500 * time.Millisecond)
	must(t, source.Exec(ctx, "UPDATE "+db+".big SET payload = 'after the failed swap' WHERE id = 5"))
	rep, err = cut.Run(ctx)
	must(t, err)
	if !rep.Swapped || swaps != 2 || len(unlocks) != 2 || !unlocks[1] {
		t.Fatalf("second cut-over: swapped=%v after %d swaps, unlock calls %v", rep.Swapped, swaps, unlocks)
	}
	must(t, <-runErr)
	for _, tb := range []string{"types", "composite", "strkey", "big"} {
		assertSameRows(t, db+"."+tb, "", db+"."+tb)
	}
	if n := count(t, target, "SELECT COUNT(*) FROM "+db+".big WHERE payload = 'after the failed swap'"); n != 1 {
		t.Fatalf("the change made after the failed swap is not on the target (%d rows)", n)
	}
}
