package osc

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/sandbox"
)

// The binlog is read from a replica while the migration copies and cuts over on the server itself.
// The replica stops applying for a second as the migration starts and during the copy, and again under the first cut-over
// lock for longer than the lock may be held: that attempt cannot see its marker come back through
// the replica, so it must unlock without renaming, and a later attempt, with the replica caught up,
// renames. The new table holds exactly what ALTER TABLE on the twin gives.
func TestBinlogFromReplica(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	replica, err := sandbox.StartReplicaFromNow(ctx, srv, sandbox.Options{BufferPool: "64M"})
	must(t, err)
	defer replica.Stop()
	f := newFixture(t, 10_000)
	sqlThread := func(verb string) {
		if err := replica.Exec(context.Background(), verb+" SLAVE SQL_THREAD"); err != nil {
			t.Error(err)
		}
	}
	alter := "ADD COLUMN x INT NOT NULL DEFAULT 7, MODIFY b VARCHAR(80) NOT NULL DEFAULT ''"
	m := f.migration(alter)
	m.ChunkSize = 500
	rc := ferry.ConnConfig{Host: replica.Host, Port: replica.Port, User: replica.User}
	m.BinlogConn = &rc
	var lagged sync.WaitGroup
	var copyLag, cutoverLag sync.Once
	lag := func(d time.Duration) {
		sqlThread("STOP")
		lagged.Add(1)
		go func() { defer lagged.Done(); time.Sleep(d); sqlThread("START") }()
	}
	dumps := func(s *sandbox.Server) int {
		db, err := s.DB("")
		must(t, err)
		defer db.Close()
		var n int
		must(t, db.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'").Scan(&n))
		return n
	}
	var onReplica, onServer int
	m.testAfterChunk = func(time.Duration) {
		copyLag.Do(func() {
			onReplica, onServer = dumps(replica), dumps(srv)
			lag(time.Second)
		})
	}
	m.testCutoverLocked = func(int64) { cutoverLag.Do(func() { lag(m.CutoverLockTimeout + time.Second) }) }
	// The replica lags when the migration starts: its stream must start after the ghost and
	// changelog tables are created (a stream from the replica's position as it was would meet
	// their CREATE TABLE).
	lag(time.Second)
	res := runUnderLoad(t, f, m, alter)
	lagged.Wait()
	if onReplica != 1 || onServer != 1 {
		t.Errorf("binlog streams during the copy: %d from the replica, %d from the server; want ferry's from the replica and only the replica's own from the server", onReplica, onServer)
	}
	if res.CutoverAttempts < 2 {
		t.Errorf("%d cut-over attempt(s): the attempt whose marker the stopped replica held back should have failed", res.CutoverAttempts)
	}
}

// A binlog source without log_slave_updates is refused before anything is written.
func TestBinlogFromReplicaRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	replica, err := sandbox.StartReplicaFromNow(ctx, srv, sandbox.Options{BufferPool: "64M", ExtraArgs: []string{"--skip-log-slave-updates"}})
	must(t, err)
	defer replica.Stop()
	f := newFixture(t, 10)
	m := f.migration("ADD COLUMN x INT")
	rc := ferry.ConnConfig{Host: replica.Host, Port: replica.Port, User: replica.User}
	m.BinlogConn = &rc
	_, err = m.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "log_slave_updates is OFF") {
		t.Fatalf("migration reading the binlog from a replica without log_slave_updates: got %v, want a refusal naming log_slave_updates", err)
	}
	if tt := strings.Join(f.tables(), ","); tt != "t,twin" && tt != "twin,t" {
		t.Errorf("tables after the refusal: %s, want only t and twin", tt)
	}
}
