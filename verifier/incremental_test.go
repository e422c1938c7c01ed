package verifier_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/throttler"
	"github.com/ferrykit/ferry/verifier"
)

// baseTable creates the base table in a new database and returns it, its quoted name and its pair.
func baseTable(t *testing.T) (*schema.Table, string, []verifier.TablePair) {
	t.Helper()
	db := newDatabase(t)
	createBase(t, db)
	tbl := load(t, db, "t")
	return tbl, tbl.QualifiedName(), []verifier.TablePair{{Source: tbl}}
}

// The pass under the lock re-checks only the rows changed since the full pass (plus what differed
// in it): its reads do not grow with the table. A change the apply lost is found.
func TestIncrementalUnderLockReadsOnlyChangedRows(t *testing.T) {
	ctx := context.Background()
	tbl, q, pair := baseTable(t)
	c := &verifier.Checksum{Source: srcDB, Target: tgtDB, ChunkSize: 50}
	v := &verifier.Incremental{Checksum: c}

	v.RowChanged(tbl, []any{int64(1)}) // before the first pass: not tracked
	res, err := v.Verify(ctx, verifier.BeforeCutover, pair)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Match() || res.Scope != verifier.AllRows || res.Tables[0].RowsCompared != baseRows {
		t.Fatalf("full pass: %s", res)
	}
	// Changes after the pass began, applied to the target — except the update of row 40, which
	// the apply lost.
	execBoth(t, "UPDATE "+q+" SET note = 'upd' WHERE id IN (10, 20)", "DELETE FROM "+q+" WHERE id = 30",
		"INSERT INTO "+q+" VALUES (300, 1, 'new', NULL, NULL, NULL)")
	execOn(t, srcDB, "UPDATE "+q+" SET note = 'lost' WHERE id = 40")
	for _, k := range [][]any{{int64(10)}, {"20"}, {[]byte("30")}, {uint64(300)}, {int(40)}} {
		v.RowChanged(tbl, k)
	}
	before := c.Stats()
	res, err = v.Verify(ctx, verifier.DuringCutover, pair)
	if err != nil {
		t.Fatal(err)
	}
	tr := res.Tables[0]
	checkTable(t, tr, nil, nil, []verifier.RowDiff{diff(key("40"), "note")})
	if res.Scope != verifier.ChangedRows || tr.RowsCompared != 5 || tr.BaseRowsCompared != baseRows {
		t.Errorf("under the lock: scope %q, %d rows re-checked (want 5), full pass %d (want %d)", res.Scope, tr.RowsCompared, tr.BaseRowsCompared, baseRows)
	}
	if d := delta(c.Stats(), before); d.SourceRows != 4 || d.TargetRows != 4 {
		t.Errorf("under the lock read %+v, want the 4 changed rows that exist, per side", d)
	}
	if s := res.String(); !strings.Contains(s, "cannot see: changes that never reach the binlog") {
		t.Errorf("the report does not say what the verifier cannot see:\n%s", s)
	}

	// Fixed by hand: the next pass re-reads only the key that differed.
	execOn(t, tgtDB, "UPDATE "+q+" SET note = 'lost' WHERE id = 40")
	before = c.Stats()
	if res, err = v.Verify(ctx, verifier.DuringCutover, pair); err != nil || !res.Match() {
		t.Fatalf("after the fix: %v %v", res, err)
	}
	if d := delta(c.Stats(), before); d.SourceRows != 1 || d.TargetRows != 1 {
		t.Errorf("second pass under the lock read %+v, want the one pending row", d)
	}
}

