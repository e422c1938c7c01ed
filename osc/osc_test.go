package osc

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"
)

// run migrates f's table under a write load and checks the result against the twin.
func runUnderLoad(t *testing.T, f *fixture, m *Migration, expectAlter string) *Result {
	t.Helper()
	t.Logf("fixture ready after %s", time.Since(f.start).Round(time.Millisecond))
	l := f.startLoad(3)
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := m.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // writes go on after the cut-over, into the new table
	l.stop()
	l.check(t)
	for i, d := range res.WriteBlocked {
		t.Logf("cut-over attempt %d: writes blocked %s", i+1, d.Round(time.Microsecond))
	}
	t.Logf("plan: %s; rows copied %d, events applied %d, elapsed %s", res.Plan, res.RowsCopied, res.EventsApplied, res.Elapsed.Round(time.Millisecond))
	t0 := time.Now()
	f.expect(expectAlter)
	t.Logf("checked in %s", time.Since(t0).Round(time.Millisecond))
	tt := f.tables()
	sort.Strings(tt)
	tables := strings.Join(tt, ",")
	if tables != "_t_del,t,twin" {
		t.Errorf("tables after the migration: %s, want _t_del,t,twin", tables)
	}
	return res
}

func TestAddColumn200k(t *testing.T) {
	f := newFixture(t, 200_000)
	alter := "ADD COLUMN x INT NOT NULL DEFAULT 7, ADD COLUMN y VARCHAR(10) NULL"
	m := f.migration(alter)
	var statuses int
	m.OnStatus = func(s Status) { statuses++; t.Log(s) }
	res := runUnderLoad(t, f, m, alter)
	if res.RowsCopied < 190_000 {
		t.Errorf("copied %d rows", res.RowsCopied)
	}
	if res.CutOverAttempts != 1 || len(res.WriteBlocked) != 1 {
		t.Errorf("cut-over attempts %d, blocked %v", res.CutOverAttempts, res.WriteBlocked)
	}
}
