package verifier

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ferrykit/ferry/schema"
)

// This file holds what every verifier shares: the session pinning, the per-table plan (which
// columns are compared and how each is hashed), key handling and the SQL condition builders.

// ---- sessions ----

// session is one connection taken from a caller's pool with the settings the verifiers rely on:
// time_zone '+00:00' (TIMESTAMP values read the same on both servers) and character_set_results
// binary (values arrive as the bytes the server stores, never converted). The caller's settings are
// restored when the session is released; a connection that cannot be restored is discarded, so the
// caller's pool never sees a changed session.
type session struct {
	conn   *sql.Conn
	tz, cs sql.NullString
	stats  *sideStats
	// maxPacket is the session's max_allowed_packet: the server makes NULL any string function
	// result longer than it (CONCAT, CONCAT_WS), which would drop a row out of its hash.
	maxPacket int64
}

func pin(ctx context.Context, db *sql.DB, st *sideStats) (*session, error) {
	if db == nil {
		return nil, errors.New("verifier: Source and Target must be set")
	}
	c, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("verifier: connect: %w", err)
	}
	s := &session{conn: c, stats: st}
	if err := c.QueryRowContext(ctx, "SELECT @@session.time_zone, @@session.character_set_results, @@session.max_allowed_packet").Scan(&s.tz, &s.cs, &s.maxPacket); err != nil {
		c.Close()
		return nil, fmt.Errorf("verifier: read session settings: %w", err)
	}
	if _, err := c.ExecContext(ctx, "SET SESSION time_zone = '+00:00', character_set_results = binary"); err != nil {
		s.discard()
		return nil, fmt.Errorf("verifier: pin session settings: %w", err)
	}
	return s, nil
}

// release restores the session settings and returns the connection to its pool.
func (s *session) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cs := "NULL"
	if s.cs.Valid {
		cs = schema.QuoteString(s.cs.String)
	}
	// Literals, not placeholders: SET must work over the text and the binary protocol alike.
	if _, err := s.conn.ExecContext(ctx, "SET SESSION time_zone = "+schema.QuoteString(s.tz.String)+", character_set_results = "+cs); err != nil {
		s.discard()
		return
	}
	s.conn.Close()
}

// discard closes the underlying connection instead of returning it to the pool.
func (s *session) discard() {
	s.conn.Raw(func(any) error { return driver.ErrBadConn })
	s.conn.Close()
}

// poolLimit is the pool's maximum number of open connections, 0 for no limit.
func poolLimit(db *sql.DB) int {
	if db == nil {
		return 0
	}
	return db.Stats().MaxOpenConnections
}

func (s *session) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if s.stats != nil {
		s.stats.queries.Add(1)
	}
	return s.conn.QueryContext(ctx, q, args...)
}

// ---- key columns ----

type keyKind int

const (
	kInt keyKind = iota // every integer type and YEAR
	kDecimal
	kFloat // FLOAT and DOUBLE
	kDate
	kDatetime // DATETIME and TIMESTAMP
	kTime
	kString // character types: compared through their collation
	kBinary // binary types: compared byte by byte
	kBit
)

// keyCol describes how one key column is read and how a value of it is sent back as a bound.
//
// A key value travels as its canonical bytes: the stored bytes for string and binary columns, the
// server's text for numbers and temporal values (the text protocol's form, which is what the copy
// reads), decimal text for BIT. Bounds are rebuilt from those bytes with an explicit type so the
// server compares them the way it orders the index: strings are sent as hex and cast to the column's
// charset and collation (a `_binary` literal would compare byte-wise, not by collation), integers as
// integers (a string would be compared as a double and lose precision above 2^53), decimals cast to
// the column's DECIMAL(M,D).
type keyCol struct {
	col  *schema.Column
	name string // quoted
	kind keyKind
	sel  string // select expression giving the canonical bytes
	ph   string // placeholder expression with one '?'
}

var decimalRE = regexp.MustCompile(`(?i)^decimal\((\d+),(\d+)\)`)

