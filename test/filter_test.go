package test

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/verifier"
)

// filterCase is one table filtered by ColumnEquals on its tenant column: the column's type, the
// filter's value, the stored values rows cycle through (SQL literals), some of which equal the
// value under the column's own comparison rules and some not, and the WHERE clause (written by
// hand, the meaning a user expects) selecting the rows that belong on the target.
type filterCase struct {
	table, column string
	value         any
	variants      []string
	where         string
}

var filterCases = []filterCase{
	// PAD SPACE, case-insensitive: 'ACME', 'acme ', 'Acme' are all the tenant 'acme'.
	{"vc_ci", "VARCHAR(12) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci", "acme",
		[]string{"'acme'", "'ACME'", "'acme '", "'Acme  '", "'acmé'", "'acm'", "' acme'", "'other'", "NULL"}, "tenant = 'acme'"},
	{"ch_latin1", "CHAR(8) CHARACTER SET latin1", "acme",
		[]string{"'acme'", "'ACME'", "'acme '", "'acmé'", "'acm'", "'zeta'", "NULL"}, "tenant = 'acme'"},
	// _bin is case-sensitive but still PAD SPACE.
	{"vc_bin", "VARCHAR(12) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", "acme",
		[]string{"'acme'", "'ACME'", "'acme '", "'acme\t'", "'other'", "NULL"}, "tenant = 'acme'"},
	{"vb", "VARBINARY(12)", "acme", []string{"'acme'", "'ACME'", "'acme '", "x'61636D6500'", "NULL"}, "tenant = 'acme'"},
	{"decim", "DECIMAL(6,2)", "12.5", []string{"12.5", "12.50", "'12.500'", "12.51", "-12.5", "0", "NULL"}, "tenant = 12.5"},
	{"dt", "DATE", "2024-03-01", []string{"'2024-03-01'", "'2024-3-1'", "20240301", "'2024-03-02'", "'0000-00-00'", "NULL"}, "tenant = DATE '2024-03-01'"},
	{"dtm", "DATETIME(3)", "2024-03-01 10:00:00", []string{"'2024-03-01 10:00:00'", "'2024-03-01 10:00:00.000'", "'2024-03-01 10:00:00.001'", "'2024-03-01'", "NULL"}, "tenant = TIMESTAMP '2024-03-01 10:00:00'"},
	// An integer value on a string column is the string, not a number ('07' and '7.0' are not 7).
	{"vc_num", "VARCHAR(8)", 7, []string{"'7'", "'07'", "'7.0'", "' 7'", "'7 '", "'8'", "NULL"}, "tenant = '7'"},
	// A string value on a BIGINT column is written as an integer (MySQL compares an integer column
	// with a string as doubles, where 2^53+1 equals its neighbours).
	{"bigi", "BIGINT", "9007199254740993", []string{"9007199254740993", "9007199254740992", "9007199254740994", "-9007199254740993", "NULL"}, "tenant = 9007199254740993"},
	{"num", "INT", 7, []string{"7", "'7'", "8", "-7", "0", "NULL"}, "tenant = 7"},
}

// perTable applies each table's own ColumnEquals (a test-side composition; ferry takes one filter).
type perTable map[string]ferry.ColumnEquals

func (p perTable) Condition(t *schema.Table) (string, error) { return p[t.Name].Condition(t) }
func (p perTable) Matches(ctx context.Context, src ferry.SourceEvaluator, t *schema.Table, row []any) (bool, error) {
	return p[t.Name].Matches(ctx, src, t, row)
}

