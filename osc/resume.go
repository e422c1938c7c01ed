package osc

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ferrykit/ferry"
)

// Resuming an interrupted migration.
//
// While a migration copies and catches up, a checkpoint row (id 3, hint "checkpoint") in the
// changelog table _<t>_ghc holds, as JSON: the last chunk end below which every chunk's
// INSERT ... SELECT committed (copyProgress: chunks copied at once commit in any order), whether
// the copy finished, and the binlog position up to which every change of the original is applied
// to the ghost table (a transaction boundary: the applier moves it only after the transaction that
// applied the events before it committed), plus fingerprints of the original's and the ghost's
// definitions and the ALTER. A single-row upsert is atomic, and the two progress values are each
// valid on their own: any chunk end below which every chunk committed and any fully applied
// position will do.
//
// With Resume, Run finds _<t>_gho and _<t>_ghc, checks the checkpoint's ALTER and fingerprints against
// the tables as they are now and that the binlog file of its position still exists, then copies the
// chunks after the checkpointed key (up to the table's largest key now) and streams the binlog from
// the checkpointed position. Why this converges: the apply writes whole row images by key and
// deletes by key, in binlog order, so replaying changes already applied leaves every row as the last
// change has it; the copy skips rows the ghost has (NOT EXISTS) under shared locks, so re-copying a
// chunk changes nothing in rows the ghost has, and a row it adds is read as the original has it now (any later change
// comes after in the binlog, which is streamed from an older position anyway). Rows inserted above
// the first run's copy range are copied again or streamed, both harmless.

const checkpointID = 3

type checkpoint struct {
	Version    int            `json:"version"`
	Alter      string         `json:"alter"`
	Original   string         `json:"original"` // sha256 of SHOW CREATE TABLE of the original
	Ghost      string         `json:"ghost"`    // and of the ghost table
	Position   ferry.Position `json:"position"` // every change before it is applied
	CopiedUpTo [][]byte       `json:"copied_up_to,omitempty"`
	CopyDone   bool           `json:"copy_done,omitempty"`
	RowsCopied int64          `json:"rows_copied"`
	Written    time.Time      `json:"written"`
	// Binlog is the replica the binlog was read from (BinlogConn), whose binlog Position is a
	// position of; empty when it was the migrated server's.
	Binlog ferry.ServerIdentity `json:"binlog,omitzero"`
}

var autoIncrement = regexp.MustCompile(` AUTO_INCREMENT=\d+`)

// fingerprint hashes a table's definition, without its name and AUTO_INCREMENT counter.
func (m *Migration) fingerprint(ctx context.Context, table string) (string, error) {
	var create string
	if err := m.db.QueryRowContext(ctx, "SHOW CREATE TABLE "+m.qualified(table)).Scan(new(string), &create); err != nil {
		return "", fmt.Errorf("osc: SHOW CREATE TABLE %s: %w", m.qualified(table), err)
	}
	create = autoIncrement.ReplaceAllString(create, "")
	if i := strings.Index(create, "("); i > 0 {
		create = create[i:]
	}
	sum := sha256.Sum256([]byte(create))
	return hex.EncodeToString(sum[:]), nil
}

// readCheckpoint returns the checkpoint stored in the changelog, or nil if there is none.
func (m *Migration) readCheckpoint(ctx context.Context) (*checkpoint, error) {
	var value string
	err := m.db.QueryRowContext(ctx, "SELECT value FROM "+m.qualified(m.changelogName())+" WHERE id = ? AND hint = 'checkpoint'", checkpointID).Scan(&value)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("osc: read the checkpoint from %s: %w", m.qualified(m.changelogName()), err)
	}
	var cp checkpoint
	if err := json.Unmarshal([]byte(value), &cp); err != nil {
		return nil, fmt.Errorf("osc: the checkpoint in %s is not valid: %w", m.qualified(m.changelogName()), err)
	}
	if cp.Version != 1 {
		return nil, fmt.Errorf("osc: the checkpoint in %s has format version %d; this ferry reads version 1", m.qualified(m.changelogName()), cp.Version)
	}
	return &cp, nil
}

// writeCheckpoint stores the current progress.
func (m *Migration) writeCheckpoint(ctx context.Context) error {
	cp := m.cp
	cp.Version = 1
	cp.Position = m.applier.appliedPosition()
	if k := m.copiedUpTo.Load(); k != nil {
		cp.CopiedUpTo = *k
	}
	cp.CopyDone = m.copyDone.Load()
	cp.RowsCopied = m.rowsCopied.Load()
	cp.Written = time.Now().UTC()
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	if len(b) > 4096 {
		return fmt.Errorf("checkpoint too large (%d bytes)", len(b))
	}
	return m.writeHint(ctx, checkpointID, "checkpoint", string(b))
}