func newKeyCol(c *schema.Column) (keyCol, error) {
	q := schema.QuoteIdent(c.Name)
	k := keyCol{col: c, name: q, sel: q, ph: "?"}
	switch c.DataType {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year":
		k.kind = kInt
	case "decimal", "numeric":
		k.kind = kDecimal
		m := decimalRE.FindStringSubmatch(c.ColumnType)
		if m == nil {
			return k, fmt.Errorf("key column %s: cannot read precision of %q", c.Name, c.ColumnType)
		}
		k.ph = "CAST(? AS DECIMAL(" + m[1] + "," + m[2] + "))"
	case "float", "double", "real":
		k.kind = kFloat
		k.sel = "CAST(" + q + " AS DOUBLE)"
		k.ph = "CAST(? AS DOUBLE)"
	case "date":
		k.kind = kDate
		k.sel = "CAST(" + q + " AS CHAR)"
		k.ph = "CAST(? AS DATE)"
	case "datetime", "timestamp":
		k.kind = kDatetime
		k.sel = "CAST(" + q + " AS CHAR)"
		k.ph = "CAST(? AS DATETIME(6))"
	case "time":
		k.kind = kTime
		k.sel = "CAST(" + q + " AS CHAR)"
		k.ph = "CAST(? AS TIME(6))"
	case "char", "varchar", "tinytext", "text", "mediumtext", "longtext":
		if c.Charset == "" || c.Collation == "" {
			return k, fmt.Errorf("key column %s: no charset/collation known", c.Name)
		}
		k.kind = kString
		k.ph = "CAST(UNHEX(?) AS CHAR CHARACTER SET " + c.Charset + ") COLLATE " + c.Collation
	case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob":
		k.kind = kBinary
		k.ph = "UNHEX(?)"
	case "bit":
		k.kind = kBit
		k.sel = "CAST(" + q + " AS UNSIGNED)"
	default:
		return k, fmt.Errorf("key column %s: type %s is not supported as a verification key", c.Name, c.ColumnType)
	}
	return k, nil
}

// compatible reports why a target key column cannot be paged in the same order as the source's.
func (k keyCol) compatible(t *schema.Column) error {
	tk, err := newKeyCol(t)
	if err != nil {
		return err
	}
	if tk.kind != k.kind {
		return fmt.Errorf("key column %s is %s on the source and %s on the target", k.col.Name, k.col.ColumnType, t.ColumnType)
	}
	switch k.kind {
	case kString:
		if !strings.EqualFold(k.col.Collation, t.Collation) {
			return fmt.Errorf("key column %s has collation %s on the source and %s on the target: the servers would order keys differently", k.col.Name, k.col.Collation, t.Collation)
		}
	case kBinary, kDate, kDatetime, kTime:
		if k.col.DataType != t.DataType {
			return fmt.Errorf("key column %s is %s on the source and %s on the target", k.col.Name, k.col.ColumnType, t.ColumnType)
		}
	}
	return nil
}

// arg turns canonical key bytes into the argument of k.ph.
func (k keyCol) arg(v []byte) (any, error) {
	switch k.kind {
	case kInt, kBit:
		s := string(v)
		if strings.HasPrefix(s, "-") {
			return strconv.ParseInt(s, 10, 64)
		}
		return strconv.ParseUint(s, 10, 64)
	case kString, kBinary:
		return hex.EncodeToString(v), nil
	default:
		return string(v), nil
	}
}

// display renders canonical key bytes for a report: text as text, binary values hex-escaped.
func (k keyCol) display(v []byte) string {
	switch k.kind {
	case kBinary:
		return "0x" + strings.ToUpper(hex.EncodeToString(v))
	case kString:
		cs := strings.ToLower(k.col.Charset)
		var s string
		switch {
		case strings.HasPrefix(cs, "utf8") || cs == "ascii":
			if !utf8.Valid(v) {
				return "0x" + strings.ToUpper(hex.EncodeToString(v))
			}
			s = string(v)
		case cs == "latin1":
			r := make([]rune, len(v))
			for i, b := range v {
				r[i] = rune(b)
			}
			s = string(r)
		default:
			return "0x" + strings.ToUpper(hex.EncodeToString(v))
		}
		for _, r := range s {
			if !unicode.IsPrint(r) {
				return "0x" + strings.ToUpper(hex.EncodeToString(v))
			}
		}
		return s
	}
	return string(v)
}

