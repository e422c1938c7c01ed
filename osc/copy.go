package osc

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ferrykit/ferry/internal/chunk"
	"github.com/ferrykit/ferry/internal/retry"
	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/throttler"
)

// copyRows copies the original table into the ghost table in chunks of the shared key, in the
// server's key order, each chunk one INSERT ... SELECT ... LOCK IN SHARE MODE. The range is fixed
// at the start (up to the largest key then); rows inserted later reach the ghost through the
// binlog. CopyWorkers chunks are copied at once, each worker on its own connection: one goroutine
// cuts the range into consecutive chunks (the next chunk's end is the chunk-th key after the last
// end), the workers take them in order.
//
// Why no row is lost or resurrected: the statement's shared locks make a concurrent change of a
// row in the chunk commit (and reach the binlog) only after the chunk is in the ghost table, so its
// event is applied after the copy and wins; a row deleted before the chunk was read is not read;
// a row inserted into the chunk's range after the chunk read past its key is not copied but
// streamed; and the copy skips (NOT EXISTS on the shared key) a row the apply already wrote (which
// is at least as new). The argument is about one chunk and the rows of its own range, so it holds
// for any number of chunks copied at once: the ranges are disjoint.
//
// The chunk runs at READ COMMITTED: its locking read takes record locks on the rows it copies, not
// gap locks, so neither an application INSERT into the chunk's range nor the apply's writes into
// the ghost table's gaps (a REPLACE of a row the copy has not reached) wait for the chunk; at
// REPEATABLE READ the NOT EXISTS probe of the ghost locked the gap up to the next ghost row, often
// the whole rest of the table, and the apply waited out every chunk (its lag grew with the chunk
// size).
//
// Resume: the checkpointed end (copiedUpTo) only moves to the end of the last chunk below which
// every chunk has committed, never past a chunk still being copied; chunks above it that were
// copied already are copied again on resume, which NOT EXISTS makes harmless.
//
// Why no value is changed silently: the INSERT is strict (no IGNORE, a strict sql_mode), so a
// value the new column cannot hold (1406 data too long, 1264 out of range, 1265 truncated, 1292
// bad date, 1048 NULL) or a duplicate on a new or narrowed unique key (1062) fails the statement
// and the migration, as the same error fails a plain ALTER TABLE; the row is then named by its key
// (offendingRow). The only duplicate tolerated is on the shared key, a race with the apply that
// retrying the chunk resolves.
func (m *Migration) copyRows(ctx context.Context) error {
	p := m.plan
	var est sql.NullInt64
	if m.ExactRowCount {
		if err := m.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+m.qualified(m.Table)).Scan(&est); err != nil {
			return fmt.Errorf("count the rows (-exact-rowcount): %w", err)
		}
	} else {
		m.db.QueryRowContext(ctx, "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", m.Database, m.Table).Scan(&est)
	}
	m.rowsEstimated.Store(est.Int64)
	var sizer *chunk.Sizer
	if m.TargetChunkTime > 0 {
		sizer = chunk.NewSizer(m.TargetChunkTime, 0, 0)
		sizer.Min = min(sizer.Min, m.ChunkSize)
	}
	limiter := chunk.NewLimiter(m.MaxRowsPerSecond)

	keyList := make([]string, len(p.Key))
	for i, c := range p.Key {
		keyList[i] = q(c.Name)
	}
	keys := strings.Join(keyList, ", ")
	selectKeys := keySelect(p.Key)
	index := "FORCE INDEX (" + q(p.KeyName) + ")"
	table := m.qualified(m.Table)

	// A locking read: a transaction whose events are already in the binlog before the stream's
	// start may not be visible yet to a plain read (binlog before visibility); the lock waits for it,
	// so its rows are either below the range's end (copied) or after the start (streamed).
	maxKey, err := m.readKey(ctx, "SELECT "+selectKeys+" FROM "+table+" "+index+" ORDER BY "+descKeys(keyList)+" LIMIT 1 LOCK IN SHARE MODE")
	if err != nil {
		return fmt.Errorf("read the largest key: %w", err)
	}
	if maxKey == nil {
		return nil // empty table: everything arrives through the binlog
	}
	maxArgs, err := schema.KeyArgs(p.Key, maxKey)
	if err != nil {
		return err
	}
	upTo, upToArgs := schema.KeyCompare(p.Key, maxArgs, "<", true)
	after := func(k [][]byte) (string, []any, error) {
		args, err := schema.KeyArgs(p.Key, k)
		if err != nil {
			return "", nil, err
		}
		c, a := schema.KeyCompare(p.Key, args, ">", false)
		return c, a, nil
	}

	insert := m.copyInsert()
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

	g, gctx := errgroup.WithContext(ctx)
	chunks := make(chan *copyRange)
	progress := &copyProgress{m: m}
	g.Go(func() error { // cuts the range into chunks, in key order
		defer close(chunks)
		for {
			size := int(m.chunkSize.Load())
			where := []string{upTo}
			args := append([]any{}, upToArgs...)
			var from string
			var fromArgs []any
			if last != nil {
				var err error
				if from, fromArgs, err = after(last); err != nil {
					return err
				}
				where = append(where, from)
				args = append(args, fromArgs...)
			}
			end, err := m.readKey(gctx, "SELECT "+selectKeys+" FROM "+table+" "+index+" WHERE "+strings.Join(where, " AND ")+
				" ORDER BY "+keys+fmt.Sprintf(" LIMIT 1 OFFSET %d", size-1), args...)
			if err != nil {
				return fmt.Errorf("find the end of the next chunk: %w", err)
			}
			c := &copyRange{final: end == nil || sameKey(end, maxKey), end: end}
			if end == nil {
				c.end = maxKey
			}
			endArgs, err := schema.KeyArgs(p.Key, c.end)
			if err != nil {
				return err
			}
			upToEnd, upToEndArgs := schema.KeyCompare(p.Key, endArgs, "<", true)
			c.where = upToEnd
			c.args = upToEndArgs
			if from != "" {
				c.where = from + " AND " + upToEnd
				c.args = append(fromArgs, upToEndArgs...)
			}
			progress.issue(c)
			select {
			case chunks <- c:
			case <-gctx.Done():
				return gctx.Err()
			}
			if c.final {
				return nil
			}
			last = c.end
		}
	})
	for i := range m.CopyWorkers {
		g.Go(func() error {
			w := &copyWorker{m: m}
			defer w.close()
			for {
				if i > 0 { // before taking a chunk: a chunk taken is one the checkpoint waits for
					if err := m.yieldToApply(gctx); err != nil {
						return err
					}
				}
				c, ok := <-chunks
				if !ok {
					return nil
				}
				if err := throttler.Wait(gctx, m.copyThrottler(), onThrottle); err != nil {
					return err
				}
				var n int64
				var took time.Duration
				err := retry.Do(gctx, 10, m.log, "copy chunk", func() error {
					var err error
					began := time.Now()
					n, err = w.copyChunk(gctx, insert, c.where, c.args)
					took = time.Since(began)
					return err
				})
				if err != nil {
					return fmt.Errorf("copy chunk: %w", err)
				}
				m.rowsCopied.Add(n)
				progress.done(c, n, took, sizer)
				if limiter != nil {
					if err := chunk.WaitRows(gctx, limiter, int(n)); err != nil {
						return err
					}
				}
			}
		})
	}
	return g.Wait()
}

