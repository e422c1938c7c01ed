package osc

import (
	"context"
	"database/sql"
	"testing"
	"time"
)

// The RENAME takes its metadata locks in name order, the ghost _t_gho's before t's. While another
// session holds a lock on the ghost table (here an open transaction that read it; in production
// also the server's background statistics), the queued RENAME waits on the ghost in the same
// processlist state as when it waits on t: the cut-over must not take that for "queued on t" and
// unlock, or the writes queued on t run before the RENAME asks for t and land in the old table.
// runUnderLoad fails the test if any write is missing from the new table or the check after the
// rename counts a change of the old table.
func TestCutoverWaitsUntilTheRenameHoldsTheGhost(t *testing.T) {
	alter := "ADD COLUMN z INT NULL, ADD INDEX (a)"
	f := newFixture(t, 2000)
	m := f.migration(alter)
	pool, err := srv.DB(f.name)
	must(t, err)
	defer pool.Close()
	holder, err := pool.Conn(context.Background())
	must(t, err)
	defer holder.Close()
	const held = 1200 * time.Millisecond // within the fixture's CutoverLockTimeout of 2 s
	released := make(chan struct{})
	m.testAfterMarker = func(*sql.Conn) {
		ctx := context.Background()
		if _, err := holder.ExecContext(ctx, "START TRANSACTION"); err != nil {
			t.Error(err)
		}
		if _, err := holder.ExecContext(ctx, "SELECT COUNT(*) FROM _t_gho"); err != nil {
			t.Error(err)
		}
		go func() {
			defer close(released)
			time.Sleep(held)
			if _, err := holder.ExecContext(ctx, "COMMIT"); err != nil {
				t.Error(err)
			}
		}()
	}
	res := runUnderLoad(t, f, m, alter)
	<-released
	if res.CutoverAttempts == 1 && res.WriteBlocked[0] < held {
		t.Errorf("writes were blocked %s, less than the %s the ghost table was held: the cut-over unlocked while the rename waited on the ghost", res.WriteBlocked[0], held)
	}
}
