package verifier

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// ErrNotApplicable is returned (wrapped, with the reason) by ChecksumTable for a table pair its fast
// path cannot prove: a copy filter or ignored columns, different table definitions, or different
// server versions. Use Checksum for such pairs.
var ErrNotApplicable = errors.New("CHECKSUM TABLE cannot compare this table pair")

// ChecksumTable compares whole tables with the servers' own CHECKSUM TABLE ... EXTENDED, the fastest
// check there is (each server reads its table once, nothing but a number crosses the wire), and
// falls back to Checksum's chunked drill-down for the tables whose checksums differ, so a mismatch
// still names its rows.
//
// CHECKSUM TABLE depends on the storage format, so it is only meaningful when both tables have the
// same definition (SHOW CREATE TABLE, ignoring the table name and AUTO_INCREMENT counter) on the same
// server version, and it sees every column and every row: it cannot apply a copy filter (Where) or
// IgnoreColumns. For a pair that does not qualify, Verify returns an error wrapping ErrNotApplicable
// before reading any data (it does not silently switch method).
//
// Cost: a full read of each table by its server (not chunked, not throttled), plus Checksum's cost
// for the tables that differ. RowsCompared comes from a COUNT(*) of the source run alongside.
type ChecksumTable struct {
	Source, Target *sql.DB
	// Fallback names the rows of mismatched tables; nil means a Checksum with default settings. Its
	// unset Source and Target are set to these; its Strict has no effect here (there is no filter).
	Fallback *Checksum
	// MaxRetries bounds the attempts at one table's checksums on transient errors; default 10.
	// Logger receives the retries; default logrus's standard logger.
	MaxRetries int
	Logger     logrus.FieldLogger
}

// Verify implements Verifier.
func (c *ChecksumTable) Verify(ctx context.Context, phase Phase, tables []TablePair) (*Result, error) {
	start := time.Now()
	plans := make([]*plan, len(tables))
	for i, p := range tables {
		if strings.TrimSpace(p.Where) != "" {
			return nil, fmt.Errorf("verifier: %s: %w: it has a copy filter (Where)", p.Source, ErrNotApplicable)
		}
		if len(p.IgnoreColumns) > 0 {
			return nil, fmt.Errorf("verifier: %s: %w: it has ignored columns", p.Source, ErrNotApplicable)
		}
		pl, err := newPlan(ctx, newRetrier(c.MaxRetries, c.Logger), c.Target, p, false)
		if err != nil {
			return nil, err
		}
		if a, b := normalizeCreate(pl.src.CreateTable), normalizeCreate(pl.tgt.CreateTable); a != b {
			return nil, fmt.Errorf("verifier: %s: %w: table definitions differ:\nsource: %s\ntarget: %s", p.Source, ErrNotApplicable, a, b)
		}
		plans[i] = pl
	}
	r := newRetrier(c.MaxRetries, c.Logger)
	var sv, tv string
	err := r.do(ctx, "server versions", func() error {
		if err := c.Source.QueryRowContext(ctx, "SELECT @@version").Scan(&sv); err != nil {
			return fmt.Errorf("verifier: source version: %w", err)
		}
		if err := c.Target.QueryRowContext(ctx, "SELECT @@version").Scan(&tv); err != nil {
			return fmt.Errorf("verifier: target version: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if sv != tv {
		return nil, fmt.Errorf("verifier: %w: server versions differ (%s, %s)", ErrNotApplicable, sv, tv)
	}
	res := &Result{Verifier: "checksum-table", Phase: phase, Scope: AllRows,
		CannotSee: "two unequal tables whose CHECKSUM TABLE values collide (a 32-bit checksum: about 2^-32 per table)"}
	var mismatched []*plan
	var mismatchedAt []int
	for _, pl := range plans {
		var sum, tsum sql.NullString
		var count int64
		err := r.do(ctx, "checksum table "+pl.s.table, func() error {
			return both(ctx,
				func(ctx context.Context) error {
					if err := c.Source.QueryRowContext(ctx, "CHECKSUM TABLE "+pl.s.table+" EXTENDED").Scan(new(string), &sum); err != nil {
						return fmt.Errorf("verifier: checksum table %s: %w", pl.s.table, err)
					}
					if err := c.Source.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+pl.s.table).Scan(&count); err != nil {
						return fmt.Errorf("verifier: count %s: %w", pl.s.table, err)
					}
					return nil
				},
				func(ctx context.Context) error {
					if err := c.Target.QueryRowContext(ctx, "CHECKSUM TABLE "+pl.t.table+" EXTENDED").Scan(new(string), &tsum); err != nil {
						return fmt.Errorf("verifier: checksum table %s: %w", pl.t.table, err)
					}
					return nil
				})
		})
		if err != nil {
			return nil, err
		}
		if !sum.Valid || !tsum.Valid {
			return nil, fmt.Errorf("verifier: CHECKSUM TABLE returned no checksum for %s or %s", pl.s.table, pl.t.table)
		}
		if sum.String == tsum.String {
			tr := pl.newResult()
			tr.RowsCompared = count
			res.Tables = append(res.Tables, tr)
			continue
		}
		mismatchedAt = append(mismatchedAt, len(res.Tables))
		res.Tables = append(res.Tables, nil)
		mismatched = append(mismatched, pl)
	}
	if len(mismatched) > 0 {
		fb := c.Fallback
		if fb == nil {
			fb = &Checksum{}
		}
		if fb.Source == nil {
			fb.Source = c.Source
		}
		if fb.Target == nil {
			fb.Target = c.Target
		}
		if fb.Logger == nil {
			fb.Logger = c.Logger
		}
		trs, err := fb.verifyPlans(ctx, phase, mismatched, nil)
		if err != nil {
			return nil, err
		}
		for i, tr := range trs {
			res.Tables[mismatchedAt[i]] = tr
		}
	}
	res.Duration = time.Since(start)
	return res, nil
}

var (
	createNameRE = regexp.MustCompile("^CREATE TABLE `(?:[^`]|``)*`")
	autoIncRE    = regexp.MustCompile(` AUTO_INCREMENT=\d+`)
)

// normalizeCreate drops the table name and the AUTO_INCREMENT counter from SHOW CREATE TABLE.
func normalizeCreate(s string) string {
	s = createNameRE.ReplaceAllString(s, "CREATE TABLE")
	return autoIncRE.ReplaceAllString(s, "")
}
