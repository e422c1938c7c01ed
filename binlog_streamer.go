package ferry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry/internal/retry"
)

// DMLType is the kind of a row change.
type DMLType int

const (
	Insert DMLType = iota + 1
	Update
	Delete
)

func (t DMLType) String() string {
	switch t {
	case Insert:
		return "insert"
	case Update:
		return "update"
	case Delete:
		return "delete"
	}
	return "unknown"
}

// DMLEvent is one row change of a copied table, decoded from the binlog.
type DMLEvent struct {
	Table *TableCopy
	Type  DMLType
	// Before and After hold the values of every column of the source table, in table order, ready
	// to write (see normalizeValue). Before is nil for an insert, After for a delete.
	Before, After []any
	// Position is the end of the rows event that carried the change.
	Position Position
}

// BinlogBatch is what the streamer hands to its listeners: the row changes of one rows event, or
// the commit of a transaction (Commit set, Events empty). Commit positions are transaction
// boundaries: resuming the stream there neither splits a transaction nor skips one.
type BinlogBatch struct {
	Events   []DMLEvent
	Commit   *Position
	Received time.Time
	// EventTime is the source server's timestamp of the event (second precision).
	EventTime time.Time
}

// BinlogListener receives batches in binlog order. An error stops the stream.
type BinlogListener func(ctx context.Context, b *BinlogBatch) error

// BinlogStreamer tails the source's binary log and hands the row changes of the copied tables to its
// listeners, in order.
type BinlogStreamer interface {
	// AddListener adds a listener; listeners are called in the order they were added. Add them
	// before Run.
	AddListener(l BinlogListener)
	// Run streams from the position until ctx ends (returning ctx.Err()) or until every event up to
	// the position given to StopAt has been handed to the listeners (returning nil).
	Run(ctx context.Context, from Position) error
	// StopAt asks Run to return once the stream reaches pos.
	StopAt(pos Position)
	// Position is the end of the last event handed to the listeners.
	Position() Position
}

// SourceBinlogStreamer is the default BinlogStreamer, built on go-mysql's binlog syncer.
//
// It registers as a replica with its own server_id and decodes row events of the copied tables
// only. It refuses, with an error, anything it cannot apply faithfully: statement-format DML and DDL
// that may change a copied table (classified from a SQL parser's syntax tree, see statement.go), a
// row image that is not FULL, a table whose column count changed. The changes of a prepared XA
// transaction are handed over at its XA COMMIT and dropped at XA ROLLBACK (see xa.go). After a lost
// connection it reconnects from the last transaction boundary it handed to the listeners (never
// beyond a pending XA prepare); the events after it are delivered again, which the writer applies
// harmlessly (a row image applied twice is the same row).
type SourceBinlogStreamer struct {
	Conn     ConnConfig
	Flavor   Flavor
	ServerID uint32
	// Tables maps "db.table" of the source to the copy.
	Tables     map[string]*TableCopy
	MaxRetries int
	Logger     logrus.FieldLogger
	// Identity, when set, is the server the stream reads: every connection first checks that the
	// address still reaches it, and stops with ErrSourceChanged if not (after a failover the
	// address may lead to the promoted replica, whose file and offsets differ).
	Identity ServerIdentity
	// MaxPendingXAChanges bounds the row changes of prepared, not yet committed XA transactions
	// kept in memory (see xa.go); default 100000.
	MaxPendingXAChanges int

	listeners []BinlogListener

	mu        sync.Mutex
	pos       Position
	stopAt    *Position
	lastEvent time.Time
	// lastHeard is when anything (an event or a heartbeat) last came from the connection, and
	// atHead whether that was a heartbeat: the source sends one only when it has nothing newer.
	lastHeard time.Time
	atHead    bool
	connID    uint32
	wake      context.CancelFunc
	xa        []*PendingXA // prepared XA transactions of the current connection, oldest first
	streamed  string       // StreamedGTID
}

// AddListener implements BinlogStreamer.
func (s *SourceBinlogStreamer) AddListener(l BinlogListener) { s.listeners = append(s.listeners, l) }

// StopAt implements BinlogStreamer.
func (s *SourceBinlogStreamer) StopAt(pos Position) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopAt = &pos
	if s.wake != nil {
		s.wake() // an idle stream notices at once instead of at its next poll
	}
}

// Position implements BinlogStreamer.
func (s *SourceBinlogStreamer) Position() Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pos
}

// LastEventTime is the source timestamp of the last event received.
func (s *SourceBinlogStreamer) LastEventTime() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastEvent
}

