package ferry

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry/internal/apply"
	"github.com/ferrykit/ferry/internal/retry"
	"github.com/ferrykit/ferry/schema"
)

// RowBatch is a page of rows read from the source, handed to a BatchWriter while the rows are still
// share-locked on the source.
type RowBatch struct {
	Table *TableCopy
	// Rows holds, per row, the values of Table.Columns as the source returned them ([]byte or nil).
	Rows [][]any
	// SourceGTID, when the iterator reads it, is the source's GTID set (MariaDB: position) read
	// after the rows, while they were still locked: every transaction whose effects they show is
	// in it.
	SourceGTID string
}

// BatchWriter writes copied rows to the target.
//
// Contract: WriteBatch returns only once the rows are committed on the target (or with an error), and
// it must never overwrite a row that already exists there: a row present on the target was put there
// by the binlog apply and is newer than, or as new as, the copy. The default writer inserts with
// "ON DUPLICATE KEY UPDATE key = key", which skips existing rows but, unlike INSERT IGNORE, still
// fails on invalid values instead of storing them mangled.
type BatchWriter interface {
	WriteBatch(ctx context.Context, b *RowBatch) error
}

// TargetBatchWriter is the default BatchWriter: one transaction per batch of multi-row INSERTs,
// retried with backoff on deadlocks, lock-wait timeouts and lost connections.
type TargetBatchWriter struct {
	DB         *sql.DB
	MaxRetries int
	Logger     logrus.FieldLogger
	// MaxStatementBytes splits a batch into several INSERTs above this size; default 8 MiB, or less
	// to stay under MaxPacket.
	MaxStatementBytes int
	// MaxPacket is the target's max_allowed_packet (0: unknown). A row whose INSERT is larger fails
	// the batch before any of it is written, with ErrRowTooLarge naming the row.
	MaxPacket int
	// gate, when set (by Ferry.Start), keeps each attempt apart from the binlog apply's
	// transactions on the same table: see apply.Gate.
	gate *apply.Gate
}

// WriteBatch implements BatchWriter.
func (w *TargetBatchWriter) WriteBatch(ctx context.Context, b *RowBatch) error {
	if len(b.Rows) == 0 {
		return nil
	}
	stmts, err := w.statements(b)
	if err != nil {
		return err
	}
	log := w.Logger
	if log == nil {
		log = logrus.StandardLogger()
	}
	return retry.Do(ctx, max(w.MaxRetries, 1), log, "write batch to "+b.Table.TargetName(), func() error {
		if err := w.gate.Copy(b.Table.TargetName(), func() error { return apply.ExecTx(ctx, w.DB, stmts) }); err != nil {
			return fmt.Errorf("insert into %s: %w", b.Table.TargetName(), err)
		}
		return nil
	})
}

func (w *TargetBatchWriter) statements(b *RowBatch) ([]apply.Statement, error) {
	limit := apply.StatementLimit(w.MaxStatementBytes, w.MaxPacket)
	t := b.Table
	key := t.Source.KeyColumns()[0].Name
	head := "INSERT INTO " + t.TargetName() + " (" + t.insertColumns() + ") VALUES "
	tailSQL := " ON DUPLICATE KEY UPDATE " + schema.QuoteIdent(key) + " = " + schema.QuoteIdent(key)
	row := t.rowPlaceholders()
	var keyNames []string
	for _, k := range t.Source.KeyColumns() {
		keyNames = append(keyNames, k.Name)
	}
	var out []apply.Statement
	var sb strings.Builder
	var args []any
	size, n := 0, 0
	flush := func() {
		if n == 0 {
			return
		}
		sb.WriteString(tailSQL)
		out = append(out, apply.Statement{Query: sb.String(), Args: args})
		sb.Reset()
		args, size, n = nil, 0, 0
	}
	for _, r := range b.Rows {
		rs := len(row) + apply.ApproxSize(r)
		if rs > limit {
			if err := apply.CheckFits(t.TargetName(), keyNames, pick(r, t.keyIndexes()), r, len(head)+len(row)+len(tailSQL), w.MaxPacket); err != nil {
				return nil, err
			}
		}
		if n > 0 && (size+rs > limit || len(args)+len(r) > apply.MaxPlaceholders) {
			flush()
		}
		if n == 0 {
			sb.WriteString(head)
		} else {
			sb.WriteString(", ")
		}
		sb.WriteString(row)
		args = append(args, r...)
		size += rs
		n++
	}
	flush()
	return out, nil
}
