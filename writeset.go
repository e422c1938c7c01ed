package ferry

import (
	"bytes"
	"encoding/binary"
	"hash/fnv"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/ferrykit/ferry/schema"
)

// The writeset of a source transaction, for the parallel apply (apply.Parallel).
//
// Two transactions may be applied in either order, or at once, when no row of the target can be
// touched by both. A change is applied as REPLACE of the after-image (which deletes every row that
// has the same value in the primary key or in any unique key) or DELETE by key, so the rows a
// change touches are exactly those holding one of its images' unique values: the primary key and
// every unique secondary key, of the before-image and of the after-image, on the source and on
// the target table (the target may have unique keys the source does not). The writeset is the
// 64-bit hashes of those values, per table and index; a hash collision only makes two
// transactions wait for each other. A key value with a NULL identifies nothing (unique indexes
// allow many NULLs) and is left out.
//
// Values are compared as the index compares them, conservatively: a value is hashed in a form in
// which any two values the index could consider equal are identical, so the writeset can
// over-detect a conflict, never miss one.
//   - Integers, temporal and decimal values come from the binlog in one canonical form per column
//     type; floats are compared by value (-0 = 0).
//   - Binary strings (binary charset) compare byte for byte.
//   - _bin collations compare by code point, trailing spaces ignored (PAD SPACE; trimming them for a
//     NO PAD collation only over-detects).
//   - The general and root-UCA collations (case-, accent-insensitive; see untailored) are described
//     only for strings of printable ASCII in an ASCII-compatible charset: lower-cased, trailing
//     spaces trimmed. A string with any other byte (é = e, ß = ss, ignorable control characters)
//     cannot be described without the collation's tables: the transaction is applied as a barrier,
//     alone and in its place. Language tailorings describe nothing (lithuanian_ci: 'i' = 'y').
//
// A table whose unique keys a writeset cannot describe — a unique key on a prefix of a column, on a
// generated column, on a column the source does not have, or in a tailored collation — has all its
// changes applied as
// barriers, as has a table with foreign-key cascades applied by ferry (the cascade writes rows of
// other tables).

// writeset describes how to hash the unique values of one table's row images.
type writeset struct {
	// serial says why every change of the table is a barrier ("" when it is not).
	serial string
	keys   []writesetKey
}

type writesetKey struct {
	name string // table and index, the hash's prefix
	cols []writesetCol
}

type writesetCol struct {
	ordinal int // in the source row image
	mode    collationMode
}

// collationMode is how a string value of a column is compared, weakest last.
type collationMode int

const (
	exactBytes   collationMode = iota // binary strings
	binCollation                      // _bin: code points, trailing spaces ignored
	foldASCII                         // an untailored collation: printable ASCII folded, anything else a barrier
	opaque                            // a language tailoring: no value is described (the table is serial)
)

// untailored matches the collations whose equality on printable ASCII is case folding and PAD
// SPACE, nothing more: the general and root-UCA collations. Language tailorings are not (in
// lithuanian_ci 'i' = 'y', in roman_ci 'u' = 'v', and contractions can equate strings of different
// lengths), nor are collations TestWritesetFoldIsCoarserThanTheCollations cannot check on the
// test server.
var untailored = regexp.MustCompile(`^(ascii|latin1|utf8|utf8mb3|utf8mb4)_(general_ci|general_cs|general_nopad_ci|general_mysql500_ci|swedish_ci|unicode_ci|unicode_nopad_ci|unicode_520_ci|unicode_520_nopad_ci)$`)

func modeOf(c *schema.Column) collationMode {
	coll := strings.ToLower(c.Collation)
	switch {
	case coll == "" || strings.EqualFold(c.Charset, "binary"):
		return exactBytes
	case strings.HasSuffix(coll, "_bin"):
		return binCollation
	case untailored.MatchString(coll):
		return foldASCII
	}
	return opaque
}

// asciiCompatible charsets store printable ASCII as the same single bytes.
func asciiCompatible(charset string) bool {
	switch strings.ToLower(charset) {
	case "ascii", "latin1", "utf8", "utf8mb3", "utf8mb4":
		return true
	}
	return false
}

