package ferry

import (
	"context"
	"fmt"
	"testing"

	"github.com/ferrykit/ferry/internal/apply"
	"github.com/ferrykit/ferry/schema"
)

// Benchmarks of the hot functions of the copy and the binlog apply, on an orders-like table (the
// shape `make bench` generates). No server is needed; run with
//
//	go test -run '^$' -bench . -benchmem .

func benchOrdersTable(b *testing.B) *TableCopy {
	b.Helper()
	cols := []schema.Column{
		{Name: "id", DataType: "bigint", ColumnType: "bigint(20)"},
		{Name: "customer_id", DataType: "int", ColumnType: "int(11)"},
		{Name: "status", DataType: "tinyint", ColumnType: "tinyint(4)"},
		{Name: "quantity", DataType: "int", ColumnType: "int(11)", Nullable: true},
		{Name: "title", DataType: "varchar", ColumnType: "varchar(120)", Charset: "utf8mb4", Collation: "utf8mb4_general_ci", OctetLength: 480},
		{Name: "note", DataType: "varchar", ColumnType: "varchar(255)", Charset: "utf8mb4", Collation: "utf8mb4_general_ci", OctetLength: 1020, Nullable: true},
		{Name: "amount", DataType: "decimal", ColumnType: "decimal(12,2)"},
		{Name: "created_at", DataType: "datetime", ColumnType: "datetime(6)"},
		{Name: "updated_at", DataType: "datetime", ColumnType: "datetime(6)", Nullable: true},
		{Name: "attrs", DataType: "longtext", ColumnType: "longtext", Charset: "utf8mb4", Collation: "utf8mb4_bin", OctetLength: 4294967295, Nullable: true},
		{Name: "payload", DataType: "blob", ColumnType: "blob", OctetLength: 65535, Nullable: true},
	}
	for i := range cols {
		cols[i].Ordinal = i
	}
	src := &schema.Table{Database: "shop", Name: "orders", Columns: cols, KeyName: "PRIMARY", Key: []int{0},
		UniqueKeys: map[string][]string{"PRIMARY": {"id"}}}
	t, err := newTableCopy(src, "shop", "orders", "", true)
	if err != nil {
		b.Fatal(err)
	}
	return t
}

// benchRow is one row as the copy reads it: every value as bytes (text protocol), NULL as nil.
func benchRow(id int) []any {
	payload := make([]byte, 64)
	for i := range payload {
		payload[i] = byte(id + i)
	}
	return []any{
		[]byte(fmt.Sprint(id)), []byte("48213"), []byte("3"), []byte("7"),
		[]byte("parcel café Straße 配送"), []byte("express gift wrap доставка 🚚 return order naïve crème brûlée"),
		[]byte("1234.56"), []byte("2024-03-01 12:34:56.123456"), nil,
		[]byte(`{"sku": "SKU-004711", "tags": ["gift", "東京"], "weight": 3.25, "gift": true, "city": "Kraków"}`),
		payload,
	}
}

// benchImage is one row image as the binlog streamer hands it over (after normalizeValue).
func benchImage(id int, q int) []any {
	r := benchRow(id)
	r[0] = int64(id)
	r[1] = int64(48213)
	r[2] = int64(3)
	r[3] = int64(q)
	return r
}

// BenchmarkCopyInsertStatements builds the multi-row INSERT of a 1,000-row copy batch.
func BenchmarkCopyInsertStatements(b *testing.B) {
	t := benchOrdersTable(b)
	rows := make([][]any, 1000)
	for i := range rows {
		rows[i] = benchRow(i + 1)
	}
	batch := &RowBatch{Table: t, Rows: rows}
	w := &TargetBatchWriter{}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if s, _ := w.statements(batch); len(s) != 1 {
			b.Fatalf("%d statements", len(s))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/row")
}

func benchUpdates(t *TableCopy, n int) []DMLEvent {
	events := make([]DMLEvent, n)
	for i := range events {
		events[i] = DMLEvent{Table: t, Type: Update, Before: benchImage(i+1, 1), After: benchImage(i+1, 2)}
	}
	return events
}

// BenchmarkApplyOps turns 1,000 binlog UPDATE events into idempotent row operations.
func BenchmarkApplyOps(b *testing.B) {
	t := benchOrdersTable(b)
	events := benchUpdates(t, 1000)
	w := &TargetBinlogWriter{}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ops, err := w.ops(context.Background(), events)
		if err != nil || len(ops) != 1000 {
			b.Fatal(len(ops), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/event")
}

// BenchmarkApplyStatements builds the REPLACE statements for 1,000 row operations.
func BenchmarkApplyStatements(b *testing.B) {
	t := benchOrdersTable(b)
	w := &TargetBinlogWriter{}
	ops, err := w.ops(context.Background(), benchUpdates(t, 1000))
	if err != nil {
		b.Fatal(err)
	}
	changes := changesOf(ops)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if s := apply.Statements(changes); len(s) != 1 {
			b.Fatalf("%d statements", len(s))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/event")
}

// BenchmarkApplyDeleteStatements builds the DELETE of 1,000 keys.
func BenchmarkApplyDeleteStatements(b *testing.B) {
	t := benchOrdersTable(b)
	changes := make([]apply.Change, 1000)
	for i := range changes {
		changes[i] = apply.Change{Mapping: t.applyMapping(), Delete: true, Values: []any{int64(i + 1)}}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		apply.Statements(changes)
	}
}

// BenchmarkNormalizeValue normalizes one decoded binlog row of the orders shape.
func BenchmarkNormalizeValue(b *testing.B) {
	t := benchOrdersTable(b)
	decoded := []any{int64(42), int32(48213), int8(3), int32(7), "parcel café Straße 配送",
		"express gift wrap доставка 🚚", "1234.56", "2024-03-01 12:34:56.123456", nil,
		`{"sku": "SKU-004711", "gift": true}`, make([]byte, 64)}
	out := make([]any, len(decoded))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for i := range decoded {
			out[i] = normalizeValue(&t.Source.Columns[i], decoded[i])
		}
	}
}

// BenchmarkKeyString encodes an integer key (used to compare the old and new key of each UPDATE).
func BenchmarkKeyString(b *testing.B) {
	k := []any{int64(123456789)}
	b.ReportAllocs()
	for b.Loop() {
		_ = keyString(k)
	}
}
