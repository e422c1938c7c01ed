package ferry

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry/internal/retry"
	"github.com/ferrykit/ferry/schema"
)

// SourceEvaluator evaluates side-effect-free SQL on the source server, so that a CopyFilter can
// judge a binlog row image by the very rules (collation, PAD SPACE, numeric and temporal
// comparison, sql_mode) that selected the copied rows.
type SourceEvaluator interface {
	// True runs query (a SELECT of one value, reading no table) with args and reports whether the
	// value is non-zero and not NULL.
	True(ctx context.Context, query string, args ...any) (bool, error)
}

// evaluatorMemoSize bounds the memo of a sourceEvaluator: a filter sees few distinct values (the
// tenants of the rows changed), and when it sees more the memo starts over.
const evaluatorMemoSize = 1 << 16

// sourceEvaluator is the SourceEvaluator ferry hands to filters: the source pool (with ferry's
// session settings, the same the copy reads with), memoised per query and arguments, since the
// answer of a query that reads no table never changes.
type sourceEvaluator struct {
	db         *sql.DB
	maxRetries int
	log        logrus.FieldLogger

	mu      sync.Mutex
	memo    map[string]bool
	queries sync.Map // per filter and table: the query a filter builds (see queryCache)
}

// queryCache is implemented by ferry's own SourceEvaluator: filters keep there the SQL they build
// per table, for the run, instead of building it again for every row image.
type queryCache interface {
	cachedQuery(key any, build func() (string, error)) (string, error)
}

func (e *sourceEvaluator) cachedQuery(key any, build func() (string, error)) (string, error) {
	if q, ok := e.queries.Load(key); ok {
		return q.(string), nil
	}
	q, err := build()
	if err != nil {
		return "", err
	}
	e.queries.Store(key, q)
	return q, nil
}

// isComparable reports a filter value usable in a map key (ColumnEquals takes integers and strings).
func isComparable(v any) bool {
	switch v.(type) {
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, string:
		return true
	}
	return false
}

func newSourceEvaluator(db *sql.DB, maxRetries int, log logrus.FieldLogger) *sourceEvaluator {
	return &sourceEvaluator{db: db, maxRetries: maxRetries, log: log, memo: map[string]bool{}}
}

// True implements SourceEvaluator.
func (e *sourceEvaluator) True(ctx context.Context, query string, args ...any) (bool, error) {
	key := query + "\x00" + keyString(args)
	e.mu.Lock()
	v, ok := e.memo[key]
	e.mu.Unlock()
	if ok {
		return v, nil
	}
	var r sql.NullBool
	err := retry.Do(ctx, max(e.maxRetries, 1), e.log, "evaluate copy filter on the source", func() error {
		return e.db.QueryRowContext(ctx, query, args...).Scan(&r)
	})
	if err != nil {
		return false, fmt.Errorf("evaluate on the source: %w", err)
	}
	v = r.Valid && r.Bool
	e.mu.Lock()
	if len(e.memo) >= evaluatorMemoSize {
		clear(e.memo)
	}
	e.memo[key] = v
	e.mu.Unlock()
	return v, nil
}

var (
	integerLiteral = regexp.MustCompile(`^[-+]?[0-9]+$`)
	decimalLiteral = regexp.MustCompile(`^[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$`)
)

// filterLiteral writes v as an SQL literal of c's kind (see ColumnEquals).
func filterLiteral(c *schema.Column, v any) (string, error) {
	var s string
	switch x := v.(type) {
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		s = fmt.Sprint(x)
	case string:
		s = x
	default:
		return "", fmt.Errorf("value %v (%T) is not an integer or string", v, v)
	}
	switch c.DataType {
	case "tinyint", "smallint", "mediumint", "int", "bigint", "year":
		if !integerLiteral.MatchString(s) {
			return "", fmt.Errorf("value %q is not an integer, and the column is %s", s, c.ColumnType)
		}
		return s, nil
	case "decimal":
		if !decimalLiteral.MatchString(s) {
			return "", fmt.Errorf("value %q is not a decimal number, and the column is %s", s, c.ColumnType)
		}
		return s, nil
	}
	return schema.QuoteString(s), nil
}

var typeArgs = regexp.MustCompile(`^[a-z]+(\([0-9, ]+\))?`)

// RowConditionQuery returns the query a CopyFilter hands to SourceEvaluator.True to judge one
// binlog value of column c (the query's only placeholder) by cond, an SQL condition over the
// table's columns of which only c may appear: the server evaluates cond on the value restored to
// c's type and collation, exactly as the copy's WHERE evaluated it on stored rows. A NULL
// condition is false.
func RowConditionQuery(c *schema.Column, cond string) (string, error) {
	expr, err := rowValueExpr(c)
	if err != nil {
		return "", err
	}
	return "SELECT IFNULL((" + cond + "), 0) <> 0 FROM (SELECT " + expr + " AS " + schema.QuoteIdent(c.Name) + ") AS ferry_row", nil
}

// rowValueExpr returns SQL turning one placeholder, bound to a binlog value of column c as
// normalizeValue leaves it, back into a value of c's type and collation, so that a condition over
// the column evaluates on it exactly as on the stored row. Types whose binlog value cannot be
// restored exactly are refused.
func rowValueExpr(c *schema.Column) (string, error) {
	switch c.DataType {
	case "tinyint", "smallint", "mediumint", "int", "bigint", "year":
		return "?", nil // integers, signed or unsigned as the column
	case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob":
		return "?", nil // bytes, sent as a _binary literal (BINARY(N) already padded to N)
	case "char", "varchar", "tinytext", "text", "mediumtext", "longtext":
		// The value's bytes are in the column's character set: reinterpret them, then compare under
		// the column's collation.
		return fmt.Sprintf("CONVERT(? USING %s) COLLATE %s", c.Charset, c.Collation), nil
	case "decimal":
		return "CAST(? AS " + typeArgs.FindString(strings.ToLower(c.ColumnType)) + ")", nil
	case "date":
		return "CAST(? AS DATE)", nil
	case "datetime", "timestamp":
		// The binlog's TIMESTAMP is decoded in UTC and ferry's sessions run in UTC.
		return "CAST(? AS DATETIME" + strings.TrimPrefix(typeArgs.FindString(strings.ToLower(c.ColumnType)), c.DataType) + ")", nil
	case "time":
		return "CAST(? AS " + typeArgs.FindString(strings.ToLower(c.ColumnType)) + ")", nil
	}
	return "", fmt.Errorf("a %s column cannot be used to filter rows (its binlog values cannot be compared exactly as the server compares the column); filter on an integer, string, DECIMAL or temporal column", c.DataType)
}
