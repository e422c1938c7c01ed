package ferry

import (
	"fmt"
	"strings"
	"sync"

	"github.com/ferrykit/ferry/internal/apply"
	"github.com/ferrykit/ferry/schema"
)

// TableCopy is one source table and where its rows go: everything the copy and the binlog apply
// need to know about a table, computed once by Initialize.
type TableCopy struct {
	Source         *schema.Table
	TargetDatabase string
	TargetTable    string
	// Condition is the copy filter's SQL condition for this table ("" for every row).
	Condition string
	// Columns are the columns written on the target: every non-generated column, in table order.
	Columns []*schema.Column
	// EstimatedRows is the server's estimate of the table's size, for progress and range splitting.
	EstimatedRows int64

	mariaDB bool
	mu      sync.Mutex
	state   *TableState

	mappingOnce sync.Once
	mapping     *apply.Mapping

	// target is the target table as Initialize found it (nil for a host-built TableCopy): its
	// unique keys are part of the parallel apply's writesets.
	target       *schema.Table
	writesetOnce sync.Once
	ws           *writeset

	// cascades are the cascading foreign keys ferry applies when a row of this table is deleted or
	// re-keyed (Config.ApplyForeignKeyCascades).
	cascades []*cascadeRule
	// copyAfter are tables whose copy must be complete before this table's starts: a cascade
	// finds this table's rows through theirs.
	copyAfter []*TableCopy
}

// applyMapping is how the binlog writer writes this table's row changes (package apply): every
// written column from its own value, deleted by the source's key compared in each key column's
// collation.
func (t *TableCopy) applyMapping() *apply.Mapping {
	t.mappingOnce.Do(func() {
		m := &apply.Mapping{Target: t.TargetName()}
		for _, c := range t.Columns {
			m.Columns = append(m.Columns, apply.Column{Name: c.Name, Source: c.Ordinal, Expr: t.valuePlaceholder(c)})
		}
		for _, c := range t.Source.KeyColumns() {
			m.Key = append(m.Key, apply.Column{Name: c.Name, Source: c.Ordinal, Expr: schema.KeyPlaceholder(c)})
		}
		t.mapping = m
	})
	return t.mapping
}

// TargetName is `db`.`table` of the target, quoted.
func (t *TableCopy) TargetName() string {
	return schema.QuoteIdent(t.TargetDatabase) + "." + schema.QuoteIdent(t.TargetTable)
}

// String names the copy for logs: "src.t -> dst.t2".
func (t *TableCopy) String() string {
	s := t.Source.String()
	if t.TargetDatabase != t.Source.Database || t.TargetTable != t.Source.Name {
		s += " -> " + t.TargetDatabase + "." + t.TargetTable
	}
	return s
}

func newTableCopy(src *schema.Table, targetDB, targetTable, condition string, mariaDB bool) (*TableCopy, error) {
	t := &TableCopy{Source: src, TargetDatabase: targetDB, TargetTable: targetTable, Condition: condition, mariaDB: mariaDB,
		state: &TableState{Fingerprint: src.Fingerprint()}}
	t.Columns = src.WritableColumns()
	for _, k := range src.KeyColumns() {
		if k.Generated {
			return nil, fmt.Errorf("table %s: key column %s is a generated column; ferry cannot page by it", src, k.Name)
		}
		switch k.DataType {
		case "enum", "set", "float", "double", "bit", "json", "geometry":
			return nil, fmt.Errorf("table %s: key column %s has type %s, which ferry cannot page by (the server orders it differently from its value); use a table whose primary key is an integer, string, decimal, temporal or binary column", src, k.Name, k.DataType)
		}
	}
	return t, nil
}

// selectColumns is the column list of the copy's SELECT. FLOAT is read as DOUBLE: MariaDB prints FLOAT
// with 6 significant digits, which would not round-trip; the double value converts back exactly.
func (t *TableCopy) selectColumns() string {
	parts := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		q := schema.QuoteIdent(c.Name)
		if c.IsFloat() {
			q = "CAST(" + q + " AS DOUBLE)"
		}
		parts[i] = q
	}
	return strings.Join(parts, ", ")
}

// insertColumns is the column list of writes to the target.
func (t *TableCopy) insertColumns() string {
	parts := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		parts[i] = schema.QuoteIdent(c.Name)
	}
	return strings.Join(parts, ", ")
}

// valuePlaceholder is the SQL expression a written value takes for column c. Values travel as
// _binary literals (bytes, not characters); MySQL refuses binary strings as JSON, so there the
// value is declared utf8mb4 first.
func (t *TableCopy) valuePlaceholder(c *schema.Column) string {
	if c.DataType == "json" && !t.mariaDB {
		return "CAST(CONVERT(? USING utf8mb4) AS JSON)"
	}
	return "?"
}

// rowPlaceholders is "(?, ?, ...)" for one row.
func (t *TableCopy) rowPlaceholders() string {
	parts := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		parts[i] = t.valuePlaceholder(c)
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// orderByKey is "ORDER BY a, b".
func orderByKey(cols []*schema.Column) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = schema.QuoteIdent(c.Name)
	}
	return "ORDER BY " + strings.Join(parts, ", ")
}

// keyIndexes returns the positions of the key columns inside t.Columns.
func (t *TableCopy) keyIndexes() []int {
	out := make([]int, 0, len(t.Source.Key))
	for _, k := range t.Source.Key {
		for i, c := range t.Columns {
			if c.Ordinal == k {
				out = append(out, i)
			}
		}
	}
	return out
}

func (t *TableCopy) setRanges(r []*KeyRange) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.state.Ranges = r
}

func (t *TableCopy) rangesSnapshot() []KeyRange {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]KeyRange, len(t.state.Ranges))
	for i, r := range t.state.Ranges {
		out[i] = *r
	}
	return out
}

func (t *TableCopy) rangeSnapshot(i int) KeyRange {
	t.mu.Lock()
	defer t.mu.Unlock()
	return *t.state.Ranges[i]
}

func (t *TableCopy) recordCopied(i int, last Key, n int, done bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.state.Ranges[i]
	if last != nil {
		r.Last = last
	}
	r.Done = r.Done || done
	t.state.RowsCopied += int64(n)
	if done {
		t.state.Completed = true
		for _, r := range t.state.Ranges {
			t.state.Completed = t.state.Completed && r.Done
		}
	}
}

func (t *TableCopy) markCompletedIfDone() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.state.Ranges) == 0 {
		return
	}
	for _, r := range t.state.Ranges {
		if !r.Done {
			return
		}
	}
	t.state.Completed = true
}

// State returns a copy of the table's copy progress.
func (t *TableCopy) State() TableState {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := *t.state
	c.Ranges = make([]*KeyRange, len(t.state.Ranges))
	for i, r := range t.state.Ranges {
		rc := *r
		c.Ranges[i] = &rc
	}
	return c
}