// A difference that never reaches the binlog (a cascade, a filter that drops events) is found by the
// full pass before the lock, and its chunk is checked again under the lock, where it is reported.
func TestIncrementalFindsDivergenceOutsideTheBinlog(t *testing.T) {
	ctx := context.Background()
	_, q, pair := baseTable(t)
	execOn(t, srcDB, "UPDATE "+q+" SET tenant = 7 WHERE id = 123", "DELETE FROM "+q+" WHERE id = 200")
	c := &verifier.Checksum{Source: srcDB, Target: tgtDB, ChunkSize: 50, Rechecks: -1}
	v := &verifier.Incremental{Checksum: c}
	res, err := v.Verify(ctx, verifier.BeforeCutover, pair)
	if err != nil {
		t.Fatal(err)
	}
	checkTable(t, res.Tables[0], nil, []verifier.Key{key("200")}, []verifier.RowDiff{diff(key("123"), "tenant")})
	before := c.Stats()
	res, err = v.Verify(ctx, verifier.DuringCutover, pair)
	if err != nil {
		t.Fatal(err)
	}
	checkTable(t, res.Tables[0], nil, []verifier.Key{key("200")}, []verifier.RowDiff{diff(key("123"), "tenant")})
	// Two chunks of 50 rows were re-checked, not the table.
	if d := delta(c.Stats(), before); d.SourceRows > 100 || res.Tables[0].RowsCompared > 100 {
		t.Errorf("under the lock: read %+v, compared %d rows; want at most the two differing chunks", d, res.Tables[0].RowsCompared)
	}
}

// Without a full pass before it (or after tracking was never started), the pass under the lock
// compares every row.
func TestIncrementalWithoutFullPassComparesAll(t *testing.T) {
	ctx := context.Background()
	tbl, _, _ := baseTable(t)
	v := &verifier.Incremental{Checksum: &verifier.Checksum{Source: srcDB, Target: tgtDB}}
	res, err := v.Verify(ctx, verifier.DuringCutover, []verifier.TablePair{{Source: tbl}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Match() || res.Scope != verifier.AllRows || res.Tables[0].RowsCompared != baseRows {
		t.Fatalf("%s", res)
	}
}

// A table whose source holds rows of which no verifier compared any is never a pass: the inline
// verifier, which sees only what the copy read and the binlog changed, here saw nothing.
func TestNothingComparedIsNotAPass(t *testing.T) {
	ctx := context.Background()
	_, q, pair := baseTable(t)
	execOn(t, tgtDB, "DELETE FROM "+q)
	v := &verifier.Inline{Source: srcDB, Target: tgtDB}
	for _, phase := range []verifier.Phase{verifier.BeforeCutover, verifier.DuringCutover} {
		res, err := v.Verify(ctx, phase, pair)
		if err != nil {
			t.Fatal(err)
		}
		if tr := res.Tables[0]; res.Match() || tr.Unproven == "" || !strings.Contains(res.String(), "UNPROVEN") {
			t.Errorf("%s: %d rows compared on a source with %d rows reads as a pass:\n%s", phase, tr.RowsCompared, baseRows, res)
		}
	}
	// An empty selection on both sides is a pass.
	pair[0].Where = "id < 0"
	c := &verifier.Checksum{Source: srcDB, Target: tgtDB}
	res, err := c.Verify(ctx, verifier.DuringCutover, pair)
	if err != nil || !res.Match() {
		t.Fatalf("empty selection: %v %v", res, err)
	}
}

// Rows changed while the full pass runs are re-checked by its catch-up pass, still before the lock,
// so the pass under the lock has nothing left to read when nothing changed since.
func TestIncrementalCatchUpBeforeTheLock(t *testing.T) {
	ctx := context.Background()
	tbl, q, pair := baseTable(t)
	var v *verifier.Incremental
	var once sync.Once
	// The first chunk's wait stands in for time passing during the full pass: a row changes on the
	// source, its event is applied to the target and reported.
	during := throttler.Func(func(context.Context) (throttler.Status, error) {
		once.Do(func() {
			execBoth(t, "UPDATE "+q+" SET note = 'during the full pass' WHERE id = 5")
			v.RowChanged(tbl, []any{int64(5)})
		})
		return throttler.Status{}, nil
	})
	c := &verifier.Checksum{Source: srcDB, Target: tgtDB, ChunkSize: 50, Throttler: during}
	v = &verifier.Incremental{Checksum: c}
	if res, err := v.Verify(ctx, verifier.BeforeCutover, pair); err != nil || !res.Match() {
		t.Fatalf("before the lock: %v %v", res, err)
	}
	before := c.Stats()
	res, err := v.Verify(ctx, verifier.DuringCutover, pair)
	if err != nil || !res.Match() {
		t.Fatalf("under the lock: %v %v", res, err)
	}
	if n, d := res.Tables[0].RowsCompared, delta(c.Stats(), before); n != 0 || d.SourceRows != 0 || d.TargetRows != 0 {
		t.Errorf("under the lock re-checked %d rows (read %+v): the change made during the full pass was left for the lock", n, d)
	}
}
