package osc

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/internal/apply"
	"github.com/ferrykit/ferry/internal/retry"
	"github.com/ferrykit/ferry/schema"
)

// applier applies the original table's binlog row changes to the ghost table, mapped to the new
// columns, and watches the changelog's heartbeats and cut-over markers come back.
//
// Each change becomes "set the row to this image" (REPLACE of the mapped after-image) or "delete
// the row with this key" (DELETE by the shared key): applying a stretch of binlog in order leaves
// every row as the original has it at the end of the stretch whatever the ghost held before, so a
// copied row and a racing change converge, and a transaction that swaps unique values between rows
// never fails. New columns are left to their defaults (REPLACE writes a whole row). Character
// columns whose character set changes are written as CONVERT(bytes USING old charset): binlog values
// are bytes of the old character set.
type applier struct {
	m         *Migration
	db        *sql.DB
	orig      *schema.Table
	changelog string // db.table of the changelog
	queue     chan *ferry.BinlogBatch
	queued    atomic.Int64 // events queued, not yet applied
	events    atomic.Int64
	// mapping writes the original's row changes to the ghost table (package apply, the engine the
	// copy's binlog writer uses too): each ghost column from its original column through the same
	// conversion the copy uses (valueExpr, convertExpr), deleted by the shared key.
	mapping *apply.Mapping
	// maxPacket is the server's max_allowed_packet: the apply's multi-row statements stay under it.
	maxPacket int

	// watching is set when the cut-over marker is applied: from there on (binlog order) the
	// original table is locked, so a row change of it means a write reached the old table after the
	// last change was applied; such changes are counted in sneaked, not applied, and the applied
	// position no longer moves (a failed cut-over streams them again from there).
	watching atomic.Bool
	sneaked  atomic.Int64

	mu          sync.Mutex
	applied     ferry.Position
	heartbeatAt time.Time // write time of the last heartbeat that came back
	lastLag     time.Duration
	markers     map[string]chan struct{}
	// touched holds, once tracking starts (the verification pass), the keys of the rows the apply
	// changed since, for the re-check of those rows under the cut-over lock; overflow is set when
	// there were more than maxTracked.
	tracking bool
	touched  map[string][]any
	overflow bool
}

func newApplier(m *Migration, db *sql.DB, orig, changelog *schema.Table) *applier {
	a := &applier{m: m, db: db, orig: orig, changelog: changelog.Database + "." + changelog.Name,
		queue: make(chan *ferry.BinlogBatch, 1024), markers: map[string]chan struct{}{}}
	a.mapping = m.applyMapping()
	return a
}

// applyMapping maps the original's row images to the ghost table: every planned column through
// the copy's conversion, the shared key compared in each ghost key column's collation.
func (m *Migration) applyMapping() *apply.Mapping {
	p := m.plan
	am := &apply.Mapping{Target: m.qualified(m.ghostName())}
	for _, cm := range p.Columns {
		e := valueExpr(cm)
		if cm.To.DataType == "json" && !m.flavor.MariaDB && e == "?" {
			e = "CAST(CONVERT(? USING utf8mb4) AS JSON)" // MySQL refuses binary strings as JSON
		}
		am.Columns = append(am.Columns, apply.Column{Name: cm.To.Name, Source: cm.From.Ordinal, Expr: m.convertExpr(cm, e)})
	}
	for _, k := range p.Key {
		for _, cm := range p.Columns {
			if cm.From == k {
				e := valueExpr(cm)
				if isChar(cm.To) && e == "?" {
					e = schema.KeyPlaceholder(cm.To) // compare in the column's collation, so the index is used
				}
				am.Key = append(am.Key, apply.Column{Name: cm.To.Name, Source: k.Ordinal, Expr: e})
			}
		}
	}
	return am
}

