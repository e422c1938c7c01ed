package throttler_test

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/ferrykit/ferry/throttler"
)

// printLogger stands in for a logrus.FieldLogger, which satisfies throttler.Logger.
type printLogger struct{}

func (printLogger) Infof(format string, args ...any) { fmt.Printf(format+"\n", args...) }

// Combine a host pause switch, a flag file and an office-hours window; the first reason wins, and
// LogChanges logs each change once.
func ExampleComposite() {
	ctx := context.Background()
	var host throttler.Pauser
	office, _ := throttler.NewTimeWindow("09:00", "17:00", time.UTC)
	clock := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	office.Now = func() time.Time { return clock } // a fixed clock for the example

	t := throttler.NewComposite(
		&host,
		throttler.FlagFile{Path: "/nonexistent/ferry.throttle"},
		office,
	)
	log := throttler.LogChanges(printLogger{})
	check := func() {
		st, err := t.Check(ctx)
		if err != nil {
			fmt.Println("abort:", err)
			return
		}
		log(st)
	}

	check() // 08:00, not paused: work goes on, nothing to log
	clock = clock.Add(2 * time.Hour)
	check() // 10:00: inside the window
	host.Pause("operator: deploy in progress")
	check() // both throttle; the host's pause comes first
	check() // no change, no log line
	host.Resume()
	clock = clock.Add(8 * time.Hour)
	check() // 18:00: work goes on
	// Output:
	// throttled: inside time window 09:00-17:00 UTC (until 2026-03-02 17:00:00 UTC)
	// throttled: operator: deploy in progress
	// throttle released (was: operator: deploy in progress)
}

// A copy loop calls Wait before each unit of work; a Pauser lets the host pause and resume it.
func ExampleWait() {
	ctx := context.Background()
	var host throttler.Pauser
	onChange := throttler.LogChanges(printLogger{})
	done := make(chan struct{})
	go func() {
		time.Sleep(50 * time.Millisecond)
		host.Resume()
		close(done)
	}()
	host.Pause("") // before the copy starts
	for batch := 1; batch <= 2; batch++ {
		if err := throttler.Wait(ctx, &host, onChange); err != nil {
			fmt.Println("abort:", err)
			return
		}
		fmt.Println("copy batch", batch)
	}
	<-done
	// Output:
	// throttled: paused by host
	// throttle released (was: paused by host)
	// copy batch 1
	// copy batch 2
}

func ExampleParseThresholds() {
	maxLoad, _ := throttler.ParseThresholds("Threads_running=25,Threads_connected=500")
	critical, _ := throttler.ParseThresholds("Threads_running=200")
	fmt.Println(maxLoad, critical)
	_ = throttler.LoadConfig{DB: nil /* the source */, Max: maxLoad, Critical: critical}
	// Output: [Threads_running=25 Threads_connected=500] [Threads_running=200]
}

// Wiring replication lag: a heartbeat written on the source, read on each replica.
func ExampleReplicationLag() {
	var source, replica1, replica2 *sql.DB // opened by the host
	lag, err := throttler.NewReplicationLag(throttler.ReplicationLagConfig{
		Replicas:          []throttler.Replica{{Name: "db2", DB: replica1}, {Name: "db3", DB: replica2}},
		MaxLag:            1500 * time.Millisecond,
		Source:            source,
		HeartbeatDatabase: "shop", // the database being moved
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := lag.Start(ctx); err != nil { // creates shop._ferry_heartbeat on the source
		panic(err)
	}
	defer lag.Stop()
	// Pass lag (alone or in a Composite) to the copy, the binlog applier and the verifier; skip
	// lag.HeartbeatTable() in the binlog stream.
}
