package schema

import (
	"reflect"
	"strings"
	"testing"
)

var (
	intCol      = &Column{Name: "id", DataType: "int", ColumnType: "int(11)"}
	uintCol     = &Column{Name: "id", DataType: "bigint", ColumnType: "bigint(20) unsigned", Unsigned: true}
	strCol      = &Column{Name: "s", DataType: "varchar", ColumnType: "varchar(20)", Charset: "utf8mb4", Collation: "utf8mb4_unicode_ci"}
	binCol      = &Column{Name: "b", DataType: "varbinary", ColumnType: "varbinary(16)", Charset: "binary", Collation: "binary"}
	decCol      = &Column{Name: "d", DataType: "decimal", ColumnType: "decimal(10,2)"}
	dateCol     = &Column{Name: "t", DataType: "datetime", ColumnType: "datetime(6)"}
	yearCol     = &Column{Name: "y", DataType: "year", ColumnType: "year(4)"}
	backtickCol = &Column{Name: "a`b", DataType: "int", ColumnType: "int(11)"}
	enumCol     = &Column{Name: "e", DataType: "enum", ColumnType: "enum('b','a')", Charset: "utf8mb4", Collation: "utf8mb4_general_ci"}
)

func TestKeyPlaceholder(t *testing.T) {
	for _, c := range []struct {
		col  *Column
		want string
	}{
		// characters are compared in the column's own character set and collation, so the index
		// is used and the order is the server's ORDER BY order
		{strCol, "CONVERT(? USING utf8mb4) COLLATE utf8mb4_unicode_ci"},
		// decimals as DECIMAL, not as the double a string would be compared as
		{decCol, "CAST(? AS DECIMAL(65,30))"},
		{intCol, "?"},
		{binCol, "?"},
		{dateCol, "?"},
		// an ENUM key by its member number: the server sorts ENUM keys by it, not by the label
		{enumCol, "?"},
	} {
		if got := KeyPlaceholder(c.col); got != c.want {
			t.Errorf("KeyPlaceholder(%s %s) = %q, want %q", c.col.Name, c.col.ColumnType, got, c.want)
		}
	}
}

