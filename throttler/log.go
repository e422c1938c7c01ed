package throttler

import "sync"

// Logger is the part of a logger LogChanges uses. A logrus.FieldLogger (logrus.Logger,
// logrus.Entry) satisfies it, as do most leveled loggers.
type Logger interface {
	Infof(format string, args ...any)
}

// LogChanges returns a function to pass as Wait's onChange that logs each change of throttle state
// once: "throttled: <reason> (<detail>)" when work pauses or the reason changes, and "throttle
// released" when it goes on.
//
// Guarantees: the returned function is safe for concurrent use and remembers the last state it
// logged, so when many workers share it (each calling Wait with it), a change is logged once, not
// once per worker; a change of Detail alone is not logged. A nil log logs nothing.
func LogChanges(log Logger) func(Status) {
	var mu sync.Mutex
	var last Status
	return func(st Status) {
		if log == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if sameState(st, last) {
			return
		}
		prev := last
		last = st
		switch {
		case st.Throttled:
			log.Infof("throttled: %s", st)
		case prev.Throttled:
			log.Infof("throttle released (was: %s)", prev.Reason)
		}
	}
}
