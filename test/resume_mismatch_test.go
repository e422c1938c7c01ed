package test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/schema"
)

// tenantFilter is a host-defined filter without a Fingerprint method: ferry cannot tell whether a
// resume uses the same one.
type tenantFilter struct{ tenant int }

func (f tenantFilter) Condition(t *schema.Table) (string, error) {
	return ferry.ColumnEquals{Column: "tenant", Value: f.tenant}.Condition(t)
}

func (f tenantFilter) Matches(ctx context.Context, source ferry.SourceEvaluator, t *schema.Table, row []any) (bool, error) {
	return ferry.ColumnEquals{Column: "tenant", Value: f.tenant}.Matches(ctx, source, t, row)
}

// tenantFingerprinted is a host-defined filter that says what it selects.
type tenantFingerprinted struct{ tenantFilter }

func (f tenantFingerprinted) Fingerprint() string { return "tenant " + fmtInt(int64(f.tenant)) }

// rowCounts describes the tables of the target databases and their row counts.
func rowCounts(t *testing.T, dbs ...string) string {
	t.Helper()
	tdb, err := target.DB("")
	must(t, err)
	defer tdb.Close()
	var b strings.Builder
	for _, d := range dbs {
		rows, err := tdb.Query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY 1", d)
		must(t, err)
		var names []string
		for rows.Next() {
			var n string
			must(t, rows.Scan(&n))
			names = append(names, n)
		}
		rows.Close()
		for _, n := range names {
			b.WriteString(d + "." + n + "=" + fmtInt(int64(count(t, target, "SELECT COUNT(*) FROM `"+d+"`.`"+n+"`"))) + " ")
		}
	}
	return b.String()
}

