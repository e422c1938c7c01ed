package ferry

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// Resume: why a checkpoint is safe to continue from.
//
// A State holds, per table, the key ranges of the copy with the last key of each range whose row is
// committed on the target (Last, recorded only after the target commit of its batch), and Applied,
// the last binlog transaction boundary whose changes are all committed on the target (the writer
// advances it only after the target commit of everything up to it; State reads it before the
// tables). Resuming copies every range again from just after its Last, and streams the binlog from
// Applied. Take a row R of a copied table and the source's final image of R:
//
//   - If R changed on the source after Applied, its last change is replayed (the resumed stream
//     starts at Applied), and the writer applies every change as "set the row to this image" or
//     "delete this key": the target ends with R's last image, whatever it held before — the rows
//     copied or changes applied before the crash, or the same changes applied twice.
//   - If R did not change after Applied, and its key is at or below a range's Last, it was copied
//     before the checkpoint and every change of R after that copy is at or before Applied, so it was
//     applied after the copy (a copied row is share-locked on the source until committed on the
//     target, so its later changes reach the binlog, and so the writer, after the copy): the target
//     holds R's final image.
//   - If its key is above Last, the resumed copy reads R again from the source (under the same
//     share lock) and inserts it, unless a row with that key is already on the target — put there
//     by a batch committed after the checkpoint, or by the binlog — which is not overwritten
//     (INSERT ... ON DUPLICATE KEY UPDATE k = k) and is as new as the copy or newer, by the two
//     cases above. A row deleted on the source after being copied is deleted by the replayed or
//     already applied DELETE.
//
// Applied is never beyond what is committed on the target, and it is a commit (or rotate)
// position, never the middle of a transaction; a checkpoint taken before any change was applied
// holds the position recorded before the copy started. A crash between the target commit and the
// checkpoint only costs work done again. Resume refuses a table whose definition changed since the
// checkpoint (Fingerprint), and a checkpoint whose binlog file the source no longer has.
//
// The argument holds for the rows the checkpoint's run selected. A resume that selects rows
// differently — another row filter (or filter value), other tables, other target names — would keep
// the rows copied under the old selection and copy the rest under the new one: rows outside the
// filter left on the target, or rows inside it never copied, while a verifier (which compares only
// the rows the current run selects) reports a match. So the state records everything that decides
// which rows belong where (Selection, and per table its Target and Condition) and the servers it was
// taken against, and a resume that differs in any of them is refused (ErrResumeMismatch), naming
// the difference — except a source server replaced by a failover, continued on by GTID set only
// when that is exact (gtid.go).

// StateVersion is the format version of State. A checkpoint is accepted by any build of ferry with
// the same StateVersion.
//
// Version 2 added the row selection and the servers' identities; a version 1 checkpoint cannot be
// checked against them and is refused. Version 3 made Applied.GTID the source's GTID set at the
// applied position and added CopyGTID and Final (see gtid.go); a version 2 checkpoint is read, its
// GTID dropped (it was the last transaction's, or read apart from the position), and resumes
// against the same server only.
const StateVersion = 3

// Key is a key value as the server printed it, one element per key column (JSON: base64).
type Key [][]byte

func (k Key) args() []any {
	out := make([]any, len(k))
	for i, v := range k {
		out[i] = v
	}
	return out
}

func toKey(vals []any) Key {
	// values are []byte from the text protocol; anything else is printed.
	k := make(Key, len(vals))
	for i, v := range vals {
		switch x := v.(type) {
		case []byte:
			k[i] = append([]byte(nil), x...)
		case nil:
			k[i] = nil
		default:
			k[i] = []byte(fmt.Sprint(x))
		}
	}
	return k
}

// KeyRange is a slice of a table's key space copied by one worker: keys after Start (exclusive) up to
// End (inclusive); a nil bound is the table's beginning or end. Last is the last key whose row is
// committed on the target (nil before the first batch).
type KeyRange struct {
	Start Key  `json:"start,omitempty"`
	End   Key  `json:"end,omitempty"`
	Last  Key  `json:"last,omitempty"`
	Done  bool `json:"done,omitempty"`
}

