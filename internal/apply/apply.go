// Package apply is the one engine that writes row changes to a target table, shared by ferry's
// binlog writer (source table → target table) and the online schema change (original → ghost
// table): one way to turn changes into statements, one transaction loop.
//
// Each change is idempotent: "set the row to this image" (REPLACE of the mapped image) or "delete the
// row with this key" (DELETE by key). Applying the changes of a stretch of binlog in order leaves
// every row as the source had it at the end of the stretch, whatever the target held before: a
// copied row and a racing change converge, a transaction that swaps unique values between rows never
// fails (REPLACE removes the transient conflict; the row it removed is rewritten by its own change),
// and replaying from a checkpoint is harmless. Consecutive changes of one table and kind become one
// multi-row statement; changes are never reordered.
//
// How a source value becomes a target value is the caller's Mapping: a SQL expression per column,
// so every conversion is done by the server, through the same expression a copy can use, never in Go.
package apply

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry/internal/retry"
	"github.com/ferrykit/ferry/schema"
)

// MaxPlaceholders bounds the values bound to one statement: a prepared statement takes at most
// 65535 placeholders; a multi-row statement is cut below that with a margin.
const MaxPlaceholders = 60000

// MaxStatementBytes bounds the (approximate) size of one multi-row statement, well below the
// server's max_allowed_packet default.
const MaxStatementBytes = 8 << 20

// Column is one target column and where its value comes from.
type Column struct {
	Name   string // the target column (unquoted)
	Source int    // the ordinal of its value in the source row image
	// Expr is the SQL the value takes, with exactly one "?" for it ("" means "?"): e.g.
	// "CONVERT(CAST(? AS BINARY) USING latin1)", "ELT(?, 'a','b')", or, for a key column,
	// schema.KeyPlaceholder (compared in the column's collation so the index is used).
	Expr string
}

func (c Column) expr() string {
	if c.Expr == "" {
		return "?"
	}
	return c.Expr
}

// Mapping says how the row changes of one source table become statements on its target table.
// It is built once per table and shared by every change of it (changes are grouped by pointer).
type Mapping struct {
	Target  string   // quoted `db`.`table` written to
	Columns []Column // what REPLACE writes, in order; target columns not listed get their default
	Key     []Column // what identifies a row for DELETE

	once                     sync.Once
	replace, row, del, keyEq string // the statement parts, built once
}

func (m *Mapping) init() { m.once.Do(m.build) }

func (m *Mapping) build() {
	cols := make([]string, len(m.Columns))
	vals := make([]string, len(m.Columns))
	for i, c := range m.Columns {
		cols[i] = schema.QuoteIdent(c.Name)
		vals[i] = c.expr()
	}
	m.replace = "REPLACE INTO " + m.Target + " (" + strings.Join(cols, ", ") + ") VALUES "
	m.row = "(" + strings.Join(vals, ", ") + ")"
	eq := make([]string, len(m.Key))
	for i, c := range m.Key {
		eq[i] = schema.QuoteIdent(c.Name) + " = " + c.expr()
	}
	m.del = "DELETE FROM " + m.Target + " WHERE "
	m.keyEq = "(" + strings.Join(eq, " AND ") + ")"
}

// Image picks the values REPLACE writes from a source row image.
func (m *Mapping) Image(row []any) []any { return pick(row, m.Columns) }

// KeyOf picks the key values DELETE compares from a source row image.
func (m *Mapping) KeyOf(row []any) []any { return pick(row, m.Key) }

func pick(row []any, cols []Column) []any {
	out := make([]any, len(cols))
	for i, c := range cols {
		out[i] = row[c.Source]
	}
	return out
}

// SameKey reports whether two source row images have the same key, value by value and byte for
// byte — never through a collation: a key changed from 'a' to 'A' is a key change, applied as
// delete + set. A nil image has no key.
func (m *Mapping) SameKey(a, b []any) bool {
	if a == nil || b == nil {
		return false
	}
	for _, c := range m.Key {
		if !sameValue(a[c.Source], b[c.Source]) {
			return false
		}
	}
	return true
}

