package apply

import (
	"context"
	"errors"
	"math/rand"
	"runtime"
	"sync"
	"testing"
	"time"
)

type testUnit struct {
	seq     int
	keys    []uint64
	barrier bool
}

// Units on shared keys are applied in submission order per key, barriers alone in their place,
// units retired strictly in submission order and only once everything before them is applied;
// and units on disjoint keys do run at the same time.
func TestParallelKeepsPerKeyOrderAndLowWaterMark(t *testing.T) {
	const units, keys = 3000, 40
	var mu sync.Mutex
	applied := map[int]bool{}
	perKey := map[uint64][]int{}
	running, maxRunning := 0, 0
	var retired []int
	barrierAlone := true
	exec := func(ctx context.Context, us []*testUnit) error {
		mu.Lock()
		running++
		maxRunning = max(maxRunning, running)
		for _, u := range us {
			if u.barrier && running > 1 {
				barrierAlone = false
			}
			for _, k := range u.keys {
				perKey[k] = append(perKey[k], u.seq)
			}
		}
		mu.Unlock()
		time.Sleep(time.Duration(rand.Intn(200)) * time.Microsecond)
		runtime.Gosched()
		mu.Lock()
		running--
		for _, u := range us {
			applied[u.seq] = true
		}
		mu.Unlock()
		return nil
	}
	lowWaterOK := true
	retire := func(u *testUnit) {
		mu.Lock()
		defer mu.Unlock()
		for s := 0; s <= u.seq; s++ {
			if !applied[s] && s%97 != 0 { // empty units (below) are never applied
				lowWaterOK = false
			}
		}
		retired = append(retired, u.seq)
	}
	p := NewParallel(context.Background(), 4, exec, retire, 5)
	var want = map[uint64][]int{}
	for s := 0; s < units; s++ {
		u := &testUnit{seq: s}
		size := 1
		switch {
		case s%97 == 0:
			size = 0 // a commit with no changes of copied tables
		case s%211 == 0:
			u.barrier = true
		default:
			for i := 0; i < 1+rand.Intn(3); i++ {
				u.keys = append(u.keys, uint64(rand.Intn(keys)))
			}
		}
		if size > 0 {
			for _, k := range u.keys {
				if n := len(want[k]); n == 0 || want[k][n-1] != s {
					want[k] = append(want[k], s)
				}
			}
		}
		if err := p.Submit(u, size, u.keys, u.barrier); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for k, seqs := range want {
		got := dedupe(perKey[k])
		if len(got) != len(seqs) {
			t.Fatalf("key %d: applied %d units, want %d", k, len(got), len(seqs))
		}
		for i := range seqs {
			if got[i] != seqs[i] {
				t.Fatalf("key %d: units applied in order %v, want %v", k, got, seqs)
			}
		}
	}
	if len(retired) != units {
		t.Fatalf("retired %d units, want %d", len(retired), units)
	}
	for i, s := range retired {
		if s != i {
			t.Fatalf("retired out of order at %d: %d", i, s)
		}
	}
	if !lowWaterOK {
		t.Error("a unit was retired before every unit submitted earlier was applied")
	}
	if !barrierAlone {
		t.Error("a barrier ran while another unit was being applied")
	}
	if maxRunning < 2 {
		t.Errorf("at most %d units ran at once: units on disjoint keys must run concurrently", maxRunning)
	}
}

func dedupe(xs []int) []int {
	var out []int
	for _, x := range xs {
		if len(out) == 0 || out[len(out)-1] != x {
			out = append(out, x)
		}
	}
	return out
}

// The first failure stops every worker: Submit and Close return it, nothing later is retired, and
// no worker goroutine is left behind.
func TestParallelStopsOnFirstError(t *testing.T) {
	before := runtime.NumGoroutine()
	boom := errors.New("boom")
	var mu sync.Mutex
	var retired []int
	p := NewParallel(context.Background(), 4, func(ctx context.Context, us []*testUnit) error {
		for _, u := range us {
			if u.seq == 50 {
				return boom
			}
		}
		return nil
	}, func(u *testUnit) { mu.Lock(); retired = append(retired, u.seq); mu.Unlock() }, 1)
	var submitErr error
	for s := 0; s < 10000 && submitErr == nil; s++ {
		submitErr = p.Submit(&testUnit{seq: s}, 1, []uint64{uint64(s % 7)}, false)
	}
	if err := p.Close(); !errors.Is(err, boom) {
		t.Fatalf("Close: %v, want %v", err, boom)
	}
	if submitErr != nil && !errors.Is(submitErr, boom) && !errors.Is(submitErr, context.Canceled) {
		t.Fatalf("Submit: %v", submitErr)
	}
	for _, s := range retired {
		if s >= 50 {
			t.Fatalf("unit %d retired though unit 50 failed", s)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after Close, %d before", n, before)
	}
}