// yieldLag is the apply lag above which only one copy worker goes on: the copy's parallel chunks
// can take the server's CPU from the apply's single connection, and the lag (not the copy's
// speed) is what a cut-over waits for. (Migration.testYieldLag replaces it in tests.)
const yieldLag = 100 * time.Millisecond

// yieldToApply waits while the apply lags more than yieldLag (every worker but the first calls
// it before a chunk: the copy slows to one chunk at a time, and never stops for it).
func (m *Migration) yieldToApply(ctx context.Context) error {
	limit := yieldLag
	if m.testYieldLag > 0 {
		limit = m.testYieldLag
	}
	for m.applier.lag() > limit {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// copyRange is one chunk of the copy: the keys after the previous chunk's end up to its own end.
type copyRange struct {
	end   [][]byte // its last key
	final bool     // it ends at the range's end
	where string   // its key range
	args  []any
	done  bool
}

// copyProgress tracks the chunks in flight, so that the checkpointed end (copiedUpTo) is the end
// of the last chunk below which every chunk has committed.
type copyProgress struct {
	m      *Migration
	mu     sync.Mutex
	issued []*copyRange // in key order, from the lowest unfinished chunk
}

func (p *copyProgress) issue(c *copyRange) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.issued = append(p.issued, c)
}

// done records that the chunk c committed n rows in took, and sizes the next chunks (a Sizer
// aims every chunk at the target time; each worker's chunk is a sample, and the size grows from
// the current one, so the workers' samples compound as one worker's would).
func (p *copyProgress) done(c *copyRange, n int64, took time.Duration, sizer *chunk.Sizer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if sizer != nil && !c.final && n > 0 {
		// Only full chunks are samples (rows the apply already wrote are skipped, so n may be
		// below size: the rate is still rows per second actually written).
		p.m.chunkSize.Store(int64(sizer.Next(int(p.m.chunkSize.Load()), int(n), took)))
	}
	c.done = true
	for len(p.issued) > 0 && p.issued[0].done {
		end := p.issued[0].end
		p.m.copiedUpTo.Store(&end)
		p.issued = p.issued[1:]
	}
	if p.m.testAfterChunk != nil {
		p.m.testAfterChunk(took) // one at a time
	}
}

// copyWorker is one copy connection, at READ COMMITTED (see copyRows); a connection that failed is
// replaced on the next attempt.
type copyWorker struct {
	m    *Migration
	conn *sql.Conn
}

func (w *copyWorker) open(ctx context.Context) (*sql.Conn, error) {
	if w.conn != nil {
		return w.conn, nil
	}
	conn, err := w.m.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"); err != nil {
		conn.Close()
		return nil, err
	}
	w.conn = conn
	return conn, nil
}

