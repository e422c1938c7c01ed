package apply

import (
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
	for l := g.table("`d`.`t`"); l.TryRLock(); { // until the apply waits for the copy
		l.RUnlock()
		time.Sleep(time.Millisecond)
	}
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
