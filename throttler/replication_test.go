package throttler_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry/sandbox"
	"github.com/ferrykit/ferry/throttler"
)

// TestReplicationLag runs a real primary with two replicas: replica1 receives the heartbeat,
// replica2 ignores the heartbeat database (--replicate-wild-ignore-table), so its lag comes from
// SHOW REPLICA STATUS. The subtests share the servers and run in order.
func TestReplicationLag(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	primary, err := sandbox.Start(ctx, sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(primary.Stop)
	type started struct {
		s   *sandbox.Server
		err error
	}
	r2c := make(chan started, 1)
	go func() { // start the replicas in parallel
		s, err := sandbox.StartReplica(ctx, primary, sandbox.Options{ExtraArgs: []string{"--replicate-wild-ignore-table=hb.%"}})
		r2c <- started{s, err}
	}()
	replica1, err := sandbox.StartReplica(ctx, primary, sandbox.Options{})
	r2 := <-r2c
	if r2.s != nil {
		t.Cleanup(r2.s.Stop)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(replica1.Stop)
	if r2.err != nil {
		t.Fatal(r2.err)
	}
	replica2 := r2.s

	err = primary.Exec(ctx,
		"CREATE DATABASE hb",
		"CREATE DATABASE d",
		"CREATE TABLE d.src (id INT PRIMARY KEY, v VARCHAR(64) NOT NULL)",
		"CREATE TABLE d.dst LIKE d.src",
		"CREATE TABLE d.blocker (id INT PRIMARY KEY)",
		"USE d",
		"INSERT INTO d.src SELECT seq, MD5(seq) FROM seq_1_to_2000")
	if err != nil {
		t.Fatal(err)
	}
	pdb := openDB(t, primary, "")
	r1db := openDB(t, replica1, "")
	r2db := openDB(t, replica2, "")
	waitRows(t, r1db, "d.src", 2000)
	waitRows(t, r2db, "d.src", 2000)

	const maxLag = 400 * time.Millisecond
	const grace = 700 * time.Millisecond
	lag, err := throttler.NewReplicationLag(throttler.ReplicationLagConfig{
		Replicas:          []throttler.Replica{{Name: "replica1", DB: r1db}, {Name: "replica2", DB: r2db}},
		MaxLag:            maxLag,
		Source:            pdb,
		HeartbeatDatabase: "hb",
		HeartbeatInterval: 20 * time.Millisecond,
		Grace:             grace,
		CheckInterval:     10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := lag.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lag.Stop)
	if err := lag.Start(ctx); err == nil {
		t.Fatal("second Start succeeded")
	}
	// The heartbeat table replicates to replica1 only.
	eventually(t, 10*time.Second, func() string {
		st := mustCheck(t, lag)
		l := lag.Lags()
		if st.Throttled || l[0].Method != "heartbeat" || l[1].Method != "replica status" {
			return "waiting for replica1 to read the heartbeat, replica2 its status: " + st.String()
		}
		return ""
	})

	t.Run("heartbeat lag pauses the copy, which resumes and completes identically", func(t *testing.T) {
		const batch, rows = 10, 2000
		copyBatch := func(ctx context.Context, i int) error {
			if i == 20 { // mid-copy, replica1 stops applying
				if err := replica1.Exec(ctx, "STOP SLAVE SQL_THREAD"); err != nil {
					return err
				}
			}
			_, err := pdb.ExecContext(ctx, "INSERT INTO d.dst SELECT * FROM d.src WHERE id > ? AND id <= ?", i*batch, (i+1)*batch)
			time.Sleep(5 * time.Millisecond)
			return err
		}
		c := startCopy(t, lag, rows/batch, copyBatch)
		ch := c.expectPaused(t, "replica replica1 lag above 400ms (heartbeat)")
		if ch.units <= 20 || ch.units >= rows/batch {
			t.Fatalf("paused after %d batches, want mid-copy after batch 20", ch.units)
		}
		st := mustCheck(t, lag)
		l := lag.Lags()[0]
		if !st.Throttled || !strings.Contains(st.Reason, "replica1") || l.Name != "replica1" || l.Lag <= maxLag || st.Detail != "lag "+l.Lag.Round(time.Millisecond).String() {
			t.Fatalf("while paused: status %+v, replica1 %+v; want throttled by replica1 with lag > %s", st, l, maxLag)
		}
		var copied int
		pdb.QueryRow("SELECT COUNT(*) FROM d.dst").Scan(&copied)
		if copied != int(ch.units)*batch {
			t.Fatalf("%d rows copied while paused after %d batches", copied, ch.units)
		}
		if err := replica1.Exec(ctx, "START SLAVE SQL_THREAD"); err != nil {
			t.Fatal(err)
		}
		c.expectResumed(t)
		if err := c.wait(t, 60*time.Second); err != nil {
			t.Fatal(err)
		}
		// The result is identical on the primary and, once caught up, on both replicas.
		want := checksum(t, pdb, "d.src")
		if got := checksum(t, pdb, "d.dst"); got != want {
			t.Fatalf("primary: d.dst checksum %d, d.src %d", got, want)
		}
		for name, db := range map[string]*sql.DB{"replica1": r1db, "replica2": r2db} {
			waitRows(t, db, "d.dst", rows)
			if got := checksum(t, db, "d.dst"); got != want {
				t.Fatalf("%s: d.dst checksum %d, primary's d.src %d", name, got, want)
			}
		}
	})

	t.Run("slowest replica counts, from replica status when there is no heartbeat", func(t *testing.T) {
		// Block replica2's SQL thread on a table lock: Seconds_Behind_Master grows.
		locker, err := r2db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer locker.Close()
		if _, err := locker.ExecContext(ctx, "LOCK TABLES d.blocker WRITE"); err != nil {
			t.Fatal(err)
		}
		c := startCopy(t, lag, 0, nil)
		if err := primary.Exec(ctx, "INSERT INTO d.blocker VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		c.expectPaused(t, "replica replica2 lag above 400ms (replica status)")
		l := lag.Lags()
		if l[1].Lag < time.Second || l[0].Lag > maxLag {
			t.Fatalf("lags %+v: want replica2 >= 1s, replica1 caught up", l)
		}
		if _, err := locker.ExecContext(ctx, "UNLOCK TABLES"); err != nil {
			t.Fatal(err)
		}
		c.expectResumed(t)
	})

	t.Run("an unreachable replica fails closed after the grace period", func(t *testing.T) {
		c := startCopy(t, lag, 0, nil)
		eventually(t, 5*time.Second, func() string {
			if c.units.Load() < 3 {
				return "copy did not start"
			}
			return ""
		})
		killed := time.Now()
		replica2.Kill()
		ch := c.expectPaused(t, "replica replica2 unreadable for more than 700ms")
		if d := time.Since(killed); d < grace {
			t.Fatalf("throttled %s after the kill, before the grace period", d)
		}
		if !strings.Contains(ch.st.Detail, "refused") {
			t.Fatalf("detail %q, want the connection error", ch.st.Detail)
		}
		if err := replica2.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		c.expectResumed(t)
	})

	t.Run("Stop ends the heartbeat writer", func(t *testing.T) {
		hb := func() int64 {
			var us int64
			if err := pdb.QueryRow("SELECT ts_us FROM hb._ferry_heartbeat WHERE id = 1").Scan(&us); err != nil {
				t.Fatal(err)
			}
			return us
		}
		first := hb()
		eventually(t, 5*time.Second, func() string {
			if hb() == first {
				return "heartbeat does not advance"
			}
			return ""
		})
		lag.Stop()
		lag.Stop() // twice is fine
		stopped := hb()
		time.Sleep(10 * 20 * time.Millisecond) // ten heartbeat intervals
		if hb() != stopped {
			t.Fatal("heartbeat still written after Stop")
		}
		eventually(t, 5*time.Second, func() string {
			if st := mustCheck(t, lag); st.Throttled || lag.Lags()[0].Method != "replica status" {
				return "after Stop, replica1 is not read from its status: " + st.String()
			}
			return ""
		})

		// A writer also ends with the context given to Start.
		other, err := throttler.NewReplicationLag(throttler.ReplicationLagConfig{
			Replicas: []throttler.Replica{{Name: "replica1", DB: r1db}}, MaxLag: time.Second,
			Source: pdb, HeartbeatDatabase: "hb", HeartbeatTable: "hb2", HeartbeatInterval: 10 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		if err := other.Start(runCtx); err != nil {
			t.Fatal(err)
		}
		cancel()
		other.Stop() // returns once the goroutine has ended
		var a, b int64
		pdb.QueryRow("SELECT ts_us FROM hb.hb2").Scan(&a)
		time.Sleep(100 * time.Millisecond)
		pdb.QueryRow("SELECT ts_us FROM hb.hb2").Scan(&b)
		if a == 0 || a != b {
			t.Fatalf("heartbeat %d then %d after the context ended", a, b)
		}
		if err := other.DropHeartbeatTable(ctx); err != nil {
			t.Fatal(err)
		}
		if err := pdb.QueryRow("SELECT ts_us FROM hb.hb2").Scan(&a); err == nil {
			t.Fatal("heartbeat table still there after DropHeartbeatTable")
		}
	})
}

// A replica nobody can reach: nothing is read within the grace period, then Check fails closed.
func TestReplicationLagUnreachableReplicaFailsClosed(t *testing.T) {
	db, err := sql.Open("mysql", "root@tcp("+closedAddr(t)+")/?timeout=1s")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const grace = 300 * time.Millisecond
	lag, err := throttler.NewReplicationLag(throttler.ReplicationLagConfig{
		Replicas: []throttler.Replica{{Name: "ghost", DB: db}}, MaxLag: time.Second, Grace: grace, CheckInterval: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := lag.Start(context.Background()); err != nil { // no Source: nothing to start
		t.Fatal(err)
	}
	defer lag.Stop()
	began := time.Now()
	if st := mustCheck(t, lag); st.Throttled || lag.Lags()[0].Err == nil {
		t.Fatalf("within the grace period: %+v, %+v; want not throttled, with the error recorded", st, lag.Lags()[0])
	}
	c := startCopy(t, lag, 0, nil)
	ch := c.expectPaused(t, "replica ghost never read for more than 300ms")
	if d := time.Since(began); d < grace {
		t.Fatalf("throttled after %s, before the grace period", d)
	}
	if !strings.Contains(ch.st.Detail, "refused") {
		t.Fatalf("detail %q", ch.st.Detail)
	}
}

func TestReplicationLagConfigErrors(t *testing.T) {
	db, _ := sql.Open("mysql", "root@tcp(127.0.0.1:1)/")
	defer db.Close()
	for name, cfg := range map[string]throttler.ReplicationLagConfig{
		"no replicas":             {MaxLag: time.Second},
		"no MaxLag":               {Replicas: []throttler.Replica{{DB: db}}},
		"Source without database": {Replicas: []throttler.Replica{{DB: db}}, MaxLag: time.Second, Source: db},
		"replica without DB":      {Replicas: []throttler.Replica{{Name: "x"}}, MaxLag: time.Second},
		"duplicate names":         {Replicas: []throttler.Replica{{Name: "x", DB: db}, {Name: "x", DB: db}}, MaxLag: time.Second},
	} {
		if _, err := throttler.NewReplicationLag(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func waitRows(t *testing.T, db *sql.DB, table string, n int) {
	t.Helper()
	eventually(t, 30*time.Second, func() string {
		var got int
		if err := db.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&got); err != nil {
			return err.Error()
		}
		if got != n {
			return table + " has not caught up"
		}
		return ""
	})
}

func checksum(t *testing.T, db *sql.DB, table string) int64 {
	t.Helper()
	var name string
	var sum sql.NullInt64
	if err := db.QueryRow("CHECKSUM TABLE "+table).Scan(&name, &sum); err != nil || !sum.Valid {
		t.Fatalf("CHECKSUM TABLE %s: %v (%v)", table, err, sum)
	}
	return sum.Int64
}
