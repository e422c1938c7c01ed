package verifier_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/throttler"
	"github.com/ferrykit/ferry/verifier"
)

// TestInlineDuringCutoverReadsOnlyTouchedKeys: after a full BeforeCutover pass, the DuringCutover pass
// reads only the keys the binlog touched since (one batch per side), and finds the change the
// "binlog apply" lost.
func TestInlineDuringCutoverReadsOnlyTouchedKeys(t *testing.T) {
	ctx := context.Background()
	db := newDatabase(t)
	createBase(t, db)
	tbl := load(t, db, "t")
	q := tbl.QualifiedName()
	pair := []verifier.TablePair{{Source: tbl}}
	v := &verifier.Inline{Source: srcDB, Target: tgtDB}
	copyRows(t, v, tbl, "")

	res, err := v.Verify(ctx, verifier.BeforeCutover, pair)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Match() || res.Tables[0].RowsCompared != baseRows {
		t.Fatalf("before cut-over: %s", res)
	}
	before := v.Stats()
	if before.SourceRows != 0 || before.TargetRows != baseRows {
		t.Fatalf("before cut-over read %+v, want the target once and nothing from the source", before)
	}

	// Writes after the pass, replicated to the target — except the update of row 40, which the
	// apply lost.
	execBoth(t, "UPDATE "+q+" SET note = 'upd' WHERE id IN (10, 20)", "DELETE FROM "+q+" WHERE id = 30",
		"INSERT INTO "+q+" VALUES (300, 1, 'new', NULL, NULL, NULL)")
	execOn(t, srcDB, "UPDATE "+q+" SET note = 'lost' WHERE id = 40")
	for _, k := range [][]any{{int64(10)}, {"20"}, {[]byte("30")}, {uint64(300)}, {int(40)}, {int64(10)}} {
		v.RowChanged(tbl, k)
	}

	res, err = v.Verify(ctx, verifier.DuringCutover, pair)
	if err != nil {
		t.Fatal(err)
	}
	checkTable(t, res.Tables[0], nil, nil, []verifier.RowDiff{diff(key("40"), "note")})
	if res.Tables[0].RowsCompared != 5 {
		t.Errorf("RowsCompared = %d, want the 5 touched keys", res.Tables[0].RowsCompared)
	}
	d := delta(v.Stats(), before)
	// Keys 10, 20, 40, 300 exist on both sides (30 is gone): 4 rows each, one query each.
	if d != (verifier.Stats{SourceQueries: 1, SourceRows: 4, TargetQueries: 1, TargetRows: 4}) {
		t.Errorf("during cut-over read %+v, want 1 query and 4 rows per side", d)
	}

	// The operator fixes row 40; the next pass re-reads only that pending key.
	execOn(t, tgtDB, "UPDATE "+q+" SET note = 'lost' WHERE id = 40")
	before = v.Stats()
	res, err = v.Verify(ctx, verifier.DuringCutover, pair)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Match() {
		t.Errorf("after the fix: %s", res)
	}
	if d := delta(v.Stats(), before); d.SourceRows != 1 || d.TargetRows != 1 {
		t.Errorf("second during-cut-over pass read %+v, want the one pending row", d)
	}
}

func delta(a, b verifier.Stats) verifier.Stats {
	return verifier.Stats{
		SourceQueries: a.SourceQueries - b.SourceQueries, SourceRows: a.SourceRows - b.SourceRows,
		TargetQueries: a.TargetQueries - b.TargetQueries, TargetRows: a.TargetRows - b.TargetRows,
	}
}

// TestInlineBinaryKeyFromBinlog: BINARY(N) keys arrive from the binlog without their trailing zero
// bytes; the inline verifier pads them back, so the touched row is found.
func TestInlineBinaryKeyFromBinlog(t *testing.T) {
	ctx := context.Background()
	db := newDatabase(t)
	q := schema.QuoteIdent(db) + ".b"
	execBoth(t, "CREATE TABLE "+q+" (k BINARY(4) NOT NULL PRIMARY KEY, v INT)", "INSERT INTO "+q+" VALUES (X'41', 1), (X'4142', 2), (X'00', 3)")
	tbl := load(t, db, "b")
	v := &verifier.Inline{Source: srcDB, Target: tgtDB}
	copyRows(t, v, tbl, "")
	if res, err := v.Verify(ctx, verifier.BeforeCutover, []verifier.TablePair{{Source: tbl}}); err != nil || !res.Match() {
		t.Fatalf("%v %v", res, err)
	}
	execOn(t, srcDB, "UPDATE "+q+" SET v = 10 WHERE k = X'41000000'")
	v.RowChanged(tbl, []any{[]byte("A")}) // as the binlog carries it
	res, err := v.Verify(ctx, verifier.DuringCutover, []verifier.TablePair{{Source: tbl}})
	if err != nil {
		t.Fatal(err)
	}
	checkTable(t, res.Tables[0], nil, nil, []verifier.RowDiff{diff(key("0x41000000"), "v")})
}