// buildWriteset describes the table's unique keys for writesets (once: TableCopy.writeset).
func (t *TableCopy) buildWriteset() *writeset {
	w := &writeset{}
	if len(t.cascades) > 0 {
		w.serial = "foreign-key cascades applied by ferry write other tables"
		return w
	}
	add := func(side string, tbl *schema.Table) {
		if tbl == nil || w.serial != "" {
			return
		}
		for name, cols := range tbl.UniqueKeys {
			if tbl.PrefixKeys[name] {
				w.serial = "unique key " + name + " indexes a column prefix"
				return
			}
			k := writesetKey{name: t.TargetName() + "\x00" + side + "\x00" + name}
			for _, cn := range cols {
				c := tbl.Column(cn)
				src := t.Source.Column(cn)
				if c == nil || src == nil || c.Generated || src.Generated {
					w.serial = "unique key " + name + " has a generated or unmatched column " + cn
					return
				}
				m := max(modeOf(c), modeOf(src))
				if m != exactBytes && (c.Charset != src.Charset || c.Collation != src.Collation) {
					m = max(m, foldASCII) // compared in a different collation on the target
				}
				if m == opaque || m == foldASCII && !(asciiCompatible(src.Charset) && asciiCompatible(c.Charset)) {
					w.serial = "unique key " + name + " compares column " + cn + " in collation " + c.Collation + ", which writesets do not describe"
					return
				}
				k.cols = append(k.cols, writesetCol{ordinal: src.Ordinal, mode: m})
			}
			w.keys = append(w.keys, k)
		}
	}
	add("s", t.Source)
	add("t", t.target)
	return w
}

// hashRow appends the hashes of row's unique values to out; ok is false when a value cannot be
// described (the transaction must be a barrier).
func (w *writeset) hashRow(out []uint64, row []any) ([]uint64, bool) {
	if row == nil {
		return out, true
	}
	var buf []byte
	for _, k := range w.keys {
		buf = append(buf[:0], k.name...)
		null := false
		for _, c := range k.cols {
			if c.ordinal >= len(row) {
				return out, false
			}
			v := row[c.ordinal]
			if v == nil {
				null = true
				break
			}
			var ok bool
			before := len(buf)
			buf = append(buf, 0, 0, 0, 0)
			if buf, ok = appendNormalized(buf, v, c.mode); !ok {
				return out, false
			}
			binary.LittleEndian.PutUint32(buf[before:], uint32(len(buf)-before-4))
		}
		if null {
			continue
		}
		h := fnv.New64a()
		h.Write(buf)
		out = append(out, h.Sum64())
	}
	return out, true
}

// appendNormalized appends v in a form equal for every two values the column's index could
// consider equal (see the comment at the top).
func appendNormalized(buf []byte, v any, mode collationMode) ([]byte, bool) {
	switch x := v.(type) {
	case int64:
		return strconv.AppendInt(buf, x, 10), true
	case uint64:
		return strconv.AppendUint(buf, x, 10), true
	case float64:
		if x == 0 {
			x = 0 // -0
		}
		return binary.LittleEndian.AppendUint64(buf, math.Float64bits(x)), true
	case float32:
		return appendNormalized(buf, float64(x), mode)
	case string:
		return appendNormalized(buf, []byte(x), mode)
	case []byte:
		switch mode {
		case exactBytes:
			return append(buf, x...), true
		case binCollation:
			return append(buf, bytes.TrimRight(x, " ")...), true
		}
		x = bytes.TrimRight(x, " ")
		for _, c := range x {
			if c < 0x20 || c > 0x7e {
				return buf, false
			}
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			buf = append(buf, c)
		}
		return buf, true
	}
	return buf, false
}

// writeset is how the parallel apply hashes this table's unique values.
func (t *TableCopy) writeset() *writeset {
	t.writesetOnce.Do(func() { t.ws = t.buildWriteset() })
	return t.ws
}
