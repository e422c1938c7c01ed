package snapshot

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/verifier"
)

// SubsetDiff proves that a target holds exactly the manifest's part of the source's tables (like
// Vitess' RowSubsetDiffer): every source row selected by the table's shard condition is on the
// target with the same bytes, and the target holds no other row. It compares the live source, so it
// is exact when the source is not written meanwhile (or at a cut-over).
func SubsetDiff(ctx context.Context, source, target *sql.DB, m *Manifest) (*verifier.Result, error) {
	return SubsetDiffRewritten(ctx, source, target, m, nil)
}

// SubsetDiffRewritten is SubsetDiff for a target restored with RestoreOptions.DatabaseRewrites:
// the tables of a source database are compared with those of its rewritten name on the target.
func SubsetDiffRewritten(ctx context.Context, source, target *sql.DB, m *Manifest, databaseRewrites map[string]string) (*verifier.Result, error) {
	var pairs []verifier.TablePair
	for _, t := range m.Tables {
		st, err := schema.Load(ctx, source, t.Database, t.Name)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		tdb := t.Database
		if r, ok := databaseRewrites[tdb]; ok {
			tdb = r
		}
		pairs = append(pairs, verifier.TablePair{Source: st, TargetDatabase: tdb, TargetTable: t.Name, Where: t.Where})
	}
	d := &verifier.Differ{Source: source, Target: target, Strict: true}
	return d.Verify(ctx, verifier.DuringCutover, pairs)
}
