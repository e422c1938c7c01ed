package test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/ferrykit/ferry/sandbox"
)

// typesTable has a column of every type ferry must move exactly.
const typesTable = `CREATE TABLE %s.types (
	id BIGINT NOT NULL PRIMARY KEY,
	ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
	mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
	dec65 DECIMAL(65,30), f FLOAT, d DOUBLE, b1 BIT(1), b64 BIT(64),
	dt DATE, tm TIME(6), dtm DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, y YEAR,
	vc VARCHAR(100) CHARACTER SET utf8mb4, txt TEXT CHARACTER SET utf8mb4,
	l1 VARCHAR(50) CHARACTER SET latin1, ci VARCHAR(20) COLLATE utf8mb4_general_ci, cb VARCHAR(20) COLLATE utf8mb4_bin,
	bn BINARY(8), vb VARBINARY(300), bl BLOB, lb LONGBLOB,
	e ENUM('a','b','c'), st SET('x','y','z'), j JSON,
	gv BIGINT AS (i + 1) VIRTUAL, gs VARCHAR(120) AS (CONCAT(IFNULL(vc,''), '!')) STORED
) ENGINE=InnoDB`

var typeColumns = "id, ti, tiu, si, siu, mi, miu, i, iu, bi, biu, dec65, f, d, b1, b64, dt, tm, dtm, ts, y, vc, txt, l1, ci, cb, bn, vb, bl, lb, e, st, j"

// typeRows are literal rows for typesTable (without id): limits, NULLs, odd bytes.
var typeRows = []string{
	// minimum values
	`-128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
	 '-99999999999999999999999999999999999.999999999999999999999999999999', -3.4028234e38, -1.7976931348623157e308, b'0', b'0',
	 '1000-01-01', '-838:59:59.000000', '1000-01-01 00:00:00.000000', '1970-01-01 00:00:01.000000', 1901,
	 '', '', '', 'a', 'a', x'0000000000000000', x'', x'', x'', 'a', '', '[]'`,
	// maximum values
	`127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807, 18446744073709551615,
	 '99999999999999999999999999999999999.999999999999999999999999999999', 3.4028234e38, 1.7976931348623157e308, b'1', b'1111111111111111111111111111111111111111111111111111111111111111',
	 '9999-12-31', '838:59:59.000000', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', 2155,
	 'zzzz', 'text', 'Ã©Ã¨', 'Z', 'Z', x'FFFFFFFFFFFFFFFF', x'FF', x'FF', x'FF', 'c', 'x,y,z', '{"a": 1.0, "b": [1, 2.50, -0.0], "c": "x\\"y"}'`,
	// every nullable column NULL
	`NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL`,
	// text in many scripts, emoji, latin1 bytes, case, binary with trailing zeros, all 256 byte values
	`1, 1, 1, 1, 1, 1, 1, 1, 1, 1, '0.000000000000000000000000000001', 0.1, 0.30000000000000004, b'1', b'1000000000000000000000000000000000000000000000000000000000000001',
	 '2024-02-29', '-00:00:00.000001', '2024-02-29 12:34:56.123456', '2024-02-29 12:34:56.654321', 2024,
	 'héllo wörld 🚀🎉 日本語 👩‍👩‍👧', 'Ω≈ç√∫ 😀', _latin1 x'E9E8FCFF', 'MiXeD', 'MiXeD', x'4142000000000000', x'00010200', %s, %s, 'b', 'y', '{"n": 1.0, "big": 12345678901234567890, "s": "日本"}'`,
	`-1, 1, -1, 1, -1, 1, -1, 1, -1, 1, '-0.5', 1.17549435e-38, 2.2250738585072014e-308, b'0', b'0111111111111111111111111111111111111111111111111111111111111111',
	 '0000-00-00', '00:00:00', '0000-00-00 00:00:00', NULL, 0,
	 ' trailing space ', '  ', ' ', 'a ', 'A', x'00', x'0000', x'00', x'', 'a', 'x,z', '{}'`,
}

