package verifier_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/verifier"
)

// TestDetectsDifferences runs every verifier over the same damaged copies and checks that each
// reports exactly the damaged keys and columns.
func TestDetectsDifferences(t *testing.T) {
	type mutation func(t *testing.T, db string)
	onTarget := func(stmts ...string) mutation {
		return func(t *testing.T, db string) {
			for _, s := range stmts {
				execOn(t, tgtDB, strings.ReplaceAll(s, "$db", schema.QuoteIdent(db)))
			}
		}
	}
	cases := []struct {
		name      string
		where     string // the copy filter
		copyWhere string // rows the (simulated) copy hands to RowsCopied; default where
		strict    bool
		mutate    mutation
		missing   []verifier.Key
		extra     []verifier.Key
		different []verifier.RowDiff
	}{
		{name: "identical", mutate: onTarget()},
		{name: "changed value", mutate: onTarget("UPDATE $db.t SET note = 'changed' WHERE id = 17"),
			different: []verifier.RowDiff{diff(key("17"), "note")}},
		{name: "missing row", mutate: onTarget("DELETE FROM $db.t WHERE id = 42"),
			missing: []verifier.Key{key("42")}},
		{name: "extra row", mutate: onTarget("INSERT INTO $db.t VALUES (1000, 1, 'x', NULL, NULL, NULL)"),
			extra: []verifier.Key{key("1000")}},
		{name: "first and last rows", mutate: onTarget("DELETE FROM $db.t WHERE id IN (1, 240)", "INSERT INTO $db.t VALUES (-5, 1, 'neg', NULL, NULL, NULL)"),
			missing: []verifier.Key{key("1"), key("240")}, extra: []verifier.Key{key("-5")}},
		{name: "NULL vs empty string", mutate: onTarget("UPDATE $db.t SET note = '' WHERE id = 5"),
			different: []verifier.RowDiff{diff(key("5"), "note")}},
		{name: "case in case-insensitive column", mutate: onTarget("UPDATE $db.t SET name = 'NAME7' WHERE id = 7"),
			different: []verifier.RowDiff{diff(key("7"), "name")}},
		{name: "flipped BLOB byte", mutate: func(t *testing.T, db string) {
			var data []byte
			if err := tgtDB.QueryRow(fmt.Sprintf("SELECT data FROM %s.t WHERE id = 9", schema.QuoteIdent(db))).Scan(&data); err != nil {
				t.Fatal(err)
			}
			data[200] ^= 0x01
			if _, err := tgtDB.Exec(fmt.Sprintf("UPDATE %s.t SET data = ? WHERE id = 9", schema.QuoteIdent(db)), data); err != nil {
				t.Fatal(err)
			}
		}, different: []verifier.RowDiff{diff(key("9"), "data")}},
		{name: "changed JSON value", mutate: onTarget(`UPDATE $db.t SET doc = JSON_SET(doc, '$.price', 1.51) WHERE id = 11`),
			different: []verifier.RowDiff{diff(key("11"), "doc")}},
		{name: "several at once", mutate: onTarget("UPDATE $db.t SET note = NULL, name = 'Name88' WHERE id = 88",
			"DELETE FROM $db.t WHERE id IN (100, 101, 199)", "INSERT INTO $db.t VALUES (500, 0, 'x', '', '', '[]'), (0, 0, '', NULL, NULL, NULL)"),
			different: []verifier.RowDiff{diff(key("88"), "name", "note")},
			missing:   []verifier.Key{key("100"), key("101"), key("199")}, extra: []verifier.Key{key("0"), key("500")}},
		// A filtered copy (tenant 1 only) that leaked row 64 (tenant 0) into the target.
		{name: "row outside filter leaked, strict", where: "tenant = 1", copyWhere: "tenant = 1 OR id = 64", strict: true,
			mutate: onTarget("DELETE FROM $db.t WHERE tenant = 0 AND id <> 64"),
			extra:  []verifier.Key{key("64")}},
		{name: "row outside filter leaked, not strict", where: "tenant = 1", copyWhere: "tenant = 1 OR id = 64",
			mutate: onTarget("DELETE FROM $db.t WHERE tenant = 0 AND id <> 64")},
		{name: "filtered copy with a changed row, strict", where: "tenant = 1", strict: true,
			mutate:    onTarget("DELETE FROM $db.t WHERE tenant = 0", "UPDATE $db.t SET note = 'x' WHERE id = 33", "DELETE FROM $db.t WHERE id = 35"),
			different: []verifier.RowDiff{diff(key("33"), "note")}, missing: []verifier.Key{key("35")}},
	}
	ctx := context.Background()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := newDatabase(t)
			createBase(t, db)
			tbl := load(t, db, "t")
			pair := verifier.TablePair{Source: tbl, TargetDatabase: db, TargetTable: "t", Where: tc.where}
			subs := subjects(tc.strict)
			for _, s := range subs {
				if obs, ok := s.v.(verifier.CopyObserver); ok {
					cw := tc.copyWhere
					if cw == "" {
						cw = tc.where
					}
					copyRows(t, obs, tbl, cw)
				}
			}
			tc.mutate(t, db)
			for _, s := range subs {
				t.Run(s.name, func(t *testing.T) {
					res, err := s.v.Verify(ctx, s.phase, []verifier.TablePair{pair})
					if _, ok := s.v.(*verifier.ChecksumTable); ok && tc.where != "" {
						if !errors.Is(err, verifier.ErrNotApplicable) {
							t.Fatalf("CHECKSUM TABLE with a filter: err = %v, want ErrNotApplicable", err)
						}
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					if len(res.Tables) != 1 {
						t.Fatalf("%d table results", len(res.Tables))
					}
					checkTable(t, res.Tables[0], tc.missing, tc.extra, tc.different)
					// A filter applied to both sides never reads target rows outside it: the report says so.
					if hidden := strings.Contains(res.CannotSee, "target rows outside the copy filter"); hidden != (tc.where != "" && !tc.strict) {
						t.Errorf("cannot see %q: filter %q, strict %v", res.CannotSee, tc.where, tc.strict)
					}
					if t.Failed() {
						t.Log(res)
					}
				})
			}
		})
	}
}

