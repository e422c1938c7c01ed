package osc

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ferrykit/ferry/verifier"
)

// Verification of the ghost table (on unless SkipVerification).
//
// When the ALTER keeps every copied column's values (same name and type; a character set change
// is compared after conversion), the ghost table must hold exactly the original's rows over those
// columns. After the copy, once the apply has caught up and before the cut-over lock is taken,
// the verifier's Checksum compares both tables chunk by chunk on the server (a chunk that differs
// while writes go on is checked again before it counts); a difference fails the migration before
// the cut-over, with the original untouched, and names the rows. ALTERs that convert values (a
// type change, a renamed column) cannot be compared value for value; the summary says so
// (Result.Verification).
//
// Limit: the pass runs before the lock; the changes applied between it and the rename are covered
// by the cut-over's own checks (every change up to the lock applied, the rename check), not by a
// second comparison.

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
	// A chunk that differs is checked again after the apply could have caught up (writes go on);
	// a difference that stays through a second pass, started once the apply reached the binlog
	// position of that moment, is real.
	v := &verifier.Checksum{Source: m.db, Target: m.db, Concurrency: 2, Logger: m.log,
		Rechecks: 3, RecheckDelay: max(m.MaxLag, 300*time.Millisecond)}
	var res *verifier.Result
	for pass := 1; ; pass++ {
		var err error
		if res, err = v.Verify(ctx, verifier.BeforeCutover, []verifier.TablePair{pair}); err != nil {
			return fmt.Errorf("verify the ghost table: %w", err)
		}
		if res.Match() || pass == 2 {
			break
		}
		m.log.Warn("osc: the ghost table differs from the original while writes go on; checking again once the apply caught up:\n" + res.String())
		m.waitApplied(ctx)
	}
	if !res.Match() {
		m.result.Verification = "MISMATCH"
		return errNoRetry{fmt.Errorf("the ghost table %s does not hold the rows of %s before the cut-over:\n%s\nthe cut-over was not done", m.qualified(m.ghostName()), m.qualified(m.Table), res)}
	}
	var rows int64
	for _, t := range res.Tables {
		rows += t.RowsCompared
	}
	m.result.Verification = fmt.Sprintf("MATCH (%d rows compared before the cut-over, %s)", rows, res.Duration.Round(1e6))
	m.log.Info("osc: verification of the ghost table: " + m.result.Verification)
	return nil
}
