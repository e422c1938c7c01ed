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

// QueryConfig configures a Query throttler.
type QueryConfig struct {
	// DB runs the query. Required.
	DB *sql.DB
	// Query returns one value in the first column of its first row, e.g.
	// "SELECT COUNT(*) > 0 FROM ops.maintenance WHERE active". Required.
	Query string
	// CheckInterval is how long a reading is reused; default DefaultCheckInterval.
	CheckInterval time.Duration
	// Timeout bounds one run of the query; default DefaultTimeout.
	Timeout time.Duration
}

// Query throttles while a custom query returns a non-zero value (gh-ost's --throttle-query).
//
// Guarantees: the first column of the first row decides: a number other than zero throttles; zero,
// NULL or no row at all lets work go on. The query runs at most once per CheckInterval however many
// goroutines call Check. It fails closed: a query error, a timeout or a value that is not a number
// throttles, with the error in Detail.
type Query struct {
	cfg   QueryConfig
	cache *cached
}

// NewQuery returns a Query throttler.
func NewQuery(cfg QueryConfig) (*Query, error) {
	if cfg.DB == nil || strings.TrimSpace(cfg.Query) == "" {
		return nil, errors.New("throttler: NewQuery needs a DB and a Query")
	}
	cfg.Timeout = orDefault(cfg.Timeout, DefaultTimeout)
	return &Query{cfg: cfg, cache: newCached(cfg.CheckInterval)}, nil
}

// Check implements Throttler.
func (q *Query) Check(ctx context.Context) (Status, error) {
	return q.cache.check(ctx, q.refresh)
}

func (q *Query) refresh(ctx context.Context) (Status, error) {
	v, err := q.run(ctx)
	if err != nil {
		return Status{Throttled: true, Reason: "throttle query failed", Detail: err.Error()}, nil
	}
	if v != 0 {
		return Status{Throttled: true, Reason: "throttle query returned non-zero",
			Detail: "value " + strconv.FormatFloat(v, 'f', -1, 64)}, nil
	}
	return Status{}, nil
}

func (q *Query) run(ctx context.Context) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, q.cfg.Timeout)
	defer cancel()
	rows, err := q.cfg.DB.QueryContext(ctx, q.cfg.Query)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	if len(cols) == 0 {
		return 0, errors.New("query returned no columns")
	}
	if !rows.Next() {
		return 0, rows.Err()
	}
	vals := make([]any, len(cols))
	var first sql.NullString
	vals[0] = &first
	for i := 1; i < len(vals); i++ {
		vals[i] = new(sql.RawBytes)
	}
	if err := rows.Scan(vals...); err != nil {
		return 0, err
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	if !first.Valid {
		return 0, nil
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(first.String), 64)
	if err != nil {
		return 0, fmt.Errorf("value %q is not a number", first.String)
	}
	return v, nil
}
