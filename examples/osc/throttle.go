package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferrykit/ferry/throttler"
)

// liveThrottle holds the throttlers the command socket can change while osc runs, with gh-ost's
// commands: max-load=, critical-load=, max-lag-millis=, throttle-query=.
type liveThrottle struct {
	db       *sql.DB
	replicas *throttler.ReplicationLag // nil without -throttle-control-replicas
	fixed    []throttler.Throttler     // the flag file

	mu        sync.Mutex
	max, crit []throttler.Threshold
	load      *throttler.Load
	query     *throttler.Query
}

func newLiveThrottle(db *sql.DB, replicas *throttler.ReplicationLag, fixed []throttler.Throttler, maxLoad, critLoad, query string) (*liveThrottle, error) {
	l := &liveThrottle{db: db, replicas: replicas, fixed: fixed}
	var err error
	if l.max, err = throttler.ParseThresholds(maxLoad); err != nil {
		return nil, fmt.Errorf("--max-load: %w", err)
	}
	if l.crit, err = throttler.ParseThresholds(critLoad); err != nil {
		return nil, fmt.Errorf("--critical-load: %w", err)
	}
	if err := l.rebuildLoad(); err != nil {
		return nil, err
	}
	if _, err := l.setQuery(query); err != nil {
		return nil, fmt.Errorf("--throttle-query: %w", err)
	}
	return l, nil
}

func (l *liveThrottle) rebuildLoad() error {
	if len(l.max) == 0 && len(l.crit) == 0 {
		l.load = nil
		return nil
	}
	load, err := throttler.NewLoad(throttler.LoadConfig{DB: l.db, Max: l.max, Critical: l.crit})
	if err != nil {
		return err
	}
	l.load = load
	return nil
}

func (l *liveThrottle) setQuery(q string) (string, error) {
	if strings.TrimSpace(q) == "" {
		l.query = nil
		return "throttle-query cleared", nil
	}
	t, err := throttler.NewQuery(throttler.QueryConfig{DB: l.db, Query: q})
	if err != nil {
		return "", err
	}
	l.query = t
	return "throttle-query set", nil
}

// Check implements throttler.Throttler: the first throttled (or failing) of them all.
func (l *liveThrottle) Check(ctx context.Context) (throttler.Status, error) {
	l.mu.Lock()
	all := append([]throttler.Throttler(nil), l.fixed...)
	if l.load != nil {
		all = append(all, l.load)
	}
	if l.query != nil {
		all = append(all, l.query)
	}
	l.mu.Unlock()
	if l.replicas != nil {
		all = append(all, l.replicas)
	}
	return throttler.Composite(all).Check(ctx)
}

// command runs a gh-ost throttle command; handled is false for a name it does not know.
func (l *liveThrottle) command(name, arg string) (answer string, handled bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch name {
	case "help":
		return "max-load=Var=N,..., critical-load=Var=N,..., max-lag-millis=N, throttle-query=SQL (empty clears)", true, nil
	case "max-load", "critical-load":
		th, err := throttler.ParseThresholds(arg)
		if err != nil {
			return "", true, fmt.Errorf("%s=%s: %w", name, arg, err)
		}
		oldMax, oldCrit := l.max, l.crit
		if name == "max-load" {
			l.max = th
		} else {
			l.crit = th
		}
		if err := l.rebuildLoad(); err != nil {
			l.max, l.crit = oldMax, oldCrit
			return "", true, err
		}
		return fmt.Sprintf("%s=%s", name, strings.TrimSpace(arg)), true, nil
	case "max-lag-millis":
		if l.replicas == nil {
			return "", true, errors.New("max-lag-millis: no replicas to watch; start osc with --throttle-control-replicas")
		}
		ms, err := strconv.ParseInt(strings.TrimSpace(arg), 10, 64)
		if err != nil || ms <= 0 {
			return "", true, fmt.Errorf("max-lag-millis=%s: want a positive number of milliseconds", arg)
		}
		if err := l.replicas.SetMaxLag(time.Duration(ms) * time.Millisecond); err != nil {
			return "", true, err
		}
		return fmt.Sprintf("max-lag-millis=%d", ms), true, nil
	case "throttle-query":
		a, err := l.setQuery(arg)
		return a, true, err
	}
	return "", false, nil
}
