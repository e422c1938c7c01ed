package osc

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

const sentryComment = "ferry osc cut-over sentry"

// errNoRetry marks a cut-over failure that another attempt would not fix.
type errNoRetry struct{ err error }

func (e errNoRetry) Error() string { return e.err.Error() }
func (e errNoRetry) Unwrap() error { return e.err }

// cutover waits until the cut-over may run (not postponed, apply caught up), then tries the atomic
// cut-over up to CutoverAttempts times.
func (m *Migration) cutover(ctx context.Context, s *stream) error {
	for attempt := 1; ; attempt++ {
		if err := m.waitCutoverAllowed(ctx); err != nil {
			return err
		}
		if attempt == 1 {
			if err := m.runHook(ctx, HookBeforeCutover, nil); err != nil {
				return err
			}
			if m.TestOnReplica {
				// Before the lock: every change the replication applier made is then in the
				// binlog ahead of the marker, and nothing writes the original after it.
				restart, err := m.stopReplication(ctx)
				if err != nil {
					return errNoRetry{err}
				}
				defer func() {
					if !m.renamed.Load() {
						restart() // no cut-over happened: replication goes on as before
					}
				}()
				// What replication wrote until it stopped is applied before the lock, not under it.
				if err := m.waitCutoverAllowed(ctx); err != nil {
					return err
				}
			}
		}
		m.setState(StateCutover)
		attemptFn := m.cutoverAttempt
		if m.CutoverTwoStep {
			attemptFn = m.cutoverTwoStep
		}
		blocked, err := attemptFn(ctx, s)
		m.resultMu.Lock()
		m.result.CutoverAttempts = attempt
		if blocked > 0 {
			m.result.WriteBlocked = append(m.result.WriteBlocked, blocked)
		}
		m.resultMu.Unlock()
		if err == nil {
			m.log.WithField("write_blocked", blocked.Round(time.Microsecond).String()).WithField("attempt", attempt).Info("osc: cut-over done")
			if err := m.nameTriggers(ctx); err != nil {
				return err
			}
			if m.TestOnReplica {
				return m.swapBack(ctx)
			}
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		if m.renamed.Load() {
			return err
		}
		var nr errNoRetry
		if errors.As(err, &nr) || attempt >= m.CutoverAttempts {
			return fmt.Errorf("cut-over failed after %d attempt(s): %w", attempt, err)
		}
		m.log.WithError(err).WithField("attempt", attempt).WithField("write_blocked", blocked.Round(time.Microsecond).String()).Warn("osc: cut-over attempt failed; the original table is unchanged, retrying")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (m *Migration) waitCutoverAllowed(ctx context.Context) error {
	for {
		postponed, why := m.postponedNow()
		select {
		case <-m.cutoverNow:
			m.postponed.Store(false)
			postponed = false
		default:
		}
		if postponed {
			if m.stateName() != StatePostponed {
				m.setState(StatePostponed)
				m.log.Info("osc: cut-over " + why)
			}
		} else if m.applier.lag() <= m.CutoverMaxLag && m.applier.backlog() < 100 {
			return nil
		} else if m.stateName() != StateCatchingUp {
			m.setState(StateCatchingUp)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.cutoverNow:
			m.postponed.Store(false)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func randomToken() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// cutoverAttempt is gh-ost's atomic cut-over:
//
//  1. session A takes GET_LOCK, creates the sentry table t_del, and runs
//     LOCK TABLES t WRITE, t_del WRITE: writes to t stop;
//  2. a marker written to the changelog after the lock comes back through the binlog: every change
//     of t committed before the lock is now in the ghost table; the streamer is stopped (it would
//     refuse the RENAME as DDL on its table);
//  3. session B runs RENAME TABLE t TO t_del, _t_gho TO t, which queues behind A's lock on t (and could
//     not succeed while the sentry exists);
//  4. once B is seen waiting on the table metadata lock of t (and, where the ghost's lock comes
//     first, holding it: renameHoldsGhost), A drops the sentry and unlocks: the queued rename runs
//     before any queued write.
//
// If A dies anywhere, its lock goes away but the sentry stays, so B's rename fails and the original
// table is unchanged; if B dies, A unlocks and nothing changed. Every wait is bounded by
// CutoverLockTimeout.
func (m *Migration) cutoverAttempt(ctx context.Context, s *stream) (blocked time.Duration, err error) {
	timeout := m.CutoverLockTimeout
	secs := int((timeout + time.Second - 1) / time.Second)
	db := m.db
	connA, err := db.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer discard(connA)
	connB, err := db.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer discard(connB)
	var idA, idB int64
	if err := connA.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&idA); err != nil {
		return 0, err
	}
	if err := connB.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&idB); err != nil {
		return 0, err
	}
	ghostFirst, err := m.ghostLockedFirst(ctx)
	if err != nil {
		return 0, err
	}
	lockName := "ferry-osc:" + m.Database + "." + m.Table
	if len(lockName) > 64 {
		lockName = lockName[:64]
	}
	var got sql.NullInt64
	if err := connA.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", lockName).Scan(&got); err != nil {
		return 0, fmt.Errorf("get lock %q: %w", lockName, err)
	}
	if got.Int64 != 1 {
		return 0, fmt.Errorf("another cut-over of %s holds the lock %q", m.Table, lockName)
	}
	if err := m.dropStaleSentry(ctx); err != nil {
		return 0, err
	}
	if _, err := connA.ExecContext(ctx, fmt.Sprintf("SET SESSION lock_wait_timeout = %d", secs)); err != nil {
		return 0, err
	}
	// A MEMORY sentry drops faster under the lock than an InnoDB one (no file to remove).
	create := "CREATE TABLE " + m.qualified(m.oldName()) + " (id INT NOT NULL PRIMARY KEY) ENGINE=%s COMMENT='" + sentryComment + "'"
	if _, err := connA.ExecContext(ctx, fmt.Sprintf(create, "MEMORY")); err != nil {
		if _, err := connA.ExecContext(ctx, fmt.Sprintf(create, "InnoDB")); err != nil {
			return 0, fmt.Errorf("create sentry table %s: %w", m.qualified(m.oldName()), err)
		}
	}
	// From here, any failure leaves at most the sentry (dropped below) and a stopped streamer
	// (restarted below).
	// Once the marker is written, a failed attempt restarts the stream from the last applied
	// position: the marker may switch the applier to watching at any time after that.
	markerWritten := false
	token := randomToken()
	renamed := false
	defer func() {
		if renamed {
			return
		}
		cctx := context.WithoutCancel(ctx)
		m.dropGhostTriggers(cctx)
		if err := m.dropStaleSentry(cctx); err != nil {
			m.log.WithError(err).Warn("osc: could not drop the sentry table")
		}
		if markerWritten {
			m.applier.forget(token)
			m.restartStream(ctx, s)
		}
	}()

	lockStart := time.Now()
	if _, err := connA.ExecContext(ctx, "LOCK TABLES "+m.qualified(m.Table)+" WRITE, "+m.qualified(m.oldName())+" WRITE"); err != nil {
		return time.Since(lockStart), fmt.Errorf("lock %s (lock_wait_timeout %ds): %w", m.Table, secs, err)
	}
	m.log.WithField("after", time.Since(lockStart).String()).Info("osc: cut-over: table locked")
	unlock := func() {
		connA.ExecContext(context.WithoutCancel(ctx), "UNLOCK TABLES")
	}
	if m.testCutoverLocked != nil {
		m.testCutoverLocked(idA)
	}

	// Every change of t committed before the lock precedes the marker in the binlog.
	applied := m.applier.marker(token)
	markerWritten = true
	wctx, cancel := context.WithTimeout(ctx, timeout)
	err = m.writeHint(wctx, 3, "cut-over", token)
	cancel()
	if err != nil {
		unlock()
		return time.Since(lockStart), fmt.Errorf("write the cut-over marker: %w", err)
	}
	select {
	case <-applied:
		m.log.WithField("after", time.Since(lockStart).String()).Info("osc: cut-over: every change up to the lock is applied")
	case <-time.After(timeout):
		unlock()
		return time.Since(lockStart), fmt.Errorf("the binlog apply did not reach the cut-over marker within %s", timeout)
	case <-ctx.Done():
		unlock()
		return time.Since(lockStart), ctx.Err()
	}
	// The applier now only watches: the table is locked, so no change of it may follow the marker.
	s.expectEnd()
	if m.testAfterMarker != nil {
		m.testAfterMarker(connA)
	}

	if err := m.checkRowCounts(ctx, connA); err != nil {
		unlock()
		return time.Since(lockStart), err
	}
	if err := m.carryAutoIncrement(ctx, connA); err != nil {
		unlock()
		return time.Since(lockStart), err
	}
	if err := m.verifyChangedRows(ctx, connA); err != nil {
		unlock()
		return time.Since(lockStart), err
	}
	if err := m.markOldTable(ctx); err != nil {
		unlock()
		return time.Since(lockStart), err
	}
	if err := m.createGhostTriggers(ctx); err != nil {
		unlock()
		return time.Since(lockStart), err
	}

	if _, err := connB.ExecContext(ctx, fmt.Sprintf("SET SESSION lock_wait_timeout = %d", secs)); err != nil {
		unlock()
		return time.Since(lockStart), err
	}
	renameErr := make(chan error, 1)
	go func() {
		_, err := connB.ExecContext(context.WithoutCancel(ctx), "RENAME TABLE "+m.qualified(m.Table)+" TO "+m.qualified(m.oldName())+", "+
			m.qualified(m.ghostName())+" TO "+m.qualified(m.Table))
		renameErr <- err
	}()
	waitRename := func() error {
		select {
		case err := <-renameErr:
			return err
		case <-time.After(timeout + 5*time.Second):
			db.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf("KILL QUERY %d", idB))
			return fmt.Errorf("the rename did not finish within %s", timeout+5*time.Second)
		}
	}
	finish := func(rerr error) (time.Duration, error) {
		d := time.Since(lockStart)
		if rerr == nil || m.renameHappened(context.WithoutCancel(ctx)) {
			renamed = true
			m.renamed.Store(true)
			return d, m.checkNothingSlipped(ctx, s)
		}
		return d, fmt.Errorf("rename: %w", rerr)
	}

	// Wait until B is seen queued on the metadata lock.
	deadline := time.Now().Add(timeout)
	for {
		select {
		case rerr := <-renameErr:
			// B finished while A still held the lock: it failed (the sentry exists) or A is gone.
			unlock()
			return finish(rerr)
		default:
		}
		if waiting, err := renameWaiting(ctx, db, idB); err == nil && waiting && (!ghostFirst || m.renameHoldsGhost(ctx)) {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			// Not seen: unlock with the sentry in place, so the rename, if it is queued, fails.
			unlock()
			rerr := waitRename()
			d, ferr := finish(rerr)
			if ferr == nil || renamed {
				return d, ferr
			}
			return d, fmt.Errorf("the rename was not seen waiting on the lock within %s", timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	m.log.WithField("after", time.Since(lockStart).String()).Info("osc: cut-over: the rename is waiting on the lock")
	if _, err := connA.ExecContext(ctx, "DROP TABLE "+m.qualified(m.oldName())); err != nil {
		// A is probably gone: its lock with it, and the rename fails on the sentry.
		m.log.WithError(err).Warn("osc: could not drop the sentry under the lock")
	}
	unlock()
	return finish(waitRename())
}

// checkRowCounts compares, under the cut-over lock (lock is the locking session), the row counts of
// the original and the ghost table when rows may have collided on a new or changed unique key: the
// copy fails on such a collision, but the apply's REPLACE would silently delete the other row.
// It costs one COUNT(*) of each table while writes are blocked, so it runs only then.
func (m *Migration) checkRowCounts(ctx context.Context, lock *sql.Conn) error {
	keys := m.plan.uniqueKeysAtRisk()
	if len(keys) == 0 {
		return nil
	}
	var nOrig, nGhost int64
	if err := lock.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+m.qualified(m.Table)).Scan(&nOrig); err != nil {
		return fmt.Errorf("count the rows of %s: %w", m.qualified(m.Table), err)
	}
	if err := m.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+m.qualified(m.ghostName())).Scan(&nGhost); err != nil {
		return fmt.Errorf("count the rows of %s: %w", m.qualified(m.ghostName()), err)
	}
	if nOrig != nGhost {
		return errNoRetry{fmt.Errorf("the ghost table has %d rows, the original %d: rows collided on the new or changed unique key %s and were dropped; the cut-over was not done", nGhost, nOrig, strings.Join(keys, ", "))}
	}
	m.log.WithField("rows", nOrig).Info("osc: cut-over: row counts match")
	return nil
}

var autoIncrementValue = regexp.MustCompile(`\) .*\bAUTO_INCREMENT=(\d+)`)

// carryAutoIncrement sets the ghost table's AUTO_INCREMENT counter to the original's, read under
// the cut-over lock (lock is the locking session, so no insert can move it any more): ALTER TABLE
// keeps the counter, and a new table would otherwise start after its largest id and hand out
// again ids of rows deleted from the end of the original.
func (m *Migration) carryAutoIncrement(ctx context.Context, lock *sql.Conn) error {
	if !m.ghostAutoIncrement {
		return nil
	}
	var create string
	if err := lock.QueryRowContext(ctx, "SHOW CREATE TABLE "+m.qualified(m.Table)).Scan(new(string), &create); err != nil {
		return fmt.Errorf("read the AUTO_INCREMENT counter of %s: %w", m.qualified(m.Table), err)
	}
	match := autoIncrementValue.FindStringSubmatch(create)
	if match == nil {
		return nil // the counter was never used
	}
	if _, err := m.db.ExecContext(ctx, "ALTER TABLE "+m.qualified(m.ghostName())+" AUTO_INCREMENT = "+match[1]); err != nil {
		return fmt.Errorf("set the AUTO_INCREMENT counter of %s to %s: %w", m.qualified(m.ghostName()), match[1], err)
	}
	return nil
}

// dropStaleSentry drops t_del if it is a sentry left by a failed attempt (never an actual table).
func (m *Migration) dropStaleSentry(ctx context.Context) error {
	exists, comment, err := tableExists(ctx, m.db, m.Database, m.oldName())
	if err != nil || !exists {
		return err
	}
	if comment != sentryComment {
		return errNoRetry{fmt.Errorf("table %s exists and is not ferry's cut-over sentry; rename or drop it", m.qualified(m.oldName()))}
	}
	_, err = m.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+m.qualified(m.oldName()))
	return err
}

// renameHappened checks on a fresh connection whether the rename took place (after an error that
// does not say, such as a lost connection).
func (m *Migration) renameHappened(ctx context.Context) bool {
	ghost, _, err1 := tableExists(ctx, m.db, m.Database, m.ghostName())
	old, comment, err2 := tableExists(ctx, m.db, m.Database, m.oldName())
	t, _, err3 := tableExists(ctx, m.db, m.Database, m.Table)
	return err1 == nil && err2 == nil && err3 == nil && !ghost && old && comment != sentryComment && t
}

// waitApplierIdle waits (briefly) until the applier has applied what it queued.
func (m *Migration) waitApplierIdle(ctx context.Context) {
	deadline := time.Now().Add(10 * time.Second)
	for m.applier.backlog() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
}

// renameHoldsGhost reports whether the queued RENAME can be waiting only on the original table's
// lock, which the cut-over holds. The RENAME takes its tables' metadata locks one at a time in
// name order, and _<t>_gho sorts before t when t's first byte is above '_' (a lower-case
// letter, say): while another session holds a lock on the ghost table (an open transaction
// that read it, the server's background statistics), the RENAME waits on the ghost in the very
// processlist state it has when queued on t. Unlocking then lets the writes queued on t through
// before the RENAME asks for t: they land in the old table. So when the ghost sorts first, the
// RENAME must be seen holding its exclusive lock: a probe that asks for the ghost's high-priority
// shared metadata lock (SHOW CREATE TABLE) without waiting (lock_wait_timeout 0) fails only
// then, since that lock type is granted past pending exclusive requests but not past a granted one.
// (MariaDB only: on MySQL lock_wait_timeout is at least 1 s; see ghostLockedFirst.)
func (m *Migration) renameHoldsGhost(ctx context.Context) bool {
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return false
	}
	defer discard(conn)
	if _, err := conn.ExecContext(ctx, "SET SESSION lock_wait_timeout = 0"); err != nil {
		return false
	}
	_, err = conn.ExecContext(ctx, "SHOW CREATE TABLE "+m.qualified(m.ghostName()))
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1205 // ER_LOCK_WAIT_TIMEOUT: the RENAME holds it
}

// ghostLockedFirst reports whether the RENAME asks for the ghost table's metadata lock before the
// original's, and whether renameHoldsGhost can tell: the server orders the locks by name bytes
// (lower-cased where lower_case_table_names is set). On MySQL it reports false (no probe without
// a wait of at least a second; the RENAME is trusted to be queued on t, as in gh-ost).
func (m *Migration) ghostLockedFirst(ctx context.Context) (bool, error) {
	if !m.flavor.MariaDB {
		return false, nil
	}
	var lower int
	if err := m.db.QueryRowContext(ctx, "SELECT @@lower_case_table_names").Scan(&lower); err != nil {
		return false, fmt.Errorf("read lower_case_table_names: %w", err)
	}
	g, t := m.ghostName(), m.Table
	if lower != 0 {
		g, t = strings.ToLower(g), strings.ToLower(t)
	}
	return g < t, nil
}

// renameWaiting reports whether session id is running a RENAME that waits on a metadata lock. It
// reads SHOW PROCESSLIST rather than information_schema.PROCESSLIST: polling the latter (which
// materialises an internal temporary table per query) crashed MariaDB 10.11 under this load.
func renameWaiting(ctx context.Context, db *sql.DB, id int64) (bool, error) {
	rows, err := db.QueryContext(ctx, "SHOW FULL PROCESSLIST")
	if err != nil {
		return false, err
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	idCol, stateCol, infoCol := -1, -1, -1
	for i, c := range cols {
		switch strings.ToLower(c) {
		case "id":
			idCol = i
		case "state":
			stateCol = i
		case "info":
			infoCol = i
		}
	}
	if idCol < 0 || stateCol < 0 || infoCol < 0 {
		return false, fmt.Errorf("SHOW PROCESSLIST has no Id/State/Info columns")
	}
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	want := []byte(fmt.Sprint(id))
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return false, err
		}
		if string(vals[idCol]) != string(want) {
			continue
		}
		return strings.EqualFold(strings.TrimSpace(string(vals[stateCol])), "Waiting for table metadata lock") &&
			strings.HasPrefix(strings.ToUpper(strings.TrimSpace(string(vals[infoCol]))), "RENAME"), nil
	}
	return false, rows.Err()
}

