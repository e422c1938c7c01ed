// Package schema loads and describes table metadata: columns, their types, and the key ferry pages by.
//
// Metadata comes from information_schema, never from SHOW INDEX / SHOW COLUMNS scanned by position
// (MariaDB 10.6+ adds columns to those and positional scanners break). A Table is a snapshot: if the
// table is altered while ferry runs, the binlog streamer notices and stops, so a Table never
// silently describes rows it was not loaded for.
//
// The paging key is the primary key, or, without one, the first unique key whose columns are all
// NOT NULL. Every column of that key is used (composite keys are paged as a tuple); its order is
// always the server's own, because key values are compared only by the server.
package schema

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Column is one column of a table.
type Column struct {
	Name       string
	Ordinal    int    // 0-based position in the table
	DataType   string // lower case, e.g. "int", "varchar", "json"
	ColumnType string // full type, e.g. "bigint(20) unsigned", "enum('a','b')"
	Nullable   bool
	Unsigned   bool
	Charset    string // empty for non-character columns
	Collation  string
	// Generated is true for VIRTUAL and STORED generated columns: they are never written, the
	// server computes them on the target.
	Generated bool
	// Virtual is true for VIRTUAL generated columns (MySQL 8.0.23+ leaves them out of row events).
	Virtual bool
	// OctetLength is the maximum length in bytes of a character or binary column.
	OctetLength int64
}

// IsFloat reports a FLOAT column. Its text form is rounded to 6 digits by MariaDB, so it must be read
// as CAST(col AS DOUBLE) to survive a round trip.
func (c *Column) IsFloat() bool { return c.DataType == "float" }

// IsBinaryFixed reports a BINARY(N) column, whose values lose their trailing zero bytes in the binlog.
func (c *Column) IsBinaryFixed() bool { return c.DataType == "binary" }

// Table describes one table.
type Table struct {
	Database string
	Name     string
	Columns  []Column
	// KeyName is "PRIMARY" or the name of the unique index used as the paging key.
	KeyName string
	// Key holds the indexes into Columns of the paging key's columns, in key order.
	Key []int
	// UniqueKeys lists every unique index (including the primary key) by name → column names.
	UniqueKeys map[string][]string
	// PrefixKeys names the unique indexes among UniqueKeys that index only a prefix of a column
	// (their uniqueness is on the prefix, not the whole value).
	PrefixKeys map[string]bool
	// CreateTable is the output of SHOW CREATE TABLE.
	CreateTable string
}

// ErrNoKey is returned (wrapped) for a table without a primary key or a NOT NULL unique key.
var ErrNoKey = errors.New("table has no primary key and no unique key on NOT NULL columns")

// ErrNoTable is returned (wrapped) when the table does not exist.
var ErrNoTable = errors.New("table does not exist")

// QualifiedName is `db`.`table`, quoted.
func (t *Table) QualifiedName() string { return QuoteIdent(t.Database) + "." + QuoteIdent(t.Name) }

// String is db.table, unquoted, for messages.
func (t *Table) String() string { return t.Database + "." + t.Name }

// KeyColumns returns the paging key's columns.
func (t *Table) KeyColumns() []*Column {
	out := make([]*Column, len(t.Key))
	for i, k := range t.Key {
		out[i] = &t.Columns[k]
	}
	return out
}

// Column returns the column with this name (case-insensitive), or nil.
func (t *Table) Column(name string) *Column {
	for i := range t.Columns {
		if strings.EqualFold(t.Columns[i].Name, name) {
			return &t.Columns[i]
		}
	}
	return nil
}

// WritableColumns returns the columns that are written on the target: every non-generated column.
func (t *Table) WritableColumns() []*Column {
	var out []*Column
	for i := range t.Columns {
		if !t.Columns[i].Generated {
			out = append(out, &t.Columns[i])
		}
	}
	return out
}

// Fingerprint is a stable description of the table's columns and key, used to detect that a table
// changed between a checkpoint and a resume.
func (t *Table) Fingerprint() string {
	var b strings.Builder
	for _, c := range t.Columns {
		fmt.Fprintf(&b, "%s %s %v %s %v;", c.Name, c.ColumnType, c.Nullable, c.Collation, c.Generated)
	}
	fmt.Fprintf(&b, "key %s %v", t.KeyName, t.Key)
	return b.String()
}

// QuoteIdent quotes a MySQL identifier with backticks.
func QuoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

var stringEscaper = strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\x00", `\0`, "\n", `\n`, "\r", `\r`, "\x1a", `\Z`)

// QuoteString quotes a string literal for MySQL (for metadata queries built as text).
func QuoteString(s string) string { return "'" + stringEscaper.Replace(s) + "'" }

// ScanRaw scans the current row of rows, every column as the server's bytes (nil for NULL; valid
// until the next call of rows.Next).
func ScanRaw(rows *sql.Rows) ([]sql.RawBytes, error) {
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	return vals, nil
}

