package verifier_test

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/verifier"
)

const baseRows = 240

// createBase creates table t on both servers with the same rows: id 1..240, tenant id%2, a
// case-insensitive name, a nullable note (NULL when id%5==0), a 256-byte BLOB and a JSON document.
func createBase(t testing.TB, db string) {
	t.Helper()
	execBoth(t, fmt.Sprintf(`CREATE TABLE %s.t (
		id INT NOT NULL PRIMARY KEY,
		tenant INT NOT NULL,
		name VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL,
		note VARCHAR(40) NULL,
		data BLOB,
		doc JSON)`, schema.QuoteIdent(db)))
	var vals []string
	var args []any
	for i := 1; i <= baseRows; i++ {
		var note any = fmt.Sprintf("note%d", i)
		if i%5 == 0 {
			note = nil
		}
		data := make([]byte, 256)
		for j := range data {
			data[j] = byte(i + j)
		}
		vals = append(vals, "(?, ?, ?, ?, ?, ?)")
		args = append(args, i, i%2, fmt.Sprintf("name%d", i), note, data, fmt.Sprintf(`{"i": %d, "tags": ["a", "b"], "price": 1.50}`, i))
	}
	q := fmt.Sprintf("INSERT INTO %s.t VALUES %s", schema.QuoteIdent(db), strings.Join(vals, ", "))
	for _, d := range []*sql.DB{srcDB, tgtDB} {
		if _, err := d.Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
}

// createTypes creates the type-matrix table on both servers with the same rows.
func createTypes(t testing.TB, db string) {
	t.Helper()
	q := schema.QuoteIdent(db)
	all := make([]string, 256)
	rev := make([]string, 256)
	for i := range all {
		all[i] = fmt.Sprintf("%02X", i)
		rev[255-i] = all[i]
	}
	execBoth(t, fmt.Sprintf(`CREATE TABLE %s.types (
		id INT NOT NULL PRIMARY KEY,
		i8 TINYINT, u8 TINYINT UNSIGNED, i64 BIGINT, u64 BIGINT UNSIGNED,
		dec65 DECIMAL(65,30), f FLOAT, d DOUBLE, b64 BIT(64),
		dt DATE, tm TIME(6), dtm DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, y YEAR,
		u8s VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
		l1 VARCHAR(64) CHARACTER SET latin1,
		ci VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci,
		bin8 BINARY(8), bl BLOB,
		e ENUM('small','medium','large'), st SET('red','green','blue'),
		j JSON,
		gv BIGINT AS (i64 DIV 2) VIRTUAL,
		gs VARCHAR(140) AS (CONCAT(ci, '|', u8s)) STORED)`, q),
		fmt.Sprintf(`SET time_zone = '+00:00'; INSERT INTO %s.types
		(id, i8, u8, i64, u64, dec65, f, d, b64, dt, tm, dtm, ts, y, u8s, l1, ci, bin8, bl, e, st, j) VALUES
		(1, -128, 0, -9223372036854775808, 0, '-99999999999999999999999999999999999.999999999999999999999999999999',
		 -3.40282e38, -1.7976931348623157e308, b'0', '1000-01-01', '-838:59:59.000000', '1000-01-01 00:00:00.000000',
		 '1970-01-01 00:00:01.000000', 1901, '😀 emoji 🎉', 'café', 'MiXeD Case', X'41', X'%s', 'small', 'red,blue',
		 '{"a": [1, 2.50, "x"], "b": null}'),
		(2, 127, 255, 9223372036854775807, 18446744073709551615, '99999999999999999999999999999999999.999999999999999999999999999999',
		 3.40282e38, 1.7976931348623157e308, b'1111111111111111111111111111111111111111111111111111111111111111',
		 '9999-12-31', '838:59:59.000000', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', 2155,
		 'ñ 中文 🙂', 'Ünïcödé ÿ', 'UPPER', X'0102030000000000', X'%s', 'large', '', '[1.0, 1e2, {"k": "v"}]'),
		(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
		(4, 0, 1, -1, 1, '0.000000000000000000000000000001', 1.1, 0.30000000000000004, b'101', '2024-02-29',
		 '-00:00:00.000001', '2024-02-29 12:34:56.789012', '2024-02-29 12:34:56.000001', 2024, '', '', '', X'', X'',
		 'medium', 'red,green,blue', '{}')`, q, strings.Join(all, ""), strings.Join(rev, "")))
}

// createComposite creates a table keyed by (region, created, seq): a case-insensitive string, a
// DATETIME(6) and a signed integer with negative and zero values.
func createComposite(t testing.TB, db string) {
	t.Helper()
	execBoth(t, fmt.Sprintf(`CREATE TABLE %s.comp (
		region VARCHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL,
		created DATETIME(6) NOT NULL,
		seq INT NOT NULL,
		amount DECIMAL(12,2),
		PRIMARY KEY (region, created, seq))`, schema.QuoteIdent(db)))
	var vals []string
	for _, r := range []string{"ap", "EU", "us", "Éire"} {
		for d := 0; d < 5; d++ {
			for s := -3; s < 7; s++ {
				vals = append(vals, fmt.Sprintf("('%s', '2024-01-0%d 10:00:00.%06d', %d, %d.%02d)", r, d+1, d*7, s, d*100+s+3, (s+3)*7))
			}
		}
	}
	execBoth(t, fmt.Sprintf("INSERT INTO %s.comp VALUES %s", schema.QuoteIdent(db), strings.Join(vals, ", ")))
}

// createStringKeys creates a table keyed by a case-insensitive, accent-insensitive string and one
// keyed by VARBINARY bytes (including 0x00 and 0xFF).
func createStringKeys(t testing.TB, db string) {
	t.Helper()
	q := schema.QuoteIdent(db)
	execBoth(t,
		fmt.Sprintf(`CREATE TABLE %s.skey (code VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL PRIMARY KEY, val INT)`, q),
		fmt.Sprintf(`CREATE TABLE %s.bkey (k VARBINARY(16) NOT NULL PRIMARY KEY, val INT)`, q))
	var vals []string
	for i := 0; i < 150; i++ {
		vals = append(vals, fmt.Sprintf("('k%03d', %d)", i, i))
	}
	for i, s := range []string{"Ärger", "zebra", "Zulu", "émile", "😀smile", "straße", "ñandú", "Ωmega", "a b", "a"} {
		vals = append(vals, fmt.Sprintf("('%s', %d)", s, 1000+i))
	}
	execBoth(t, fmt.Sprintf("INSERT INTO %s.skey VALUES %s", q, strings.Join(vals, ", ")))
	vals = vals[:0]
	for i := 0; i < 120; i++ {
		vals = append(vals, fmt.Sprintf("(X'%02X00FF%02X', %d)", i, 255-i, i))
	}
	vals = append(vals, "(X'', -1)", "(X'00', -2)", "(X'FF', -3)")
	execBoth(t, fmt.Sprintf("INSERT INTO %s.bkey VALUES %s", q, strings.Join(vals, ", ")))
}

// copyRows plays the copy for the inline verifier: it reads the source rows the way ferry's copy does
// (stored bytes, UTC, FLOAT as DOUBLE) and hands them to RowsCopied in batches from several
// goroutines at once.
func copyRows(t testing.TB, obs verifier.CopyObserver, tbl *schema.Table, where string) {
	t.Helper()
	ctx := context.Background()
	conn, err := srcDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SET time_zone = '+00:00', character_set_results = binary"); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, "SET time_zone = SYSTEM, character_set_results = utf8mb4")
	var sel []string
	for _, c := range tbl.WritableColumns() {
		if c.IsFloat() {
			sel = append(sel, "CAST("+schema.QuoteIdent(c.Name)+" AS DOUBLE)")
		} else {
			sel = append(sel, schema.QuoteIdent(c.Name))
		}
	}
	q := "SELECT " + strings.Join(sel, ", ") + " FROM " + tbl.QualifiedName()
	if where != "" {
		q += " WHERE " + where
	}
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var all [][]any
	for rows.Next() {
		raw := make([]sql.RawBytes, len(sel))
		ptrs := make([]any, len(sel))
		for i := range raw {
			ptrs[i] = &raw[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		r := make([]any, len(sel))
		for i, b := range raw {
			if b != nil {
				r[i] = append([]byte{}, b...)
			}
		}
		all = append(all, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for b := w * 37; b < len(all); b += 3 * 37 {
				obs.RowsCopied(tbl, all[b:min(b+37, len(all))])
			}
		}(w)
	}
	wg.Wait()
}

// subject is one verifier under test with the phase it is run in.
type subject struct {
	name  string
	v     verifier.Verifier
	phase verifier.Phase
}

func subjects(strict bool) []subject {
	return []subject{
		{"checksum", &verifier.Checksum{Source: srcDB, Target: tgtDB, ChunkSize: 50, Strict: strict}, verifier.DuringCutover},
		{"rowdiff", &verifier.Differ{Source: srcDB, Target: tgtDB, PageSize: 64, Strict: strict}, verifier.DuringCutover},
		{"inline", &verifier.Inline{Source: srcDB, Target: tgtDB, PageSize: 70, BatchSize: 25, Strict: strict, Rechecks: -1}, verifier.BeforeCutover},
		{"checksum-table", &verifier.ChecksumTable{Source: srcDB, Target: tgtDB, Fallback: &verifier.Checksum{ChunkSize: 50}}, verifier.DuringCutover},
	}
}

func keysString(ks []verifier.Key) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.String()
	}
	sort.Strings(out)
	return out
}

func diffsString(ds []verifier.RowDiff) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Key.String() + " " + strings.Join(d.Columns, ",")
	}
	sort.Strings(out)
	return out
}