// checkNothingSlipped waits until the streamer has reached the RENAME and checks that no change of
// the original table came between the cut-over marker and the rename (it would be in the old table
// only). The cut-over is built so that this cannot happen; this check makes sure. It never passes
// unseen: if the stream does not reach the rename within renameSeenTimeout, or stops for another
// reason, the migration fails loudly (the rename is done; what is unknown is said).
func (m *Migration) checkNothingSlipped(ctx context.Context, s *stream) error {
	unchecked := func(why string) error {
		return errNoRetry{fmt.Errorf("the table was renamed (%s has the new schema, %s is the old table), but %s, so ferry could not check that no write reached the old table after its last change was applied: compare %s with %s before dropping it",
			m.qualified(m.Table), m.qualified(m.oldName()), why, m.qualified(m.oldName()), m.qualified(m.Table))}
	}
	select {
	case <-s.ended():
	case <-time.After(m.renameSeenTimeout):
		return unchecked(fmt.Sprintf("the binlog stream did not reach the rename within %s", m.renameSeenTimeout))
	case <-ctx.Done():
		return unchecked(fmt.Sprintf("the run was stopped (%v) before the binlog stream reached the rename", context.Cause(ctx)))
	}
	if atRename, err := s.endedAtRename(); !atRename {
		return unchecked(fmt.Sprintf("the binlog stream stopped before the rename (%v)", err))
	}
	m.waitApplierIdle(ctx)
	if n := m.applier.sneaked.Load(); n > 0 {
		return errNoRetry{fmt.Errorf("the table was renamed, but %d row change(s) reached the old table %s after its last change was applied: compare %s with %s for the rows they touched", n, m.qualified(m.oldName()), m.qualified(m.oldName()), m.qualified(m.Table))}
	}
	return nil
}

