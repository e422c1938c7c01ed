package snapshot

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/schema"
)

// Split divides every table that has Column into shards by the column's value: Bounds b1 < b2 < ...
// give len(Bounds)+1 ranges (values below b1, [b1, b2), ..., at or above the last bound); without
// Bounds, Shards parts by a hash of the value (MOD(CRC32(value), Shards)). NULL goes to shard 0.
// Tables without Column are stored whole in every shard.
//
// Which shard a row belongs to is decided by the source server evaluating one SQL expression
// (ShardExpr), both when the snapshot routes rows and when the subset differ checks a target, so
// the two can never disagree on a row; the expression always yields exactly one shard per row, so
// the shards are disjoint and together hold every row.
type Split struct {
	Column string
	Shards int
	Bounds []string
}

func (s *Split) count() int {
	if len(s.Bounds) > 0 {
		return len(s.Bounds) + 1
	}
	return s.Shards
}

func (s *Split) method() string {
	if len(s.Bounds) > 0 {
		return "range"
	}
	return "hash"
}

func (s *Split) validate() error {
	if s.Column == "" {
		return fmt.Errorf("split: no column (-split-column)")
	}
	if len(s.Bounds) == 0 && s.Shards < 2 {
		return fmt.Errorf("split: want at least 2 shards (-shards) or split values (-split-bounds)")
	}
	return nil
}

// ShardExpr returns the SQL expression giving the shard (0..n-1) of a row of t, or "" when t has
// no split column (the table goes whole to every shard).
func (s *Split) ShardExpr(t *schema.Table) (string, error) {
	c := t.Column(s.Column)
	if c == nil {
		return "", nil
	}
	col := schema.QuoteIdent(c.Name)
	if len(s.Bounds) == 0 {
		return fmt.Sprintf("IFNULL(MOD(CRC32(%s), %d), 0)", col, s.Shards), nil
	}
	var b strings.Builder
	b.WriteString("CASE WHEN " + col + " IS NULL THEN 0")
	for i, v := range s.Bounds {
		var lit string
		switch {
		case isInteger(c.DataType):
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				if _, err := strconv.ParseUint(v, 10, 64); err != nil {
					return "", fmt.Errorf("split of %s: bound %q is not an integer, and %s is %s", t, v, c.Name, c.ColumnType)
				}
			}
			lit = v
		case c.Charset != "" && c.Charset != "binary":
			lit = "CONVERT(" + schema.QuoteString(v) + " USING " + c.Charset + ") COLLATE " + c.Collation
		default:
			return "", fmt.Errorf("split of %s: column %s is %s; split by value works on integer and character columns (use the hash split: -shards N without -split-bounds)", t, c.Name, c.ColumnType)
		}
		if i > 0 && isInteger(c.DataType) && !less(s.Bounds[i-1], v) {
			return "", fmt.Errorf("split: bounds must increase: %s then %s", s.Bounds[i-1], v)
		}
		fmt.Fprintf(&b, " WHEN %s < %s THEN %d", col, lit, i)
	}
	fmt.Fprintf(&b, " ELSE %d END", len(s.Bounds))
	return b.String(), nil
}

func less(a, b string) bool {
	x, errA := strconv.ParseInt(a, 10, 64)
	y, errB := strconv.ParseInt(b, 10, 64)
	if errA == nil && errB == nil {
		return x < y
	}
	return a < b
}

func isInteger(t string) bool {
	switch t {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint":
		return true
	}
	return false
}

// ShardFilter is the online variant of a split: a ferry.CopyFilter selecting shard Index of Split,
// so N Ferries from one source, each with its shard's filter and its own target, move the shards
// live. The copy selects rows with the shard expression of Take and SubsetDiff, and binlog row
// images are judged by the source server evaluating the same expression on the image's value
// (ferry.RowConditionQuery): the three can never disagree on a row.
type ShardFilter struct {
	Split *Split
	Index int
}

// Condition implements ferry.CopyFilter.
func (f ShardFilter) Condition(t *schema.Table) (string, error) {
	if err := f.Split.validate(); err != nil {
		return "", err
	}
	if f.Index < 0 || f.Index >= f.Split.count() {
		return "", fmt.Errorf("shard filter: shard %d of %d", f.Index, f.Split.count())
	}
	e, err := f.Split.ShardExpr(t)
	if err != nil || e == "" {
		return "", err
	}
	cond := "(" + e + ") = " + strconv.Itoa(f.Index)
	// Refuse now, before anything is written, a column whose binlog values the server cannot judge.
	if _, err := ferry.RowConditionQuery(t.Column(f.Split.Column), cond); err != nil {
		return "", fmt.Errorf("shard filter on %s: %w", t, err)
	}
	return cond, nil
}

// Matches implements ferry.CopyFilter.
func (f ShardFilter) Matches(ctx context.Context, source ferry.SourceEvaluator, t *schema.Table, row []any) (bool, error) {
	c := t.Column(f.Split.Column)
	if c == nil {
		return true, nil
	}
	if c.Ordinal >= len(row) {
		return false, fmt.Errorf("shard filter: row of %s has %d values, column %s is #%d", t, len(row), c.Name, c.Ordinal)
	}
	if source == nil {
		return false, fmt.Errorf("shard filter needs the source server to evaluate its condition (no SourceEvaluator)")
	}
	cond, err := f.Condition(t)
	if err != nil {
		return false, err
	}
	q, err := ferry.RowConditionQuery(c, cond)
	if err != nil {
		return false, err
	}
	return source.True(ctx, q, row[c.Ordinal])
}

// Fingerprint implements ferry.FilterFingerprinter: a checkpoint of a shard's Ferry resumes only
// with the same shard of the same split.
func (f ShardFilter) Fingerprint() string {
	return fmt.Sprintf("shard %d of %s split of %s bounds %q shards %d", f.Index, f.Split.method(), f.Split.Column, f.Split.Bounds, f.Split.count())
}