// A filtered copy keeps on the target exactly the source rows the server's own WHERE selects, for
// string columns under _ci, _bin and binary comparison (case and trailing-space variants), DECIMAL,
// DATE, DATETIME, integers and NULLs, while rows are inserted, deleted, and moved into and out of
// the filter by updates, both racing the copy and after it (binlog path only).
func TestStringTenantFilter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const db, rows = "filt", 120
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
	filter := perTable{}
	for _, c := range filterCases {
		must(t, source.Exec(ctx, fmt.Sprintf("CREATE TABLE %s.%s (id INT PRIMARY KEY, tenant %s, note VARCHAR(20)) ENGINE=InnoDB", db, c.table, c.column)))
		stmt := fmt.Sprintf("INSERT INTO %s.%s VALUES ", db, c.table)
		for i := 1; i <= rows; i++ {
			if i > 1 {
				stmt += ", "
			}
			stmt += fmt.Sprintf("(%d, %s, 'n%d')", i, c.variants[i%len(c.variants)], i)
		}
		must(t, source.Exec(ctx, "SET SESSION sql_mode = ''; "+stmt))
		filter[c.table] = ferry.ColumnEquals{Column: "tenant", Value: c.value}
	}

	srcDB, err := source.DB(db)
	must(t, err)
	defer srcDB.Close()
	changes := func(rng *rand.Rand, c filterCase, nextID *int) []string {
		tbl := db + "." + c.table
		id := 1 + rng.Intn(*nextID)
		v := c.variants[rng.Intn(len(c.variants))]
		switch rng.Intn(5) {
		case 0:
			*nextID++
			return []string{fmt.Sprintf("INSERT INTO %s VALUES (%d, %s, 'ins')", tbl, *nextID, v)}
		case 1:
			return []string{fmt.Sprintf("DELETE FROM %s WHERE id = %d", tbl, id)}
		case 2: // key change keeping the tenant
			*nextID++
			return []string{fmt.Sprintf("UPDATE %s SET id = %d WHERE id = %d", tbl, *nextID, id)}
		case 3: // note change only
			return []string{fmt.Sprintf("UPDATE %s SET note = 'upd%d' WHERE id = %d", tbl, rng.Intn(1000), id)}
		}
		return []string{fmt.Sprintf("UPDATE %s SET tenant = %s WHERE id = %d", tbl, v, id)} // move in or out
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	nextIDs := make([]int, len(filterCases))
	for i := range nextIDs {
		nextIDs[i] = rows
	}
	runLoad := func(seed int64, n int) {
		rng := rand.New(rand.NewSource(seed))
		for k := 0; n == 0 || k < n; k++ {
			select {
			case <-stop:
				return
			default:
			}
			i := rng.Intn(len(filterCases))
			for _, q := range changes(rng, filterCases[i], &nextIDs[i]) {
				if _, err := srcDB.ExecContext(ctx, "SET SESSION sql_mode = ''"); err != nil {
					t.Error(err)
					return
				}
				if _, err := srcDB.ExecContext(ctx, q); err != nil {
					t.Errorf("%s: %v", q, err)
					return
				}
			}
		}
	}
	srcDB.SetMaxOpenConns(1) // the load's session sql_mode must hold for its statements
	wg.Add(1)
	go func() { defer wg.Done(); runLoad(1, 0) }()

	f, err := ferry.New(ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{db}},
		Filter: filter, BatchSize: 10, CopyWorkers: 2, CreateTargetTables: true, Logger: testLogger(t)})
	must(t, err)
	defer f.Close()
	must(t, f.Initialize(ctx))
	f.Verifier = &verifier.Inline{Source: f.Source, Target: f.Target}
	// Slow the copy down so the load races it.
	f.BatchWriter = &slowWriter{inner: &ferry.TargetBatchWriter{DB: f.Target, MaxRetries: 5}, delay: 5 * time.Millisecond}
	must(t, f.Start(ctx))
	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx) }()
	must(t, f.WaitUntilRowCopyIsComplete(ctx))
	close(stop)
	wg.Wait()
	runLoad(2, 400) // after the copy: every change reaches the target through the binlog only
	_, err = f.FlushBinlog(ctx)
	must(t, err)
	// The inline verifier must compare the filtered rows, not report a match over none.
	res, err := f.Verifier.Verify(ctx, verifier.DuringCutover, f.TablePairs())
	must(t, err)
	if !res.Match() {
		t.Errorf("inline verifier: %s", res)
	}
	for _, tr := range res.Tables {
		if tr.RowsCompared == 0 {
			t.Errorf("inline verifier compared no row of %s", tr.Source)
		}
	}
	must(t, f.FlushBinlogAndStopStreaming(ctx))
	must(t, <-errc)

	for _, c := range filterCases {
		n := assertSameRows(t, db+"."+c.table, c.where, db+"."+c.table)
		var total int
		must(t, srcDB.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+c.table).Scan(&total))
		t.Logf("%s: %d of %d rows in the filter", c.table, n, total)
		if n == 0 {
			t.Errorf("%s: no source row is in the filter; the test compared nothing", c.table)
		}
		if n == total {
			t.Errorf("%s: every source row is in the filter; the test did not exercise it", c.table)
		}
	}
}

type slowWriter struct {
	inner ferry.BatchWriter
	delay time.Duration
}

func (w *slowWriter) WriteBatch(ctx context.Context, b *ferry.RowBatch) error {
	time.Sleep(w.delay)
	return w.inner.WriteBatch(ctx, b)
}

// A filter column whose binlog values cannot be compared as the server compares it, or a value that
// is not of the column's kind, is refused by Initialize before anything is written; copydb names
// its flag.
func TestFilterRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS filtref", "CREATE DATABASE filtref",
		"CREATE TABLE filtref.f (id INT PRIMARY KEY, tenant FLOAT)", "CREATE TABLE filtref.i (id INT PRIMARY KEY, n INT)",
		"INSERT INTO filtref.f VALUES (1, 1.5)", "INSERT INTO filtref.i VALUES (1, 1)"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS filtref"))
	for _, c := range []struct {
		filter ferry.ColumnEquals
		option string
		names  string
	}{
		{ferry.ColumnEquals{Column: "tenant", Value: "1.5"}, "Filter.Column", "filtref.f.tenant: a float column"},
		{ferry.ColumnEquals{Column: "n", Value: "acme"}, "Filter.Value", `filtref.i.n: value "acme" is not an integer`},
	} {
		f, err := ferry.New(ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{"filtref"}},
			Filter: c.filter, CreateTargetTables: true, Logger: testLogger(t)})
		must(t, err)
		err = f.Initialize(ctx)
		f.Close()
		assertRefusal(t, err, c.option, []string{c.names}, nil)
	}
	if n := count(t, target, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'filtref'"); n != 0 {
		t.Fatal("the refusal came after writing: the target database was created")
	}
	bin := rsBuildCopydb(t, t.TempDir())
	out, code := runCopydb(t, ctx, bin, "-databases", "filtref", "-create-tables", "-filter-column", "tenant", "-filter-value", "1.5")
	if code != 1 || !strings.Contains(out, "set -filter-column to an integer, string, DECIMAL or temporal column") || strings.Contains(out, "Filter.Column") {
		t.Fatalf("copydb exit %d; want 1 and a refusal naming -filter-column:\n%s", code, out)
	}
}