// cutoverTwoStep is gh-ost's two-step cut-over: under LOCK TABLES t WRITE, once every change up to
// the lock is applied, the table is renamed away; after the unlock the ghost takes its name.
func (m *Migration) cutoverTwoStep(ctx context.Context, s *stream) (time.Duration, error) {
	timeout := m.CutoverLockTimeout
	secs := int((timeout + time.Second - 1) / time.Second)
	connA, err := m.db.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer discard(connA)
	if _, err := connA.ExecContext(ctx, fmt.Sprintf("SET SESSION lock_wait_timeout = %d", secs)); err != nil {
		return 0, err
	}
	if exists, _, err := tableExists(ctx, m.db, m.Database, m.oldName()); err != nil {
		return 0, err
	} else if exists {
		return 0, errNoRetry{fmt.Errorf("table %s exists; rename or drop it", m.qualified(m.oldName()))}
	}
	lockStart := time.Now()
	if _, err := connA.ExecContext(ctx, "LOCK TABLES "+m.qualified(m.Table)+" WRITE"); err != nil {
		return time.Since(lockStart), fmt.Errorf("lock %s (lock_wait_timeout %ds): %w", m.Table, secs, err)
	}
	unlock := func() { connA.ExecContext(context.WithoutCancel(ctx), "UNLOCK TABLES") }
	token := randomToken()
	applied := m.applier.marker(token)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	err = m.writeHint(wctx, 3, "cut-over", token)
	cancel()
	if err != nil {
		unlock()
		m.applier.forget(token)
		m.restartStream(ctx, s)
		return time.Since(lockStart), fmt.Errorf("write the cut-over marker: %w", err)
	}
	select {
	case <-applied:
	case <-time.After(timeout):
		unlock()
		m.applier.forget(token)
		m.restartStream(ctx, s)
		return time.Since(lockStart), fmt.Errorf("the binlog apply did not reach the cut-over marker within %s", timeout)
	case <-ctx.Done():
		unlock()
		return time.Since(lockStart), ctx.Err()
	}
	s.expectEnd()
	err = m.checkRowCounts(ctx, connA)
	if err == nil {
		err = m.carryAutoIncrement(ctx, connA)
	}
	if err == nil {
		err = m.verifyChangedRows(ctx, connA)
	}
	if err == nil {
		err = m.markOldTable(ctx)
	}
	if err == nil {
		err = m.createGhostTriggers(ctx)
	}
	if err != nil {
		unlock()
		m.applier.forget(token)
		m.restartStream(ctx, s)
		return time.Since(lockStart), err
	}
	if _, err := connA.ExecContext(ctx, "ALTER TABLE "+m.qualified(m.Table)+" RENAME TO "+m.qualified(m.oldName())); err != nil {
		m.dropGhostTriggers(context.WithoutCancel(ctx))
		unlock()
		m.applier.forget(token)
		m.restartStream(ctx, s)
		return time.Since(lockStart), fmt.Errorf("rename %s away: %w", m.Table, err)
	}
	m.renamed.Store(true) // from here the original is <t>_del
	unlock()
	if m.testBetweenRenames != nil {
		if err := m.testBetweenRenames(); err != nil {
			return time.Since(lockStart), errNoRetry{err}
		}
	}
	var rerr error
	for i := 0; i < 10; i++ {
		if _, rerr = m.db.ExecContext(context.WithoutCancel(ctx), "RENAME TABLE "+m.qualified(m.ghostName())+" TO "+m.qualified(m.Table)); rerr == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	d := time.Since(lockStart)
	if rerr != nil {
		return d, errNoRetry{fmt.Errorf("the original table is now %s and the ghost could not take its name: %w; run RENAME TABLE %s TO %s (every change is in it)",
			m.qualified(m.oldName()), rerr, m.qualified(m.ghostName()), m.qualified(m.Table))}
	}
	return d, m.checkNothingSlipped(ctx, s)
}

// restartStream replaces a streamer that was told to expect its end by a new one from the last
// applied position.
func (m *Migration) restartStream(ctx context.Context, s *stream) {
	if ctx.Err() != nil {
		return
	}
	s.stop()
	m.waitApplierIdle(ctx)
	m.applier.watching.Store(false)
	m.applier.sneaked.Store(0)
	s.start(m.applier.appliedPosition())
}

// discard closes a session instead of returning it to the pool: the cut-over's sessions carry a
// user lock, LOCK TABLES state and a short lock_wait_timeout that must not outlive them.
func discard(c *sql.Conn) {
	c.Raw(func(any) error { return driver.ErrBadConn })
	c.Close()
}