// valueExpr is the SQL expression a binlog value of the original column takes when written to the
// ghost column.
func valueExpr(cm ColumnMap) string {
	// ENUM and SET values come from the binlog as the member index / bit set of the old
	// definition: when the type changes, name the member(s) by the old list.
	if (cm.From.DataType == "enum" || cm.From.DataType == "set") && cm.From.ColumnType != cm.To.ColumnType {
		if members, ok := memberList(cm.From.ColumnType); ok {
			if cm.From.DataType == "enum" {
				return "ELT(?, " + members + ")"
			}
			return "MAKE_SET(?, " + members + ")"
		}
	}
	if isChar(cm.From) && isChar(cm.To) && !strings.EqualFold(cm.From.Charset, cm.To.Charset) {
		return "CONVERT(CAST(? AS BINARY) USING " + cm.From.Charset + ")"
	}
	if isChar(cm.From) && !isChar(cm.To) && !strings.EqualFold(cm.To.DataType, cm.From.DataType) &&
		cm.To.Charset == "" && !isBinaryType(cm.To) {
		// e.g. VARCHAR → INT: let the server read the bytes as text of the old character set
		return "CONVERT(CAST(? AS BINARY) USING " + cm.From.Charset + ")"
	}
	return sourceTypeExpr(cm)
}

func isBinaryType(c *schema.Column) bool {
	switch c.DataType {
	case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob":
		return true
	}
	return false
}

// listen is the streamer's listener: it queues batches (blocking while the queue is full).
func (a *applier) listen(ctx context.Context, b *ferry.BinlogBatch) error {
	if testTrace != nil {
		for i := range b.Events {
			testTrace("received", &b.Events[i])
		}
	}

	a.queued.Add(int64(len(b.Events)))
	select {
	case a.queue <- b:
		return nil
	case <-ctx.Done():
		a.queued.Add(-int64(len(b.Events)))
		return ctx.Err()
	}
}

// marker returns a channel closed once the changelog marker with this value has been applied.
func (a *applier) marker(value string) chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch := make(chan struct{})
	a.markers[value] = ch
	return ch
}

// forget unregisters a marker, so that if it comes back late it does not switch the applier to
// watching.
func (a *applier) forget(value string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.markers, value)
}

func (a *applier) appliedPosition() ferry.Position {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.applied
}

// lag is how old the newest heartbeat that came back was when it came back, or, if heartbeats stop
// coming back, how long ago the last one was written.
func (a *applier) lag() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.heartbeatAt.IsZero() {
		return 0
	}
	since := time.Since(a.heartbeatAt) - a.m.HeartbeatInterval
	return max(a.lastLag, since, 0)
}

func (a *applier) backlog() int64 { return a.queued.Load() }

func (a *applier) run(ctx context.Context) error {
	const limit = 500
	for {
		pending, n, _, err := apply.Take(ctx, a.queue, nil, func(b *ferry.BinlogBatch) int { return len(b.Events) }, limit)
		if err != nil {
			return err
		}
		if a.m.testApplyDelay != nil {
			if d := a.m.testApplyDelay(); d > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(d):
				}
			}
		}
		var ops []apply.Change
		var keys [][]any // the original's key of each op's row, to name it in an error
		var commit *ferry.Position
		flush := func() error {
			if len(ops) > 0 {
				if err := a.apply(ctx, ops, keys); err != nil {
					return err
				}
				a.events.Add(int64(len(ops)))
				ops, keys = ops[:0], keys[:0]
			}
			if commit != nil {
				a.mu.Lock()
				if commit.Compare(a.applied) > 0 {
					a.applied = *commit
				}
				a.mu.Unlock()
			}
			return nil
		}
		for _, b := range pending {
			for i := range b.Events {
				e := &b.Events[i]
				if e.Table.Source.Database+"."+e.Table.Source.Name == a.changelog {
					if err := flush(); err != nil {
						return err
					}
					a.changelogEvent(e)
					continue
				}
				if a.watching.Load() {
					a.sneaked.Add(1)
					continue
				}
				if testTrace != nil {
					testTrace("applying", e)
				}
				if e.Before != nil && (e.After == nil || a.m.plan.KeyWidened || !a.mapping.SameKey(e.Before, e.After)) {
					ops = append(ops, apply.Change{Mapping: a.mapping, Delete: true, Values: a.mapping.KeyOf(e.Before)})
					keys = append(keys, a.mapping.KeyOf(e.Before))
				}
				if e.After != nil {
					ops = append(ops, apply.Change{Mapping: a.mapping, Values: a.mapping.Image(e.After)})
					keys = append(keys, a.mapping.KeyOf(e.After))
				}
				a.track(e)
			}
			if b.Commit != nil && !a.watching.Load() {
				commit = b.Commit
			}
		}
		if err := flush(); err != nil {
			return err
		}
		a.queued.Add(-int64(n))
	}
}

