package osc

import (
	"context"
	"database/sql"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"
)

// Issue 11 item 7: a second run on a table whose migration is alive is refused, naming the
// session that holds the migration lock; it neither resumes from the live run's checkpoint nor
// touches its tables, and the first run completes.
func TestSecondRunRefused(t *testing.T) {
	f := newFixture(t, 2000)
	alter := "ADD COLUMN z INT NULL"
	first := f.migration(alter)
	first.Postpone = true
	done := make(chan error, 1)
	go func() {
		_, err := first.Run(context.Background())
		done <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for first.Status().State != StatePostponed {
		if time.Now().After(deadline) {
			t.Fatal("the first run never reached the postponed cut-over")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, resume := range []bool{true, false} {
		second := f.migration(alter)
		second.Resume = resume
		_, err := second.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "another migration") || !strings.Contains(err.Error(), "connection ") || !strings.Contains(err.Error(), "user ") {
			t.Fatalf("second run (resume %v): error %v, want a refusal naming the lock holder", resume, err)
		}
		t.Log(err)
	}
	first.Unpostpone()
	must(t, <-done)
	f.expect(alter)
}

// Issue 11 item 8: the check after the rename (no write reached the old table after the lock)
// never passes unseen: a stream that does not reach the RENAME in time fails the run loudly,
// saying the rename is done and what to compare.
func TestRenameCheckNotVacuous(t *testing.T) {
	for _, twoStep := range []bool{false, true} {
		t.Run(map[bool]string{false: "atomic", true: "two-step"}[twoStep], func(t *testing.T) {
			f := newFixture(t, 500)
			m := f.migration("ADD COLUMN z INT NULL")
			m.CutoverTwoStep = twoStep
			m.renameSeenTimeout = 300 * time.Millisecond
			m.testStreamEndDelay = time.Second
			_, err := m.Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), "did not reach the rename within 300ms") || !strings.Contains(err.Error(), "the table was renamed") {
				t.Fatalf("error %v, want the unchecked rename reported", err)
			}
			t.Log(err)
			// and with the stream in time, the same run passes
			f.exec("DROP TABLE t")
			f.exec("RENAME TABLE t_del TO t")
			f.exec("DROP TABLE IF EXISTS _t_ghc")
			m2 := f.migration("ADD COLUMN z INT NULL")
			m2.CutoverTwoStep = twoStep
			m2.testStreamEndDelay = 200 * time.Millisecond
			_, err = m2.Run(context.Background())
			must(t, err)
		})
	}
}

// Issue 16 item 3: a two-step cut-over that dies between its renames leaves t missing, t_del the
// old table and _t_gho complete. A run without Resume says so and prints the statement; Resume
// finishes the rename, and the table holds exactly what ALTER TABLE gives.
func TestResumeFinishesTwoStepRename(t *testing.T) {
	f := newFixture(t, 3000)
	f.exec("CREATE TRIGGER trg BEFORE UPDATE ON t FOR EACH ROW SET NEW.c = NEW.c")
	f.exec("CREATE TRIGGER twin_trg BEFORE UPDATE ON twin FOR EACH ROW SET NEW.c = NEW.c")
	alter := "ADD COLUMN z INT NULL DEFAULT 3"
	m := f.migration(alter)
	m.CutoverTwoStep = true
	m.IncludeTriggers = true
	m.testBetweenRenames = func() error { return errors.New("killed between the renames") }
	l := f.startLoad(2)
	time.Sleep(200 * time.Millisecond)
	_, err := m.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "killed between the renames") {
		t.Fatalf("error %v", err)
	}
	l.stop() // (its writes from here fail: the table is missing)
	tt := f.tables()
	sort.Strings(tt)
	if got := strings.Join(tt, ","); got != "_t_ghc,_t_gho,t_del,twin" {
		t.Fatalf("tables after the interrupted cut-over: %s", got)
	}
	sameTable(t, f, "t_del", "twin") // (load transactions write both tables or neither)

	plain := f.migration(alter)
	_, err = plain.Run(context.Background())
	want := "RENAME TABLE `" + f.name + "`.`_t_gho` TO `" + f.name + "`.`t`"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "Resume") {
		t.Fatalf("without Resume: error %v, want the statement %s", err, want)
	}
	t.Log(err)

	resumed := f.migration(alter)
	resumed.Resume = true
	res, err := resumed.Run(context.Background())
	must(t, err)
	if got, want := f.triggersOf("t"), strings.ReplaceAll(f.triggersOf("twin"), "%s_trg", "trg"); got != want {
		t.Errorf("triggers of t after the resume:\n%s\nwant:\n%s", got, want)
	}
	if res.OldTable != "t_del" {
		t.Errorf("old table %q", res.OldTable)
	}
	f.expect(alter)
	tt = f.tables()
	sort.Strings(tt)
	if got := strings.Join(tt, ","); got != "t,t_del,twin" {
		t.Errorf("tables after the resume: %s", got)
	}
}