func sameValue(x, y any) bool {
	switch xv := x.(type) {
	case []byte:
		yv, ok := y.([]byte)
		return ok && bytes.Equal(xv, yv)
	case nil:
		return y == nil
	case int64, uint64, float32, float64, string:
		return x == y
	}
	return fmt.Sprint(x) == fmt.Sprint(y)
}

// Change is one idempotent row change: set the row to Values (Mapping.Image of the after-image),
// or, with Delete, delete the row whose key is Values (Mapping.KeyOf of the before-image).
type Change struct {
	Mapping *Mapping
	Delete  bool
	Values  []any
}

// Statement is one SQL statement with its arguments.
type Statement struct {
	Query string
	Args  []any
}

// Statements groups consecutive changes of the same Mapping and kind into multi-row statements,
// keeping their order, each within MaxPlaceholders and about MaxStatementBytes.
func Statements(changes []Change) []Statement {
	out, _ := StatementsWithin(changes, 0)
	return out
}

// StatementsWithin is Statements for a target whose max_allowed_packet is maxPacket (0: unknown):
// every statement stays under it, and a row image no statement can hold fails with ErrRowTooLarge
// (naming the table, the row's key and the size) before anything is written.
func StatementsWithin(changes []Change, maxPacket int) ([]Statement, error) {
	limit := StatementLimit(0, maxPacket)
	var out []Statement
	for i := 0; i < len(changes); {
		first := changes[i]
		first.Mapping.init()
		m := first.Mapping
		head, part, sep := m.replace, m.row, ", "
		if first.Delete {
			head, part, sep = m.del, m.keyEq, " OR "
		}
		j, size := i, 0
		for j < len(changes) && changes[j].Mapping == m && changes[j].Delete == first.Delete && (j-i+1)*len(first.Values) < MaxPlaceholders {
			rs := ApproxSize(changes[j].Values)
			if j > i && size+rs > limit {
				break
			}
			size += rs
			j++
		}
		if j == i { // a single change always goes, if it fits at all
			j++
		}
		if j == i+1 && size > limit && !first.Delete {
			if err := CheckFits(m.Target, m.keyNames(), m.keyValues(first.Values), first.Values, len(head)+len(part), maxPacket); err != nil {
				return nil, err
			}
		}
		var sb strings.Builder
		args := make([]any, 0, (j-i)*len(first.Values))
		sb.WriteString(head)
		for k, c := range changes[i:j] {
			if k > 0 {
				sb.WriteString(sep)
			}
			sb.WriteString(part)
			args = append(args, c.Values...)
		}
		out = append(out, Statement{sb.String(), args})
		i = j
	}
	return out, nil
}

func (m *Mapping) keyNames() []string {
	out := make([]string, len(m.Key))
	for i, k := range m.Key {
		out[i] = k.Name
	}
	return out
}

// keyValues picks the key out of an image (the values of Columns).
func (m *Mapping) keyValues(image []any) []any {
	out := make([]any, len(m.Key))
	for i, k := range m.Key {
		for j, c := range m.Columns {
			if c.Source == k.Source && j < len(image) {
				out[i] = image[j]
			}
		}
	}
	return out
}

// ErrRowTooLarge: a row does not fit in one statement the target accepts (max_allowed_packet).
// ferry.ErrRowTooLarge is this error.
var ErrRowTooLarge = errors.New("row too large")

// StatementLimit is the size a multi-row statement is cut at: configured (default
// MaxStatementBytes), or less to stay under the target's max_allowed_packet (maxPacket; 0: unknown)
// with room for the statement's text.
func StatementLimit(configured, maxPacket int) int {
	limit := configured
	if limit <= 0 {
		limit = MaxStatementBytes
	}
	if room := maxPacket - 16<<10; maxPacket > 0 && room < limit {
		limit = max(room, 1)
	}
	return limit
}