// maxTracked bounds the keys remembered for the re-check under the cut-over lock.
const maxTracked = 20_000

func (a *applier) startTracking() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tracking, a.touched, a.overflow = true, map[string][]any{}, false
}

// track remembers the keys of a change (before and after image) while tracking.
func (a *applier) track(e *ferry.DMLEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.tracking || a.overflow {
		return
	}
	for _, img := range [][]any{e.Before, e.After} {
		if img == nil {
			continue
		}
		k := a.mapping.KeyOf(img)
		a.touched[fmt.Sprint(k)] = k
	}
	if len(a.touched) > maxTracked {
		a.overflow, a.touched = true, nil
	}
}

// touchedKeys returns the keys remembered so far (kept: a later attempt checks them again).
func (a *applier) touchedKeys() ([][]any, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([][]any, 0, len(a.touched))
	for _, k := range a.touched {
		out = append(out, k)
	}
	return out, a.overflow
}

func (a *applier) changelogEvent(e *ferry.DMLEvent) {
	if e.After == nil || len(e.After) < 3 {
		return
	}
	hint, _ := e.After[1].([]byte)
	value, _ := e.After[2].([]byte)
	switch string(hint) {
	case "heartbeat":
		ns, err := strconv.ParseInt(string(value), 10, 64)
		if err != nil {
			return
		}
		at := time.Unix(0, ns)
		a.mu.Lock()
		if at.After(a.heartbeatAt) {
			a.heartbeatAt = at
			a.lastLag = time.Since(at)
		}
		a.mu.Unlock()
	case "cut-over":
		if a.m.testMarkerDelay != nil {
			time.Sleep(a.m.testMarkerDelay())
		}
		a.mu.Lock()
		if ch, ok := a.markers[string(value)]; ok {
			a.watching.Store(true)
			close(ch)
			delete(a.markers, string(value))
		}
		a.mu.Unlock()
	}
}

// apply writes the changes in one transaction (package apply: consecutive changes of one kind as
// one statement, the transaction run again on a transient error).
//
// A data error (a value the new column cannot hold, a duplicate on a new unique key) fails the
// migration like the same error fails ALTER TABLE; the changes are then tried one by one, each
// rolled back, to name the row whose change the server refuses.
func (a *applier) apply(ctx context.Context, ops []apply.Change, keys [][]any) error {
	stmts, err := apply.StatementsWithin(ops, a.maxPacket)
	if err != nil {
		return fmt.Errorf("apply %d row changes to the ghost table: %w", len(ops), err)
	}
	err = apply.Exec(ctx, a.db, stmts, applyAttempts, a.m.log, "apply row changes to the ghost table")
	if err == nil {
		return nil
	}
	if !retry.Transient(err) && ctx.Err() == nil {
		for i, op := range ops {
			tx, terr := a.db.BeginTx(ctx, nil)
			if terr != nil {
				break
			}
			var rowErr error
			one, _ := apply.StatementsWithin([]apply.Change{op}, a.maxPacket)
			for _, st := range one {
				if _, rowErr = tx.ExecContext(ctx, st.Query, st.Args...); rowErr != nil {
					break
				}
			}
			tx.Rollback()
			if rowErr != nil && !retry.Transient(rowErr) {
				desc := make([]string, len(a.m.plan.Key))
				for j, c := range a.m.plan.Key {
					desc[j] = fmt.Sprintf("%s=%v", c.Name, printable(keys[i][j]))
				}
				return fmt.Errorf("apply the change of the row %s of %s to the altered table: %w; a plain ALTER TABLE fails the same way on this row; the original table is unchanged",
					strings.Join(desc, ", "), a.m.qualified(a.m.Table), rowErr)
			}
		}
	}
	return fmt.Errorf("apply %d row changes to the ghost table: %w", len(ops), err)
}