// TestIdenticalTables: every verifier passes on identical copies of the type matrix, a composite-key
// table and string/binary-key tables.
func TestIdenticalTables(t *testing.T) {
	ctx := context.Background()
	db := newDatabase(t)
	createTypes(t, db)
	createComposite(t, db)
	createStringKeys(t, db)
	counts := map[string]int64{"types": 4, "comp": 200, "skey": 160, "bkey": 123}
	var pairs []verifier.TablePair
	var tbls []*schema.Table
	for _, name := range []string{"types", "comp", "skey", "bkey"} {
		tbl := load(t, db, name)
		tbls = append(tbls, tbl)
		pairs = append(pairs, verifier.TablePair{Source: tbl, TargetDatabase: db, TargetTable: name})
	}
	for _, s := range subjects(false) {
		t.Run(s.name, func(t *testing.T) {
			if obs, ok := s.v.(verifier.CopyObserver); ok {
				for _, tbl := range tbls {
					copyRows(t, obs, tbl, "")
				}
			}
			res, err := s.v.Verify(ctx, s.phase, pairs)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Match() {
				t.Errorf("identical tables reported different:\n%s", res)
			}
			for _, tr := range res.Tables {
				name := tr.Source[strings.LastIndex(tr.Source, ".")+1:]
				if tr.RowsCompared != counts[name] {
					t.Errorf("%s: RowsCompared = %d, want %d", tr.Source, tr.RowsCompared, counts[name])
				}
			}
			if in, ok := s.v.(*verifier.Inline); ok {
				// Every fingerprint taken from the copy matched the one the target computed: the
				// pass read nothing from the source.
				if st := in.Stats(); st.SourceRows != 0 || st.SourceQueries != 0 {
					t.Errorf("inline pass over identical tables read the source: %+v", st)
				}
			}
		})
	}
}

