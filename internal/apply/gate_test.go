package apply

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// An apply transaction on a table never runs while a copy write to it runs, and an apply that is
// waiting goes before copy writes that arrive after it; other tables are not held up.
func TestGateKeepsCopyAndApplyApart(t *testing.T) {
	g := &Gate{}
	var copying, applying atomic.Int32
	copyStarted, releaseCopy := make(chan struct{}), make(chan struct{})
	go g.Copy("`d`.`t`", func() error {
		copying.Add(1)
		close(copyStarted)
		<-releaseCopy
		copying.Add(-1)
		return nil
	})
	<-copyStarted
	applied := make(chan struct{})
	go g.Apply([]string{"`d`.`u`", "`d`.`t`"}, func() error {
		if copying.Load() != 0 {
			t.Error("the apply ran while a copy write to its table ran")
		}
		applying.Add(1)
		time.Sleep(20 * time.Millisecond)
		applying.Add(-1)
		close(applied)
		return nil
	})
	waitFor(g, func() bool { return g.table("`d`.`t`").applyWaiting > 0 }) // the apply waits for the copy
	other := make(chan struct{})
	go g.Copy("`d`.`v`", func() error { close(other); return nil })
	select {
	case <-other:
	case <-time.After(5 * time.Second):
		t.Fatal("a copy write to another table waited for the apply")
	}
	later := make(chan struct{})
	go g.Copy("`d`.`t`", func() error {
		if applying.Load() != 0 {
			t.Error("a copy write ran while the apply on its table ran")
		}
		select {
		case <-applied:
		default:
			t.Error("a copy write that came after a waiting apply went first")
		}
		close(later)
		return nil
	})
	time.Sleep(20 * time.Millisecond)
	close(releaseCopy)
	<-applied
	<-later
	var nilGate *Gate
	ran := false
	if err := nilGate.Apply([]string{"x"}, func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatal("a nil gate must just run the apply")
	}
}

// waitFor polls cond under the gate's lock until it holds.
func waitFor(g *Gate, cond func() bool) {
	for {
		g.mu.Lock()
		ok := cond()
		g.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// Apply transactions share a table with each other (the parallel apply), and a copy write that
// waits while they run goes before an apply that arrives after it: a saturated apply does not
// starve the copy.
func TestGateLetsAppliesShareAndCopyTakeTurns(t *testing.T) {
	g := &Gate{}
	const tbl = "`d`.`t`"
	firstIn, releaseFirst := make(chan struct{}), make(chan struct{})
	go g.Apply([]string{tbl}, func() error { close(firstIn); <-releaseFirst; return nil })
	<-firstIn
	second := make(chan struct{})
	go g.Apply([]string{tbl}, func() error { close(second); return nil })
	select {
	case <-second:
	case <-time.After(5 * time.Second):
		t.Fatal("a second apply transaction on the same table waited for the first")
	}
	var order []string
	var mu sync.Mutex
	note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	copied, lateApplied := make(chan struct{}), make(chan struct{})
	go g.Copy(tbl, func() error { note("copy"); close(copied); return nil })
	waitFor(g, func() bool { return g.table(tbl).copyTurn })
	go g.Apply([]string{tbl}, func() error { note("late apply"); close(lateApplied); return nil })
	waitFor(g, func() bool { return g.table(tbl).applyWaiting > 0 })
	close(releaseFirst)
	<-copied
	<-lateApplied
	if len(order) != 2 || order[0] != "copy" {
		t.Fatalf("order %v: the copy write waiting through an apply phase must go before an apply that came after it", order)
	}
}
