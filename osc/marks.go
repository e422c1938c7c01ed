package osc

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// What ferry creates, and only that, ferry drops or reuses.
//
// The changelog _<t>_ghc is created with changelogComment. It is created before the ghost table
// and records (row ghostMarkID) that the ghost _<t>_gho is ferry's, and, under the cut-over lock
// just before the rename, (row oldTableMarkID) that <t>_del is the original table renamed by ferry.
// The cut-over's sentry <t>_del carries sentryComment. A leftover without such a mark — a table of
// the application that happens to be called <t>_del, a ghost left by a dry run that was killed —
// is never dropped (DropLeftovers) nor reused (Resume): ferry refuses and names it.

const (
	changelogComment = "ferry osc changelog"
	ghostMarkID      = 5
	oldTableMarkID   = 6
)

// leftovers describes the tables an earlier run may have left, and which of them are ferry's.
type leftovers struct {
	changelog, ghost, old                   bool // exist
	changelogMarked, ghostMarked, oldMarked bool // ferry's
	oldIsSentry                             bool
	table                                   bool // the table itself exists
}

func (m *Migration) readLeftovers(ctx context.Context) (leftovers, error) {
	var l leftovers
	var comment string
	var err error
	if l.table, _, err = tableExists(ctx, m.db, m.Database, m.Table); err != nil {
		return l, err
	}
	if l.changelog, comment, err = tableExists(ctx, m.db, m.Database, m.changelogName()); err != nil {
		return l, err
	}
	l.changelogMarked = l.changelog && comment == changelogComment
	if l.ghost, _, err = tableExists(ctx, m.db, m.Database, m.ghostName()); err != nil {
		return l, err
	}
	if l.old, comment, err = tableExists(ctx, m.db, m.Database, m.oldName()); err != nil {
		return l, err
	}
	l.oldIsSentry = l.old && comment == sentryComment
	if l.changelogMarked {
		marks := map[int]string{}
		rows, err := m.db.QueryContext(ctx, "SELECT id, value FROM "+m.qualified(m.changelogName())+" WHERE id IN (?, ?)", ghostMarkID, oldTableMarkID)
		if err != nil {
			return l, fmt.Errorf("osc: read %s: %w", m.qualified(m.changelogName()), err)
		}
		for rows.Next() {
			var id int
			var v string
			if err := rows.Scan(&id, &v); err != nil {
				rows.Close()
				return l, err
			}
			marks[id] = v
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return l, err
		}
		l.ghostMarked = l.ghost && marks[ghostMarkID] == m.ghostName()
		l.oldMarked = l.old && marks[oldTableMarkID] == m.oldName()
	}
	l.oldMarked = l.oldMarked || l.oldIsSentry
	return l, nil
}

// notOurs is the refusal for a table ferry did not create.
func (m *Migration) notOurs(table, how string) error {
	return fmt.Errorf("osc: table %s exists and nothing marks it as ferry's (%s): it may be an application's table, or the old table of an earlier, completed migration; ferry never drops or reuses a table it cannot tell is its own: rename or drop it yourself if it is not needed", m.qualified(table), how)
}

// nothingToResume is the refusal of Resume when no migration is in progress (no changelog, no
// ghost) and only an unmarked <t>_del exists: the state a completed migration that kept the
// original table leaves (its cut-over renamed the original to <t>_del and dropped the changelog
// that marked it), or an application's table of that name.
func (m *Migration) nothingToResume() error {
	return fmt.Errorf("osc: nothing to resume for %s: no migration of it is in progress (neither %s nor %s exists); %s is the original table kept by an earlier, completed migration (run without DropOldTable / --drop-old-table), or an application's table of that name. Check it, drop or rename it (a new migration renames the original table to that name at its cut-over), then run the migration as a new one, without Resume (--resume)",
		m.qualified(m.Table), m.qualified(m.changelogName()), m.qualified(m.ghostName()), m.qualified(m.oldName()))
}

// createChangelog creates the changelog table, marked as ferry's.
func (m *Migration) createChangelog(ctx context.Context) error {
	_, err := m.db.ExecContext(ctx, "CREATE TABLE "+m.qualified(m.changelogName())+` (
		id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
		hint VARCHAR(64) CHARACTER SET ascii NOT NULL,
		value VARCHAR(4096) CHARACTER SET utf8mb4 NOT NULL,
		last_update TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
	) ENGINE=InnoDB COMMENT='`+changelogComment+`'`)
	if err != nil {
		return fmt.Errorf("osc: create changelog table %s: %w", m.qualified(m.changelogName()), err)
	}
	m.changelogCreated = true
	return nil
}

// markOldTable records, under the cut-over lock before the rename, that <t>_del is about to be
// the original table.
func (m *Migration) markOldTable(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, m.CutoverLockTimeout)
	defer cancel()
	if err := m.writeHint(wctx, oldTableMarkID, "old-table", m.oldName()); err != nil {
		return fmt.Errorf("record the old table's name in %s: %w", m.qualified(m.changelogName()), err)
	}
	return nil
}

// finishTwoStepRename handles the table missing at the start of a run. The one state in which
// ferry knows what happened: a two-step cut-over renamed the table to <t>_del under its lock, after
// every change was applied to the ghost, and died before RENAME TABLE _<t>_gho TO t (the old table
// and the ghost are marked). With Resume the rename is finished; otherwise the error gives the
// statement. Any other state is refused.
func (m *Migration) finishTwoStepRename(ctx context.Context) (*Result, error) {
	l, err := m.readLeftovers(ctx)
	if err != nil {
		return nil, err
	}
	if l.table {
		return nil, errors.New("osc: internal: the table exists")
	}
	rename := "RENAME TABLE " + m.qualified(m.ghostName()) + " TO " + m.qualified(m.Table)
	if !(l.ghost && l.ghostMarked && l.old && l.oldMarked && !l.oldIsSentry) {
		return nil, fmt.Errorf("osc: table %s does not exist", m.qualified(m.Table))
	}
	if !m.Resume || !m.Execute {
		return nil, fmt.Errorf("osc: table %s does not exist: a two-step cut-over renamed it to %s and stopped before the ghost took its name (every change is in %s); finish with Resume (--resume), or run: %s",
			m.qualified(m.Table), m.qualified(m.oldName()), m.qualified(m.ghostName()), rename)
	}
	m.log.Warnf("osc: resume: a two-step cut-over stopped between its renames; finishing it: %s", rename)
	if _, err := m.db.ExecContext(ctx, rename); err != nil {
		// a RENAME of the killed run may still have been queued on the server
		if l2, err2 := m.readLeftovers(ctx); err2 != nil || !l2.table || l2.ghost {
			return nil, fmt.Errorf("osc: finish the interrupted cut-over: %s: %w", rename, err)
		}
	}
	m.renamed.Store(true)
	if err := m.resumeTriggerNames(ctx); err != nil {
		return &m.result, fmt.Errorf("osc: %w", err)
	}
	if _, err := m.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+m.qualified(m.changelogName())); err != nil {
		m.log.WithError(err).Warnf("osc: could not drop %s; drop it by hand", m.qualified(m.changelogName()))
	}
	m.result.OldTable = m.oldName()
	m.result.Elapsed = time.Since(m.started)
	m.setState(StateDone)
	m.runHook(context.WithoutCancel(ctx), HookSuccess, nil)
	return &m.result, nil
}