// TestTypeMatrixDifferences: one-ulp FLOAT and DOUBLE changes, a changed trailing byte of BINARY(8),
// a microsecond of TIMESTAMP(6), a latin1 accent, a BIT and a TIME are each detected and named; a
// changed BIGINT also changes its VIRTUAL generated column.
func TestTypeMatrixDifferences(t *testing.T) {
	ctx := context.Background()
	db := newDatabase(t)
	createTypes(t, db)
	tbl := load(t, db, "types")
	pair := verifier.TablePair{Source: tbl, TargetDatabase: db, TargetTable: "types"}
	subs := subjects(false)
	for _, s := range subs {
		if obs, ok := s.v.(verifier.CopyObserver); ok {
			copyRows(t, obs, tbl, "")
		}
	}
	q := schema.QuoteIdent(db)
	execOn(t, tgtDB,
		"SET time_zone = '+00:00'; UPDATE "+q+".types SET l1 = 'cafe', b64 = 1, tm = '-838:59:58.999999' WHERE id = 1",
		"SET time_zone = '+00:00'; UPDATE "+q+".types SET i64 = i64 - 2, ts = '2038-01-19 03:14:07.999998', bin8 = X'0102030000000001' WHERE id = 2",
		"UPDATE "+q+".types SET f = 1.1000001, d = 0.3 WHERE id = 4")
	want := []verifier.RowDiff{
		diff(key("1"), "b64", "tm", "l1"),
		diff(key("2"), "i64", "ts", "bin8", "gv"),
		diff(key("4"), "f", "d"),
	}
	// The FLOAT changed by one step of its precision, invisible in its 6-digit text form; the DOUBLE
	// by one ulp.
	var f1, f2, t1, t2 string
	if err := srcDB.QueryRow("SELECT f, CAST(f AS DOUBLE) FROM "+q+".types WHERE id = 4").Scan(&t1, &f1); err != nil {
		t.Fatal(err)
	}
	if err := tgtDB.QueryRow("SELECT f, CAST(f AS DOUBLE) FROM "+q+".types WHERE id = 4").Scan(&t2, &f2); err != nil {
		t.Fatal(err)
	}
	if f1 == f2 || t1 != t2 {
		t.Fatalf("float: source %s (%s), target %s (%s)", t1, f1, t2, f2)
	}
	for _, s := range subs {
		t.Run(s.name, func(t *testing.T) {
			res, err := s.v.Verify(ctx, s.phase, []verifier.TablePair{pair})
			if err != nil {
				t.Fatal(err)
			}
			checkTable(t, res.Tables[0], nil, nil, want)
		})
	}
}