// canonical turns a key value as a copy or binlog reader hands it over into canonical key bytes.
func (k keyCol) canonical(v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return nil, fmt.Errorf("key column %s is NULL", k.col.Name)
	case []byte:
		if k.kind == kBit {
			if len(x) > 8 {
				return nil, fmt.Errorf("key column %s: BIT value of %d bytes", k.col.Name, len(x))
			}
			var b [8]byte
			copy(b[8-len(x):], x)
			return strconv.AppendUint(nil, binary.BigEndian.Uint64(b[:]), 10), nil
		}
		if k.col.IsBinaryFixed() && int64(len(x)) < k.col.OctetLength {
			// BINARY(N) values lose their trailing zero bytes in the binlog.
			out := make([]byte, k.col.OctetLength)
			copy(out, x)
			return out, nil
		}
		return append([]byte(nil), x...), nil
	case string:
		return k.canonical([]byte(x))
	case int64:
		return strconv.AppendInt(nil, x, 10), nil
	case int:
		return strconv.AppendInt(nil, int64(x), 10), nil
	case int32:
		return strconv.AppendInt(nil, int64(x), 10), nil
	case int16:
		return strconv.AppendInt(nil, int64(x), 10), nil
	case int8:
		return strconv.AppendInt(nil, int64(x), 10), nil
	case uint64:
		return strconv.AppendUint(nil, x, 10), nil
	case uint:
		return strconv.AppendUint(nil, uint64(x), 10), nil
	case uint32:
		return strconv.AppendUint(nil, uint64(x), 10), nil
	case uint16:
		return strconv.AppendUint(nil, uint64(x), 10), nil
	case uint8:
		return strconv.AppendUint(nil, uint64(x), 10), nil
	case float64:
		return strconv.AppendFloat(nil, x, 'g', -1, 64), nil
	case float32:
		return strconv.AppendFloat(nil, float64(x), 'g', -1, 64), nil
	case time.Time:
		return []byte(x.UTC().Format("2006-01-02 15:04:05.000000")), nil
	case fmt.Stringer:
		return []byte(x.String()), nil
	}
	return nil, fmt.Errorf("key column %s: unsupported value type %T", k.col.Name, v)
}

// canonicalKey turns a key as a binlog reader hands it over (one value per key column, in key
// order) into canonical key bytes.
func canonicalKey(cols []keyCol, vals []any) (keyVal, error) {
	if len(vals) != len(cols) {
		return nil, fmt.Errorf("changed key has %d values, want %d", len(vals), len(cols))
	}
	k := make(keyVal, len(vals))
	for i, kc := range cols {
		b, err := kc.canonical(vals[i])
		if err != nil {
			return nil, err
		}
		k[i] = b
	}
	return k, nil
}

// keyVal is a key as canonical bytes, one element per key column.
type keyVal [][]byte