// TableState is the copy progress of one table.
type TableState struct {
	// Fingerprint of the source table's definition when the copy started: a resume refuses a table
	// whose definition changed since.
	Fingerprint string      `json:"fingerprint"`
	Ranges      []*KeyRange `json:"ranges"`
	Completed   bool        `json:"completed,omitempty"`
	// RowsCopied counts the rows the copy wrote (rows copied again after a crash count again).
	RowsCopied int64 `json:"rows_copied"`
	// Target is the target table ("db.table", after rewrites) the rows were copied into.
	Target string `json:"target"`
	// Condition is the SQL condition the copy filter gave for this table ("" for every row).
	Condition string `json:"condition,omitempty"`
	// Schema is the source's CREATE TABLE as this run loaded it, for people reading the state;
	// resume compares Fingerprint, not this.
	Schema string `json:"schema,omitempty"`
}

// State is what a run needs to resume: the copy progress of every table and the last binlog position
// whose transactions are all applied to the target. It is a consistent snapshot: every key range's
// Last and the Applied position were committed on the target when the snapshot was taken.
type State struct {
	Version int                    `json:"version"`
	Tables  map[string]*TableState `json:"tables"`
	// Applied is a transaction boundary: replaying the binlog from it is harmless (applying a row
	// image again is idempotent) and misses nothing.
	Applied Position  `json:"applied"`
	Written time.Time `json:"written"`
	// Selection is the configuration that decided which tables and rows were copied.
	Selection Selection `json:"selection"`
	// Source and Target are the servers the state was taken against.
	Source ServerIdentity `json:"source"`
	Target ServerIdentity `json:"target"`
	// Binlog is the replica the binlog was read from (Config.BinlogSource), whose binlog Applied is a
	// position of; empty when it was the source's.
	Binlog ServerIdentity `json:"binlog,omitzero"`
	// CopyGTID is the source's GTID set (MariaDB: position) read right after the locking read of
	// every copy batch that may have reached the target: the effects of no other transaction can
	// be in a copied row. With Applied.GTID it is what another server must have for the run to
	// continue on it (see gtid.go).
	CopyGTID string `json:"copy_gtid,omitempty"`
	// StreamedGTID is the GTID set of every transaction any of whose changes the binlog writer was
	// handed: the writer may commit some beyond Applied (part of a transaction, or transactions
	// applied in parallel past the low-water mark), so this, not Applied, bounds what the binlog
	// put on the target.
	StreamedGTID string `json:"streamed_gtid,omitempty"`
	// Final: the state was saved after the copy and the binlog apply had stopped, so the target
	// holds nothing beyond it. A periodic checkpoint is not final: ferry may have written more
	// before it stopped, which only a resume against the same server is sure to make right.
	Final bool `json:"final,omitempty"`
}

// Selection is the part of a Config that decides which rows belong on the target; a resume must
// have the same.
type Selection struct {
	Tables TableFilter `json:"tables"`
	// Filter identifies the copy filter: "" for none, else its Fingerprint (see FilterFingerprinter).
	Filter string `json:"filter,omitempty"`
}

// MarshalState encodes a state as indented JSON.
func MarshalState(s *State) ([]byte, error) { return json.MarshalIndent(s, "", "  ") }

// UnmarshalState decodes a state and checks its format version.
func UnmarshalState(b []byte) (*State, error) {
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode ferry state: %w", err)
	}
	if s.Version == 1 {
		return nil, fmt.Errorf("ferry state has format version 1, written by a ferry that did not record which rows it selected, so a resume cannot be checked against it: %w", ErrResumeMismatch)
	}
	if s.Version == 2 {
		s.Applied.GTID = ""
		s.Version = StateVersion
	}
	if s.Version != StateVersion {
		return nil, fmt.Errorf("ferry state has format version %d; this build reads versions 2 and %d", s.Version, StateVersion)
	}
	if s.Applied.IsZero() {
		return nil, fmt.Errorf("ferry state has no binlog position; it cannot be resumed")
	}
	return &s, nil
}

// progress is the live, lock-protected copy of the state.
type progress struct {
	mu     sync.Mutex
	tables map[string]*TableState
}

func (p *progress) snapshot() map[string]*TableState {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]*TableState, len(p.tables))
	for name, t := range p.tables {
		c := *t
		c.Ranges = make([]*KeyRange, len(t.Ranges))
		for i, r := range t.Ranges {
			rc := *r
			c.Ranges[i] = &rc
		}
		out[name] = &c
	}
	return out
}