// A resume that would select other rows than the checkpoint's run — another filter or filter value,
// other tables, other target names, other servers — is refused before anything is written, with
// ErrResumeMismatch and the difference named; the same configuration resumes. (A run killed with
// -filter-column and resumed without it used to leave a third of the rows and exit 0.)
func TestResumeWithDifferentSelectionIsRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db := "rs_selection"
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db,
		"CREATE TABLE "+db+".orders (id INT PRIMARY KEY, tenant INT NOT NULL, status VARCHAR(10) NOT NULL)",
		"INSERT INTO "+db+".orders SELECT seq, seq % 3, IF(seq % 2, 'paid', 'open') FROM "+db+".seq_1_to_3000",
		"CREATE TABLE "+db+".items (id INT PRIMARY KEY, tenant INT NOT NULL)",
		"INSERT INTO "+db+".items SELECT seq, seq % 3 FROM "+db+".seq_1_to_300"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "DROP DATABASE IF EXISTS "+db+"_elsewhere"))
	defer target.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db+"_elsewhere")

	base := func(t *testing.T) ferry.Config {
		c := rsFaultConfig(t, source, target, db)
		c.Filter = ferry.ColumnEquals{Column: "tenant", Value: 1}
		return c
	}
	// The first run copies part of the rows and stops (as if killed): its checkpoint is on disk.
	stateFile := filepath.Join(t.TempDir(), "state.json")
	runCtx, stop := context.WithCancel(ctx)
	cfg := base(t)
	cfg.BatchSize = 100
	f, runErr := rsStartFerry(t, runCtx, cfg, stateFile)
	rsWaitRows(t, f, runErr, 300)
	stop()
	<-runErr
	f.Close()
	st, err := ferry.LoadCheckpointFile(stateFile)
	must(t, err)
	if st.Tables[db+".orders"] == nil || st.Tables[db+".orders"].Condition == "" {
		t.Fatalf("the checkpoint does not record the filter's condition: %+v", st.Tables[db+".orders"])
	}

	cases := []struct {
		name string
		cfg  func(c *ferry.Config)
		want []string // each must be in the error
	}{
		{"filter dropped", func(c *ferry.Config) { c.Filter = nil },
			[]string{`the copy filter was tenant = "1", now none (every row)`, "table " + db + ".orders was copied where `tenant` = 1, now where every row"}},
		{"other filter value", func(c *ferry.Config) { c.Filter = ferry.ColumnEquals{Column: "tenant", Value: 2} },
			[]string{`the copy filter was tenant = "1", now tenant = "2"`, "now where `tenant` = 2"}},
		{"other filter column", func(c *ferry.Config) { c.Filter = ferry.ColumnEquals{Column: "status", Value: "paid"} },
			[]string{`now status = "paid"`, "now where `status` = 'paid'"}},
		{"filter without fingerprint", func(c *ferry.Config) {
			c.Filter = tenantFilter{1}
		}, []string{`cannot be compared with the checkpoint's (tenant = "1"): give it a Fingerprint() string method`}},
		{"host filter with another fingerprint", func(c *ferry.Config) { c.Filter = tenantFingerprinted{tenantFilter{1}} },
			[]string{`the copy filter was tenant = "1", now tenant 1`}},
		{"table left out", func(c *ferry.Config) { c.Tables = ferry.TableFilter{Include: []string{db + ".orders"}} },
			[]string{"the table selection was databases " + db + ", now include " + db + ".orders", "table " + db + ".items was copied but is not selected now"}},
		{"database rewritten", func(c *ferry.Config) { c.DatabaseRewrites = map[string]string{db: db + "_elsewhere"} },
			[]string{"table " + db + ".orders was copied into " + db + ".orders, now into " + db + "_elsewhere.orders"}},
		{"table renamed", func(c *ferry.Config) { c.TableRewrites = map[string]string{"items": "items_v2"} },
			[]string{"table " + db + ".items was copied into " + db + ".items, now into " + db + ".items_v2"}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			cfg := base(t)
			c.cfg(&cfg)
			cfg.Resume = st
			before := rowCounts(t, db, db+"_elsewhere")
			f := &ferry.Ferry{Config: cfg}
			err := f.Initialize(ctx)
			f.Close()
			if !errors.Is(err, ferry.ErrResumeMismatch) {
				t.Fatalf("want ErrResumeMismatch, got %v", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			if after := rowCounts(t, db, db+"_elsewhere"); after != before {
				t.Errorf("the refused resume changed the target:\nbefore %s\nafter  %s", before, after)
			}
		})
	}

	t.Run("checkpoint of another source server", func(t *testing.T) {
		// Continuing on another source needs a final checkpoint (gtid.go); this one is periodic.
		other := *st
		other.Source.Port = "1"
		other.Final = false
		cfg := base(t)
		cfg.Resume = &other
		f := &ferry.Ferry{Config: cfg}
		err := f.Initialize(ctx)
		f.Close()
		if !errors.Is(err, ferry.ErrResumeMismatch) || !strings.Contains(err.Error(), "the checkpoint was taken from the source server") {
			t.Fatalf("want the other server named, got %v", err)
		}
	})

	// The same filter spelled with the value as a string selects the same rows (the value is
	// written as a literal of the column's kind): it resumes.
	cfg = base(t)
	cfg.Filter = ferry.ColumnEquals{Column: "tenant", Value: "1"}
	cfg.Resume = st
	same := &ferry.Ferry{Config: cfg}
	must(t, same.Initialize(ctx))
	same.Close()

	// The same configuration resumes and finishes with exactly the filtered rows.
	cfg = base(t)
	cfg.Resume = st
	f, runErr = rsStartFerry(t, ctx, cfg, stateFile)
	rsCutover(t, ctx, f, runErr, &writeLoad{cancel: func() {}})
	f.Close()
	for _, table := range []string{"orders", "items"} {
		want := count(t, source, "SELECT COUNT(*) FROM "+db+"."+table+" WHERE tenant = 1")
		if got := count(t, target, "SELECT COUNT(*) FROM "+db+"."+table); got != want {
			t.Errorf("%s: target has %d rows, want the %d of tenant 1", table, got, want)
		}
		if n := count(t, target, "SELECT COUNT(*) FROM "+db+"."+table+" WHERE tenant <> 1"); n != 0 {
			t.Errorf("%s: %d rows outside the filter on the target", table, n)
		}
	}
}