// id is an unambiguous map key for a keyVal (length-prefixed parts).
func (k keyVal) id() string {
	n := 0
	for _, p := range k {
		n += len(p) + binary.MaxVarintLen64
	}
	b := make([]byte, 0, n)
	for _, p := range k {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return string(b)
}

// ---- plans ----

// sidePlan is the SQL of one side of a table pair.
type sidePlan struct {
	table  string   // quoted db.table
	index  string   // FORCE INDEX clause
	where  string   // filter condition (without parentheses) or ""
	tokens []string // per compared column: its token (see tokenSQL)
	// compact is the row's encoding for the chunk checksum (see compactRowSQL).
	compact string
	// maxEncoded bounds the length in bytes of any string the side's hashes build from one row
	// (the compact encoding, the concatenated tokens); see encodedBound.
	maxEncoded int64
}

// fitsPacket refuses a side whose row encoding could exceed the session's max_allowed_packet. The
// server does not fail such a CONCAT: it returns NULL with a warning, the row's hash is NULL, and
// BIT_XOR and the row comparison skip it — a difference in that row would go unseen and the
// verifier would report a match. The bound comes from the schema, so the refusal is decided before
// any row is read, the same way for every chunk.
func (sp *sidePlan) fitsPacket(s *session) error {
	if s.maxPacket <= 0 || sp.maxEncoded <= s.maxPacket {
		return nil
	}
	return fmt.Errorf("verifier: %s: a row's encoding for its hash can reach %d bytes, over this server's max_allowed_packet (%d), beyond which the server makes the hash NULL and the row would drop out of the comparison; raise max_allowed_packet to at least %d on both servers, or list the widest columns in IgnoreColumns",
		sp.table, sp.maxEncoded, s.maxPacket, sp.maxEncoded)
}

// plan is the comparison of one table pair: the key, the compared columns and both sides' SQL.
type plan struct {
	pair  TablePair
	src   *schema.Table
	tgt   *schema.Table
	key   []keyCol
	names []string // compared column names (source spelling)
	s, t  sidePlan
}

// shortColumn reports a type whose values are short: numbers, temporal values, CHAR/VARCHAR,
// BINARY/VARBINARY, ENUM, SET. InnoDB caps such columns at 64 KiB per row in total, so they can enter
// a row's hash as their own bytes; other types (BLOB, TEXT, JSON, spatial) may be long and are hashed
// one by one, so no concatenation ever nears max_allowed_packet (which would make it NULL).
func shortColumn(c *schema.Column) bool {
	switch c.DataType {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint", "decimal", "numeric",
		"float", "double", "real", "bit", "date", "time", "datetime", "timestamp", "year",
		"char", "varchar", "binary", "varbinary", "enum", "set":
		return true
	}
	return false
}

// tokenSQL wraps a value expression into its token: 'N' for NULL; otherwise the value's length, ':'
// and its bytes (short types) or the 32 hex digits of its MD5 (long types). Tokens are prefix-free
// (a length is digits, never 'N'; an MD5 is 32 hex digits), so a row's concatenated tokens identify
// its values, NULL and the empty string differ, and a value cannot shift into the next column.
func tokenSQL(e string, short bool) string {
	if short {
		return "IFNULL(CONCAT(LENGTH(" + e + "),':'," + e + "),'N')"
	}
	return "IFNULL(MD5(" + e + "),'N')"
}

// columnValue is the value expression of a compared column on one side, as every encoding reads it.
// Character values are taken as their stored bytes (CAST AS BINARY: 'a' and 'A', 'a' and 'a ' differ
// whatever the collation); when the two sides store a column in different charsets both are
// converted to utf8mb4 first, so a latin1 → utf8mb4 conversion by the copy compares equal. FLOAT is
// widened to DOUBLE (whose text round-trips exactly), BIT compared by value, everything else by the
// server's text (TIMESTAMP in UTC). length is an expression of the same byte length (the bare
// column where the value is only its bytes reinterpreted, which the server measures without a copy).
func columnValue(c, other *schema.Column) (value, length string) {
	q := schema.QuoteIdent(c.Name)
	switch {
	case c.Charset != "":
		if other != nil && other.Charset != "" && !strings.EqualFold(c.Charset, other.Charset) {
			e := "CAST(CONVERT(" + q + " USING utf8mb4) AS BINARY)"
			return e, "LENGTH(" + e + ")"
		}
		return "CAST(" + q + " AS BINARY)", "LENGTH(" + q + ")"
	case c.DataType == "float" || other != nil && other.DataType == "float":
		e := "CAST(" + q + " AS DOUBLE)"
		return e, "LENGTH(" + e + ")"
	case c.DataType == "bit":
		e := "CAST(" + q + " AS UNSIGNED)"
		return e, "LENGTH(" + e + ")"
	}
	return q, "LENGTH(" + q + ")"
}

// columnToken is the token of a compared column on one side (see columnValue and tokenSQL). Both
// sides use the same form (a long type on either side makes both hashed).
func columnToken(c, other *schema.Column) string {
	e, _ := columnValue(c, other)
	return tokenSQL(e, shortColumn(c) && (other == nil || shortColumn(other)))
}

// rowHash is the MD5 of a row's column tokens: what the inline verifier's fingerprints are compared
// with.
func rowHash(tokens []string) string {
	if len(tokens) == 0 {
		return "MD5('')"
	}
	return "MD5(CONCAT(" + strings.Join(tokens, ",") + "))"
}

// numericText reports a type whose text is made of digits, signs, '.', 'e', ':', '-' and ' ' only
// (never '#'): numbers, BIT (compared as a number) and temporal values.
func numericText(c *schema.Column) bool {
	switch c.DataType {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint", "decimal", "numeric",
		"float", "double", "real", "bit", "date", "time", "datetime", "timestamp", "year":
		return true
	}
	return false
}

// longValueCap is the length above which a long value (see shortColumn) enters the chunk encoding as
// the 40 hex digits of its SHA-1 instead of its bytes: the encoding of a row stays far below
// max_allowed_packet (beyond it the server would make it NULL), and short BLOB, TEXT and JSON values,
// the common case, are not hashed twice.
const longValueCap = 1024

// encodedColumn is how one compared column enters a side's compact row encoding.
type encodedColumn struct {
	value, length string
	isNull        string
	nullable      bool  // NULL on either side: the row's NULL markers include the column
	lengthed      bool  // not numericText on either side: the row's lengths include the column
	capped        bool  // long on either side: values over longValueCap enter as their SHA-1
	maxBytes      int64 // the most bytes the value can take in the encoding
}

func encodeColumn(c, other *schema.Column) encodedColumn {
	v, l := columnValue(c, other)
	ec := encodedColumn{value: v, length: l, isNull: "ISNULL(" + schema.QuoteIdent(c.Name) + ")", nullable: c.Nullable || other.Nullable,
		lengthed: !numericText(c) || !numericText(other), capped: !shortColumn(c) || !shortColumn(other)}
	if ec.capped {
		ec.value = "IF(" + l + " > " + strconv.Itoa(longValueCap) + ", SHA1(" + v + "), " + v + ")"
	}
	ec.maxBytes = valueBound(c, other, ec.capped)
	return ec
}

// valueBound is the most bytes a column's value expression (columnValue) can produce: a capped
// value at most longValueCap; a character or binary value its octet length (times 4 when it is
// converted to utf8mb4, which no character of any charset exceeds); anything else (numbers,
// temporal values, BIT as a number) at most 100 characters, above DECIMAL(65,30)'s 67.
func valueBound(c, other *schema.Column, capped bool) int64 {
	switch {
	case capped:
		return longValueCap
	case c.Charset != "" && other != nil && other.Charset != "" && !strings.EqualFold(c.Charset, other.Charset):
		return 4 * c.OctetLength
	case c.OctetLength > 0:
		return c.OctetLength
	}
	return 100
}

// encodedBound bounds both row encodings of a side built from cols: the compact encoding (one
// marker, a length of at most 20 digits, a comma and a separator per column, plus the values) and
// the concatenated tokens of the inline hash (a length, ':' and the value, or 32 hex digits, per
// column).
func encodedBound(cols []encodedColumn) int64 {
	var n int64
	for _, c := range cols {
		n += c.maxBytes + 1 + 20 + 1 + 1
	}
	return n + 16
}

// compactRowSQL is the chunk checksum's encoding of a row: one binary string,
//
//	NULL markers '#' lengths '#' value1 '#' value2 ...
//
// where the markers are ISNULL of each column that may be NULL ('0' or '1', in column order), the
// lengths are the byte lengths of the non-NULL values of the columns whose text may hold any byte
// (strings, binary strings, ENUM, SET, JSON, BLOB, spatial), comma-separated, and the values follow
// in column order, NULLs left out (CONCAT_WS skips them). A segment is omitted when the table has no
// column of its kind. The encoding is injective, which is what makes the chunk hash exact up to its
// collisions: reading from the left, the markers are a fixed number of '0'/'1' characters and say
// which values are absent; the lengths segment holds no '#' and gives the length of every free-form
// value; and a numeric or temporal value holds no '#', so it ends at the next separator. A long
// value over longValueCap is its SHA-1 (its recorded length says so). Thus NULL differs from the empty string and
// from 'NULL', ('a#b', 'c') from ('a', 'b#c'), and no value can move into its neighbour. It costs
// about a third of the per-column tokens (tokenSQL), which evaluate every value twice and build a
// string per column.
func compactRowSQL(cols []encodedColumn) string {
	var markers, lengths, values []string
	for _, c := range cols {
		if c.nullable {
			markers = append(markers, c.isNull)
		}
		if c.lengthed {
			lengths = append(lengths, c.length)
		}
		values = append(values, c.value)
	}
	var parts []string
	if len(markers) > 0 {
		parts = append(parts, "CONCAT("+strings.Join(markers, ",")+")")
	}
	if len(lengths) > 0 {
		parts = append(parts, "CONCAT_WS(',',"+strings.Join(lengths, ",")+")")
	}
	parts = append(parts, values...)
	if len(values) == 0 {
		return "_binary''"
	}
	// A binary separator makes the whole string binary: numbers and markers are ASCII digits
	// whatever the session's character_set_connection.
	return "CONCAT_WS(_binary'#'," + strings.Join(parts, ",") + ")"
}

// chunkRowHash is the 64-bit hash of a row the chunk checksum XORs: the first 16 hex digits of the
// SHA-1 of its compact encoding (see the Checksum type for why SHA-1).
func chunkRowHash(compact string) string {
	return "CAST(CONV(LEFT(SHA1(" + compact + "), 16), 16, 10) AS UNSIGNED)"
}

// newPlan loads the target's metadata (retried like any unit of work) and checks that the pair can
// be compared by key.
func newPlan(ctx context.Context, r retrier, target *sql.DB, p TablePair, strict bool) (*plan, error) {
	if p.Source == nil {
		return nil, errors.New("verifier: TablePair.Source is nil")
	}
	if p.TargetDatabase == "" {
		p.TargetDatabase = p.Source.Database
	}
	if p.TargetTable == "" {
		p.TargetTable = p.Source.Name
	}
	var tgt *schema.Table
	err := r.do(ctx, "load target of "+p.Source.String(), func() (err error) {
		tgt, err = schema.Load(ctx, target, p.TargetDatabase, p.TargetTable)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("verifier: target of %s: %w", p.Source, err)
	}
	return buildPlan(p, tgt, strict)
}

// newPlans is newPlan for each table pair.
func newPlans(ctx context.Context, r retrier, target *sql.DB, tables []TablePair, strict bool) ([]*plan, error) {
	plans := make([]*plan, len(tables))
	for i, p := range tables {
		pl, err := newPlan(ctx, r, target, p, strict)
		if err != nil {
			return nil, err
		}
		plans[i] = pl
	}
	return plans, nil
}

func buildPlan(p TablePair, tgt *schema.Table, strict bool) (*plan, error) {
	src := p.Source
	pl := &plan{pair: p, src: src, tgt: tgt}
	for _, c := range src.KeyColumns() {
		k, err := newKeyCol(c)
		if err != nil {
			return nil, fmt.Errorf("verifier: %s: %w", src, err)
		}
		tc := tgt.Column(c.Name)
		if tc == nil {
			return nil, fmt.Errorf("verifier: %s: key column %s does not exist on target %s", src, c.Name, tgt)
		}
		if err := k.compatible(tc); err != nil {
			return nil, fmt.Errorf("verifier: %s: %w", src, err)
		}
		pl.key = append(pl.key, k)
	}
	// The target must have a unique index on exactly the source's key columns.
	tIndex := ""
	for name, cols := range tgt.UniqueKeys {
		if len(cols) != len(pl.key) {
			continue
		}
		same := true
		for i, c := range cols {
			if !strings.EqualFold(c, pl.key[i].col.Name) {
				same = false
				break
			}
		}
		if same && (tIndex == "" || name == "PRIMARY") {
			tIndex = name
		}
	}
	if tIndex == "" {
		return nil, fmt.Errorf("verifier: %s: target %s has no unique index on the source's key (%s)", src, tgt, strings.Join(keyNames(pl.key), ", "))
	}
	ignore := map[string]bool{}
	for _, n := range p.IgnoreColumns {
		if src.Column(n) == nil {
			return nil, fmt.Errorf("verifier: %s: ignored column %s does not exist", src, n)
		}
		ignore[strings.ToLower(n)] = true
	}
	var sEnc, tEnc []encodedColumn
	for i := range src.Columns {
		c := &src.Columns[i]
		if ignore[strings.ToLower(c.Name)] {
			continue
		}
		tc := tgt.Column(c.Name)
		if tc == nil {
			return nil, fmt.Errorf("verifier: %s: column %s does not exist on target %s (add it to IgnoreColumns to leave it out)", src, c.Name, tgt)
		}
		pl.names = append(pl.names, c.Name)
		pl.s.tokens = append(pl.s.tokens, columnToken(c, tc))
		pl.t.tokens = append(pl.t.tokens, columnToken(tc, c))
		sEnc, tEnc = append(sEnc, encodeColumn(c, tc)), append(tEnc, encodeColumn(tc, c))
	}
	pl.s.compact, pl.t.compact = compactRowSQL(sEnc), compactRowSQL(tEnc)
	pl.s.maxEncoded, pl.t.maxEncoded = encodedBound(sEnc), encodedBound(tEnc)
	pl.s.table, pl.t.table = src.QualifiedName(), tgt.QualifiedName()
	pl.s.index = " FORCE INDEX (" + schema.QuoteIdent(src.KeyName) + ")"
	pl.t.index = " FORCE INDEX (" + schema.QuoteIdent(tIndex) + ")"
	pl.s.where = strings.TrimSpace(p.Where)
	if !strict {
		pl.t.where = pl.s.where
	}
	return pl, nil
}

func keyNames(k []keyCol) []string {
	out := make([]string, len(k))
	for i, c := range k {
		out[i] = c.col.Name
	}
	return out
}

func (pl *plan) newResult() *TableResult {
	return &TableResult{Source: pl.src.String(), Target: pl.tgt.String()}
}

// displayKey renders a key for a report.
func (pl *plan) displayKey(k keyVal) Key {
	out := make(Key, len(k))
	for i, p := range k {
		out[i] = pl.key[i].display(p)
	}
	return out
}

// ---- SQL builders ----

// cond accumulates an SQL condition and its arguments.
type cond struct {
	parts []string
	args  []any
}

func (c *cond) add(sql string, args ...any) {
	c.parts = append(c.parts, sql)
	c.args = append(c.args, args...)
}

func (c *cond) String() string {
	if len(c.parts) == 0 {
		return "1=1"
	}
	return strings.Join(c.parts, " AND ")
}

// keyArgs converts a key's canonical bytes into bound arguments.
func (pl *plan) keyArgs(k keyVal) ([]any, error) {
	if len(k) != len(pl.key) {
		return nil, fmt.Errorf("verifier: %s: key has %d values, want %d", pl.src, len(k), len(pl.key))
	}
	args := make([]any, len(k))
	for i, v := range k {
		a, err := pl.key[i].arg(v)
		if err != nil {
			return nil, fmt.Errorf("verifier: %s: key column %s value %q: %w", pl.src, pl.key[i].col.Name, v, err)
		}
		args[i] = a
	}
	return args, nil
}

// compareKey builds `(k1 op1 ?) OR (k1 = ? AND k2 op ?) ...` without row constructors, so the
// range optimizer uses the index. strictOp is used on every column but the last, lastOp on the last.
func (pl *plan) compareKey(c *cond, k keyVal, strictOp, lastOp string) error {
	args, err := pl.keyArgs(k)
	if err != nil {
		return err
	}
	var ors []string
	var all []any
	for i := range pl.key {
		var ands []string
		for j := 0; j < i; j++ {
			ands = append(ands, pl.key[j].name+" = "+pl.key[j].ph)
			all = append(all, args[j])
		}
		op := strictOp
		if i == len(pl.key)-1 {
			op = lastOp
		}
		ands = append(ands, pl.key[i].name+" "+op+" "+pl.key[i].ph)
		all = append(all, args[i])
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	c.add("("+strings.Join(ors, " OR ")+")", all...)
	return nil
}

// rangeCond restricts to keys in (lo, hi]; nil bounds are open.
func (pl *plan) rangeCond(c *cond, lo, hi keyVal) error {
	if lo != nil {
		if err := pl.compareKey(c, lo, ">", ">"); err != nil {
			return err
		}
	}
	if hi != nil {
		if err := pl.compareKey(c, hi, "<", "<="); err != nil {
			return err
		}
	}
	return nil
}

// keysCond restricts to a set of keys.
func (pl *plan) keysCond(c *cond, keys []keyVal) error {
	if len(pl.key) == 1 {
		phs := make([]string, len(keys))
		args := make([]any, len(keys))
		for i, k := range keys {
			a, err := pl.keyArgs(k)
			if err != nil {
				return err
			}
			phs[i], args[i] = pl.key[0].ph, a[0]
		}
		c.add(pl.key[0].name+" IN ("+strings.Join(phs, ", ")+")", args...)
		return nil
	}
	var ors []string
	var all []any
	for _, k := range keys {
		a, err := pl.keyArgs(k)
		if err != nil {
			return err
		}
		ands := make([]string, len(pl.key))
		for i, kc := range pl.key {
			ands[i] = kc.name + " = " + kc.ph
		}
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
		all = append(all, a...)
	}
	c.add("("+strings.Join(ors, " OR ")+")", all...)
	return nil
}

func (pl *plan) keySelect() string {
	s := make([]string, len(pl.key))
	for i, k := range pl.key {
		s[i] = k.sel
	}
	return strings.Join(s, ", ")
}

func (pl *plan) orderBy() string {
	return " ORDER BY " + strings.Join(func() []string {
		s := make([]string, len(pl.key))
		for i, k := range pl.key {
			s[i] = k.name
		}
		return s
	}(), ", ")
}

func (sp *sidePlan) filter(c *cond) {
	if sp.where != "" {
		c.add("(" + sp.where + ")")
	}
}

// rowsSQL selects key + per-column tokens (perColumn) or key + row hash (the first 128 bits of the
// SHA-1 of the row's compact encoding, see compactRowSQL), for rows matching c.
func (pl *plan) rowsSQL(sp *sidePlan, c *cond, perColumn bool, limit int) string {
	var vals string
	if perColumn {
		vals = strings.Join(sp.tokens, ", ")
		if vals == "" {
			vals = "''"
		}
	} else {
		vals = "LEFT(SHA1(" + sp.compact + "), 32)"
	}
	q := "SELECT " + pl.keySelect() + ", " + vals + " FROM " + sp.table + sp.index + " WHERE " + c.String() + pl.orderBy()
	if limit > 0 {
		q += " LIMIT " + strconv.Itoa(limit)
	}
	return q
}

// row is one row read for comparison: its key and its hash(es).
type row struct {
	key    keyVal
	hashes []string
}

// scanRows reads rows of rowsSQL, calling fn for each (fn may keep the row).
func scanRows(rows *sql.Rows, nkey int, st *sideStats, fn func(row) error) error {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	raw := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		r := row{key: make(keyVal, nkey), hashes: make([]string, len(cols)-nkey)}
		for i := 0; i < nkey; i++ {
			r.key[i] = append([]byte{}, raw[i]...)
		}
		for i := nkey; i < len(cols); i++ {
			r.hashes[i-nkey] = string(raw[i])
		}
		if st != nil {
			st.rows.Add(1)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// readRows runs rowsSQL for the range on one side.
func (pl *plan) readRows(ctx context.Context, s *session, sp *sidePlan, lo, hi keyVal, perColumn bool, limit int, fn func(row) error) error {
	if err := sp.fitsPacket(s); err != nil {
		return err
	}
	var c cond
	if err := pl.rangeCond(&c, lo, hi); err != nil {
		return err
	}
	sp.filter(&c)
	rows, err := s.query(ctx, pl.rowsSQL(sp, &c, perColumn, limit), c.args...)
	if err != nil {
		return fmt.Errorf("verifier: read %s: %w", sp.table, err)
	}
	if err := scanRows(rows, len(pl.key), s.stats, fn); err != nil {
		return fmt.Errorf("verifier: read %s: %w", sp.table, err)
	}
	return nil
}

// readKeys reads the rows with the given keys on one side.
func (pl *plan) readKeys(ctx context.Context, s *session, sp *sidePlan, keys []keyVal, fn func(row) error) error {
	if err := sp.fitsPacket(s); err != nil {
		return err
	}
	var c cond
	if err := pl.keysCond(&c, keys); err != nil {
		return err
	}
	sp.filter(&c)
	rows, err := s.query(ctx, pl.rowsSQL(sp, &c, true, 0), c.args...)
	if err != nil {
		return fmt.Errorf("verifier: read %s: %w", sp.table, err)
	}
	if err := scanRows(rows, len(pl.key), s.stats, fn); err != nil {
		return fmt.Errorf("verifier: read %s: %w", sp.table, err)
	}
	return nil
}

// differingColumns names the columns whose tokens differ.
func (pl *plan) differingColumns(a, b []string) []string {
	var out []string
	for i := range a {
		if i < len(b) && a[i] != b[i] {
			out = append(out, pl.names[i])
		}
	}
	return out
}
