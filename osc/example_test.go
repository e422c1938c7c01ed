package osc_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/osc"
)

// Add a column to a live table. Writes to shop.orders go on during the copy; the cut-over blocks
// them for a moment (Result.WriteBlocked says how long).
func Example() {
	m := &osc.Migration{
		Conn:     ferry.ConnConfig{Host: "127.0.0.1", Port: 3306, User: "root"},
		Database: "shop",
		Table:    "orders",
		Alter:    "ADD COLUMN note VARCHAR(100) NULL, ADD INDEX idx_created (created_at)",
		Execute:  true, // false: validate and print the plan only
		// Hold the cut-over while this file exists (e.g. until a quiet hour).
		PostponeFlagFile: "/tmp/orders.postpone",
		OnStatus:         func(s osc.Status) { log.Println(s) },
	}
	res, err := m.Run(context.Background())
	if err != nil {
		// The original table is unchanged; the error says which leftover tables to drop.
		log.Fatal(err)
	}
	fmt.Println(res.Plan)
	for i, d := range res.WriteBlocked {
		fmt.Printf("cut-over attempt %d blocked writes for %s\n", i+1, d.Round(time.Millisecond))
	}
	fmt.Println("old table kept as", res.OldTable)
}