// RowByName runs query and returns its first row by column name (NULL as an invalid NullString),
// or nil when it returns no row: for SHOW statements whose columns differ between servers and
// versions (SHOW SLAVE STATUS, SHOW REPLICA STATUS).
func RowByName(ctx context.Context, db Querier, query string) (map[string]sql.NullString, error) {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if !rows.Next() {
		return nil, rows.Err()
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	out := make(map[string]sql.NullString, len(cols))
	for i, c := range cols {
		out[c] = vals[i]
	}
	return out, rows.Close()
}

// Querier is satisfied by *sql.DB, *sql.Conn and *sql.Tx.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Load reads the metadata of database.table.
func Load(ctx context.Context, db Querier, database, table string) (*Table, error) {
	t := &Table{Database: database, Name: table, UniqueKeys: map[string][]string{}}
	rows, err := db.QueryContext(ctx, `SELECT COLUMN_NAME, ORDINAL_POSITION, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE,
		IFNULL(CHARACTER_SET_NAME,''), IFNULL(COLLATION_NAME,''), IFNULL(EXTRA,''), IFNULL(CHARACTER_OCTET_LENGTH,0)
		FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, database, table)
	if err != nil {
		return nil, fmt.Errorf("load columns of %s.%s: %w", database, table, err)
	}
	for rows.Next() {
		var c Column
		var nullable, extra string
		var ordinal int
		if err := rows.Scan(&c.Name, &ordinal, &c.DataType, &c.ColumnType, &nullable, &c.Charset, &c.Collation, &extra, &c.OctetLength); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load columns of %s.%s: %w", database, table, err)
		}
		c.Ordinal = len(t.Columns)
		c.DataType = strings.ToLower(c.DataType)
		c.Nullable = nullable == "YES"
		c.Unsigned = strings.Contains(strings.ToLower(c.ColumnType), "unsigned")
		ex := strings.ToUpper(extra)
		c.Generated = strings.Contains(ex, "VIRTUAL") || strings.Contains(ex, "STORED") || strings.Contains(ex, "PERSISTENT")
		c.Virtual = strings.Contains(ex, "VIRTUAL")
		t.Columns = append(t.Columns, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load columns of %s.%s: %w", database, table, err)
	}
	if len(t.Columns) == 0 {
		return nil, fmt.Errorf("%s.%s: %w", database, table, ErrNoTable)
	}

	type index struct {
		cols []string
	}
	idx := map[string]*index{}
	rows, err = db.QueryContext(ctx, `SELECT INDEX_NAME, COLUMN_NAME, SEQ_IN_INDEX, IFNULL(SUB_PART, 0) FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 ORDER BY INDEX_NAME, SEQ_IN_INDEX`, database, table)
	if err != nil {
		return nil, fmt.Errorf("load indexes of %s.%s: %w", database, table, err)
	}
	prefix := map[string]bool{}
	for rows.Next() {
		var name, col string
		var seq, sub int
		if err := rows.Scan(&name, &col, &seq, &sub); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load indexes of %s.%s: %w", database, table, err)
		}
		if idx[name] == nil {
			idx[name] = &index{}
		}
		idx[name].cols = append(idx[name].cols, col)
		if sub > 0 {
			prefix[name] = true // a prefix index does not identify a row by the full value
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load indexes of %s.%s: %w", database, table, err)
	}
	t.PrefixKeys = prefix
	names := make([]string, 0, len(idx))
	for n := range idx {
		t.UniqueKeys[n] = idx[n].cols
		names = append(names, n)
	}
	sort.Strings(names)
	choose := func(name string) bool {
		if prefix[name] {
			return false
		}
		var key []int
		for _, cn := range idx[name].cols {
			c := t.Column(cn)
			if c == nil || c.Nullable {
				return false
			}
			key = append(key, c.Ordinal)
		}
		t.KeyName, t.Key = name, key
		return true
	}
	if _, ok := idx["PRIMARY"]; !ok || !choose("PRIMARY") {
		for _, n := range names {
			if n != "PRIMARY" && choose(n) {
				break
			}
		}
	}
	if t.Key == nil {
		return nil, fmt.Errorf("%s.%s: %w; add a primary key (ferry pages and applies changes by key)", database, table, ErrNoKey)
	}
	var create string
	if err := db.QueryRowContext(ctx, "SHOW CREATE TABLE "+t.QualifiedName()).Scan(new(string), &create); err != nil {
		return nil, fmt.Errorf("show create table %s: %w", t, err)
	}
	t.CreateTable = create
	return t, nil
}

// ListTables returns the base tables of a database, sorted.
func ListTables(ctx context.Context, db Querier, database string) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME`, database)
	if err != nil {
		return nil, fmt.Errorf("list tables of %s: %w", database, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// ListDatabases returns the databases of a server, without the system schemas.
func ListDatabases(ctx context.Context, db Querier) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT SCHEMA_NAME FROM information_schema.SCHEMATA
		WHERE SCHEMA_NAME NOT IN ('mysql','information_schema','performance_schema','sys') ORDER BY SCHEMA_NAME`)
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}
