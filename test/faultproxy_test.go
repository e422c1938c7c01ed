package test

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faultProxy forwards loopback TCP connections to a server and can stop every byte in both
// directions without closing anything: a network partition as the client sees it.
type faultProxy struct {
	ln        net.Listener
	to        string
	blackhole atomic.Bool
	done      chan struct{}
	mu        sync.Mutex
	conns     []net.Conn
	wg        sync.WaitGroup
}

func startFaultProxy(t *testing.T, to string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	p := &faultProxy{ln: ln, to: to, done: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			to := p.to
			p.mu.Unlock()
			s, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Add(2)
			go p.pipe(s, c)
			go p.pipe(c, s)
		}
	}()
	t.Cleanup(p.Close)
	return p
}

func (p *faultProxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Retarget sends new connections to another server (an address moved by a failover); open ones
// are left alone.
func (p *faultProxy) Retarget(to string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.to = to
}

// Blackhole holds every byte from now on (true) or lets them through again (false).
func (p *faultProxy) Blackhole(on bool) { p.blackhole.Store(on) }

func (p *faultProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for n > 0 && p.blackhole.Load() {
			select {
			case <-p.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// Close closes the listener and every connection, and waits for the forwarding to stop.
func (p *faultProxy) Close() {
	select {
	case <-p.done:
		return
	default:
		close(p.done)
	}
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
