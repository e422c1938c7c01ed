package osc

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/throttler"
)

// copyRows copies the original table into the ghost table in chunks of the shared key, in the
// server's key order, each chunk one INSERT IGNORE ... SELECT ... LOCK IN SHARE MODE. The range is
// fixed at the start (up to the largest key then); rows inserted later reach the ghost through the
// binlog.
//
// Why no row is lost or resurrected: the statement's shared locks make a concurrent change of a
// row in the chunk commit (and reach the binlog) only after the chunk is in the ghost table, so its
// event is applied after the copy and wins; a row deleted before the chunk was read is not read;
// and INSERT IGNORE never overwrites a row the apply already wrote (which is at least as new).
func (m *Migration) copyRows(ctx context.Context) error {
	p := m.plan
	var est sql.NullInt64
	m.db.QueryRowContext(ctx, "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", m.Database, m.Table).Scan(&est)
	m.rowsEstimated.Store(est.Int64)

	keyList := make([]string, len(p.Key))
	for i, c := range p.Key {
		keyList[i] = q(c.Name)
	}
	keys := strings.Join(keyList, ", ")
	index := "FORCE INDEX (" + q(p.KeyName) + ")"
	table := m.qualified(m.Table)

	// A locking read: a transaction whose events are already in the binlog before the stream's
	// start may not be visible yet to a plain read (binlog before visibility); the lock waits for it,
	// so its rows are either below the range's end (copied) or after the start (streamed).
	maxKey, err := m.readKey(ctx, "SELECT "+keys+" FROM "+table+" "+index+" ORDER BY "+descKeys(keyList)+" LIMIT 1 LOCK IN SHARE MODE")
	if err != nil {
		return fmt.Errorf("read the largest key: %w", err)
	}
	if maxKey == nil {
		return nil // empty table: everything arrives through the binlog
	}
	maxArgs, err := keyArgs(p.Key, maxKey)
	if err != nil {
		return err
	}
	upTo, upToArgs := keyCompare(p.Key, maxArgs, "<", true)

	var toCols, fromCols []string
	for _, cm := range p.Columns {
		toCols = append(toCols, q(cm.To.Name))
		fromCols = append(fromCols, q(cm.From.Name))
	}
	insert := "INSERT IGNORE INTO " + m.qualified(m.ghostName()) + " (" + strings.Join(toCols, ", ") + ") SELECT " +
		strings.Join(fromCols, ", ") + " FROM " + table + " " + index + " WHERE "

	var last [][]byte
	if k := m.copiedUpTo.Load(); k != nil {
		last = *k // resumed: the chunks up to here are in the ghost
	}
	onThrottle := func(st throttler.Status) {
		if st.Throttled {
			m.throttleReason.Store(st.Reason)
			m.log.WithField("reason", st.Reason).Info("osc: copy throttled")
		} else {
			m.throttleReason.Store("")
			m.log.Info("osc: copy resumed")
		}
	}
	for {
		if err := throttler.Wait(ctx, m.copyThrottler(), onThrottle); err != nil {
			return err
		}
		chunk := int(m.chunkSize.Load())
		// The chunk's end: the chunk-th key after last, within the range (or the range's end).
		where := []string{upTo}
		args := append([]any{}, upToArgs...)
		if last != nil {
			lastArgs, err := keyArgs(p.Key, last)
			if err != nil {
				return err
			}
			c, a := keyCompare(p.Key, lastArgs, ">", false)
			where = append(where, c)
			args = append(args, a...)
		}
		end, err := m.readKey(ctx, "SELECT "+keys+" FROM "+table+" "+index+" WHERE "+strings.Join(where, " AND ")+
			" ORDER BY "+keys+fmt.Sprintf(" LIMIT 1 OFFSET %d", chunk-1), args...)
		if err != nil {
			return fmt.Errorf("find the end of the next chunk: %w", err)
		}
		final := end == nil || sameKey(end, maxKey)
		if end == nil {
			end = maxKey
		}
		endArgs, err := keyArgs(p.Key, end)
		if err != nil {
			return err
		}
		cw := []string{}
		var cargs []any
		if last != nil {
			lastArgs, _ := keyArgs(p.Key, last)
			c, a := keyCompare(p.Key, lastArgs, ">", false)
			cw = append(cw, c)
			cargs = append(cargs, a...)
		}
		c, a := keyCompare(p.Key, endArgs, "<", true)
		cw = append(cw, c)
		cargs = append(cargs, a...)
		var n int64
		err = withRetry(ctx, 10, func() error {
			res, err := m.db.ExecContext(ctx, insert+strings.Join(cw, " AND ")+" LOCK IN SHARE MODE", cargs...)
			if err != nil {
				return err
			}
			n, _ = res.RowsAffected()
			return nil
		})
		if err != nil {
			return fmt.Errorf("copy chunk: %w", err)
		}
		m.rowsCopied.Add(n)
		copied := end
		m.copiedUpTo.Store(&copied)
		if final {
			return nil
		}
		last = end
	}
}

// copyThrottler combines the user's throttler, the interactive throttle command and the lag.
func (m *Migration) copyThrottler() throttler.Throttler {
	return throttler.Func(func(ctx context.Context) (throttler.Status, error) {
		if m.userThrottled.Load() {
			return throttler.Status{Throttled: true, Reason: "throttled by command"}, nil
		}
		if lag := m.applier.lag(); lag > m.MaxLag {
			return throttler.Status{Throttled: true, Reason: fmt.Sprintf("binlog apply lag above %s", m.MaxLag), Detail: lag.Round(time.Millisecond).String()}, nil
		}
		if m.Throttler != nil {
			return m.Throttler.Check(ctx)
		}
		return throttler.Status{}, nil
	})
}

func descKeys(cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c + " DESC"
	}
	return strings.Join(out, ", ")
}

// readKey runs a query returning at most one key and returns its values as the server printed
// them (nil: no row).
func (m *Migration) readKey(ctx context.Context, query string, args ...any) ([][]byte, error) {
	var out [][]byte
	err := withRetry(ctx, 10, func() error {
		out = nil
		rows, err := m.db.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		if !rows.Next() {
			return rows.Err()
		}
		cols, _ := rows.Columns()
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		out = make([][]byte, len(cols))
		for i, v := range vals {
			if v == nil {
				return errors.New("NULL in a key column")
			}
			out[i] = bytes.Clone(v)
		}
		return rows.Err()
	})
	return out, err
}

func keyArgs(cols []*schema.Column, vals [][]byte) ([]any, error) {
	out := make([]any, len(cols))
	for i, c := range cols {
		v, err := keyArg(c, vals[i])
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func sameKey(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