// TestCompositeAndStringKeys: differences in tables keyed by (string, DATETIME(6), int), by a
// case- and accent-insensitive string and by raw bytes are reported with their exact keys.
func TestCompositeAndStringKeys(t *testing.T) {
	ctx := context.Background()
	db := newDatabase(t)
	createComposite(t, db)
	createStringKeys(t, db)
	var pairs []verifier.TablePair
	var tbls []*schema.Table
	for _, name := range []string{"comp", "skey", "bkey"} {
		tbl := load(t, db, name)
		tbls = append(tbls, tbl)
		pairs = append(pairs, verifier.TablePair{Source: tbl, TargetDatabase: db, TargetTable: name})
	}
	subs := subjects(false)
	for _, s := range subs {
		if obs, ok := s.v.(verifier.CopyObserver); ok {
			for _, tbl := range tbls {
				copyRows(t, obs, tbl, "")
			}
		}
	}
	q := schema.QuoteIdent(db)
	execOn(t, tgtDB,
		"DELETE FROM "+q+".comp WHERE region = 'us' AND created = '2024-01-03 10:00:00.000014' AND seq = -3",
		"UPDATE "+q+".comp SET amount = amount + 0.01 WHERE region = 'Éire' AND created = '2024-01-05 10:00:00.000028' AND seq = 0",
		"INSERT INTO "+q+".comp VALUES ('EU', '2024-01-01 10:00:00.000001', 0, 1.00)",
		"DELETE FROM "+q+".skey WHERE code IN ('Ärger', 'k000')",
		"UPDATE "+q+".skey SET val = -1 WHERE code = '😀smile'",
		"INSERT INTO "+q+".skey VALUES ('zz-extra', 1), ('Ärgerlich', 2)",
		"DELETE FROM "+q+".bkey WHERE k IN (X'', X'0500FFFA')",
		"UPDATE "+q+".bkey SET val = 0 WHERE k = X'FF'",
		"INSERT INTO "+q+".bkey VALUES (X'FFFF00', 9)")
	for _, s := range subs {
		t.Run(s.name, func(t *testing.T) {
			res, err := s.v.Verify(ctx, s.phase, pairs)
			if err != nil {
				t.Fatal(err)
			}
			checkTable(t, res.Tables[0],
				[]verifier.Key{key("us", "2024-01-03 10:00:00.000014", "-3")},
				[]verifier.Key{key("EU", "2024-01-01 10:00:00.000001", "0")},
				[]verifier.RowDiff{diff(key("Éire", "2024-01-05 10:00:00.000028", "0"), "amount")})
			checkTable(t, res.Tables[1],
				[]verifier.Key{key("k000"), key("Ärger")},
				[]verifier.Key{key("zz-extra"), key("Ärgerlich")},
				[]verifier.RowDiff{diff(key("😀smile"), "val")})
			checkTable(t, res.Tables[2],
				[]verifier.Key{key("0x"), key("0x0500FFFA")},
				[]verifier.Key{key("0xFFFF00")},
				[]verifier.RowDiff{diff(key("0xFF"), "val")})
			if t.Failed() {
				t.Log(res)
			}
		})
	}
}

// TestSampleCap: with every row missing, counts are complete and the sample holds the first keys in
// key order, even though chunks are compared in parallel.
func TestSampleCap(t *testing.T) {
	ctx := context.Background()
	db := newDatabase(t)
	createBase(t, db)
	tbl := load(t, db, "t")
	pair := verifier.TablePair{Source: tbl, TargetDatabase: db, TargetTable: "t"}
	for _, v := range []verifier.Verifier{
		&verifier.Checksum{Source: srcDB, Target: tgtDB, ChunkSize: 10, Concurrency: 6, SampleSize: 5},
		&verifier.Differ{Source: srcDB, Target: tgtDB, PageSize: 10, SampleSize: 5},
	} {
		execOn(t, tgtDB, "DELETE FROM "+tbl.QualifiedName()+" WHERE id > 200", "UPDATE "+tbl.QualifiedName()+" SET note = 'x' WHERE id <= 200")
		res, err := v.Verify(ctx, verifier.DuringCutover, []verifier.TablePair{pair})
		if err != nil {
			t.Fatal(err)
		}
		tr := res.Tables[0]
		if tr.MissingCount != 40 || tr.DifferentCount != 200 || tr.RowsCompared != baseRows {
			t.Errorf("%s: counts %d missing, %d different, %d compared; want 40, 200, %d", res.Verifier, tr.MissingCount, tr.DifferentCount, tr.RowsCompared, baseRows)
		}
		if got := fmt.Sprint(tr.Missing); got != "[(201) (202) (203) (204) (205)]" {
			t.Errorf("%s: missing sample %s", res.Verifier, got)
		}
		var got []string
		for _, d := range tr.Different {
			got = append(got, d.Key.String()+strings.Join(d.Columns, ","))
		}
		if strings.Join(got, " ") != "(1)note (2)note (3)note (4)note (5)note" {
			t.Errorf("%s: different sample %v", res.Verifier, got)
		}
	}
}

