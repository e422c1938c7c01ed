package ferry_test

import (
	"context"
	"fmt"
	"log"

	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/sandbox"
	"github.com/ferrykit/ferry/verifier"
)

// Copy a database from one server to another while it takes writes, then cut over with the host's
// own lock. The servers here are sandboxes; in production they are yours.
func Example() {
	ctx := context.Background()
	src, err := sandbox.Start(ctx, sandbox.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Stop()
	dst, err := sandbox.Start(ctx, sandbox.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer dst.Stop()
	src.Exec(ctx, "CREATE DATABASE shop",
		"CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, total DECIMAL(10,2), note VARCHAR(50))",
		"INSERT INTO shop.orders VALUES (1, 9.99, 'first'), (2, 20.00, 'second'), (3, 5.50, NULL)")

	quiet := logrus.New()
	quiet.SetLevel(logrus.WarnLevel)
	f, err := ferry.New(ferry.Config{
		Source:             ferry.ConnConfig{Host: "127.0.0.1", Port: src.Port, User: "root"},
		Target:             ferry.ConnConfig{Host: "127.0.0.1", Port: dst.Port, User: "root"},
		Tables:             ferry.TableFilter{Databases: []string{"shop"}},
		CreateTargetTables: true,
		Logger:             quiet,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if err := f.Initialize(ctx); err != nil { // checks servers, privileges, schemas
		log.Fatal(err)
	}
	if err := f.Start(ctx); err != nil { // binlog position recorded before any row is read
		log.Fatal(err)
	}
	f.Verifier = &verifier.Checksum{Source: f.Source, Target: f.Target}
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()

	// A write during the copy reaches the target through the binlog.
	src.Exec(ctx, "UPDATE shop.orders SET note = 'changed while copying' WHERE id = 3")

	cut := &ferry.Cutover{Ferry: f, Hooks: ferry.HookFuncs{
		LockFunc: func(ctx context.Context) error { return nil }, // stop your writers here
		SwapFunc: func(ctx context.Context) error { return nil }, // repoint your traffic here
	}}
	rep, err := cut.Run(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := <-runErr; err != nil {
		log.Fatal(err)
	}
	var note string
	db, _ := dst.DB("shop")
	defer db.Close()
	db.QueryRow("SELECT note FROM orders WHERE id = 3").Scan(&note)
	fmt.Println("verified:", rep.Result.Match(), "swapped:", rep.Swapped)
	fmt.Println("order 3 on the target:", note)
	// Output:
	// verified: true swapped: true
	// order 3 on the target: changed while copying
}

// copyAndCutover is the README's library snippet: the lines between the markers appear there
// verbatim (TestREADMESnippetCompiles checks it), so the README shows code that compiles.
func copyAndCutover(ctx context.Context, pw string, myHooks ferry.CutoverHooks) (*ferry.CutoverReport, error) {
	// README begin
	f, err := ferry.New(ferry.Config{
		Source: ferry.ConnConfig{Host: "10.0.0.1", User: "ferry", Password: pw},
		Target: ferry.ConnConfig{Host: "10.0.0.2", User: "ferry", Password: pw},
		Tables: ferry.TableFilter{Databases: []string{"shop"}},
		Filter: ferry.ColumnEquals{Column: "tenant_id", Value: 42}, // optional: one tenant's rows
	})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Initialize(ctx); err != nil { // connect, check settings and privileges, load schemas
		return nil, err
	}
	if err := f.Start(ctx); err != nil { // record the binlog position before any row is read
		return nil, err
	}
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()                            // copy rows and apply the binlog until the cut-over
	rep, err := (&ferry.Cutover{Ferry: f, Hooks: myHooks}).Run(ctx) // Lock, flush, verify, Swap, Unlock
	if err != nil {
		return rep, err // the host cancels ctx, which stops Run
	}
	return rep, <-runErr
	// README end
}