// StreamState says when anything (an event or a heartbeat) last came from the binlog connection,
// and whether the stream was then at the source's head (the last thing heard was a heartbeat, which
// the source sends only after everything before it). The source sends a heartbeat every second
// while idle, so a silence of several seconds means a stalled connection, not a quiet source.
func (s *SourceBinlogStreamer) StreamState() (lastHeard time.Time, atHead bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastHeard, s.atHead
}

func (s *SourceBinlogStreamer) heard(ev *replication.BinlogEvent) {
	_, heartbeat := ev.Event.(*replication.HeartbeatEvent)
	s.mu.Lock()
	s.lastHeard, s.atHead = time.Now(), heartbeat
	s.mu.Unlock()
}

// ConnectionID is the source's connection id of the current binlog dump connection.
func (s *SourceBinlogStreamer) ConnectionID() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connID
}

func (s *SourceBinlogStreamer) reachedStop() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopAt != nil && s.pos.Compare(*s.stopAt) >= 0
}

// Run implements BinlogStreamer.
func (s *SourceBinlogStreamer) Run(ctx context.Context, from Position) error {
	log := s.Logger
	if log == nil {
		log = logrus.StandardLogger()
	}
	s.mu.Lock()
	s.pos = from
	s.mu.Unlock()
	resume := from
	failures := 0
	delay := 100 * time.Millisecond
	for {
		progressed, err := s.stream(ctx, &resume, log)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if perr, ok := retry.AsPermanent(err); ok {
			return fmt.Errorf("binlog stream: %w", perr)
		}
		if progressed {
			failures, delay = 0, 100*time.Millisecond
		}
		failures++
		if failures > max(s.MaxRetries, 1) {
			return fmt.Errorf("binlog stream from %s: giving up after %d attempts: %w", resume, failures, err)
		}
		log.WithError(err).WithField("position", resume.String()).Warn("binlog stream: connection lost, reconnecting from the last transaction boundary")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
		s.mu.Lock()
		s.pos = resume
		s.mu.Unlock()
	}
}

// stream runs one connection. It returns nil when the stop position is reached, and reports whether
// any transaction went through (so a flapping connection that makes progress is retried forever).
func (s *SourceBinlogStreamer) stream(ctx context.Context, resume *Position, log logrus.FieldLogger) (progressed bool, err error) {
	host, p := s.Conn.Socket, 0 // go-mysql dials a unix socket when the host is a path and the port 0
	if host == "" {
		h, port, err := net.SplitHostPort(s.Conn.Addr())
		if err != nil {
			return false, retry.Permanent(err)
		}
		host = h
		p, _ = strconv.Atoi(port)
	}
	cfg := replication.BinlogSyncerConfig{
		TLSConfig:               s.Conn.tlsConfig(),
		ServerID:                s.ServerID,
		Flavor:                  s.Flavor.GoMySQLFlavor(),
		Host:                    host,
		Port:                    uint16(p),
		User:                    s.Conn.User,
		Password:                s.Conn.Password,
		TimestampStringLocation: time.UTC,
		RenderJSONAsMySQLText:   true,
		HeartbeatPeriod:         time.Second,
		ReadTimeout:             30 * time.Second,
		DisableRetrySync:        true,
		Logger:                  goMySQLLogger(log),
		// Decode only the header of row events of tables ferry does not copy: on a busy source (or
		// in an online schema change, whose own copy into the ghost table streams back) most row
		// images belong to other tables, and decoding them was most of the streamer's CPU.
		RowsEventDecodeFunc: func(e *replication.RowsEvent, data []byte) error {
			pos, err := e.DecodeHeader(data)
			if err != nil {
				return err
			}
			if e.Table != nil && s.Tables[string(e.Table.Schema)+"."+string(e.Table.Table)] == nil {
				return nil
			}
			return e.DecodeData(pos, data)
		},
	}
	if !s.Identity.IsZero() {
		if err := s.checkIdentity(ctx); err != nil {
			return false, err
		}
	}
	syncer := replication.NewBinlogSyncer(cfg)
	defer syncer.Close()
	var st *replication.BinlogStreamer
	var executed gomysql.GTIDSet
	if resume.GTID != "" {
		if executed, err = s.Flavor.parseGTIDSet(resume.GTID); err != nil {
			return false, retry.Permanent(err)
		}
	}
	if resume.File == "" && executed != nil {
		// Another server than the one the position was read from (a failover): its binlog has other
		// file names and offsets, so the stream starts after the transactions already applied.
		st, err = syncer.StartSyncGTID(executed.Clone())
	} else {
		st, err = syncer.StartSync(gomysql.Position{Name: resume.File, Pos: resume.Pos})
	}
	if err != nil {
		return false, classifyStreamError(err, *resume)
	}
	s.mu.Lock()
	s.connID = syncer.LastConnectionID()
	s.mu.Unlock()

	s.mu.Lock()
	s.xa = nil // the connection re-reads every pending prepare: resume is never beyond one
	s.mu.Unlock()
	s.mu.Lock()
	behind := s.streamed != ""
	s.mu.Unlock()
	dec := &eventDecoder{s: s, file: resume.File, executed: executed, byGTID: resume.File == "" && executed != nil, behind: behind}
	for {
		if s.reachedStop() {
			return progressed, nil
		}
		wait, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		s.mu.Lock()
		s.wake = cancel
		s.mu.Unlock()
		ev, err := st.GetEvent(wait)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return progressed, ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				continue
			}
			return progressed, classifyStreamError(err, *resume)
		}
		s.heard(ev)
		committed, err := dec.handle(ctx, ev)
		if err != nil {
			return progressed, err
		}
		if committed != nil {
			*resume = *committed
			progressed = true
		}
	}
}