// checkTable asserts a table result's exact keys and columns (in any order) and counts.
func checkTable(t *testing.T, tr *verifier.TableResult, missing, extra []verifier.Key, different []verifier.RowDiff) {
	t.Helper()
	eq := func(what string, got, want []string) {
		t.Helper()
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: got %q, want %q", what, got, want)
		}
	}
	eq("missing", keysString(tr.Missing), keysString(missing))
	eq("extra", keysString(tr.Extra), keysString(extra))
	eq("different", diffsString(tr.Different), diffsString(different))
	if tr.MissingCount != int64(len(missing)) || tr.ExtraCount != int64(len(extra)) || tr.DifferentCount != int64(len(different)) {
		t.Errorf("counts missing/extra/different = %d/%d/%d, want %d/%d/%d", tr.MissingCount, tr.ExtraCount, tr.DifferentCount, len(missing), len(extra), len(different))
	}
	if want := len(missing) == 0 && len(extra) == 0 && len(different) == 0; tr.Match() != want {
		t.Errorf("Match() = %v, want %v", tr.Match(), want)
	}
}

func key(parts ...string) verifier.Key { return verifier.Key(parts) }

func diff(k verifier.Key, cols ...string) verifier.RowDiff {
	return verifier.RowDiff{Key: k, Columns: cols}
}
