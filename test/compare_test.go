package test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"github.com/ferrykit/ferry/sandbox"
)

// rowsOf reads every row of a table as raw bytes, in key order, independent of ferry's code: a
// plain SELECT with the results in the columns' own character sets (no conversion), FLOAT read as
// DOUBLE so no digit is hidden, TIMESTAMP in UTC.
func rowsOf(t testing.TB, s *sandbox.Server, table, where string) [][]sql.RawBytes {
	t.Helper()
	ctx := context.Background()
	db, err := s.DB("")
	must(t, err)
	defer db.Close()
	c, err := db.Conn(ctx)
	must(t, err)
	defer c.Close()
	_, err = c.ExecContext(ctx, "SET character_set_results = binary, time_zone = '+00:00'")
	must(t, err)
	parts := strings.SplitN(table, ".", 2)
	crow, err := c.QueryContext(ctx, `SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, parts[0], parts[1])
	must(t, err)
	var cols []string
	for crow.Next() {
		var n, typ string
		must(t, crow.Scan(&n, &typ))
		if typ == "float" {
			cols = append(cols, "CAST(`"+n+"` AS DOUBLE)")
		} else {
			cols = append(cols, "`"+n+"`")
		}
	}
	crow.Close()
	if len(cols) == 0 {
		t.Fatalf("table %s has no columns (does it exist?)", table)
	}
	var key []string
	krow, err := c.QueryContext(ctx, `SELECT COLUMN_NAME FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX`, parts[0], parts[1])
	must(t, err)
	for krow.Next() {
		var n string
		must(t, krow.Scan(&n))
		key = append(key, "`"+n+"`")
	}
	krow.Close()
	q := fmt.Sprintf("SELECT %s FROM `%s`.`%s`", strings.Join(cols, ", "), parts[0], parts[1])
	if where != "" {
		q += " WHERE " + where
	}
	// Order by the key's bytes so both servers order identically whatever the collation.
	var order []string
	for _, k := range key {
		order = append(order, "CAST("+k+" AS BINARY)")
	}
	q += " ORDER BY " + strings.Join(order, ", ")
	rows, err := c.QueryContext(ctx, q)
	must(t, err)
	defer rows.Close()
	var out [][]sql.RawBytes
	for rows.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		must(t, rows.Scan(ptrs...))
		row := make([]sql.RawBytes, len(cols))
		for i, v := range vals {
			if v != nil {
				row[i] = append(sql.RawBytes{}, v...)
			}
		}
		out = append(out, row)
	}
	must(t, rows.Err())
	return out
}

// assertSameRows fails the test unless both tables hold byte-identical rows.
func assertSameRows(t testing.TB, srcTable, where, dstTable string) int {
	t.Helper()
	a := rowsOf(t, source, srcTable, where)
	b := rowsOf(t, target, dstTable, "")
	diffs := 0
	for i := 0; i < len(a) || i < len(b); i++ {
		if i >= len(a) || i >= len(b) {
			t.Errorf("%s: source has %d rows, target %s has %d", srcTable, len(a), dstTable, len(b))
			return len(a)
		}
		for j := range a[i] {
			if !bytes.Equal(a[i][j], b[i][j]) || (a[i][j] == nil) != (b[i][j] == nil) {
				diffs++
				if diffs <= 5 {
					t.Errorf("%s row %d column %d: source %q, target %q (row key %q / %q)", srcTable, i, j, trunc(a[i][j]), trunc(b[i][j]), trunc(a[i][0]), trunc(b[i][0]))
				}
			}
		}
	}
	if diffs > 0 {
		t.Errorf("%s: %d differing values", srcTable, diffs)
	}
	return len(a)
}

func trunc(b []byte) []byte {
	if b == nil {
		return []byte("NULL")
	}
	if len(b) > 40 {
		return append(append([]byte{}, b[:40]...), "..."...)
	}
	return b
}
