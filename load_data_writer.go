package ferry

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/go-sql-driver/mysql"
	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry/internal/apply"
	"github.com/ferrykit/ferry/internal/retry"
	"github.com/ferrykit/ferry/schema"
)

// LoadDataBatchWriter writes copy batches with LOAD DATA LOCAL INFILE streamed from memory instead of
// multi-row INSERTs. The target server parses it for about two thirds of the CPU of the equivalent
// INSERT (docs/benchmarks.md), which is what bounds a cross-server copy.
//
// It keeps the BatchWriter contract: each batch is one target transaction committed before
// WriteBatch returns; an existing row is never overwritten (IGNORE skips duplicate keys); and since
// IGNORE would also turn invalid values into adjusted ones with a warning, any warning other than a
// duplicate key fails the batch — strictness equal to the INSERT writer's. Values travel as the
// bytes the copy read (CHARACTER SET binary). Tables it cannot load faithfully (BIT columns, whose
// text form LOAD DATA does not take, and JSON columns on MySQL, which refuse binary strings) go
// through the INSERT writer instead.
//
// The target must allow it (local_infile=ON); Initialize checks that unless
// Config.CopyWriteMethod is WriteInsert (WriteAuto falls back to INSERT, WriteLoadData refuses).
type LoadDataBatchWriter struct {
	DB         *sql.DB
	MaxRetries int
	Logger     logrus.FieldLogger
	// Fallback writes the batches of tables LOAD DATA cannot take; default a TargetBatchWriter on DB.
	Fallback BatchWriter
	// MariaDB is the target's flavor (JSON is text there).
	MariaDB bool

	seq atomic.Int64
	// gate, when set (by Ferry.Start), keeps each attempt apart from the binlog apply's
	// transactions on the same table: see apply.Gate.
	gate *apply.Gate
}

func (w *LoadDataBatchWriter) canLoad(t *TableCopy) bool {
	for _, c := range t.Columns {
		if c.DataType == "bit" || (c.DataType == "json" && !w.MariaDB) {
			return false
		}
	}
	return true
}

// WriteBatch implements BatchWriter.
func (w *LoadDataBatchWriter) WriteBatch(ctx context.Context, b *RowBatch) error {
	if len(b.Rows) == 0 {
		return nil
	}
	if !w.canLoad(b.Table) {
		if w.Fallback == nil {
			w.Fallback = &TargetBatchWriter{DB: w.DB, MaxRetries: w.MaxRetries, Logger: w.Logger, gate: w.gate}
		}
		return w.Fallback.WriteBatch(ctx, b)
	}
	var buf bytes.Buffer
	encodeLoadData(&buf, b.Table.Columns, b.Rows)
	data := buf.Bytes()
	name := "ferry-batch-" + strconv.FormatInt(w.seq.Add(1), 10) + fmt.Sprintf("-%p", w)
	mysql.RegisterReaderHandler(name, func() io.Reader { return bytes.NewReader(data) })
	defer mysql.DeregisterReaderHandler(name)
	cols := make([]string, len(b.Table.Columns))
	for i, c := range b.Table.Columns {
		cols[i] = schema.QuoteIdent(c.Name)
	}
	q := "LOAD DATA LOCAL INFILE 'Reader::" + name + "' IGNORE INTO TABLE " + b.Table.TargetName() +
		LoadDataFormat + " (" + strings.Join(cols, ", ") + ")"
	log := w.Logger
	if log == nil {
		log = logrus.StandardLogger()
	}
	return retry.Do(ctx, max(w.MaxRetries, 1), log, "load batch into "+b.Table.TargetName(), func() error {
		return w.gate.Copy(b.Table.TargetName(), func() error { return w.load(ctx, q, b.Table) })
	})
}

func (w *LoadDataBatchWriter) load(ctx context.Context, q string, t *TableCopy) error {
	// One connection: the warnings are those of this statement.
	conn, err := w.DB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("load into %s: %w", t.TargetName(), err)
	}
	if err := CheckLoadDataWarnings(ctx, tx, t.TargetName(), true); err != nil {
		if errors.Is(err, ErrLoadDataAdjusted) {
			return retry.Permanent(err)
		}
		return err
	}
	return tx.Commit()
}

