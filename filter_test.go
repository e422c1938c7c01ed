package ferry

import (
	"context"
	"testing"

	"github.com/ferrykit/ferry/schema"
)

// BenchmarkColumnEqualsMatches is the cost of judging one binlog row image by a string tenant
// filter whose value the source has already been asked about (the memoised, common case).
func BenchmarkColumnEqualsMatches(b *testing.B) {
	t := &schema.Table{Database: "d", Name: "t", Columns: []schema.Column{
		{Name: "id", Ordinal: 0, DataType: "int"},
		{Name: "tenant", Ordinal: 1, DataType: "varchar", ColumnType: "varchar(20)", Charset: "utf8mb4", Collation: "utf8mb4_general_ci"},
	}}
	f := ColumnEquals{Column: "tenant", Value: "acme"}
	e := newSourceEvaluator(nil, 1, nil)
	row := []any{int64(1), []byte("ACME")}
	cond, _ := f.Condition(t)
	expr, _ := rowValueExpr(&t.Columns[1])
	e.memo["SELECT IFNULL(("+cond+"), 0) <> 0 FROM (SELECT "+expr+" AS `tenant`) AS ferry_row"+"\x00"+keyString([]any{row[1]})] = true
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ok, err := f.Matches(ctx, e, t, row)
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}
