package test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry/sandbox"
)

// copydb pauses while its -throttle-flag-file exists, prints why in its progress lines, and
// finishes identical once the file is removed.
func TestCopydbThrottleFlagFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := rsBuildCopydb(t, dir)
	createSchema(t, source, "cdthr", 5000)
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS cdthr"))
	flag := filepath.Join(dir, "pause")
	must(t, os.WriteFile(flag, nil, 0o644))
	r := rsStartCopydb(t, bin,
		"-source-host", "127.0.0.1", "-source-port", fmt.Sprint(source.Port), "-source-user", "root",
		"-target-host", "127.0.0.1", "-target-port", fmt.Sprint(target.Port), "-target-user", "root",
		"-databases", "cdthr", "-create-tables", "-cutover", "none", "-verify", "checksum",
		"-throttle-flag-file", flag, "-progress", "100ms", "-log-level", "warn")
	rsWaitFor(t, r, time.Minute, "a throttled progress line", func() bool { return strings.Contains(r.output(), "throttled: ") })
	time.Sleep(500 * time.Millisecond)
	if n := r.lastProgressRows(); n != 0 {
		t.Fatalf("copydb copied %d rows while the flag file existed", n)
	}
	must(t, os.Remove(flag))
	select {
	case <-r.exited:
	case <-ctx.Done():
		t.Fatal("copydb did not finish")
	}
	if r.err != nil {
		t.Fatalf("copydb: %v\n%s", r.err, rsTailString(r.output(), 2000))
	}
	if !strings.Contains(r.output(), "MATCH") {
		t.Fatalf("copydb did not report a matching verification:\n%s", rsTailString(r.output(), 2000))
	}
	for _, tb := range []string{"types", "composite", "strkey", "big"} {
		assertSameRows(t, "cdthr."+tb, "", "cdthr."+tb)
	}
}

// copydb's -throttle-control-replicas / -max-lag-millis pause the copy while a replica lags, name
// that replica in the progress lines, and the copy finishes identical once the replica catches up.
// The replica's SQL thread is held on an event (a table of another database locked on the
// replica), so its Seconds_Behind_Master grows while replication keeps reporting it.
func TestCopydbPausesWhileReplicaLags(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := rsBuildCopydb(t, t.TempDir())
	primary := rsOwnServer(t)
	replica, err := sandbox.StartReplica(ctx, primary, sandbox.Options{})
	must(t, err)
	defer replica.Stop()
	createSchema(t, primary, "cdlag", 2000)
	must(t, primary.Exec(ctx, "CREATE DATABASE lagdb", "CREATE TABLE lagdb.tick (id INT PRIMARY KEY)"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS cdlag"))

	rdb, err := replica.DB("")
	must(t, err)
	defer rdb.Close()
	waitFor(t, ctx, "the replica has the schema", func() bool {
		var n int
		return rdb.QueryRowContext(ctx, "SELECT COUNT(*) FROM lagdb.tick").Scan(&n) == nil
	})
	lock, err := rdb.Conn(ctx)
	must(t, err)
	defer lock.Close()
	_, err = lock.ExecContext(ctx, "LOCK TABLES lagdb.tick WRITE")
	must(t, err)
	must(t, primary.Exec(ctx, "INSERT INTO lagdb.tick VALUES (1)"))
	waitFor(t, ctx, "the replica lags 2 s", func() bool {
		return replicaSecondsBehind(ctx, rdb) >= 2
	})

	replicaAddr := fmt.Sprintf("127.0.0.1:%d", replica.Port)
	r := rsStartCopydb(t, bin, append(serverArgs("source", primary),
		"-target-host", "127.0.0.1", "-target-port", fmt.Sprint(target.Port), "-target-user", "root",
		"-databases", "cdlag", "-create-tables", "-cutover", "none", "-verify", "checksum",
		"-throttle-control-replicas", replicaAddr, "-max-lag-millis", "1000", "-progress", "100ms", "-log-level", "warn")...)
	rsWaitFor(t, r, time.Minute, "a progress line throttled by the replica", func() bool {
		return strings.Contains(r.output(), "throttled: replica "+replicaAddr+" lag above 1s")
	})
	time.Sleep(500 * time.Millisecond)
	if n := r.lastProgressRows(); n != 0 {
		t.Fatalf("copydb copied %d rows while the replica lagged:\n%s", n, rsTailString(r.output(), 2000))
	}
	_, err = lock.ExecContext(ctx, "UNLOCK TABLES")
	must(t, err)
	select {
	case <-r.exited:
	case <-ctx.Done():
		t.Fatalf("copydb did not finish after the replica caught up:\n%s", rsTailString(r.output(), 2000))
	}
	if r.err != nil || !strings.Contains(r.output(), "MATCH") {
		t.Fatalf("copydb: %v, want a matching verification:\n%s", r.err, rsTailString(r.output(), 2000))
	}
}

// replicaSecondsBehind is the replica's Seconds_Behind_Master (-1 when NULL or unreadable).
func replicaSecondsBehind(ctx context.Context, db *sql.DB) int {
	rows, err := db.QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		return -1
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil || !rows.Next() {
		return -1
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if rows.Scan(ptrs...) != nil {
		return -1
	}
	for i, c := range cols {
		if c == "Seconds_Behind_Master" && vals[i].Valid {
			n, err := strconv.Atoi(vals[i].String)
			if err == nil {
				return n
			}
		}
	}
	return -1
}
