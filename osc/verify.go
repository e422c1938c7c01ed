package osc

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/verifier"
)

// Verification of the ghost table (on unless SkipVerification).
//
// When the ALTER keeps every copied column's values (same name and type; a character set change
// is compared after conversion), the ghost table must hold exactly the original's rows over those
// columns. After the copy and before the cut-over, the verifier's Checksum compares both tables
// chunk by chunk on the server, in consistent snapshots begun while writes to the original wait
// (LOCK TABLES READ, a pause as long as the apply needs to catch up, like the cut-over's) once the
// apply reached the binlog position of the lock: there both tables are equal if the ghost is
// correct, so writes may go on during the pass and a difference is real, however far the apply
// lags (comparing the live tables, even with rechecks, fails correct migrations under load). A
// difference fails the migration before the cut-over, with the original untouched, and names the
// rows. ALTERs that convert values (a
// type change, a renamed column) cannot be compared value for value; the summary says so
// (Result.Verification).
//
// Under the cut-over lock, once every change up to the lock is applied, the rows the apply changed
// since the pass began are compared again (verifyChangedRows): the original read on the locking
// session, the ghost on another, each row hashed by the same SQL on both. A row changed on either
// side after the pass compared it is one the apply wrote (only ferry writes the ghost, and every
// change of the original up to the lock is applied), so the two passes together cover every row,
// except changes that never reach the binlog. More than maxTracked changed rows: the second
// comparison is skipped and the summary says so.

// verificationPair returns the table pair to compare, or why the ALTER cannot be verified.
func (m *Migration) verificationPair() (verifier.TablePair, string) {
	p := m.plan
	if len(p.Renamed) > 0 {
		return verifier.TablePair{}, "the ALTER renames columns"
	}
	for _, cm := range p.Columns {
		if !strings.EqualFold(cm.From.Name, cm.To.Name) {
			return verifier.TablePair{}, "the ALTER renames columns"
		}
		if cm.From.ColumnType != cm.To.ColumnType || (cm.From.Charset != cm.To.Charset && !(isChar(cm.From) && isChar(cm.To))) {
			return verifier.TablePair{}, fmt.Sprintf("the ALTER converts the values of %s (%s → %s)", cm.From.Name, cm.From.ColumnType, cm.To.ColumnType)
		}
	}
	for _, k := range p.Key {
		if k.DataType == "enum" {
			return verifier.TablePair{}, "the key is an ENUM column, which the verifier does not page by"
		}
	}
	if p.KeyName != p.original.KeyName || p.KeyWidened {
		return verifier.TablePair{}, "the ALTER changes the table's primary key"
	}
	return verifier.TablePair{Source: p.original, TargetDatabase: m.Database, TargetTable: m.ghostName(), IgnoreColumns: p.Dropped}, ""
}

// verifyGhost runs the pass before the cut-over and records its outcome in the result.
func (m *Migration) verifyGhost(ctx context.Context) error {
	if m.SkipVerification {
		m.result.Verification = "skipped (SkipVerification)"
		return nil
	}
	pair, why := m.verificationPair()
	if why != "" {
		m.result.Verification = "not applicable: " + why
		m.log.Info("osc: verification of the ghost table not applicable: " + why)
		return nil
	}
	m.setState(StateVerifying)
	m.applier.startTracking()
	// The pass reads both tables in consistent snapshots begun with writes to the original stopped
	// and every change up to then applied (snapshotWhenApplied): there both are equal if the ghost
	// is correct, so a difference is real, however far the apply lags while writes go on.
	v := &verifier.Checksum{Source: m.db, Target: m.db, Concurrency: 2, Logger: m.log, Snapshot: m.snapshotWhenApplied}
	res, err := v.Verify(ctx, verifier.BeforeCutover, []verifier.TablePair{pair})
	if err != nil {
		return fmt.Errorf("verify the ghost table: %w", err)
	}
	if !res.Match() {
		m.result.Verification = "MISMATCH"
		return errNoRetry{fmt.Errorf("the ghost table %s does not hold the rows of %s before the cut-over:\n%s\nthe cut-over was not done", m.qualified(m.ghostName()), m.qualified(m.Table), res)}
	}
	var rows int64
	for _, t := range res.Tables {
		rows += t.RowsCompared
	}
	m.verified = true
	m.result.Verification = fmt.Sprintf("MATCH (%d rows compared before the cut-over, %s)", rows, res.Duration.Round(1e6))
	m.log.Info("osc: verification of the ghost table: " + m.result.Verification)
	return nil
}

// snapshotWhenApplied calls begin (which starts the verifier's consistent snapshots) while writes to
// the original are stopped (LOCK TABLES READ, bounded by CutoverLockTimeout and retried like the
// cut-over) and once the apply reached the binlog position of the lock: every change of the original
// committed before the lock is then in the ghost table, and no other change can reach either table
// until the unlock (only ferry writes the ghost). Writes to the original wait for the apply to catch
// up, as at the cut-over.
func (m *Migration) snapshotWhenApplied(ctx context.Context, begin func(context.Context) error) error {
	timeout := m.CutoverLockTimeout
	secs := int((timeout + time.Second - 1) / time.Second)
	for attempt := 1; ; attempt++ {
		err := m.snapshotAttempt(ctx, begin, secs, timeout)
		if err == nil {
			return nil
		}
		if attempt >= m.CutoverAttempts || ctx.Err() != nil {
			return fmt.Errorf("after %d attempt(s): %w", attempt, err)
		}
		m.log.WithError(err).WithField("attempt", attempt).Warn("osc: verification: no snapshot taken (writes resumed); trying again once the apply caught up")
		m.waitApplied(ctx)
	}
}

