package osc

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Triggers (IncludeTriggers).
//
// A table's triggers follow it on RENAME, so after the cut-over they would be on <t>_del. With
// IncludeTriggers they are recreated on the new table without a moment in which the table has no
// trigger or two sets of them:
//
//  1. under the cut-over lock, once every change is applied (triggers on the ghost must not fire
//     on the apply's writes), each trigger is created on the ghost table under a temporary name
//     (_<name>_ghn: trigger names are unique per schema, and the original still has its own);
//  2. the rename puts the ghost, with them, in place;
//  3. under LOCK TABLES t WRITE, <t>_del WRITE (writes wait a moment), each original trigger is
//     dropped from <t>_del, created again under its own name on t, and its temporary copy dropped:
//     the result is what ALTER TABLE leaves, the same triggers under the same names.
//
// Each trigger is created with its own definer, sql_mode and character set settings
// (information_schema.TRIGGERS). A failed attempt drops the temporary triggers again. Before any
// write, the temporary names are checked for length (64) and for conflicts with existing triggers.

type trigger struct {
	name, timing, event, statement, definer, sqlMode, charsetClient, collationConnection string
}

func (t trigger) tempName() string { return "_" + t.name + "_ghn" }

// readTriggers reads the table's triggers in their firing order.
func (m *Migration) readTriggers(ctx context.Context) ([]trigger, error) {
	return m.readTriggersOf(ctx, m.Table)
}

// resumeTriggerNames finishes step 3 for a cut-over that died after the rename: the triggers of
// the old table whose temporary copies are on the new table get their names back.
func (m *Migration) resumeTriggerNames(ctx context.Context) error {
	olds, err := m.readTriggersOf(ctx, m.oldName())
	if err != nil {
		return err
	}
	for _, t := range olds {
		var n int
		if err := m.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? AND TRIGGER_NAME = ? AND EVENT_OBJECT_TABLE = ?",
			m.Database, t.tempName(), m.Table).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			m.triggers = append(m.triggers, t)
		}
	}
	return m.nameTriggers(ctx)
}

func (m *Migration) readTriggersOf(ctx context.Context, table string) ([]trigger, error) {
	rows, err := m.db.QueryContext(ctx, `SELECT TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION, ACTION_STATEMENT, DEFINER, SQL_MODE,
		CHARACTER_SET_CLIENT, COLLATION_CONNECTION FROM information_schema.TRIGGERS
		WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ? ORDER BY EVENT_MANIPULATION, ACTION_TIMING, ACTION_ORDER`, m.Database, table)
	if err != nil {
		return nil, fmt.Errorf("osc: read the triggers of %s: %w", m.qualified(table), err)
	}
	defer rows.Close()
	var out []trigger
	for rows.Next() {
		var t trigger
		if err := rows.Scan(&t.name, &t.timing, &t.event, &t.statement, &t.definer, &t.sqlMode, &t.charsetClient, &t.collationConnection); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// checkTriggerNames refuses temporary trigger names that are too long or taken.
func (m *Migration) checkTriggerNames(ctx context.Context) error {
	for _, t := range m.triggers {
		if len(t.tempName()) > 64 {
			return fmt.Errorf("osc: trigger %s: its temporary name on the new table, %s, would be longer than 64 characters; rename the trigger first, or migrate without IncludeTriggers (--include-triggers)", t.name, t.tempName())
		}
		var n int
		if err := m.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? AND TRIGGER_NAME = ?", m.Database, t.tempName()).Scan(&n); err != nil {
			return fmt.Errorf("osc: check trigger names: %w", err)
		}
		if n > 0 {
			return fmt.Errorf("osc: trigger %s: its temporary name on the new table, %s, is taken by another trigger in %s; drop or rename that trigger first", t.name, t.tempName(), q(m.Database))
		}
	}
	return nil
}

// createTrigger creates t on table under name, with the trigger's own settings, on conn.
func (m *Migration) createTrigger(ctx context.Context, conn *sql.Conn, t trigger, name, table string) error {
	definer := ""
	if i := strings.LastIndexByte(t.definer, '@'); i > 0 {
		definer = "DEFINER=" + q(t.definer[:i]) + "@" + q(t.definer[i+1:]) + " "
	}
	if _, err := conn.ExecContext(ctx, "SET SESSION sql_mode = ?, character_set_client = ?, collation_connection = ?", t.sqlMode, t.charsetClient, t.collationConnection); err != nil {
		return fmt.Errorf("settings of trigger %s: %w", t.name, err)
	}
	stmt := "CREATE " + definer + "TRIGGER " + m.qualified(name) + " " + t.timing + " " + t.event + " ON " + m.qualified(table) + " FOR EACH ROW " + t.statement
	if _, err := conn.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("create trigger %s on %s: %w", m.qualified(name), m.qualified(table), err)
	}
	return nil
}

// createGhostTriggers creates the triggers on the ghost under their temporary names (step 1).
func (m *Migration) createGhostTriggers(ctx context.Context) error {
	if len(m.triggers) == 0 {
		return nil
	}
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer discard(conn) // its session settings are the triggers'
	for _, t := range m.triggers {
		if err := m.createTrigger(ctx, conn, t, t.tempName(), m.ghostName()); err != nil {
			m.dropGhostTriggers(ctx)
			return errNoRetry{fmt.Errorf("%w; the cut-over was not done", err)}
		}
	}
	return nil
}

// dropGhostTriggers drops the temporary triggers (a failed attempt).
func (m *Migration) dropGhostTriggers(ctx context.Context) {
	for _, t := range m.triggers {
		m.db.ExecContext(ctx, "DROP TRIGGER IF EXISTS "+m.qualified(t.tempName()))
	}
}

// nameTriggers gives the new table's triggers their own names (step 3).
func (m *Migration) nameTriggers(ctx context.Context) error {
	if len(m.triggers) == 0 {
		return nil
	}
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer discard(conn)
	secs := int((m.CutoverLockTimeout + 999_999_999) / 1_000_000_000)
	fail := func(err error) error {
		return fmt.Errorf("the table was renamed and its triggers work on it under temporary names (_<name>_ghn), but giving them their own names failed: %w; drop the triggers of %s and create them again on %s under their names", err, m.qualified(m.oldName()), m.qualified(m.Table))
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("SET SESSION lock_wait_timeout = %d", secs)); err != nil {
		return fail(err)
	}
	if _, err := conn.ExecContext(ctx, "LOCK TABLES "+m.qualified(m.Table)+" WRITE, "+m.qualified(m.oldName())+" WRITE"); err != nil {
		return fail(err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "UNLOCK TABLES")
	for _, t := range m.triggers {
		if _, err := conn.ExecContext(ctx, "DROP TRIGGER "+m.qualified(t.name)); err != nil {
			return fail(err)
		}
		if err := m.createTrigger(ctx, conn, t, t.name, m.Table); err != nil {
			return fail(err)
		}
		if _, err := conn.ExecContext(ctx, "DROP TRIGGER "+m.qualified(t.tempName())); err != nil {
			return fail(err)
		}
	}
	return nil
}
