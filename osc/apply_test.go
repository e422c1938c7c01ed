package osc

import (
	"context"
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

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

// One binlog transaction whose changes are larger together than max_allowed_packet is applied in
// several statements, each under it: the apply's multi-row statements are cut by the server's
// max_allowed_packet, not only by a fixed size. (A statement over it is not refused: the driver
// falls back to a server-side prepared statement, two more round trips and every value sent on its
// own; the test sees that fallback in the server's Com_stmt_prepare counter.)
func TestApplyStaysUnderMaxAllowedPacket(t *testing.T) {
	f := newFixture(t, 0)
	var old int
	must(t, f.db.QueryRow("SELECT @@GLOBAL.max_allowed_packet").Scan(&old))
	f.exec("SET GLOBAL max_allowed_packet = 1048576")
	t.Cleanup(func() { srv.Exec(context.Background(), fmt.Sprintf("SET GLOBAL max_allowed_packet = %d", old)) })
	for _, table := range []string{"t", "twin"} {
		f.exec("DROP TABLE " + table)
		f.exec("CREATE TABLE " + table + " (id INT NOT NULL PRIMARY KEY, p TEXT NOT NULL)")
		f.exec("INSERT INTO " + table + " SELECT seq, REPEAT('a', 4000) FROM seq_1_to_400")
	}
	alter := "ADD COLUMN x INT NULL"
	m := f.migration(alter)
	m.Postpone = true
	// the apply takes what is queued: let the transaction's changes queue up, to be applied at once
	var hold atomic.Bool
	m.testApplyDelay = func() time.Duration {
		if hold.CompareAndSwap(true, false) {
			return 2 * time.Second
		}
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := m.Run(ctx); done <- err }()
	for m.Status().State != StatePostponed {
		select {
		case err := <-done:
			t.Fatalf("the migration ended before its cut-over: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// 400 row images of 4 kB in one transaction: 1.6 MB of REPLACE, over the 1 MB packet.
	prepared := func() (n int64) {
		must(t, f.db.QueryRow("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'COM_STMT_PREPARE'").Scan(&n))
		return n
	}
	applied, prepares := m.Status().EventsApplied, prepared()
	hold.Store(true)
	for _, table := range []string{"t", "twin"} {
		f.exec("UPDATE " + table + " SET p = REPEAT('b', 4000)")
	}
	for m.Status().EventsApplied < applied+400 {
		select {
		case err := <-done:
			t.Fatalf("the migration failed applying the transaction: %v (%s)", err, m.Status())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if n := prepared() - prepares; n > 0 {
		t.Errorf("%d statements were sent as prepared statements: the apply's statements did not fit in max_allowed_packet", n)
	}
	m.Unpostpone()
	must(t, <-done)
	f.expect(alter)
}