func (m *Migration) snapshotAttempt(ctx context.Context, begin func(context.Context) error, secs int, timeout time.Duration) error {
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer discard(conn)
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("SET SESSION lock_wait_timeout = %d", secs)); err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, "LOCK TABLES "+m.qualified(m.Table)+" READ"); err != nil {
		return fmt.Errorf("lock %s for the verification snapshot (lock_wait_timeout %ds): %w", m.qualified(m.Table), secs, err)
	}
	lockStart := time.Now()
	defer func() {
		conn.ExecContext(context.WithoutCancel(ctx), "UNLOCK TABLES")
		m.log.WithField("blocked", time.Since(lockStart).String()).Info("osc: verification: snapshot taken, writes resumed")
	}()
	// Every change of the original committed before the lock precedes this position.
	deadline := time.Now().Add(timeout)
	pctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	pos, err := m.streamPositionNow(pctx)
	if err != nil {
		return fmt.Errorf("binlog position for the verification snapshot: %w", err)
	}
	for m.applier.appliedPosition().Compare(pos) < 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("the binlog apply did not reach the position of the verification snapshot within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return begin(ctx)
}

// verifyChangedRows re-checks, under the cut-over lock (lock holds LOCK TABLES on the original), the
// rows the apply changed since the verification pass began.
func (m *Migration) verifyChangedRows(ctx context.Context, lock *sql.Conn) error {
	if !m.verified {
		return nil
	}
	keys, overflow := m.applier.touchedKeys()
	if overflow {
		m.result.Verification = strings.SplitN(m.result.Verification, "; ", 2)[0] + fmt.Sprintf("; the rows changed since (more than %d) were not compared again under the lock", maxTracked)
		return nil
	}
	p := m.plan
	side := func(ghost bool) (keyID string, hash string, table string) {
		var ks, cs []string
		for _, k := range p.Key {
			name := k.Name
			if ghost {
				name = p.newName(k)
			}
			ks = append(ks, "HEX("+q(name)+")")
		}
		for _, cm := range p.Columns {
			c, name := cm.From, cm.From.Name
			if ghost {
				c, name = cm.To, cm.To.Name
			}
			v := "HEX(CAST(" + q(name) + " AS BINARY))"
			if isChar(c) {
				v = "HEX(CONVERT(" + q(name) + " USING utf8mb4))"
			}
			cs = append(cs, "IFNULL("+v+", '-')")
		}
		table = m.qualified(m.Table)
		if ghost {
			table = m.qualified(m.ghostName())
		}
		return "CONCAT_WS(',', " + strings.Join(ks, ", ") + ")", "MD5(CONCAT_WS(',', " + strings.Join(cs, ", ") + "))", table
	}
	read := func(q querier, ghost bool, batch [][]any) (map[string]string, error) {
		id, hash, table := side(ghost)
		var conds []string
		var args []any
		for _, k := range batch {
			var eq []string
			for i, c := range p.Key {
				name := c.Name
				if ghost {
					name = p.newName(c)
				}
				eq = append(eq, schema.QuoteIdent(name)+" = "+schema.KeyPlaceholder(c))
				args = append(args, k[i])
			}
			conds = append(conds, "("+strings.Join(eq, " AND ")+")")
		}
		rows, err := q.QueryContext(ctx, "SELECT "+id+", "+hash+" FROM "+table+" WHERE "+strings.Join(conds, " OR "), args...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		out := map[string]string{}
		for rows.Next() {
			var k, h string
			if err := rows.Scan(&k, &h); err != nil {
				return nil, err
			}
			out[k] = h
		}
		return out, rows.Err()
	}
	var differ []string
	for start := 0; start < len(keys); start += 200 {
		batch := keys[start:min(start+200, len(keys))]
		orig, err := read(lock, false, batch)
		if err != nil {
			return fmt.Errorf("re-check the changed rows of %s under the lock: %w", m.qualified(m.Table), err)
		}
		ghost, err := read(m.db, true, batch)
		if err != nil {
			return fmt.Errorf("re-check the changed rows of %s under the lock: %w", m.qualified(m.ghostName()), err)
		}
		for k, h := range orig {
			if ghost[k] != h {
				differ = append(differ, k)
			}
		}
		for k := range ghost {
			if _, ok := orig[k]; !ok {
				differ = append(differ, k)
			}
		}
	}
	if len(differ) > 0 {
		sort.Strings(differ)
		m.result.Verification = "MISMATCH under the lock"
		return errNoRetry{fmt.Errorf("under the cut-over lock, %d changed row(s) of %s differ in the ghost table %s (keys, hex: %s); the cut-over was not done",
			len(differ), m.qualified(m.Table), m.qualified(m.ghostName()), strings.Join(differ[:min(len(differ), 10)], "; "))}
	}
	m.result.Verification = strings.SplitN(m.result.Verification, "; ", 2)[0] + fmt.Sprintf("; %d changed rows compared again under the lock", len(keys))
	return nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}