// TestConcurrentWrites: while rows are written on the source and replicated (here: the same
// statement run on the target right after), the BeforeCutover passes run without error; once writes
// stop, every verifier's DuringCutover pass matches.
func TestConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	db := newDatabase(t)
	createBase(t, db)
	tbl := load(t, db, "t")
	q := tbl.QualifiedName()
	pair := []verifier.TablePair{{Source: tbl}}
	inline := &verifier.Inline{Source: srcDB, Target: tgtDB, PageSize: 50, RecheckDelay: 20 * time.Millisecond}
	copyRows(t, inline, tbl, "")
	vs := []verifier.Verifier{
		&verifier.Checksum{Source: srcDB, Target: tgtDB, ChunkSize: 40, RecheckDelay: 20 * time.Millisecond},
		&verifier.Differ{Source: srcDB, Target: tgtDB, PageSize: 40, RecheckDelay: 20 * time.Millisecond},
		inline,
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writes atomic.Int64
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rnd := rand.New(rand.NewSource(seed))
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Each writer owns its own ids (odd or even): two writers on one row could reach
				// the target in a different order than the source, a real divergence.
				id := 2*rnd.Intn(200) + 1 + int(seed)
				var stmt string
				switch rnd.Intn(3) {
				case 0:
					stmt = fmt.Sprintf("UPDATE %s SET note = 'w%d' WHERE id = %d", q, rnd.Intn(1000), id)
				case 1:
					stmt = fmt.Sprintf("DELETE FROM %s WHERE id = %d", q, id)
				default:
					stmt = fmt.Sprintf("INSERT IGNORE INTO %s VALUES (%d, %d, 'ins', 'n', NULL, NULL)", q, id, id%2)
				}
				if _, err := srcDB.Exec(stmt); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(time.Millisecond) // replication lag
				if _, err := tgtDB.Exec(stmt); err != nil {
					t.Error(err)
					return
				}
				inline.RowChanged(tbl, []any{int64(id)})
				writes.Add(1)
			}
		}(int64(w))
	}
	for start := time.Now(); time.Since(start) < 600*time.Millisecond; {
		for _, v := range vs {
			res, err := v.Verify(ctx, verifier.BeforeCutover, pair)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s before cut-over under writes: match=%v", res.Verifier, res.Match())
		}
	}
	close(stop)
	wg.Wait()
	if writes.Load() < 20 {
		t.Fatalf("only %d writes ran", writes.Load())
	}
	for _, v := range vs {
		res, err := v.Verify(ctx, verifier.DuringCutover, pair)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Match() {
			t.Errorf("after %d writes: %s", writes.Load(), res)
		}
	}
}

// TestChecksumConsultsThrottler: the throttler is asked before every chunk, and a throttler error
// stops the pass.
func TestChecksumConsultsThrottler(t *testing.T) {
	db := newDatabase(t)
	createBase(t, db)
	tbl := load(t, db, "t")
	var calls atomic.Int64
	v := &verifier.Checksum{Source: srcDB, Target: tgtDB, ChunkSize: 50, Throttler: throttler.Func(func(context.Context) (throttler.Status, error) {
		calls.Add(1)
		return throttler.Status{}, nil
	})}
	if res, err := v.Verify(context.Background(), verifier.DuringCutover, []verifier.TablePair{{Source: tbl}}); err != nil || !res.Match() {
		t.Fatalf("%v %v", res, err)
	}
	if calls.Load() != 5 { // 240 rows in chunks of 50
		t.Errorf("throttler asked %d times, want 5", calls.Load())
	}
	stop := fmt.Errorf("critical load")
	v.Throttler = throttler.Func(func(context.Context) (throttler.Status, error) { return throttler.Status{}, stop })
	if _, err := v.Verify(context.Background(), verifier.DuringCutover, []verifier.TablePair{{Source: tbl}}); !errors.Is(err, stop) {
		t.Errorf("err = %v, want the throttler's", err)
	}
}