// printable renders a key value for a message.
func printable(v any) any {
	if b, ok := v.([]byte); ok {
		return string(b)
	}
	return v
}

// applyAttempts is how often one transaction of the apply is tried on transient errors.
const applyAttempts = 20

// stream runs the binlog streamer on the original and changelog tables; it can be stopped (before
// the cut-over's rename, which the streamer would otherwise refuse as DDL on a watched table) and
// started again from the last applied position.
type stream struct {
	m        *Migration
	ctx      context.Context
	tables   map[string]*ferry.TableCopy
	failed   chan error // the first unexpected end of a streamer (buffered: never blocks it)
	mu       sync.Mutex
	cancel   context.CancelFunc
	done     chan struct{}
	detached *atomic.Bool
	endErr   error // why the last streamer returned (read after done is closed)
}

func (m *Migration) newStream(ctx context.Context, orig, changelog *schema.Table) *stream {
	tables := map[string]*ferry.TableCopy{
		orig.Database + "." + orig.Name:           {Source: orig, TargetDatabase: orig.Database, TargetTable: m.ghostName(), Columns: orig.WritableColumns()},
		changelog.Database + "." + changelog.Name: {Source: changelog, TargetDatabase: changelog.Database, TargetTable: changelog.Name, Columns: changelog.WritableColumns()},
	}
	return &stream{m: m, ctx: ctx, tables: tables, failed: make(chan error, 1)}
}

func (s *stream) start(from ferry.Position) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithCancel(s.ctx)
	s.cancel = cancel
	s.done = make(chan struct{})
	detached := &atomic.Bool{}
	s.detached = detached
	conn := s.m.Conn
	if s.m.BinlogConn != nil {
		conn = *s.m.BinlogConn
	}
	st := &ferry.SourceBinlogStreamer{Conn: conn, Flavor: s.m.flavor, ServerID: s.m.ServerID, Tables: s.tables,
		MaxRetries: 10, Logger: s.m.log}
	st.AddListener(s.m.applier.listen)
	done := s.done
	go func() {
		defer close(done)
		err := st.Run(ctx, from)
		if s.m.testStreamEndDelay > 0 && detached.Load() {
			time.Sleep(s.m.testStreamEndDelay)
		}
		s.mu.Lock()
		s.endErr = err
		s.mu.Unlock()
		if err != nil && ctx.Err() == nil && !detached.Load() {
			select {
			case s.failed <- fmt.Errorf("binlog stream: %w", err):
			default: // an earlier failure is already reported
			}
		}
	}()
}

// expectEnd makes the streamer's end not an error: during a cut-over it stops at the RENAME, which
// it refuses as DDL on its table, after handing over every change before it.
func (s *stream) expectEnd() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.detached != nil {
		s.detached.Store(true)
	}
}

// ended returns a channel closed when the current streamer has returned.
func (s *stream) ended() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

// endedAtRename reports whether the last streamer stopped at a RENAME of the original table (its
// refusal of the cut-over's DDL, after handing over every row change before it).
func (s *stream) endedAtRename() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ddl *ferry.DDLError
	if !errors.As(s.endErr, &ddl) {
		return false, s.endErr
	}
	q := strings.ToUpper(strings.TrimSpace(ddl.Query))
	return strings.HasPrefix(q, "RENAME") || strings.HasPrefix(q, "ALTER") && strings.Contains(q, " RENAME "), s.endErr
}

// stop ends the streamer and waits until it has returned.
func (s *stream) stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel = nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if done != nil {
		<-done
	}
}

// testTrace, set by tests, sees every row change as it is received and as it is applied.
var testTrace func(stage string, e *ferry.DMLEvent)

// memberList returns the quoted member list of an enum('a','b') / set('a','b') column type, as SQL.
func memberList(columnType string) (string, bool) {
	i := strings.IndexByte(columnType, '(')
	j := strings.LastIndexByte(columnType, ')')
	if i < 0 || j <= i+1 {
		return "", false
	}
	return columnType[i+1 : j], true
}