// checkIdentity makes sure the streamer's address still reaches the server it was reading.
func (s *SourceBinlogStreamer) checkIdentity(ctx context.Context) error {
	db, err := s.Conn.Open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	id, err := serverIdentity(ctx, db)
	if err != nil {
		return err
	}
	if !id.Same(s.Identity) {
		return retry.Permanent(fmt.Errorf("%s now reaches another server (%s, was %s: %w): its binlog files and offsets are not the run's; resume (ferry continues on it by GTID when it has every transaction the target holds)", s.Conn, id, s.Identity, ErrSourceChanged))
	}
	return nil
}

func classifyStreamError(err error, at Position) error {
	var me *gomysql.MyError
	if errors.As(err, &me) && me.Code == 1236 {
		return retry.Permanent(fmt.Errorf("the source no longer has the binlog at %s (%w): %w; %s, and keep binlogs longer than the copy takes (binlog_expire_logs_seconds)", at, ErrBinlogPurged, err, startOver))
	}
	if strings.Contains(err.Error(), "1236") {
		return retry.Permanent(fmt.Errorf("the source no longer has the binlog at %s (%w): %w; %s, and keep binlogs longer than the copy takes (binlog_expire_logs_seconds)", at, ErrBinlogPurged, err, startOver))
	}
	return err
}

// eventDecoder turns raw binlog events into listener batches, tracking the position and
// transaction boundaries.
type eventDecoder struct {
	s     *SourceBinlogStreamer
	file  string
	inTxn bool
	gtid  string
	// executed is the source's GTID set up to the last commit, when the stream started from a
	// position with one (nil otherwise); pending is the GTID of the transaction being read.
	executed gomysql.GTIDSet
	pending  string
	// byGTID: the stream was started by GTID set, not by file and offset.
	byGTID bool
	// behind: this connection has not yet passed what earlier ones handed over (streamed).
	behind bool
	// groupStart is where the current event group (transaction) starts.
	groupStart Position
	// xa is the prepared XA transaction being read (between its start and its XA PREPARE).
	xa *PendingXA
}

const logEventArtificial = 0x20

func (d *eventDecoder) setPos(pos uint32, ts uint32) {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	if d.s.pos.File != d.file || pos > d.s.pos.Pos {
		d.s.pos = Position{File: d.file, Pos: pos}
	}
	if ts > 0 {
		d.s.lastEvent = time.Unix(int64(ts), 0)
	}
}

func (d *eventDecoder) deliver(ctx context.Context, b *BinlogBatch) error {
	for _, l := range d.s.listeners {
		if err := l(ctx, b); err != nil {
			return retry.Permanent(err)
		}
	}
	return nil
}

// noteStreamed records, before any change of the transaction just begun is handed over, the set
// of every transaction whose changes the listeners may have seen (StreamedGTID). A writer may
// commit changes beyond its applied position (part of a transaction, or transactions applied in
// parallel past the low-water mark), so only this set bounds what the target may hold.
func (d *eventDecoder) noteStreamed() error {
	if d.executed == nil || d.pending == "" {
		return nil
	}
	set := d.executed.Clone()
	if err := set.Update(d.pending); err != nil {
		return retry.Permanent(fmt.Errorf("track the GTID %s: %w", d.pending, err))
	}
	now := set.String()
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	if d.behind {
		merged, err := d.s.Flavor.mergeGTID(d.s.streamed, now)
		if err != nil {
			return retry.Permanent(err)
		}
		d.behind = merged != now
		now = merged
	}
	d.s.streamed = now
	return nil
}