// TestChecksumTableNotApplicable: a different definition makes the fast path refuse, with a reason.
func TestChecksumTableNotApplicable(t *testing.T) {
	db := newDatabase(t)
	q := schema.QuoteIdent(db)
	execOn(t, srcDB, "CREATE TABLE "+q+".a (id INT PRIMARY KEY, v VARCHAR(10))")
	execOn(t, tgtDB, "CREATE TABLE "+q+".a (id INT PRIMARY KEY, v VARCHAR(20))")
	v := &verifier.ChecksumTable{Source: srcDB, Target: tgtDB}
	_, err := v.Verify(context.Background(), verifier.DuringCutover, []verifier.TablePair{{Source: load(t, db, "a")}})
	if !errors.Is(err, verifier.ErrNotApplicable) || !strings.Contains(err.Error(), "definitions differ") {
		t.Fatalf("err = %v", err)
	}
	// The row verifiers compare such tables by value.
	execOn(t, srcDB, "INSERT INTO "+q+".a VALUES (1, 'x')")
	execOn(t, tgtDB, "INSERT INTO "+q+".a VALUES (1, 'x')")
	res, err := (&verifier.Checksum{Source: srcDB, Target: tgtDB}).Verify(context.Background(), verifier.DuringCutover, []verifier.TablePair{{Source: load(t, db, "a")}})
	if err != nil || !res.Match() {
		t.Fatalf("checksum: %v %v", res, err)
	}
}

// TestIncompatibleKeys: keys the two servers would order differently are refused.
func TestIncompatibleKeys(t *testing.T) {
	db := newDatabase(t)
	q := schema.QuoteIdent(db)
	execOn(t, srcDB, "CREATE TABLE "+q+".a (id VARCHAR(10) COLLATE utf8mb4_general_ci PRIMARY KEY)")
	execOn(t, tgtDB, "CREATE TABLE "+q+".a (id VARCHAR(10) COLLATE utf8mb4_bin PRIMARY KEY)")
	for _, v := range []verifier.Verifier{
		&verifier.Checksum{Source: srcDB, Target: tgtDB},
		&verifier.Differ{Source: srcDB, Target: tgtDB},
		&verifier.Inline{Source: srcDB, Target: tgtDB},
	} {
		_, err := v.Verify(context.Background(), verifier.DuringCutover, []verifier.TablePair{{Source: load(t, db, "a")}})
		if err == nil || !strings.Contains(err.Error(), "collation") {
			t.Errorf("%T: err = %v, want a collation error", v, err)
		}
	}
}

