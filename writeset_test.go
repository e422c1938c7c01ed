package ferry

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry/sandbox"
	"github.com/ferrykit/ferry/schema"
)

// The writeset's string fold must be at least as coarse as the server's own comparison: any two
// strings a collation considers equal must hash alike, or the parallel apply could run two
// transactions on the same unique value at once. Checked against every collation of the
// ASCII-compatible charsets the server has, for all printable-ASCII strings of one and two
// characters and with trailing spaces: grouped by the collation, each group must have one folded
// form. Strings the fold does not cover must be refused (their transactions become barriers).
func TestWritesetFoldIsCoarserThanTheCollations(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, err := sandbox.Start(ctx, sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	db, err := srv.DB("")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	fold := func(s string, mode collationMode) string {
		b, ok := appendNormalized(nil, []byte(s), mode)
		if !ok {
			t.Fatalf("printable ASCII %q refused", s)
		}
		return string(b)
	}
	var strs []string
	for c := byte(0x20); c <= 0x7e; c++ {
		strs = append(strs, string(c), string(c)+"  ")
		for d := byte(0x20); d <= 0x7e; d++ {
			strs = append(strs, string([]byte{c, d}))
		}
	}
	if _, err := db.ExecContext(ctx, "CREATE DATABASE ws"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE ws.s (s VARBINARY(8) NOT NULL, folded VARBINARY(8) NOT NULL, trimmed VARBINARY(8) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(strs); i += 1000 {
		part := strs[i:min(i+1000, len(strs))]
		var q strings.Builder
		var args []any
		q.WriteString("INSERT INTO ws.s VALUES ")
		for j, s := range part {
			if j > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?)")
			args = append(args, []byte(s), []byte(fold(s, foldASCII)), []byte(fold(s, binCollation)))
		}
		if _, err := db.ExecContext(ctx, q.String(), args...); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := db.QueryContext(ctx, "SELECT COLLATION_NAME, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE CHARACTER_SET_NAME IN ('ascii', 'latin1', 'utf8mb3', 'utf8mb4')")
	if err != nil {
		t.Fatal(err)
	}
	type coll struct{ name, charset string }
	var colls []coll
	for rows.Next() {
		var c coll
		if err := rows.Scan(&c.name, &c.charset); err != nil {
			t.Fatal(err)
		}
		colls = append(colls, c)
	}
	rows.Close()
	if len(colls) < 50 {
		t.Fatalf("only %d collations found", len(colls))
	}
	folded := map[string]bool{}
	for _, c := range colls {
		mode := modeOf(&schema.Column{Charset: c.charset, Collation: c.name})
		if mode == opaque {
			continue // tables with a unique key in it are applied serially
		}
		folded[c.name] = mode == foldASCII
		col := "folded"
		if mode == binCollation {
			col = "trimmed"
		}
		var n int
		var example string
		err := db.QueryRowContext(ctx, fmt.Sprintf(`SELECT COUNT(*), IFNULL(MAX(g), '') FROM (SELECT GROUP_CONCAT(QUOTE(s)) g FROM ws.s
			GROUP BY CONVERT(s USING %s) COLLATE %s HAVING COUNT(DISTINCT %s) > 1) x`, c.charset, c.name, col)).Scan(&n, &example)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if n > 0 {
			t.Errorf("collation %s: %d groups of equal strings hash differently, e.g. %s", c.name, n, example)
		}
	}
	for _, name := range []string{"latin1_swedish_ci", "utf8mb4_general_ci", "utf8mb4_unicode_ci", "utf8mb4_unicode_520_ci"} {
		if !folded[name] {
			t.Errorf("%s: want it described by the ASCII fold (and checked above)", name)
		}
	}
	if m := modeOf(&schema.Column{Charset: "utf8mb4", Collation: "utf8mb4_lithuanian_ci"}); m != opaque {
		t.Error("a language tailoring (lithuanian_ci: 'i' = 'y') must describe nothing")
	}
	for _, s := range []string{"é", "straße", "a\x01", "tab\t"} {
		if _, ok := appendNormalized(nil, []byte(s), foldASCII); ok {
			t.Errorf("%q folded: only printable ASCII may be, the rest makes a barrier", s)
		}
	}
	if _, ok := appendNormalized(nil, []byte("é"), binCollation); !ok {
		t.Error("a _bin collation compares code points: any string has a form")
	}
}

// What a transaction's writeset holds: every unique value of both images (a moved key conflicts
// with both keys), values equal under the column's collation hash alike, a NULL in a unique key
// identifies nothing, and what cannot be described makes the table or the transaction serial.
func TestWritesetOfRowImages(t *testing.T) {
	src := &schema.Table{Database: "d", Name: "t", Columns: []schema.Column{
		{Name: "id", Ordinal: 0, DataType: "int"},
		{Name: "name", Ordinal: 1, DataType: "varchar", Charset: "utf8mb4", Collation: "utf8mb4_general_ci", Nullable: true},
		{Name: "code", Ordinal: 2, DataType: "varbinary", Charset: "binary", Collation: ""},
	}, Key: []int{0}, KeyName: "PRIMARY", UniqueKeys: map[string][]string{"PRIMARY": {"id"}, "name": {"name"}, "code": {"code"}}}
	tc := &TableCopy{Source: src, TargetDatabase: "d", TargetTable: "t"}
	ws := tc.buildWriteset()
	if ws.serial != "" {
		t.Fatalf("serial: %s", ws.serial)
	}
	hash := func(row ...any) map[uint64]bool {
		h, ok := ws.hashRow(nil, row)
		if !ok {
			t.Fatalf("%v: not described", row)
		}
		out := map[uint64]bool{}
		for _, x := range h {
			out[x] = true
		}
		return out
	}
	shares := func(a, b map[uint64]bool) bool {
		for k := range a {
			if b[k] {
				return true
			}
		}
		return false
	}
	if !shares(hash(int64(1), []byte("Anna"), []byte("x")), hash(int64(2), []byte("aNNA  "), []byte("y"))) {
		t.Error("'Anna' and 'aNNA  ' are one value in utf8mb4_general_ci: they must conflict")
	}
	if shares(hash(int64(1), []byte("x"), []byte("AB")), hash(int64(2), []byte("y"), []byte("ab"))) {
		t.Error("'AB' and 'ab' differ in a binary column: no conflict expected")
	}
	if shares(hash(int64(1), nil, []byte("a")), hash(int64(2), nil, []byte("b"))) {
		t.Error("two NULL names identify no row: no conflict expected")
	}
	if !shares(hash(int64(7), []byte("p"), []byte("q")), hash(int64(7), []byte("r"), []byte("s"))) {
		t.Error("the same primary key must conflict")
	}
	if _, ok := ws.hashRow(nil, []any{int64(1), []byte("José"), []byte("x")}); ok {
		t.Error("a non-ASCII string in a _ci collation must make the transaction a barrier")
	}

	prefixed := *src
	prefixed.PrefixKeys = map[string]bool{"name": true}
	if w := (&TableCopy{Source: &prefixed, TargetDatabase: "d", TargetTable: "t"}).buildWriteset(); w.serial == "" {
		t.Error("a unique key on a column prefix must make the table serial")
	}
	tailored := *src
	tailored.Columns = append([]schema.Column(nil), src.Columns...)
	tailored.Columns[1].Collation = "utf8mb4_lithuanian_ci"
	if w := (&TableCopy{Source: &tailored, TargetDatabase: "d", TargetTable: "t"}).buildWriteset(); w.serial == "" {
		t.Error("a unique key in a tailored collation must make the table serial")
	}
	// A unique key only the target has is part of the writeset too.
	target := &schema.Table{Database: "d", Name: "t", Columns: src.Columns, UniqueKeys: map[string][]string{"PRIMARY": {"id"}, "extra": {"code", "id"}}}
	withTarget := &TableCopy{Source: src, TargetDatabase: "d", TargetTable: "t", target: target}
	if n := len(withTarget.buildWriteset().keys); n != 5 {
		t.Errorf("%d keys hashed, want the source's 3 and the target's 2", n)
	}
}