// StreamedGTID is the GTID set of every transaction any of whose changes were handed to the
// listeners ("" when the stream started from a position without a GTID set).
func (s *SourceBinlogStreamer) StreamedGTID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streamed
}

// gtidSet is the GTID set a position at the current boundary carries: the set tracked since the
// start, or (without one) the last transaction's GTID.
func (d *eventDecoder) gtidSet() string {
	if d.executed == nil {
		return d.gtid
	}
	return d.executed.String()
}

func (d *eventDecoder) commit(ctx context.Context, h *replication.EventHeader) (*Position, error) {
	d.inTxn = false
	d.setPos(h.LogPos, h.Timestamp)
	if d.executed != nil && d.pending != "" {
		if err := d.executed.Update(d.pending); err != nil {
			return nil, retry.Permanent(fmt.Errorf("track the GTID %s at %s:%d: %w", d.pending, d.file, h.LogPos, err))
		}
	}
	d.pending = ""
	p := d.s.clampToPendingXA(Position{File: d.file, Pos: h.LogPos, GTID: d.gtidSet()})
	if err := d.deliver(ctx, &BinlogBatch{Commit: &p, Received: time.Now(), EventTime: time.Unix(int64(h.Timestamp), 0)}); err != nil {
		return nil, err
	}
	return &p, nil
}

func (d *eventDecoder) handle(ctx context.Context, ev *replication.BinlogEvent) (*Position, error) {
	h := ev.Header
	switch e := ev.Event.(type) {
	case *replication.RotateEvent:
		d.file = string(e.NextLogName)
		d.s.mu.Lock()
		d.s.pos = Position{File: d.file, Pos: uint32(e.Position)}
		d.s.mu.Unlock()
		if d.inTxn {
			return nil, nil
		}
		if d.byGTID && (h.Flags&logEventArtificial != 0 || h.LogPos == 0) {
			// The server's announcement of where a stream started by GTID is: the file, with the
			// offset of its start, not of the first transaction after the set. The first commit
			// gives the position.
			return nil, nil
		}
		p := d.s.clampToPendingXA(Position{File: d.file, Pos: uint32(e.Position), GTID: d.gtidSet()})
		if err := d.deliver(ctx, &BinlogBatch{Commit: &p, Received: time.Now()}); err != nil {
			return nil, err
		}
		return &p, nil
	case *replication.TransactionPayloadEvent: // MySQL 8 binlog transaction compression
		var last *Position
		for _, inner := range e.Events {
			p, err := d.handle(ctx, inner)
			if err != nil {
				return nil, err
			}
			if p != nil {
				last = p
			}
		}
		d.setPos(h.LogPos, h.Timestamp)
		return last, nil
	}
	if h.Flags&logEventArtificial != 0 || h.LogPos == 0 {
		return nil, nil
	}
	switch e := ev.Event.(type) {
	case *replication.MariadbGTIDEvent:
		d.gtid = e.GTID.String()
		d.pending = d.gtid
		if err := d.noteStreamed(); err != nil {
			return nil, err
		}
		d.inTxn = !e.IsStandalone()
		d.groupStart = Position{File: d.file, Pos: h.LogPos - h.EventSize, GTID: d.gtidSet()}
		if e.Flags&mariadbFlagPreparedXA != 0 {
			d.xa = &PendingXA{Start: d.groupStart}
		}
	case *replication.GTIDEvent:
		if u, err := uuidString(e.SID); err == nil {
			d.gtid = fmt.Sprintf("%s:%d", u, e.GNO)
			if e.GNO > 0 { // an anonymous transaction (gtid_mode OFF) has none
				d.pending = d.gtid
				if err := d.noteStreamed(); err != nil {
					return nil, err
				}
			}
		}
		d.groupStart = Position{File: d.file, Pos: h.LogPos - h.EventSize, GTID: d.gtidSet()}
	case *replication.GenericEvent:
		if h.EventType == replication.XA_PREPARE_LOG_EVENT {
			return d.prepareXA(ctx, h, e.Data)
		}
	case *replication.XIDEvent:
		return d.commit(ctx, h)
	case *replication.QueryEvent:
		q := strings.TrimSpace(string(e.Query))
		switch xa := xaVerb(q); {
		case strings.EqualFold(q, "BEGIN"):
			d.inTxn = true
		case strings.EqualFold(q, "COMMIT"):
			return d.commit(ctx, h)
		case xa == "START" || xa == "BEGIN": // MySQL starts the prepare group with it
			d.inTxn = true
			d.xa = &PendingXA{Start: d.groupStart}
		case xa == "COMMIT" || xa == "ROLLBACK":
			return d.completeXA(ctx, h, q)
		case xa != "": // XA END
		default:
			if err := d.s.checkStatement(string(e.Schema), q); err != nil {
				return nil, retry.Permanent(err)
			}
			if !d.inTxn {
				return d.commit(ctx, h)
			}
		}
	case *replication.RowsEvent:
		if err := d.rows(ctx, h, e); err != nil {
			return nil, err
		}
	}
	d.setPos(h.LogPos, h.Timestamp)
	return nil, nil
}

