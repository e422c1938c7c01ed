package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/ferrykit/ferry"
)

// ManifestVersion is the format version this build writes. A manifest of a higher version is
// refused: it may describe files this build would load wrongly.
const ManifestVersion = 1

// ManifestName is the object name of a snapshot's manifest, relative to the snapshot's location.
// It is written last: a location without it holds no usable snapshot.
const ManifestName = "manifest.json"

// Manifest describes one snapshot: where in the source's binlog it was taken, every table's
// definition and every file with its hash. A split snapshot has one manifest per shard.
type Manifest struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	// Started and Finished bound the snapshot; the rows are those at Position.
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Source   Server    `json:"source"`
	// Position is the source binlog position the rows of every table correspond to: replaying the
	// binlog from it onto a restored copy yields the source's current state.
	Position ferry.Position `json:"position"`
	// Consistency says how the snapshot position was obtained ("snapshot-status" or "lock").
	Consistency string `json:"consistency"`
	// LockHeld is how long commits were blocked on the source (0 without a lock).
	LockHeld    time.Duration `json:"lock_held_ns"`
	Compression string        `json:"compression"`
	// Shard is set for one part of a split snapshot.
	Shard  *ShardInfo       `json:"shard,omitempty"`
	Tables []*TableManifest `json:"tables"`
	// Objects are the views (those the table filter selects) and stored routines of the databases
	// holding the snapshot's tables, read when the snapshot opened; a restore creates them when
	// asked (RestoreOptions.CreateSchemaObjects).
	Objects []*ferry.SchemaObjectDefinition `json:"objects,omitempty"`
}

// Server identifies the source server.
type Server struct {
	Addr    string `json:"addr"`
	Version string `json:"version"`
	MariaDB bool   `json:"mariadb"`
	// Identity names the server (its binlog positions mean nothing on another): a clone catches up
	// only from it.
	Identity ferry.ServerIdentity `json:"identity"`
}

// ShardInfo says which part of a split the manifest holds.
type ShardInfo struct {
	Index  int    `json:"index"`
	Count  int    `json:"count"`
	Column string `json:"column"`
	// Method is "hash" or "range"; Bounds are the range method's split values.
	Method string   `json:"method"`
	Bounds []string `json:"bounds,omitempty"`
}

// TableManifest is one table of a snapshot.
type TableManifest struct {
	Database    string `json:"database"`
	Name        string `json:"name"`
	CreateTable string `json:"create_table"`
	// Fingerprint is the table's definition as ferry fingerprints it (a clone refuses a source
	// table changed since the snapshot).
	Fingerprint string `json:"fingerprint"`
	// Columns are the columns stored in the files, in file order (generated columns are not).
	Columns []Column `json:"columns"`
	// Where is the SQL condition selecting this manifest's rows ("" for all rows).
	Where string          `json:"where,omitempty"`
	Rows  int64           `json:"rows"`
	Files []*FileManifest `json:"files"`
}

// Column is a stored column.
type Column struct {
	Name     string `json:"name"`
	DataType string `json:"type"`
}

// FileManifest is one data file: rows in LOAD DATA text form (ferry.LoadDataFormat), compressed.
type FileManifest struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	// Size is the stored (compressed) size; RawSize the size of the rows' text.
	Size    int64 `json:"size"`
	RawSize int64 `json:"raw_size"`
	Rows    int64 `json:"rows"`
	// FirstKey and LastKey are the keys of the file's first and last row.
	FirstKey ferry.Key `json:"first_key,omitempty"`
	LastKey  ferry.Key `json:"last_key,omitempty"`
}

// String is db.table.
func (t *TableManifest) String() string { return t.Database + "." + t.Name }

// ErrNoManifest means the location holds no complete snapshot.
var ErrNoManifest = errors.New("no manifest: the snapshot is missing or was never completed (a manifest is written only after every file)")

// ReadManifest reads and checks the manifest at name (ManifestName or "shard-N/manifest.json").
func ReadManifest(ctx context.Context, st Storage, name string) (*Manifest, error) {
	r, err := st.Open(ctx, name)
	if errors.Is(err, ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", st.Describe(name), ErrNoManifest)
	}
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", st.Describe(name), err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", st.Describe(name), err)
	}
	if m.Version > ManifestVersion {
		return nil, fmt.Errorf("%s has format version %d, written by a newer ferry; this build reads versions up to %d: restore it with a newer ferry", st.Describe(name), m.Version, ManifestVersion)
	}
	if m.Version < 1 {
		return nil, fmt.Errorf("%s: no format version; not a ferry snapshot manifest", st.Describe(name))
	}
	return &m, nil
}

func writeManifest(ctx context.Context, st Storage, name string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	w, err := st.Create(ctx, name)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		w.Abort()
		return fmt.Errorf("write %s: %w", st.Describe(name), err)
	}
	return w.Commit()
}

func sortFiles(files []*FileManifest) {
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
}
