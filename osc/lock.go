package osc

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"
)

// migrationLockName is the server-wide user lock (GET_LOCK) that one migration of a table holds
// for its whole run. Names are at most 64 characters; longer ones are hashed.
func (m *Migration) migrationLockName() string {
	name := "ferry-osc-run:" + m.Database + "." + m.Table
	if len(name) > 64 {
		sum := sha256.Sum256([]byte(m.Database + "." + m.Table))
		name = "ferry-osc-run:" + hex.EncodeToString(sum[:])[:40]
	}
	return name
}

// lockMigration takes the table's migration lock on a session of its own, held until release:
// a second run on the same table (a Resume started while the first is alive would resume from
// the live run's checkpoint and cut over under it) is refused, naming the session that holds it.
// The lock ends with its session, so a killed run never blocks the next one.
func (m *Migration) lockMigration(ctx context.Context) (release func(), err error) {
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("osc: connect for the migration lock: %w", err)
	}
	name := m.migrationLockName()
	// The session sits idle for the whole run: keep the server from closing it (and releasing the
	// lock) after wait_timeout.
	if _, err := conn.ExecContext(ctx, "SET SESSION wait_timeout = 31536000"); err != nil {
		discard(conn)
		return nil, fmt.Errorf("osc: prepare the migration lock's session: %w", err)
	}
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", name).Scan(&got); err != nil {
		discard(conn)
		return nil, fmt.Errorf("osc: take the migration lock %q: %w", name, err)
	}
	if got.Int64 != 1 {
		holder := m.lockHolder(ctx, conn, name)
		discard(conn)
		return nil, fmt.Errorf("osc: another migration of %s is running: %s holds its lock %q; wait for it to end or stop it (two runs on one table would cut over twice)", m.qualified(m.Table), holder, name)
	}
	return func() {
		conn.ExecContext(context.WithoutCancel(ctx), "DO RELEASE_LOCK(?)", name)
		discard(conn)
	}, nil
}

// lockHolder describes the session holding a user lock: connection id, user, host and what it runs.
func (m *Migration) lockHolder(ctx context.Context, conn *sql.Conn, name string) string {
	var id sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?)", name).Scan(&id); err != nil || !id.Valid {
		return "a session"
	}
	desc := fmt.Sprintf("connection %d", id.Int64)
	rows, err := conn.QueryContext(ctx, "SHOW FULL PROCESSLIST")
	if err != nil {
		return desc
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if rows.Scan(ptrs...) != nil {
			return desc
		}
		row := map[string]string{}
		for i, c := range cols {
			row[strings.ToLower(c)] = string(vals[i])
		}
		if row["id"] == fmt.Sprint(id.Int64) {
			return fmt.Sprintf("%s (user %s from %s)", desc, row["user"], row["host"])
		}
	}
	return desc
}
