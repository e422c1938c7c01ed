package chunk

import (
	"context"
	"testing"
	"time"
)

func TestSizerNext(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		name          string
		current, rows int
		took          time.Duration
		want          int
	}{
		{"fast batch grows by at most 1.5x", 1000, 1000, 10 * ms, 1500},
		{"on target stays", 1000, 1000, 500 * ms, 1000},
		{"a little slow shrinks to the rate", 1000, 1000, 800 * ms, 625},
		{"very slow shrinks at once", 10000, 10000, 10000 * ms, 500},
		{"never below the minimum", 200, 200, 10000 * ms, 100},
		{"never above the maximum", 90000, 90000, 10 * ms, 100000},
		{"an empty batch changes nothing", 700, 0, 10 * ms, 700},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := NewSizer(500*ms, 0, 0)
			if got := s.Next(c.current, c.rows, c.took); got != c.want {
				t.Errorf("Next(%d, %d, %s) = %d, want %d", c.current, c.rows, c.took, got, c.want)
			}
		})
	}
}

// A batch over twice the target is judged alone: the fast batches before it do not hide it.
func TestSizerReactsToOneSlowBatch(t *testing.T) {
	s := NewSizer(100*time.Millisecond, 10, 0)
	for range 4 {
		s.Next(1000, 1000, 10*time.Millisecond)
	}
	if got := s.Next(1000, 1000, time.Second); got != 100 {
		t.Errorf("after a 1000-row batch took 1s (target 100ms) the next size is %d, want 100", got)
	}
}

func TestWaitRowsAboveBurst(t *testing.T) {
	l := NewLimiter(1000) // burst 100
	if err := WaitRows(context.Background(), l, 350); err != nil {
		t.Fatalf("waiting for more rows than the burst: %v", err)
	}
	if NewLimiter(0) != nil {
		t.Error("no cap must mean no limiter")
	}
}
