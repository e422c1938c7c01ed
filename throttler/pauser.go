package throttler

import (
	"context"
	"sync"
)

// Pauser is paused and resumed by the host. The zero value is running.
type Pauser struct {
	mu     sync.Mutex
	paused bool
	reason string
}

// Pause throttles all work until Resume. reason is reported; empty means "paused by host".
func (p *Pauser) Pause(reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if reason == "" {
		reason = "paused by host"
	}
	p.paused, p.reason = true, reason
}

// Resume lets work go on.
func (p *Pauser) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused, p.reason = false, ""
}

// Paused reports whether the Pauser is paused.
func (p *Pauser) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// Check implements Throttler.
func (p *Pauser) Check(context.Context) (Status, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Status{Throttled: p.paused, Reason: p.reason}, nil
}
