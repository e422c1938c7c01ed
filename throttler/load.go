package throttler

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Threshold is a limit on one global status variable, e.g. Threads_running=25.
type Threshold struct {
	Variable string
	Value    float64
}

// String renders the threshold as in a spec: "Threads_running=25".
func (t Threshold) String() string { return t.Variable + "=" + fmtNum(t.Value) }

// ParseThresholds parses a gh-ost style spec, "Threads_running=25,Threads_connected=500": comma
// separated Variable=number pairs. Spaces around items are ignored; an empty spec gives none.
func ParseThresholds(spec string) ([]Threshold, error) {
	var out []Threshold
	seen := map[string]bool{}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, val, ok := strings.Cut(item, "=")
		name, val = strings.TrimSpace(name), strings.TrimSpace(val)
		if !ok || !validVariable(name) {
			return nil, fmt.Errorf("throttler: threshold %q: want Variable=number", item)
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("throttler: threshold %q: %q is not a non-negative number", item, val)
		}
		key := strings.ToLower(name)
		if seen[key] {
			return nil, fmt.Errorf("throttler: threshold spec %q names %s twice", spec, name)
		}
		seen[key] = true
		out = append(out, Threshold{Variable: name, Value: v})
	}
	return out, nil
}

func validVariable(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// CriticalLoadError is returned by Load.Check when a status variable reaches its critical level.
// The run must stop: the caller checkpoints and returns it.
type CriticalLoadError struct {
	Variable  string
	Value     float64
	Threshold float64
}

func (e *CriticalLoadError) Error() string {
	return fmt.Sprintf("throttler: critical load: %s=%s reached critical level %s; aborting",
		e.Variable, fmtNum(e.Value), fmtNum(e.Threshold))
}

// LoadConfig configures a Load throttler.
type LoadConfig struct {
	// DB is the server whose load is watched (normally the source). Required.
	DB *sql.DB
	// Max throttles while any variable is at or above its value (gh-ost's --max-load).
	Max []Threshold
	// Critical aborts the run when any variable is at or above its value (gh-ost's
	// --critical-load).
	Critical []Threshold
	// CheckInterval is how long a reading is reused; default DefaultCheckInterval.
	CheckInterval time.Duration
	// Timeout bounds one reading; default DefaultTimeout.
	Timeout time.Duration
}

// Load throttles on global status variables of a server (SHOW GLOBAL STATUS).
//
// Guarantees: Check returns a *CriticalLoadError naming the variable, its value and the threshold
// as soon as a reading has a variable at or above its Critical level; otherwise it is throttled
// while a variable is at or above its Max level, with reason "max-load Var>=N" and the value in
// Detail. Critical levels are checked before Max levels. A variable the server does not have, or
// whose value is not a number, is a configuration error returned by Check (the run aborts at its
// first check rather than running unprotected). When the status cannot be read (server down,
// timeout) Check fails closed: throttled, with the error in Detail. The server is queried at most
// once per CheckInterval however many goroutines call Check.
type Load struct {
	cfg   LoadConfig
	query string
	cache *cached
}

// NewLoad returns a Load throttler. At least one Max or Critical threshold is required.
func NewLoad(cfg LoadConfig) (*Load, error) {
	if cfg.DB == nil {
		return nil, errors.New("throttler: NewLoad needs a DB")
	}
	if len(cfg.Max)+len(cfg.Critical) == 0 {
		return nil, errors.New("throttler: NewLoad needs at least one Max or Critical threshold")
	}
	var names []string
	seen := map[string]bool{}
	for _, t := range append(append([]Threshold(nil), cfg.Critical...), cfg.Max...) {
		if !validVariable(t.Variable) {
			return nil, fmt.Errorf("throttler: NewLoad: bad status variable name %q", t.Variable)
		}
		if k := strings.ToLower(t.Variable); !seen[k] {
			seen[k] = true
			names = append(names, "'"+t.Variable+"'") // validVariable: letters, digits, _ only
		}
	}
	cfg.Timeout = orDefault(cfg.Timeout, DefaultTimeout)
	return &Load{
		cfg:   cfg,
		query: "SHOW GLOBAL STATUS WHERE Variable_name IN (" + strings.Join(names, ",") + ")",
		cache: newCached(cfg.CheckInterval),
	}, nil
}

// Check implements Throttler.
func (l *Load) Check(ctx context.Context) (Status, error) {
	return l.cache.check(ctx, l.refresh)
}

func (l *Load) refresh(ctx context.Context) (Status, error) {
	vals, err := l.read(ctx)
	if err != nil {
		return Status{Throttled: true, Reason: "load: cannot read global status", Detail: err.Error()}, nil
	}
	value := func(name string) (float64, error) {
		raw, ok := vals[strings.ToLower(name)]
		if !ok {
			return 0, fmt.Errorf("throttler: load: the server has no global status variable %s", name)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		if err != nil {
			return 0, fmt.Errorf("throttler: load: status variable %s=%q is not a number", name, raw)
		}
		return v, nil
	}
	for _, t := range l.cfg.Critical {
		v, err := value(t.Variable)
		if err != nil {
			return Status{}, err
		}
		if v >= t.Value {
			return Status{}, &CriticalLoadError{Variable: t.Variable, Value: v, Threshold: t.Value}
		}
	}
	for _, t := range l.cfg.Max {
		v, err := value(t.Variable)
		if err != nil {
			return Status{}, err
		}
		if v >= t.Value {
			return Status{Throttled: true, Reason: "max-load " + t.Variable + ">=" + fmtNum(t.Value),
				Detail: t.Variable + "=" + fmtNum(v)}, nil
		}
	}
	return Status{}, nil
}

func (l *Load) read(ctx context.Context) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	rows, err := l.cfg.DB.QueryContext(ctx, l.query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name string
		var val sql.NullString
		if err := rows.Scan(&name, &val); err != nil {
			return nil, err
		}
		out[strings.ToLower(name)] = val.String
	}
	return out, rows.Err()
}

func fmtNum(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
