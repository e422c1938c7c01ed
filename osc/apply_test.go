package osc

import (
	"reflect"
	"testing"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/internal/apply"
	"github.com/ferrykit/ferry/schema"
)

// The apply writes each ghost column from its original column through the same conversion the
// copy uses, done by the server (the SQL expression around the binlog value), and deletes by the
// shared key compared in the ghost key column's collation. No server needed: this checks the
// statements the applier sends.
func TestApplyMapping(t *testing.T) {
	col := func(name string, ord int, dataType, columnType, charset, collation string) *schema.Column {
		return &schema.Column{Name: name, Ordinal: ord, DataType: dataType, ColumnType: columnType, Charset: charset, Collation: collation}
	}
	// original (id, name, kind, price, gone, note); the ALTER drops gone, renames note to memo,
	// converts name to utf8mb4, changes kind's members and price from FLOAT to VARCHAR
	id := col("id", 0, "varchar", "varchar(10)", "utf8mb4", "utf8mb4_bin")
	name := col("name", 1, "varchar", "varchar(20)", "latin1", "latin1_swedish_ci")
	kind := col("kind", 2, "enum", "enum('a','b')", "utf8mb4", "utf8mb4_general_ci")
	price := col("price", 3, "float", "float", "", "")
	note := col("note", 5, "json", "json", "", "")
	plan := &Plan{
		Columns: []ColumnMap{
			{From: id, To: col("id", 0, "varchar", "varchar(10)", "utf8mb4", "utf8mb4_bin")},
			{From: name, To: col("name", 1, "varchar", "varchar(20)", "utf8mb4", "utf8mb4_general_ci")},
			{From: kind, To: col("kind", 2, "enum", "enum('a','b','c')", "utf8mb4", "utf8mb4_general_ci")},
			{From: price, To: col("price", 3, "varchar", "varchar(30)", "utf8mb4", "utf8mb4_general_ci")},
			{From: note, To: col("memo", 4, "json", "json", "", "")},
		},
		Key: []*schema.Column{id},
	}
	row := []any{[]byte("k1"), []byte("caf\xe9"), int64(2), float32(0.1), []byte("dropped"), []byte(`{"a":1}`)}
	for _, c := range []struct {
		name       string
		mariaDB    bool
		wantInsert string
		wantDelete string
	}{
		{"MariaDB", true,
			"REPLACE INTO `db`.`_t_gho` (`id`, `name`, `kind`, `price`, `memo`) VALUES (?, CONVERT(CAST(? AS BINARY) USING latin1), ELT(?, 'a','b'), CAST(CAST(? AS FLOAT) AS CHAR), ?)",
			"DELETE FROM `db`.`_t_gho` WHERE (`id` = CONVERT(? USING utf8mb4) COLLATE utf8mb4_bin)"},
		// MySQL refuses binary strings as JSON: the value is declared utf8mb4 first
		{"MySQL", false,
			"REPLACE INTO `db`.`_t_gho` (`id`, `name`, `kind`, `price`, `memo`) VALUES (?, CONVERT(CAST(? AS BINARY) USING latin1), ELT(?, 'a','b'), CAST(CAST(? AS FLOAT) AS CHAR), CAST(CONVERT(? USING utf8mb4) AS JSON))",
			"DELETE FROM `db`.`_t_gho` WHERE (`id` = CONVERT(? USING utf8mb4) COLLATE utf8mb4_bin)"},
	} {
		m := &Migration{Database: "db", Table: "t", plan: plan, zone: "+00:00", flavor: ferry.Flavor{MariaDB: c.mariaDB}}
		am := m.applyMapping()
		stmts := apply.Statements([]apply.Change{
			{Mapping: am, Delete: true, Values: am.KeyOf(row)},
			{Mapping: am, Values: am.Image(row)},
		})
		want := []apply.Statement{
			{Query: c.wantDelete, Args: []any{[]byte("k1")}},
			// the dropped column's value is not written; the renamed one goes to its new name
			{Query: c.wantInsert, Args: []any{[]byte("k1"), []byte("caf\xe9"), int64(2), float32(0.1), []byte(`{"a":1}`)}},
		}
		if !reflect.DeepEqual(stmts, want) {
			t.Errorf("%s:\n got %q\nwant %q", c.name, stmts, want)
		}
	}
	// a key change is delete + set; an update that keeps the key is a set only
	am := (&Migration{Database: "db", Table: "t", plan: plan, zone: "+00:00"}).applyMapping()
	changed := append([]any(nil), row...)
	changed[1] = []byte("other")
	if !am.SameKey(row, changed) {
		t.Error("an update of a non-key column is seen as a key change")
	}
	changed[0] = []byte("K1")
	if am.SameKey(row, changed) {
		t.Error("a key changed in case only is not seen as a key change (keys compare byte for byte)")
	}
}