// Issue 11 item 9: the ghost table is compared with the original before the cut-over when the
// ALTER keeps the columns' values (reported in the result); a difference — here a ghost row
// changed behind the apply's back — fails the migration before the cut-over, naming the row.
func TestVerificationBeforeCutover(t *testing.T) {
	alter := "ADD COLUMN z INT NULL, ADD INDEX (a)"
	t.Run("match under load", func(t *testing.T) {
		f := newFixture(t, 3000)
		res := runUnderLoad(t, f, f.migration(alter), alter)
		if !strings.HasPrefix(res.Verification, "MATCH (") || !strings.Contains(res.Verification, "changed rows compared again under the lock") {
			t.Errorf("verification %q", res.Verification)
		}
		t.Log(res.Verification)
	})
	// The original keeps changing while the pass runs and the apply lags behind it by more than
	// any recheck waits: a correct ghost must still match (the pass compares snapshots taken where
	// both sides are equal if the apply is correct), and the migration succeed.
	t.Run("a lagging apply is no difference", func(t *testing.T) {
		f := newFixture(t, 3000)
		m := f.migration(alter)
		m.testApplyDelay = func() time.Duration {
			if m.Status().State == StateVerifying {
				return 700 * time.Millisecond
			}
			return 0
		}
		res := runUnderLoad(t, f, m, alter)
		if !strings.HasPrefix(res.Verification, "MATCH (") {
			t.Errorf("verification %q", res.Verification)
		}
		t.Log(res.Verification)
	})
	t.Run("a difference after the pass is caught under the lock", func(t *testing.T) {
		f := newFixture(t, 2000)
		m := f.migration(alter)
		m.testAfterMarker = func(*sql.Conn) {
			keys, _ := m.applier.touchedKeys()
			// A touched key may be a row the load deleted: change one that exists in the ghost.
			for _, k := range keys {
				res, err := f.db.Exec("UPDATE _t_gho SET b = 'changed behind the apply' WHERE id = ?", k[0])
				if err != nil {
					t.Errorf("change a ghost row behind the apply: %v", err)
					return
				}
				if n, _ := res.RowsAffected(); n == 1 {
					return
				}
			}
			t.Errorf("no row of the ghost among the %d rows changed since the verification pass", len(keys))
		}
		l := f.startLoad(2)
		time.Sleep(200 * time.Millisecond)
		_, err := m.Run(context.Background())
		l.stop()
		if err == nil || !strings.Contains(err.Error(), "under the cut-over lock, 1 changed row(s)") {
			t.Fatalf("error %v, want the changed row found under the lock", err)
		}
		t.Log(err)
		if got := strings.Join(f.tables(), ","); strings.Contains(got, "t_del") {
			t.Errorf("tables after the refused cut-over: %s", got)
		}
	})
	t.Run("not applicable to a conversion", func(t *testing.T) {
		f := newFixture(t, 300)
		res, err := f.migration("MODIFY a BIGINT NOT NULL DEFAULT 0").Run(context.Background())
		must(t, err)
		if !strings.HasPrefix(res.Verification, "not applicable: the ALTER converts the values of a") {
			t.Errorf("verification %q", res.Verification)
		}
	})
	t.Run("a difference fails before the cut-over", func(t *testing.T) {
		f := newFixture(t, 300)
		m := f.migration(alter)
		m.Postpone = true
		go func() {
			for m.Status().State != StatePostponed {
				time.Sleep(10 * time.Millisecond)
			}
			f.exec("UPDATE _t_gho SET b = 'changed behind the apply' WHERE id = 77")
			m.Unpostpone()
		}()
		_, err := m.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "does not hold the rows") || !strings.Contains(err.Error(), "77") {
			t.Fatalf("error %v, want the verification to name row 77", err)
		}
		t.Log(err)
		if got := strings.Join(f.tables(), ","); !strings.Contains(got, "_t_gho") || strings.Contains(got, "t_del") {
			t.Errorf("tables after the refused cut-over: %s", got)
		}
	})
}