func TestKeyArg(t *testing.T) {
	for _, c := range []struct {
		name    string
		col     *Column
		in      any
		want    any
		wantErr string
	}{
		// integers go as numbers: compared as a string they would be compared as doubles, which
		// are not exact above 2^53
		{"signed", intCol, []byte("-42"), int64(-42), ""},
		{"beyond 2^53", &Column{Name: "id", DataType: "bigint"}, []byte("9007199254740993"), int64(9007199254740993), ""},
		{"unsigned max", uintCol, []byte("18446744073709551615"), uint64(18446744073709551615), ""},
		{"year", yearCol, []byte("2024"), int64(2024), ""},
		{"enum member number (read as e+0)", enumCol, []byte("2"), int64(2), ""},
		{"not an integer", intCol, []byte("4x"), nil, `key column id: "4x" is not an integer`},
		{"not unsigned", uintCol, []byte("-1"), nil, `key column id: "-1" is not an unsigned integer`},
		{"string passes through", strCol, []byte("abc"), []byte("abc"), ""},
		{"decimal passes through", decCol, []byte("1.50"), []byte("1.50"), ""},
		{"already typed", intCol, int64(7), int64(7), ""},
		{"NULL", intCol, nil, nil, ""},
	} {
		got, err := KeyArg(c.col, c.in)
		if c.wantErr != "" {
			if err == nil || err.Error() != c.wantErr {
				t.Errorf("%s: error %v, want %q", c.name, err, c.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: KeyArg = %#v, %v; want %#v", c.name, got, err, c.want)
		}
	}
}

func TestKeyCompare(t *testing.T) {
	for _, c := range []struct {
		name      string
		cols      []*Column
		vals      []any
		op        string
		inclusive bool
		wantSQL   string
		wantArgs  []any
	}{
		{"one column, after", []*Column{intCol}, []any{1}, ">", false,
			"((`id` > ?))", []any{1}},
		{"one column, up to and including", []*Column{intCol}, []any{9}, "<", true,
			"((`id` <= ?))", []any{9}},
		// a row comparison (a, b) > (?, ?) is expanded so that every server's range optimizer uses
		// the index: a > x OR (a = x AND b > y)
		{"two columns, after", []*Column{intCol, strCol}, []any{1, "x"}, ">", false,
			"((`id` > ?) OR (`id` = ? AND `s` > CONVERT(? USING utf8mb4) COLLATE utf8mb4_unicode_ci))", []any{1, 1, "x"}},
		{"three columns, up to", []*Column{intCol, decCol, dateCol}, []any{1, "2.5", "2024-01-01"}, "<", true,
			"((`id` < ?) OR (`id` = ? AND `d` < CAST(? AS DECIMAL(65,30))) OR (`id` = ? AND `d` = CAST(? AS DECIMAL(65,30)) AND `t` <= ?))",
			[]any{1, 1, "2.5", 1, "2.5", "2024-01-01"}},
		{"quoted names", []*Column{backtickCol}, []any{3}, ">", false,
			"((`a``b` > ?))", []any{3}},
	} {
		gotSQL, gotArgs := KeyCompare(c.cols, c.vals, c.op, c.inclusive)
		if gotSQL != c.wantSQL {
			t.Errorf("%s: SQL\n got %s\nwant %s", c.name, gotSQL, c.wantSQL)
		}
		if !reflect.DeepEqual(gotArgs, c.wantArgs) {
			t.Errorf("%s: args %v, want %v", c.name, gotArgs, c.wantArgs)
		}
		if n := strings.Count(gotSQL, "?"); n != len(gotArgs) {
			t.Errorf("%s: %d placeholders, %d args", c.name, n, len(gotArgs))
		}
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{"t": "`t`", "a`b": "`a``b`", "": "``"} {
		if got := QuoteIdent(in); got != want {
			t.Errorf("QuoteIdent(%q) = %s, want %s", in, got, want)
		}
	}
	for in, want := range map[string]string{"it's": `'it\'s'`, `a\b`: `'a\\b'`, "nul\x00": `'nul\0'`, "l1\nl2": `'l1\nl2'`} {
		if got := QuoteString(in); got != want {
			t.Errorf("QuoteString(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestTableHelpers(t *testing.T) {
	tb := &Table{Database: "db", Name: "t", KeyName: "PRIMARY", Key: []int{1, 0},
		Columns: []Column{{Name: "a", Ordinal: 0, ColumnType: "int"}, {Name: "B", Ordinal: 1, ColumnType: "int"},
			{Name: "g", Ordinal: 2, ColumnType: "int", Generated: true}}}
	if got := tb.QualifiedName(); got != "`db`.`t`" {
		t.Errorf("QualifiedName = %s", got)
	}
	if k := tb.KeyColumns(); len(k) != 2 || k[0].Name != "B" || k[1].Name != "a" {
		t.Errorf("KeyColumns = %v, want B, a (key order, not table order)", k)
	}
	if c := tb.Column("b"); c == nil || c.Name != "B" {
		t.Errorf("Column(b) = %v, want B (names are case-insensitive)", c)
	}
	if w := tb.WritableColumns(); len(w) != 2 {
		t.Errorf("WritableColumns = %d columns, want 2 (the generated one is not written)", len(w))
	}
	changed := *tb
	changed.Columns = append([]Column(nil), tb.Columns...)
	changed.Columns[0].ColumnType = "bigint"
	if tb.Fingerprint() == changed.Fingerprint() {
		t.Error("a changed column type does not change the fingerprint")
	}
}

func TestKeyArgs(t *testing.T) {
	cols := []*Column{intCol, strCol}
	got, err := KeyArgs(cols, [][]byte{[]byte("12"), []byte("x")})
	if err != nil || !reflect.DeepEqual(got, []any{int64(12), []byte("x")}) {
		t.Errorf("KeyArgs = %#v, %v", got, err)
	}
	if _, err := KeyArgs(cols, [][]byte{[]byte("12")}); err == nil || err.Error() != "key has 1 values, the table's key has 2 columns" {
		t.Errorf("KeyArgs with a short key: %v", err)
	}
	if _, err := KeyArgs(cols, [][]byte{[]byte("x"), []byte("y")}); err == nil {
		t.Error("KeyArgs accepts a non-integer for an integer column")
	}
}

func TestKeyRange(t *testing.T) {
	k := func(v string) [][]byte { return [][]byte{[]byte(v)} }
	for _, c := range []struct {
		name        string
		after, upTo [][]byte
		conds       []string
		args        []any
		err         string
	}{
		{"whole table", nil, nil, nil, nil, ""},
		{"after only", k("10"), nil, []string{"((`id` > ?))"}, []any{int64(10)}, ""},
		{"up to only", nil, k("20"), []string{"((`id` <= ?))"}, []any{int64(20)}, ""},
		{"both", k("10"), k("20"), []string{"((`id` > ?))", "((`id` <= ?))"}, []any{int64(10), int64(20)}, ""},
		{"bad bound", k("x"), nil, nil, nil, `key column id: "x" is not an integer`},
	} {
		t.Run(c.name, func(t *testing.T) {
			conds, args, err := KeyRange([]*Column{intCol}, c.after, c.upTo)
			if c.err != "" {
				if err == nil || err.Error() != c.err {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(conds, c.conds) || !reflect.DeepEqual(args, c.args) {
				t.Fatalf("got %q %v, want %q %v", conds, args, c.conds, c.args)
			}
		})
	}
}
