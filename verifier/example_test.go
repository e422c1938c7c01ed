package verifier_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"

	_ "github.com/go-sql-driver/mysql"

	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/verifier"
)

// Compare a table with its copy on another server and print what differs.
func Example() {
	ctx := context.Background()
	source, err := sql.Open("mysql", "ferry@tcp(source.db:3306)/")
	if err != nil {
		log.Fatal(err)
	}
	target, err := sql.Open("mysql", "ferry@tcp(target.db:3306)/")
	if err != nil {
		log.Fatal(err)
	}
	orders, err := schema.Load(ctx, source, "shop", "orders")
	if err != nil {
		log.Fatal(err)
	}
	v := &verifier.Checksum{Source: source, Target: target, Strict: true}
	res, err := v.Verify(ctx, verifier.DuringCutover, []verifier.TablePair{{
		Source:         orders,
		TargetDatabase: "shop_eu",
		TargetTable:    "orders",
		Where:          "region = 'eu'", // the copy's filter; Strict reports rows outside it as extra
		IgnoreColumns:  []string{"updated_at"},
	}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(res) // a table of counts, then the sample keys
	if !res.Match() {
		log.Fatal("abort the cut-over")
	}
}

// The inline verifier watches the copy and the binlog; the pass during the cut-over reads only the
// rows changed since the pass before it.
func ExampleInline() {
	ctx := context.Background()
	source, _ := sql.Open("mysql", "ferry@tcp(source.db:3306)/")
	target, _ := sql.Open("mysql", "ferry@tcp(target.db:3306)/")
	orders, _ := schema.Load(ctx, source, "shop", "orders")
	v := &verifier.Inline{Source: source, Target: target}

	// The copy hands over every batch it wrote, the binlog applier every key it changed:
	//   v.RowsCopied(orders, rows)      // values of orders.WritableColumns(), as read
	//   v.RowChanged(orders, []any{id}) // key values
	tables := []verifier.TablePair{{Source: orders}}
	if _, err := v.Verify(ctx, verifier.BeforeCutover, tables); err != nil { // scans the target once
		log.Fatal(err)
	}
	// ... writes stopped, binlog applied ...
	res, err := v.Verify(ctx, verifier.DuringCutover, tables) // only the keys touched since
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Match())
}