func allBytes() string {
	var b strings.Builder
	b.WriteString("x'")
	for i := 0; i < 256; i++ {
		fmt.Fprintf(&b, "%02X", i)
	}
	b.WriteString("'")
	return b.String()
}

// createSchema creates the test tables in database db on s, with n rows in big.
func createSchema(t testing.TB, s *sandbox.Server, db string, bigRows int) {
	t.Helper()
	ctx := context.Background()
	must(t, s.Exec(ctx,
		"DROP DATABASE IF EXISTS "+db,
		"CREATE DATABASE "+db,
		fmt.Sprintf(typesTable, db),
		"CREATE TABLE "+db+".composite (a INT NOT NULL, b VARCHAR(20) COLLATE utf8mb4_general_ci NOT NULL, c BIGINT, tenant INT NOT NULL, payload VARCHAR(64), PRIMARY KEY (a, b)) ENGINE=InnoDB",
		"CREATE TABLE "+db+".strkey (k VARCHAR(40) COLLATE utf8mb4_unicode_ci NOT NULL PRIMARY KEY, v INT, tenant INT NOT NULL, u INT, UNIQUE KEY (u)) ENGINE=InnoDB",
		"CREATE TABLE "+db+".big (id BIGINT NOT NULL PRIMARY KEY, u INT NOT NULL, tenant INT NOT NULL, payload VARCHAR(100), amount DECIMAL(12,2), UNIQUE KEY (u)) ENGINE=InnoDB",
	))
	if s == target {
		return
	}
	var stmts []string
	for i, r := range typeRows {
		if strings.Contains(r, "%s") {
			r = fmt.Sprintf(r, allBytes(), "REPEAT(x'00FF10', 1048576)")
		}
		stmts = append(stmts, fmt.Sprintf("INSERT INTO %s.types (%s) VALUES (%d, %s)", db, typeColumns, i+1, r))
	}
	// Session without strict mode for the zero date row.
	stmts = append([]string{"SET SESSION sql_mode = ''"}, stmts...)
	must(t, s.Exec(ctx, strings.Join(stmts, ";\n")))

	rng := rand.New(rand.NewSource(1))
	var vals []string
	for a := -50; a < 50; a++ {
		for b := 0; b < 40; b++ {
			vals = append(vals, fmt.Sprintf("(%d, '%s', %d, %d, 'p%d')", a, keyWord(rng, b), rng.Int63(), a&3, rng.Intn(1000)))
		}
	}
	must(t, s.Exec(ctx, "INSERT IGNORE INTO "+db+".composite VALUES "+strings.Join(vals, ",")))
	vals = vals[:0]
	for i := 0; i < 3000; i++ {
		vals = append(vals, fmt.Sprintf("('%s-%d', %d, %d, %d)", keyWord(rng, i), i, i, i&3, i))
	}
	must(t, s.Exec(ctx, "INSERT IGNORE INTO "+db+".strkey VALUES "+strings.Join(vals, ",")))
	for start := 0; start < bigRows; start += 5000 {
		vals = vals[:0]
		for i := start; i < start+5000 && i < bigRows; i++ {
			id := i - bigRows/10 // negative, zero and positive keys
			vals = append(vals, fmt.Sprintf("(%d, %d, %d, 'payload %d ✓', %d.%02d)", id, i, i&3, rng.Intn(1e6), rng.Intn(1e6), rng.Intn(100)))
		}
		must(t, s.Exec(ctx, "INSERT INTO "+db+".big VALUES "+strings.Join(vals, ",")))
	}
}

var words = []string{"alpha", "Beta", "gamma", "DELTA", "épée", "Zürich", "日本", "émoji😀", "a", "B", "ß", "Ω"}

func keyWord(rng *rand.Rand, i int) string {
	return fmt.Sprintf("%s%d", words[rng.Intn(len(words))], i)
}

func count(t testing.TB, s *sandbox.Server, q string) int {
	t.Helper()
	db, err := s.DB("")
	must(t, err)
	defer db.Close()
	var n sql.NullInt64
	must(t, db.QueryRow(q).Scan(&n))
	return int(n.Int64)
}

func fmtInt(n int64) string { return fmt.Sprint(n) }