// LoadDataFormat is the CHARACTER SET and FIELDS/LINES clause of every LOAD DATA statement ferry
// issues, matching EncodeLoadData: values are bytes (no character set conversion), tab-separated,
// newline-terminated, backslash-escaped.
const LoadDataFormat = " CHARACTER SET binary FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"

// ErrLoadDataAdjusted is wrapped by CheckLoadDataWarnings' error when the server warned.
var ErrLoadDataAdjusted = errors.New("the server would have adjusted values or skipped rows")

// CheckLoadDataWarnings fails unless the LOAD DATA statement just run in tx stored every value as
// given: LOAD DATA LOCAL turns errors into warnings (adjusted values, truncated rows), so any
// warning is an error, except duplicate keys (1062) when allowDuplicates is set.
func CheckLoadDataWarnings(ctx context.Context, tx *sql.Tx, table string, allowDuplicates bool) error {
	var warnings int
	if err := tx.QueryRowContext(ctx, "SELECT @@warning_count").Scan(&warnings); err != nil {
		return err
	}
	if warnings == 0 {
		return nil
	}
	rows, err := tx.QueryContext(ctx, "SHOW WARNINGS LIMIT 20")
	if err != nil {
		return err
	}
	defer rows.Close()
	var bad []string
	for rows.Next() {
		var level, msg string
		var code int
		if err := rows.Scan(&level, &code, &msg); err != nil {
			return err
		}
		if code != 1062 || !allowDuplicates { // duplicate key: the row is already there, newer
			bad = append(bad, fmt.Sprintf("%d %s", code, msg))
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(bad) > 0 {
		return fmt.Errorf("load into %s: %w: %s", table, ErrLoadDataAdjusted, strings.Join(bad, "; "))
	}
	return nil
}

// AppendLoadDataField appends one non-NULL value (bytes as read with the text protocol) of column c
// in the LoadDataFormat encoding, without the separator (the caller writes `\N` for NULL).
func AppendLoadDataField(buf *bytes.Buffer, c *schema.Column, b []byte) {
	if c.DataType == "year" && len(b) == 1 && b[0] == '0' {
		b = []byte("0000")
	}
	start := 0
	for j, ch := range b {
		var esc string
		switch ch {
		case '\\':
			esc = `\\`
		case '\t':
			esc = `\t`
		case '\n':
			esc = `\n`
		case 0:
			esc = `\0`
		default:
			continue
		}
		buf.Write(b[start:j])
		buf.WriteString(esc)
		start = j + 1
	}
	buf.Write(b[start:])
}

// EncodeLoadData appends rows (values as read with the text protocol: []byte, or Go numbers) in the
// form LoadDataFormat describes. BIT values must be given as their unsigned integer (LOAD DATA does
// not take their raw bytes); load them through a user variable and CAST(@v AS UNSIGNED).
func EncodeLoadData(buf *bytes.Buffer, cols []*schema.Column, rows [][]any) {
	encodeLoadData(buf, cols, rows)
}

// encodeLoadData writes rows in LOAD DATA's default text form: tab-separated, newline-terminated,
// backslash escapes, \N for NULL. Values are the bytes the copy read, except YEAR 0: LOAD DATA reads
// the text "0" as the year 2000 (a string), so it is written "0000".
func encodeLoadData(buf *bytes.Buffer, cols []*schema.Column, rows [][]any) {
	var num []byte
	for _, r := range rows {
		for i, v := range r {
			if i > 0 {
				buf.WriteByte('\t')
			}
			var b []byte
			switch x := v.(type) {
			case nil:
				buf.WriteString(`\N`)
				continue
			case []byte:
				b = x
			case string:
				b = []byte(x)
			case int64:
				num = strconv.AppendInt(num[:0], x, 10)
				b = num
			case uint64:
				num = strconv.AppendUint(num[:0], x, 10)
				b = num
			case float64:
				num = strconv.AppendFloat(num[:0], x, 'g', -1, 64)
				b = num
			case float32:
				num = strconv.AppendFloat(num[:0], float64(x), 'g', -1, 32)
				b = num
			default:
				b = fmt.Append(nil, x)
			}
			AppendLoadDataField(buf, cols[i], b)
		}
		buf.WriteByte('\n')
	}
}
