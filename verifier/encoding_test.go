package verifier_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/verifier"
)

// TestChecksumSeesWhatWeakerEncodingsMiss: pairs of rows that a cheaper chunk checksum would take
// for equal — a separator inside a value (CONCAT_WS), NULL skipped or spelled like a value, a value
// moved to the next column, the CRC family's linearity (under a XOR of the rows, the same change in
// two rows or values swapped between two rows cancel out), a long value against the hash it is
// replaced by. Each table is one chunk, so the difference is found by the chunk checksum or not at
// all, and the drill-down must then name exactly the rows and columns that differ. The Differ hashes
// each row's same encoding and must see the same rows.
func TestChecksumSeesWhatWeakerEncodingsMiss(t *testing.T) {
	long := strings.Repeat("0123456789", 200) // 2000 bytes: past the cap, enters as its SHA-1
	cases := []struct {
		name     string
		src, tgt string // VALUES rows of (id, a, b, n, lt, g)
		want     []verifier.RowDiff
	}{
		{name: "separator inside a value",
			src:  "(1, 'a#b', 'c', 1, NULL, NULL)",
			tgt:  "(1, 'a', 'b#c', 1, NULL, NULL)",
			want: []verifier.RowDiff{diff(key("1"), "a", "b")}},
		{name: "comma inside a value",
			src:  "(1, 'a,b', 'c', 1, NULL, NULL)",
			tgt:  "(1, 'a', 'b,c', 1, NULL, NULL)",
			want: []verifier.RowDiff{diff(key("1"), "a", "b")}},
		{name: "NULL vs the string NULL",
			src:  "(1, NULL, 'x', 1, NULL, NULL)",
			tgt:  "(1, 'NULL', 'x', 1, NULL, NULL)",
			want: []verifier.RowDiff{diff(key("1"), "a")}},
		{name: "NULL vs the empty string",
			src:  "(1, NULL, 'x', 1, NULL, NULL)",
			tgt:  "(1, '', 'x', 1, NULL, NULL)",
			want: []verifier.RowDiff{diff(key("1"), "a")}},
		{name: "NULL vs 0",
			src:  "(1, 'x', 'y', NULL, NULL, NULL)",
			tgt:  "(1, 'x', 'y', 0, NULL, NULL)",
			want: []verifier.RowDiff{diff(key("1"), "n")}},
		{name: "NULL moved to the next column",
			src:  "(1, NULL, 'x', 1, NULL, NULL)",
			tgt:  "(1, 'x', NULL, 1, NULL, NULL)",
			want: []verifier.RowDiff{diff(key("1"), "a", "b")}},
		{name: "empty string and NULL swapped",
			src:  "(1, '', NULL, 1, NULL, NULL)",
			tgt:  "(1, NULL, '', 1, NULL, NULL)",
			want: []verifier.RowDiff{diff(key("1"), "a", "b")}},
		{name: "values swapped between columns",
			src:  "(1, 'x', 'y', 1, NULL, NULL)",
			tgt:  "(1, 'y', 'x', 1, NULL, NULL)",
			want: []verifier.RowDiff{diff(key("1"), "a", "b")}},
		{name: "values swapped between rows",
			src:  "(1, 'aa', 'z', 7, NULL, NULL), (2, 'bb', 'z', 7, NULL, NULL), (3, 'cc', 'z', 7, NULL, NULL)",
			tgt:  "(1, 'bb', 'z', 7, NULL, NULL), (2, 'aa', 'z', 7, NULL, NULL), (3, 'cc', 'z', 7, NULL, NULL)",
			want: []verifier.RowDiff{diff(key("1"), "a"), diff(key("2"), "a")}},
		{name: "the same change in two rows",
			src:  "(1, 'name', 'z', 7, NULL, NULL), (2, 'name', 'z', 7, NULL, NULL), (3, 'name', 'z', 7, NULL, NULL)",
			tgt:  "(1, 'NAME', 'z', 7, NULL, NULL), (2, 'NAME', 'z', 7, NULL, NULL), (3, 'name', 'z', 7, NULL, NULL)",
			want: []verifier.RowDiff{diff(key("1"), "a"), diff(key("2"), "a")}},
		{name: "trailing space in a PAD SPACE collation",
			src:  "(1, 'x', 'y', 1, NULL, NULL)",
			tgt:  "(1, 'x ', 'y', 1, NULL, NULL)",
			want: []verifier.RowDiff{diff(key("1"), "a")}},
		{name: "long value changed in its last byte",
			src:  fmt.Sprintf("(1, 'x', 'y', 1, '%s', NULL)", long),
			tgt:  fmt.Sprintf("(1, 'x', 'y', 1, '%s', NULL)", long[:len(long)-1]+"X"),
			want: []verifier.RowDiff{diff(key("1"), "lt")}},
		{name: "long value vs the hash it enters as",
			src:  fmt.Sprintf("(1, 'x', 'y', 1, '%s', NULL)", long),
			tgt:  fmt.Sprintf("(1, 'x', 'y', 1, SHA1('%s'), NULL)", long),
			want: []verifier.RowDiff{diff(key("1"), "lt")}},
		{name: "geometry",
			src:  "(1, 'x', 'y', 1, NULL, ST_GeomFromText('POINT(1 2)')), (2, 'x', 'y', 1, NULL, ST_GeomFromText('LINESTRING(0 0, 1 1)'))",
			tgt:  "(1, 'x', 'y', 1, NULL, ST_GeomFromText('POINT(1 3)')), (2, 'x', 'y', 1, NULL, ST_GeomFromText('LINESTRING(0 0, 1 1)'))",
			want: []verifier.RowDiff{diff(key("1"), "g")}},
	}
	ctx := context.Background()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := newDatabase(t)
			q := schema.QuoteIdent(db)
			execBoth(t, fmt.Sprintf(`CREATE TABLE %s.enc (
				id INT NOT NULL PRIMARY KEY,
				a VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NULL,
				b VARCHAR(20) NULL,
				n INT NULL,
				lt TEXT NULL,
				g GEOMETRY NULL)`, q))
			execOn(t, srcDB, "INSERT INTO "+q+".enc VALUES "+tc.src)
			execOn(t, tgtDB, "INSERT INTO "+q+".enc VALUES "+tc.tgt)
			pair := verifier.TablePair{Source: load(t, db, "enc")}
			for _, v := range []struct {
				name string
				v    verifier.Verifier
			}{
				{"checksum", &verifier.Checksum{Source: srcDB, Target: tgtDB}},
				{"incremental", &verifier.Incremental{Checksum: &verifier.Checksum{Source: srcDB, Target: tgtDB}}},
				{"rowdiff", &verifier.Differ{Source: srcDB, Target: tgtDB}},
			} {
				t.Run(v.name, func(t *testing.T) {
					res, err := v.v.Verify(ctx, verifier.DuringCutover, []verifier.TablePair{pair})
					if err != nil {
						t.Fatal(err)
					}
					checkTable(t, res.Tables[0], nil, nil, tc.want)
				})
			}
		})
	}
}
