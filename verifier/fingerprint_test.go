package verifier

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"

	"github.com/ferrykit/ferry/schema"
)

// benchTable is an orders-like table: INT key, a few integers, a DOUBLE, strings, a DATETIME.
func benchTable() *schema.Table {
	cols := []schema.Column{
		{Name: "id", DataType: "int"},
		{Name: "customer_id", DataType: "int"},
		{Name: "status", DataType: "varchar", Charset: "utf8mb4", Collation: "utf8mb4_general_ci"},
		{Name: "amount", DataType: "decimal", ColumnType: "decimal(12,2)"},
		{Name: "weight", DataType: "double"},
		{Name: "note", DataType: "text", Charset: "utf8mb4", Collation: "utf8mb4_general_ci", Nullable: true},
		{Name: "created_at", DataType: "datetime"},
		{Name: "updated_at", DataType: "datetime"},
	}
	for i := range cols {
		cols[i].Ordinal = i
	}
	return &schema.Table{Database: "bench", Name: "orders", Columns: cols, KeyName: "PRIMARY", Key: []int{0}}
}

func benchRow(i int) []any {
	return []any{
		[]byte(strconv.Itoa(i)), []byte(strconv.Itoa(i % 9973)), []byte("shipped"), []byte("1234.56"),
		[]byte("0.30000000000000004"), []byte("leave at the door, ring twice"), nil,
		[]byte("2026-01-02 03:04:05"),
	}
}

// BenchmarkFingerprint measures the per-row fingerprint the inline verifier takes during the copy.
func BenchmarkFingerprint(b *testing.B) {
	t := benchTable()
	fs := forms(t.WritableColumns())
	row := benchRow(12345)
	b.ReportAllocs()
	for b.Loop() {
		fingerprint(fs, row)
	}
}

// BenchmarkFingerprintWide: 40 columns (the token buffer outgrows its stack array).
func BenchmarkFingerprintWide(b *testing.B) {
	fs := make([]form, 40)
	row := make([]any, 40)
	for i := range row {
		row[i] = []byte(fmt.Sprintf("value of column %d", i))
	}
	b.ReportAllocs()
	for b.Loop() {
		fingerprint(fs, row)
	}
}

// BenchmarkFingerprintBlob: one 64 KiB BLOB dominates (MD5 throughput).
func BenchmarkFingerprintBlob(b *testing.B) {
	fs := []form{formShort, formHashed}
	row := []any{[]byte("1"), make([]byte, 64<<10)}
	b.SetBytes(64 << 10)
	b.ReportAllocs()
	for b.Loop() {
		fingerprint(fs, row)
	}
}

// BenchmarkRowsCopied measures the whole per-row cost of observing the copy: key, fingerprint and
// the map insert, in batches of 1000 rows as the copy hands them over. It also reports the memory
// kept per row (B/row), the figure the package documentation quotes.
func BenchmarkRowsCopied(b *testing.B) {
	t := benchTable()
	batch := make([][]any, 1000)
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := &Inline{}
	n := 0
	for b.Loop() {
		for i := range batch {
			batch[i] = benchRow(n)
			n++
		}
		v.RowsCopied(t, batch)
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "B/row")
	runtime.KeepAlive(v)
}

// TestFingerprintDistinguishes: NULL, the empty string and the text "N" give different
// fingerprints, and so does moving a value to the next column.
func TestFingerprintDistinguishes(t *testing.T) {
	fs := []form{formShort, formShort, formFloat}
	rows := [][]any{
		{[]byte("1"), nil, nil},
		{[]byte("1"), []byte(""), nil},
		{[]byte("1"), []byte("N"), nil},
		{[]byte("1"), nil, []byte("")},
		{[]byte("1"), []byte("ab"), nil},
		{[]byte("1a"), []byte("b"), nil},
		{[]byte("1"), []byte("ab"), []byte("0.1")},
		{[]byte("1"), []byte("ab"), []byte("0.10000000000000002")},
	}
	seen := map[[16]byte]int{}
	for i, r := range rows {
		fp := fingerprint(fs, r)
		if j, ok := seen[fp]; ok {
			t.Errorf("rows %d and %d have the same fingerprint", j, i)
		}
		seen[fp] = i
	}
	// Typed values (a copy reading with the binary protocol) fingerprint like their text.
	fs2 := []form{formShort, formFloat, formHashed}
	if fingerprint(fs2, []any{int64(-7), 0.5, "x"}) != fingerprint(fs2, []any{[]byte("-7"), []byte("0.5"), []byte("x")}) {
		t.Error("int64/float64 values do not fingerprint like their text")
	}
}