func (d *eventDecoder) rows(ctx context.Context, h *replication.EventHeader, e *replication.RowsEvent) error {
	if e.Table == nil {
		return nil
	}
	name := string(e.Table.Schema) + "." + string(e.Table.Table)
	t := d.s.Tables[name]
	if t == nil {
		return nil
	}
	cols := t.Source.Columns
	// Which schema columns the event's columns are: all of them, or (MySQL 8.0.23+) all but the
	// VIRTUAL generated ones. Anything else means the table changed under us.
	var mapping []int
	switch int(e.ColumnCount) {
	case len(cols):
	default:
		for i, c := range cols {
			if !c.Virtual {
				mapping = append(mapping, i)
			}
		}
		if len(mapping) != int(e.ColumnCount) {
			return retry.Permanent(fmt.Errorf("table %s has %d columns in the binlog but %d when the copy started: its %w mid-run; ferry stopped before writing rows under the wrong schema; %s", name, e.ColumnCount, len(cols), ErrSchemaChanged, startOver))
		}
	}
	for i := range e.SkippedColumns {
		if len(e.SkippedColumns[i]) > 0 {
			return retry.Permanent(fmt.Errorf("table %s: a row event without the full row image (binlog_row_image is not FULL for some session); set binlog_row_image=FULL globally", name))
		}
	}
	image := func(raw []any) []any {
		out := make([]any, len(cols))
		for i, v := range raw {
			ci := i
			if mapping != nil {
				ci = mapping[i]
			}
			if ci < len(cols) {
				out[ci] = normalizeValue(&cols[ci], v)
			}
		}
		return out
	}
	pos := Position{File: d.file, Pos: h.LogPos}
	var evs []DMLEvent
	switch e.Type() {
	case replication.EnumRowsEventTypeInsert:
		for _, r := range e.Rows {
			evs = append(evs, DMLEvent{Table: t, Type: Insert, After: image(r), Position: pos})
		}
	case replication.EnumRowsEventTypeDelete:
		for _, r := range e.Rows {
			evs = append(evs, DMLEvent{Table: t, Type: Delete, Before: image(r), Position: pos})
		}
	case replication.EnumRowsEventTypeUpdate:
		for i := 0; i+1 < len(e.Rows); i += 2 {
			evs = append(evs, DMLEvent{Table: t, Type: Update, Before: image(e.Rows[i]), After: image(e.Rows[i+1]), Position: pos})
		}
	default:
		return nil
	}
	b := &BinlogBatch{Events: evs, Received: time.Now(), EventTime: time.Unix(int64(h.Timestamp), 0)}
	if d.xa != nil {
		return d.bufferXA(b)
	}
	return d.deliver(ctx, b)
}

var leadingComment = regexp.MustCompile(`^(\s*(/\*.*?\*/|#[^\n]*\n|--[^\n]*\n))*\s*`)

// mentionsTable reports whether a lower-cased statement names table (qualified with db, or
// unqualified while db is the statement's default database).
func mentionsTable(q, defaultDB, db, table string) bool {
	for from := 0; ; {
		i := strings.Index(q[from:], table)
		if i < 0 {
			return false
		}
		i += from
		from = i + len(table)
		before, after := byte(' '), byte(' ')
		if i > 0 {
			before = q[i-1]
		}
		if end := i + len(table); end < len(q) {
			after = q[end]
		}
		if before == '`' {
			if after != '`' {
				continue
			}
			i--
			if i > 0 {
				before = q[i-1]
			} else {
				before = ' '
			}
		} else if isIdentByte(before) || isIdentByte(after) {
			continue
		}
		if before == '.' {
			qual := strings.TrimSuffix(q[:i-1], "`")
			j := len(qual)
			for j > 0 && isIdentByte(qual[j-1]) {
				j--
			}
			if qual[j:] == db {
				return true
			}
			continue
		}
		if defaultDB == db {
			return true
		}
	}
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 0x80
}

func abbreviateSQL(q string) string {
	q = strings.Join(strings.Fields(q), " ")
	if len(q) > 100 {
		return q[:97] + "..."
	}
	return q
}

func uuidString(b []byte) (string, error) {
	if len(b) != 16 {
		return "", errors.New("bad sid")
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