// ApproxSize bounds the size of values in an interpolated statement cheaply: twice their bytes
// (every byte escaped) plus quoting.
func ApproxSize(vals []any) int {
	n := 0
	for _, v := range vals {
		if b, ok := v.([]byte); ok {
			n += 2*len(b) + 10
		} else {
			n += 24
		}
	}
	return n
}

// ExactSize is the size of values as the driver interpolates them: each byte string as
// _binary'...' with the bytes it escapes (NUL, newline, return, backslash, quotes, Ctrl-Z) doubled.
func ExactSize(vals []any) int {
	n := 0
	for _, v := range vals {
		b, ok := v.([]byte)
		if !ok {
			n += 24
			continue
		}
		n += len(b) + 10
		for _, c := range b {
			switch c {
			case 0, '\n', '\r', '\\', '\'', '"', 0x1a:
				n++
			}
		}
	}
	return n
}

// CheckFits refuses a row that no statement the target accepts can hold: its values as
// interpolated plus text bytes of SQL are more than maxPacket (0: unknown, never refused). The error
// wraps ErrRowTooLarge and names the table, the row's key, the size and the setting to raise.
func CheckFits(target string, keyNames []string, keyVals, vals []any, text, maxPacket int) error {
	if maxPacket <= 0 {
		return nil
	}
	size := text + ExactSize(vals)
	if size <= maxPacket {
		return nil
	}
	shown := make([]string, len(keyVals))
	for i, v := range keyVals {
		s := fmt.Sprint(v)
		if b, ok := v.([]byte); ok {
			s = string(b)
		}
		if len(s) > 64 {
			s = s[:64] + "..."
		}
		shown[i] = s
	}
	need := size + 1024
	return retry.Permanent(fmt.Errorf("table %s, row (%s)=(%s): %w: writing it takes a %d-byte statement, more than the target's max_allowed_packet of %d bytes; raise it on the target to at least %d (SET GLOBAL max_allowed_packet = %d, and in its configuration; at most 1073741824), then resume",
		target, strings.Join(keyNames, ", "), strings.Join(shown, ", "), ErrRowTooLarge, size, maxPacket, need, (need+1<<20-1)&^(1<<20-1)))
}

// ExecTx runs statements in one transaction, rolling back on the first error.
func ExecTx(ctx context.Context, db *sql.DB, stmts []Statement) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s.Query, s.Args...); err != nil {
			tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

// Exec applies statements in one transaction, running the whole transaction again on a transient
// error (retry.Do: at most attempts times, logged as what).
func Exec(ctx context.Context, db *sql.DB, stmts []Statement, attempts int, log logrus.FieldLogger, what string) error {
	return retry.Do(ctx, max(attempts, 1), log, what, func() error { return ExecTx(ctx, db, stmts) })
}

// ExecRerunDeadlocks is Exec for transactions that run beside each other on disjoint rows (the
// parallel apply): InnoDB's next-key locks on neighbouring index records can still make two of
// them deadlock, and the server has then rolled one back while the other goes on. The victim is
// run again at once, up to eight times (onDeadlock is told of each), before a deadlock counts as
// a transient error with Exec's backoff.
func ExecRerunDeadlocks(ctx context.Context, db *sql.DB, stmts []Statement, attempts int, log logrus.FieldLogger, what string, onDeadlock func()) error {
	return retry.Do(ctx, max(attempts, 1), log, what, func() error {
		var err error
		for i := 0; i < 8; i++ {
			if err = ExecTx(ctx, db, stmts); retry.Code(err) != deadlock {
				return err
			}
			if onDeadlock != nil {
				onDeadlock()
			}
		}
		return err
	})
}

// deadlock is the server's error for a transaction it rolled back to break a deadlock.
const deadlock = 1213
