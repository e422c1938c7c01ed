package snapshot

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/ferrykit/ferry"
)

// CloneOptions configures a clone: a restore of one snapshot, then a Ferry that replays the
// source's binlog from the snapshot's position.
type CloneOptions struct {
	Restore RestoreOptions
	// Ferry is the configuration of the Ferry that catches up (Source, Target, Logger, sizes...);
	// Tables and Resume are set by Clone, and DatabaseRewrites from the restore's. Its Target
	// should be the restore's target.
	Ferry ferry.Config
}

// Clone restores one snapshot into the target and returns an initialized, started Ferry streaming
// from the snapshot's binlog position: run it (f.Run) and cut over (ferry.Cutover) as with any copy.
//
// Why the result is exact: the restored tables hold the source's rows as of the manifest position
// P (see Take); the Ferry applies every row change after P as an idempotent image, in binlog order
// (docs/design.md, points 1–2), so once it has applied everything up to the cut-over position the
// target equals the source. The Ferry starts as a resume whose copy is complete: it refuses a
// source table whose definition changed since the snapshot, and a source that no longer has the
// binlog file of P — checked first, before anything is restored.
func Clone(ctx context.Context, o CloneOptions) (*ferry.Ferry, *RestoreReport, error) {
	if len(o.Restore.Snapshots) != 1 {
		return nil, nil, errors.New("clone: give exactly one snapshot")
	}
	m, err := ReadManifest(ctx, o.Restore.Snapshots[0], ManifestName)
	if err != nil {
		return nil, nil, err
	}
	if m.Shard != nil {
		return nil, nil, fmt.Errorf("clone: %s is shard %d of %d of a split snapshot; clone the whole snapshot, or move each shard online with its own Ferry and a key-range CopyFilter", o.Restore.Snapshots[0].Describe(ManifestName), m.Shard.Index, m.Shard.Count)
	}
	if len(o.Ferry.DatabaseRewrites) > 0 && !maps.Equal(o.Ferry.DatabaseRewrites, o.Restore.DatabaseRewrites) {
		return nil, nil, errors.New("clone: the catch-up's database rewrites differ from the restore's; give them once, in the restore's options")
	}
	o.Ferry.DatabaseRewrites = o.Restore.DatabaseRewrites
	if err := checkBinlogAvailable(ctx, o.Ferry.Source, m); err != nil {
		return nil, nil, err
	}
	rep, err := Restore(ctx, o.Restore)
	if err != nil {
		return nil, nil, err
	}
	f, err := CatchUp(ctx, o.Ferry, m)
	return f, rep, err
}

// CatchUp returns an initialized, started Ferry that replays the source's binlog from the
// manifest's position onto a target holding the restored snapshot (restored with
// cfg.DatabaseRewrites as its RestoreOptions.DatabaseRewrites).
func CatchUp(ctx context.Context, cfg ferry.Config, m *Manifest) (*ferry.Ferry, error) {
	if len(cfg.TableRewrites) > 0 {
		return nil, errors.New("clone: a restore keeps table names; table rewrites cannot be caught up")
	}
	if err := checkBinlogAvailable(ctx, cfg.Source, m); err != nil {
		return nil, err
	}
	if m.Source.Identity.IsZero() {
		return nil, errors.New("clone: the manifest does not record which server the snapshot was taken from; it cannot be caught up")
	}
	tdb, err := cfg.Target.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	targetID, err := ferry.ReadServerIdentity(ctx, tdb)
	tdb.Close()
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	// The catch-up is a resume whose copy is complete: the copy is the restored snapshot, Applied
	// its position, and the resume checks (same source server, unchanged table definitions, binlog
	// still there) are those of any resume.
	cfg.Tables = ferry.TableFilter{}
	for _, t := range m.Tables {
		cfg.Tables.Include = append(cfg.Tables.Include, t.String())
	}
	st := &ferry.State{Version: ferry.StateVersion, Applied: m.Position, Tables: map[string]*ferry.TableState{}, Written: m.Finished,
		Selection: ferry.Selection{Tables: cfg.Tables}, Source: m.Source.Identity, Target: targetID}
	for _, t := range m.Tables {
		target := t.Database
		if r, ok := cfg.DatabaseRewrites[target]; ok {
			target = r
		}
		st.Tables[t.String()] = &ferry.TableState{Fingerprint: t.Fingerprint, Completed: true, RowsCopied: t.Rows, Target: target + "." + t.Name, Schema: t.CreateTable}
	}
	cfg.Resume = st
	f, err := ferry.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := f.Initialize(ctx); err != nil {
		f.Close()
		return nil, fmt.Errorf("clone: %w", err)
	}
	if err := f.Start(ctx); err != nil {
		f.Close()
		return nil, fmt.Errorf("clone: %w", err)
	}
	return f, nil
}

// checkBinlogAvailable refuses a snapshot whose binlog position the source has purged: the changes
// since it are gone, so it can only be restored, not brought up to date.
func checkBinlogAvailable(ctx context.Context, src ferry.ConnConfig, m *Manifest) error {
	db, err := src.Open(ctx)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer db.Close()
	files, err := ferry.BinlogFiles(ctx, db)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	for _, f := range files {
		if f == m.Position.File {
			return nil
		}
	}
	has := "no binary logs"
	if len(files) > 0 {
		has = "binary logs " + files[0] + " to " + files[len(files)-1]
		if len(files) == 1 {
			has = "only binary log " + files[0]
		}
	}
	return fmt.Errorf("clone: the snapshot was taken %s ago (%s) at binlog %s, which the source has purged; it still has %s. Take a new snapshot (or keep binlogs longer: expire_logs_days / binlog_expire_logs_seconds)",
		time.Since(m.Finished).Round(time.Second), m.Finished.Format(time.RFC3339), m.Position, strings.TrimSpace(has))
}