// TestResultReport: the JSON carries the verdict and the keys; the text names rows and columns.
func TestResultReport(t *testing.T) {
	db := newDatabase(t)
	createBase(t, db)
	execOn(t, tgtDB, "UPDATE "+schema.QuoteIdent(db)+".t SET note = 'z', doc = '[]' WHERE id = 3", "DELETE FROM "+schema.QuoteIdent(db)+".t WHERE id = 4")
	res, err := (&verifier.Checksum{Source: srcDB, Target: tgtDB}).Verify(context.Background(), verifier.DuringCutover,
		[]verifier.TablePair{{Source: load(t, db, "t")}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Match  bool
		Tables []verifier.TableResult
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Match || len(back.Tables) != 1 || back.Tables[0].DifferentCount != 1 || back.Tables[0].Missing[0].String() != "(4)" {
		t.Errorf("json: %s", b)
	}
	s := res.String()
	for _, want := range []string{"MISMATCH", "missing on target (4)", "different (3) in columns note, doc"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
}

// TestSessionRestored: the verifiers pin time_zone and character_set_results on the connections
// they borrow and give them back as they found them, over the text protocol (interpolateParams) and
// the binary one (server-side prepared statements) alike; a pool too small for a Checksum gives an
// error, not a deadlock.
func TestSessionRestored(t *testing.T) {
	db := newDatabase(t)
	createBase(t, db)
	tbl := load(t, db, "t")
	for _, interpolate := range []bool{true, false} {
		cfg, err := mysql.ParseDSN(srcSrv.DSN(""))
		if err != nil {
			t.Fatal(err)
		}
		cfg.InterpolateParams = interpolate
		pool, err := sql.Open("mysql", cfg.FormatDSN())
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		pool.SetMaxOpenConns(1)
		if _, err := (&verifier.Checksum{Source: pool, Target: tgtDB, Concurrency: 1}).Verify(context.Background(), verifier.DuringCutover,
			[]verifier.TablePair{{Source: tbl}}); err == nil {
			t.Fatal("expected an error (not a deadlock): one connection cannot serve the bound finder and a worker")
		}
		pool.SetMaxOpenConns(4)
		pool.SetMaxIdleConns(4)
		res, err := (&verifier.Differ{Source: pool, Target: tgtDB, PageSize: 50}).Verify(context.Background(), verifier.DuringCutover,
			[]verifier.TablePair{{Source: tbl}})
		if err != nil || !res.Match() {
			t.Fatal(res, err)
		}
		if st := pool.Stats(); st.OpenConnections < 2 || st.MaxIdleClosed > 0 {
			t.Errorf("interpolate=%v: %d connections left in the pool; the verifier's were discarded, not restored: %+v", interpolate, st.OpenConnections, st)
		}
		for i := 0; i < 4; i++ {
			c, err := pool.Conn(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var tz, cs string
			if err := c.QueryRowContext(context.Background(), "SELECT @@session.time_zone, @@session.character_set_results").Scan(&tz, &cs); err != nil {
				t.Fatal(err)
			}
			if tz != "SYSTEM" || cs != "utf8mb4" {
				t.Errorf("interpolate=%v: session left as time_zone=%s character_set_results=%s", interpolate, tz, cs)
			}
		}
	}
}

// With Snapshot, the Checksum compares both sides as they were when begin was called, whatever
// changes after: a change made on one side after begin is not a difference, a difference present at
// begin is reported without rechecks, and a Snapshot function that does not call begin fails the
// pass instead of comparing live tables.
func TestChecksumSnapshotComparesTheStateAtBegin(t *testing.T) {
	ctx := context.Background()
	db := newDatabase(t)
	createBase(t, db)
	pair := []verifier.TablePair{{Source: load(t, db, "t"), TargetDatabase: db, TargetTable: "t"}}
	exec := func(d *sql.DB, q string) {
		t.Helper()
		if _, err := d.Exec(fmt.Sprintf(q, schema.QuoteIdent(db))); err != nil {
			t.Fatal(err)
		}
	}
	afterBegin := func(change func()) func(context.Context, func(context.Context) error) error {
		return func(ctx context.Context, begin func(context.Context) error) error {
			if err := begin(ctx); err != nil {
				return err
			}
			change()
			return nil
		}
	}
	c := &verifier.Checksum{Source: srcDB, Target: tgtDB, ChunkSize: 50, RecheckDelay: time.Hour,
		Snapshot: afterBegin(func() { exec(tgtDB, "UPDATE %s.t SET note = 'after begin' WHERE id = 7") })}
	res, err := c.Verify(ctx, verifier.BeforeCutover, pair)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Match() || res.Tables[0].RowsCompared != baseRows {
		t.Errorf("a change after begin was compared:\n%s", res)
	}
	// Row 7 now differs: found at once (a recheck would wait an hour).
	c.Snapshot = afterBegin(func() { exec(tgtDB, "UPDATE %s.t SET note = 'note7' WHERE id = 7") })
	res, err = c.Verify(ctx, verifier.BeforeCutover, pair)
	if err != nil {
		t.Fatal(err)
	}
	if d := res.Tables[0].Different; len(d) != 1 || d[0].Key.String() != "(7)" {
		t.Errorf("want row 7 different as of begin:\n%s", res)
	}
	c.Snapshot = func(context.Context, func(context.Context) error) error { return nil }
	if _, err := c.Verify(ctx, verifier.BeforeCutover, pair); err == nil || !strings.Contains(err.Error(), "without beginning the snapshot") {
		t.Errorf("a Snapshot that did not begin: %v", err)
	}
}