func (w *copyWorker) close() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

func (w *copyWorker) copyChunk(ctx context.Context, insert, where string, args []any) (int64, error) {
	conn, err := w.open(ctx)
	if err != nil {
		return 0, err
	}
	n, err := w.m.copyChunk(ctx, conn, insert, where, args)
	if err != nil && retry.Transient(err) {
		w.close() // the connection may be gone: the retry takes a new one
	}
	return n, err
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

// keySelect is the select list that reads key values as the comparisons take them back: an ENUM
// as its member number (the server orders and compares ENUM keys by it), the rest as stored.
func keySelect(key []*schema.Column) string {
	out := make([]string, len(key))
	for i, c := range key {
		out[i] = q(c.Name)
		if c.DataType == "enum" {
			out[i] += "+0"
		}
	}
	return strings.Join(out, ", ")
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
	err := retry.Do(ctx, 10, m.log, "read key", func() error {
		out = nil
		rows, err := m.db.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		if !rows.Next() {
			return rows.Err()
		}
		vals, err := schema.ScanRaw(rows)
		if err != nil {
			return err
		}
		out = make([][]byte, len(vals))
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

// copyInsert is the chunk statement without its key range: INSERT INTO ghost (new columns)
// SELECT old columns FROM t AS o ... WHERE <range> AND NOT EXISTS (the row in the ghost).
func (m *Migration) copyInsert() string {
	p := m.plan
	var toCols, fromCols []string
	for _, cm := range p.Columns {
		toCols = append(toCols, q(cm.To.Name))
		fromCols = append(fromCols, m.copyExpr(cm))
	}
	var inGhost []string
	for _, k := range p.Key {
		inGhost = append(inGhost, "g."+q(p.newName(k))+" = o."+q(k.Name))
	}
	return "INSERT INTO " + m.qualified(m.ghostName()) + " (" + strings.Join(toCols, ", ") + ") SELECT " +
		strings.Join(fromCols, ", ") + " FROM " + m.qualified(m.Table) + " AS o FORCE INDEX (" + q(p.KeyName) + ") WHERE NOT EXISTS (SELECT 1 FROM " +
		m.qualified(m.ghostName()) + " AS g WHERE " + strings.Join(inGhost, " AND ") + ") AND "
}

// copyExpr is the SELECT expression the copy reads an original column with.
func (m *Migration) copyExpr(cm ColumnMap) string { return m.convertExpr(cm, "o."+q(cm.From.Name)) }

// copyChunk copies one chunk. A duplicate (1062) on a unique key the original has unchanged is a
// race with the apply, never a duplicate in the data: the ghost holds an older image of another
// row that a later change, not applied yet, moves off that value; and the row being copied took
// the value after the stream started, so its own change will be applied (REPLACE) too. Such rows
// are skipped (the chunk is copied row by row). On the shared key it means the apply wrote the
// row first: the chunk is copied again (NOT EXISTS skips it). On a new or changed unique key it
// may be either, so the chunk is retried once the apply caught up; a duplicate that stays is in
// the data and fails the migration like ALTER TABLE. Any other error fails it too, naming the row.
func (m *Migration) copyChunk(ctx context.Context, conn *sql.Conn, insert, where string, args []any) (int64, error) {
	for race := 0; ; race++ {
		res, err := conn.ExecContext(ctx, insert+where+" LOCK IN SHARE MODE", args...)
		if err == nil {
			n, _ := res.RowsAffected()
			return n, nil
		}
		if retry.Transient(err) || ctx.Err() != nil {
			return 0, err
		}
		key, dup := duplicateKey(err, m.ghostName())
		switch {
		case dup && key == m.plan.GhostKeyName && race < 10:
			continue
		case dup && !m.plan.atRisk(key) && key != m.plan.GhostKeyName:
			return m.copyRowByRow(ctx, conn, insert, where, args)
		case dup && race < 5:
			m.waitApplied(ctx)
			continue
		}
		return m.copyRowByRow(ctx, conn, insert, where, args)
	}
}

// copyRowByRow copies a chunk one row at a time (after the chunk failed): rows that collide with
// the ghost on the shared key or on a unique key the original has unchanged are skipped (see
// copyChunk); any other error fails the copy, naming the row's key and giving the server's error.
func (m *Migration) copyRowByRow(ctx context.Context, conn *sql.Conn, insert, where string, args []any) (int64, error) {
	keyList := make([]string, len(m.plan.Key))
	eq := make([]string, len(m.plan.Key))
	for i, c := range m.plan.Key {
		keyList[i] = q(c.Name)
		eq[i] = q(c.Name) + " = " + schema.KeyPlaceholder(c)
	}
	rows, err := conn.QueryContext(ctx, "SELECT "+keySelect(m.plan.Key)+" FROM "+m.qualified(m.Table)+" WHERE "+where+" ORDER BY "+strings.Join(keyList, ", "), args...)
	if err != nil {
		return 0, err
	}
	var keys [][][]byte
	for rows.Next() {
		vals, err := schema.ScanRaw(rows)
		if err != nil {
			rows.Close()
			return 0, err
		}
		k := make([][]byte, len(vals))
		for i, v := range vals {
			k[i] = bytes.Clone(v)
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	var copied int64
	for _, k := range keys {
		kargs, err := schema.KeyArgs(m.plan.Key, k)
		if err != nil {
			return copied, err
		}
		res, err := conn.ExecContext(ctx, insert+strings.Join(eq, " AND ")+" LOCK IN SHARE MODE", kargs...)
		if err == nil {
			n, _ := res.RowsAffected()
			copied += n
			continue
		}
		if key, dup := duplicateKey(err, m.ghostName()); dup && (key == m.plan.GhostKeyName || !m.plan.atRisk(key)) {
			continue
		}
		if retry.Transient(err) {
			return copied, err
		}
		desc := make([]string, len(k))
		for i, c := range m.plan.Key {
			desc[i] = c.Name + "=" + string(k[i])
		}
		return copied, fmt.Errorf("the row %s of %s cannot be copied into the altered table: %w; a plain ALTER TABLE fails the same way; the original table is unchanged",
			strings.Join(desc, ", "), m.qualified(m.Table), err)
	}
	return copied, nil
}

// waitApplied waits (at most 10s) until the apply reached the binlog position of now.
func (m *Migration) waitApplied(ctx context.Context) {
	deadline := time.Now().Add(10 * time.Second)
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	pos, err := m.streamPositionNow(wctx)
	if err != nil {
		return
	}
	for m.applier.appliedPosition().Compare(pos) < 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
}

// duplicateKey returns the index name of a duplicate-key error (1062).
func duplicateKey(err error, table string) (string, bool) {
	if retry.Code(err) != retry.CodeDuplicateKey {
		return "", false
	}
	msg := err.Error()
	i := strings.LastIndex(msg, "for key '")
	if i < 0 {
		return "", true
	}
	key := strings.TrimSuffix(msg[i+len("for key '"):], "'")
	return strings.TrimPrefix(key, table+"."), true
}
