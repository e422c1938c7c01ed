package snapshot_test

import (
	"context"
	"log"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/snapshot"
)

// Snapshot a live source into a directory, restore it elsewhere, then bring the copy up to date
// from the source's binlog and cut over.
func Example() {
	ctx := context.Background()
	src := ferry.ConnConfig{Host: "10.0.0.1", User: "ferry"}
	dst := ferry.ConnConfig{Host: "10.0.0.2", User: "ferry"}
	dir := &snapshot.Dir{Path: "/backups/shop-2026-11-30"}

	ms, err := snapshot.Take(ctx, snapshot.Options{Source: src, Tables: ferry.TableFilter{Databases: []string{"shop"}}, Storage: dir})
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("snapshot at %s (GTID %s)", ms[0].Position, ms[0].Position.GTID)

	f, _, err := snapshot.Clone(ctx, snapshot.CloneOptions{
		Restore: snapshot.RestoreOptions{Target: dst, Snapshots: []snapshot.Storage{dir}, DelaySecondaryIndexes: true},
		Ferry:   ferry.Config{Source: src, Target: dst},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()
	if _, err := (&ferry.Cutover{Ferry: f, Hooks: ferry.ReadOnlyHooks{Source: f.Source}}).Run(ctx); err != nil {
		log.Fatal(err)
	}
	if err := <-runErr; err != nil {
		log.Fatal(err)
	}
}
