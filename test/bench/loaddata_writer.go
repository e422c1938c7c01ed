package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/schema"
)

// loadDataWriter is a prototype ferry.BatchWriter that writes each copy batch with LOAD DATA LOCAL
// INFILE from memory instead of a multi-row INSERT: the experiment behind the "cheaper write path"
// question of the benchmark issue. It is plugged into an unmodified Ferry through the BatchWriter
// interface and is not part of ferry.
//
// Contract kept: the batch is committed before WriteBatch returns; an existing target row is never
// overwritten (IGNORE skips duplicate keys); any warning other than a duplicate key (a value the
// server would have adjusted) fails the batch, so strictness matches the default writer's
// ON DUPLICATE KEY UPDATE k = k in strict mode.
type loadDataWriter struct {
	DB  *sql.DB
	seq atomic.Int64
}

func (w *loadDataWriter) WriteBatch(ctx context.Context, b *ferry.RowBatch) error {
	if len(b.Rows) == 0 {
		return nil
	}
	var buf bytes.Buffer
	encodeTSV(&buf, b.Rows)
	data := buf.Bytes()
	name := fmt.Sprintf("ferry-bench-%d", w.seq.Add(1))
	mysql.RegisterReaderHandler(name, func() io.Reader { return bytes.NewReader(data) })
	defer mysql.DeregisterReaderHandler(name)
	cols := make([]string, len(b.Table.Columns))
	for i, c := range b.Table.Columns {
		cols[i] = schema.QuoteIdent(c.Name)
	}
	q := "LOAD DATA LOCAL INFILE 'Reader::" + name + "' IGNORE INTO TABLE " + b.Table.TargetName() +
		" CHARACTER SET binary FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' (" + strings.Join(cols, ", ") + ")"
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		if err = w.once(ctx, q); err == nil || !transient(err) {
			return err
		}
		time.Sleep(time.Duration(50<<min(attempt, 5)) * time.Millisecond)
	}
	return err
}

func (w *loadDataWriter) once(ctx context.Context, q string) error {
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
		return err
	}
	var warnings int
	if err := tx.QueryRowContext(ctx, "SELECT @@warning_count").Scan(&warnings); err != nil {
		return err
	}
	if warnings > 0 {
		rows, err := tx.QueryContext(ctx, "SHOW WARNINGS LIMIT 20")
		if err != nil {
			return err
		}
		var bad []string
		for rows.Next() {
			var level, msg string
			var code int
			rows.Scan(&level, &code, &msg)
			if code != 1062 {
				bad = append(bad, fmt.Sprintf("%d %s", code, msg))
			}
		}
		rows.Close()
		if len(bad) > 0 {
			return fmt.Errorf("LOAD DATA: the server adjusted values: %s", strings.Join(bad, "; "))
		}
	}
	return tx.Commit()
}

func transient(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1213 || me.Number == 1205
	}
	return errors.Is(err, mysql.ErrInvalidConn)
}

// encodeTSV writes rows in LOAD DATA's default text format: tab-separated, newline-terminated,
// backslash escapes, \N for NULL. Values are the bytes the copy read.
func encodeTSV(buf *bytes.Buffer, rows [][]any) {
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
			default:
				b = fmt.Append(nil, x)
			}
			start := 0
			for j, c := range b {
				var esc string
				switch c {
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
		buf.WriteByte('\n')
	}
}
