package osc

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"
)

// BenchmarkCutoverUnderLoad runs b.N migrations of a 20k-row table while three clients write to it
// and reports the distribution of the write-blocked window of the cut-overs (p50, p99, max in ms),
// as measured by ferry, next to the slowest write transaction the clients saw.
//
//	go test -run XXX -bench Cutover -benchtime 20x ./osc/
func BenchmarkCutoverUnderLoad(b *testing.B) {
	f := newFixture(b, 20_000)
	l := f.startLoad(3)
	var blocked []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m := f.migration(fmt.Sprintf("ADD COLUMN bench%d INT NULL", i))
		m.DropOldTable = true
		res, err := m.Run(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		blocked = append(blocked, res.WriteBlocked...)
	}
	b.StopTimer()
	l.stop()
	if n := l.errs.Load(); n > 0 {
		b.Fatalf("%d load transactions failed: %v", n, l.first.Load())
	}
	sort.Slice(blocked, func(i, j int) bool { return blocked[i] < blocked[j] })
	pct := func(p float64) float64 {
		i := int(p * float64(len(blocked)-1))
		return float64(blocked[i].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.5), "p50-blocked-ms")
	b.ReportMetric(pct(0.99), "p99-blocked-ms")
	b.ReportMetric(pct(1), "max-blocked-ms")
	b.ReportMetric(float64(l.maxLatency().Microseconds())/1000, "slowest-write-ms")
}