// checkpointLoop writes a checkpoint every CheckpointInterval until ctx ends.
func (m *Migration) checkpointLoop(ctx context.Context) {
	t := time.NewTicker(m.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if m.renamed.Load() {
			return
		}
		if err := m.writeCheckpoint(ctx); err != nil && ctx.Err() == nil {
			m.log.WithError(err).Warn("osc: could not write the checkpoint")
		}
	}
}

// prepareResume decides, with Resume, whether leftovers of an earlier run can be resumed. It
// returns the checkpoint to resume from, or nil to start afresh (after dropping the ghost and
// changelog tables of a run that died before its first checkpoint).
func (m *Migration) prepareResume(ctx context.Context) (*checkpoint, error) {
	ghost, _, err := tableExists(ctx, m.db, m.Database, m.ghostName())
	if err != nil {
		return nil, err
	}
	changelog, _, err := tableExists(ctx, m.db, m.Database, m.changelogName())
	if err != nil {
		return nil, err
	}
	var cp *checkpoint
	if changelog {
		if cp, err = m.readCheckpoint(ctx); err != nil {
			return nil, err
		}
	}
	if cp == nil || !ghost {
		if ghost || changelog {
			if !ghost && cp != nil {
				return nil, fmt.Errorf("osc: %w: %s has a checkpoint but %s is missing (was the migration completed? check %s); drop %s to start again",
					ferry.ErrResumeMismatch, m.qualified(m.changelogName()), m.qualified(m.ghostName()), m.qualified(m.oldName()), m.qualified(m.changelogName()))
			}
			m.log.Warn("osc: resume: the earlier run stopped before its first checkpoint; starting again")
			for _, t := range []string{m.ghostName(), m.changelogName()} {
				if _, err := m.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+m.qualified(t)); err != nil {
					return nil, fmt.Errorf("osc: drop %s: %w", m.qualified(t), err)
				}
			}
		} else {
			m.log.Info("osc: resume: nothing to resume; starting")
		}
		return nil, nil
	}
	if cp.Alter != m.Alter {
		return nil, fmt.Errorf("osc: %w: the checkpoint is of ALTER %q, not %q", ferry.ErrResumeMismatch, cp.Alter, m.Alter)
	}
	fp, err := m.fingerprint(ctx, m.Table)
	if err != nil {
		return nil, err
	}
	if fp != cp.Original {
		return nil, fmt.Errorf("osc: %w: the definition of %s changed since the checkpoint; %s", ferry.ErrResumeMismatch, m.qualified(m.Table), m.cleanupHint())
	}
	if fp, err = m.fingerprint(ctx, m.ghostName()); err != nil {
		return nil, err
	}
	if fp != cp.Ghost {
		return nil, fmt.Errorf("osc: %w: the definition of the ghost table %s changed since the checkpoint; %s", ferry.ErrResumeMismatch, m.qualified(m.ghostName()), m.cleanupHint())
	}
	if cp.Position.IsZero() {
		return nil, fmt.Errorf("osc: %w: the checkpoint has no binlog position", ferry.ErrResumeMismatch)
	}
	if !cp.Binlog.Same(m.binlogID) {
		was, now := "the server itself", "the server itself"
		if !cp.Binlog.IsZero() {
			was = "the replica " + cp.Binlog.String()
		}
		if !m.binlogID.IsZero() {
			now = "the replica " + m.binlogID.String()
		}
		return nil, fmt.Errorf("osc: %w: the checkpoint's binlog position is one of %s (the binlog was read from it), but the binlog is now read from %s; resume reading the binlog where the checkpoint's run did, or %s",
			ferry.ErrResumeMismatch, was, now, m.cleanupHint())
	}
	files, err := ferry.BinlogFiles(ctx, m.binlogDB())
	if err != nil {
		return nil, fmt.Errorf("osc: %w", err)
	}
	if !slices.Contains(files, cp.Position.File) {
		return nil, fmt.Errorf("osc: %w: binlog file %s (checkpoint position %s) is no longer on the server (%w?), so the changes since the checkpoint cannot be applied; %s",
			ferry.ErrResumeMismatch, cp.Position.File, cp.Position, ferry.ErrBinlogPurged, m.cleanupHint())
	}
	m.log.WithField("position", cp.Position.String()).WithField("copy_done", cp.CopyDone).WithField("rows_copied", cp.RowsCopied).Info("osc: resuming from the checkpoint")
	return cp, nil
}
