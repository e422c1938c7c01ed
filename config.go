package ferry

import (
	"bufio"
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry/schema"
)

// ConnConfig says how to reach one server.
type ConnConfig struct {
	Host string
	Port int
	// Socket, when set, is the server's unix socket path; Host and Port are then not used.
	Socket   string
	User     string
	Password string // never logged
	// TLS, when set, encrypts every connection to the server with it — the pool's and the binlog
	// stream's alike. An empty ServerName is filled with Host (unless InsecureSkipVerify is set), so
	// the certificate is checked against the name that was dialled.
	TLS *tls.Config
	// Params are extra go-sql-driver/mysql DSN parameters (e.g. "tls": "custom").
	Params map[string]string
	// Timeout bounds connecting; default 10s.
	Timeout time.Duration
	// ReadBufferSize, when > 0, reads from the server through a buffer of this many bytes. The
	// driver reads at most 4 KiB per system call; a reader of large result sets (a snapshot)
	// spends less CPU with one large read per call.
	ReadBufferSize int
}

// Addr is host:port, or the socket path when Socket is set.
func (c ConnConfig) Addr() string {
	if c.Socket != "" {
		return c.Socket
	}
	port := c.Port
	if port == 0 {
		port = 3306
	}
	host := c.Host
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// String describes the connection without its password, for logs.
func (c ConnConfig) String() string { return c.User + "@" + c.Addr() }

// tlsConfig is c.TLS with ServerName defaulted to the host dialled, or nil without TLS.
func (c ConnConfig) tlsConfig() *tls.Config {
	if c.TLS == nil {
		return nil
	}
	t := c.TLS.Clone()
	if t.ServerName == "" && !t.InsecureSkipVerify {
		t.ServerName = c.Host
		if t.ServerName == "" {
			t.ServerName = "127.0.0.1"
		}
	}
	return t
}

// dsn builds the driver configuration. Every ferry connection pins the session so values move as
// bytes: time_zone is UTC (TIMESTAMP values are never shifted), results come back in the column's
// own character set (character_set_results=binary, so latin1 stays latin1), and writes run in
// strict mode with NO_AUTO_VALUE_ON_ZERO (a key of 0 is a row, not a request for a new id).
func (c ConnConfig) dsn() *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.User = c.User
	cfg.Passwd = c.Password
	cfg.Net = "tcp"
	if c.Socket != "" {
		cfg.Net = "unix"
	}
	cfg.Addr = c.Addr()
	cfg.TLS = c.tlsConfig()
	cfg.InterpolateParams = true
	cfg.MaxAllowedPacket = 0 // ask the server
	cfg.Timeout = c.Timeout
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if c.ReadBufferSize > 0 {
		size := c.ReadBufferSize
		cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := (&net.Dialer{KeepAlive: 15 * time.Second}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &bufferedConn{Conn: nc, r: bufio.NewReaderSize(nc, size)}, nil
		}
	}
	cfg.Params = SessionParams()
	for k, v := range c.Params {
		cfg.Params[k] = v
	}
	return cfg
}

// bufferedConn reads through a buffer. The protocol is request/response, so the buffer is empty
// whenever the driver writes a command: nothing read ahead belongs to another exchange.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// SessionParams are the go-sql-driver/mysql DSN parameters every ferry connection is opened with
// (see ConnConfig.Open). A host that hands ferry its own *sql.DB (Ferry.Source, Ferry.Target) must
// open it with them, e.g. by adding them to its mysql.Config.Params; Initialize checks the pool's
// session and refuses one that lacks them.
func SessionParams() map[string]string {
	return map[string]string{
		"time_zone":             "'+00:00'",
		"character_set_results": "binary",
		"sql_mode":              "'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
		"foreign_key_checks":    "0",
	}
}

// Open opens a connection pool with ferry's session settings and checks that it connects.
func (c ConnConfig) Open(ctx context.Context) (*sql.DB, error) {
	connector, err := mysql.NewConnector(c.dsn())
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", c, err)
	}
	db := sql.OpenDB(connector)
	db.SetConnMaxIdleTime(time.Minute)
	db.SetMaxIdleConns(32)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect %s: %w", c, err)
	}
	return db, nil
}

// TableFilter selects the tables to copy. A table is selected when its database is in Databases (or
// Databases is empty and it matches an Include pattern) and it matches no Exclude pattern.
// Patterns are "db.table" with path.Match wildcards: "shop.*", "*.orders", "shop.order_?".
type TableFilter struct {
	Databases []string `json:"databases,omitempty"`
	Include   []string `json:"include,omitempty"`
	Exclude   []string `json:"exclude,omitempty"`
}

func (f TableFilter) String() string {
	var parts []string
	for _, p := range []struct {
		name string
		list []string
	}{{"databases", f.Databases}, {"include", f.Include}, {"exclude", f.Exclude}} {
		if len(p.list) > 0 {
			parts = append(parts, p.name+" "+strings.Join(p.list, ","))
		}
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, "; ")
}

func (f TableFilter) equal(o TableFilter) bool {
	return slices.Equal(f.Databases, o.Databases) && slices.Equal(f.Include, o.Include) && slices.Equal(f.Exclude, o.Exclude)
}

// Selects reports whether database.table is selected.
func (f TableFilter) Selects(database, table string) bool {
	name := database + "." + table
	for _, p := range f.Exclude {
		if ok, _ := path.Match(p, name); ok {
			return false
		}
	}
	for _, d := range f.Databases {
		if d == database {
			return true
		}
	}
	for _, p := range f.Include {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

func (f TableFilter) validate() error {
	if len(f.Databases) == 0 && len(f.Include) == 0 {
		return errors.New("no tables selected: set Tables.Databases or Tables.Include (e.g. \"shop.*\")")
	}
	for _, p := range append(append([]string{}, f.Include...), f.Exclude...) {
		if _, err := path.Match(p, "x.y"); err != nil || !strings.Contains(p, ".") {
			return fmt.Errorf("table pattern %q: want \"database.table\" with optional * and ? wildcards", p)
		}
	}
	return nil
}

// CopyFilter restricts which rows move, e.g. one tenant's rows. The same filter applies to the row
// copy (as an SQL condition on the source) and to binlog events, and both paths must decide
// membership identically, or rows are lost or leak. An UPDATE that moves a row out of the filter
// deletes it on the target; one that moves it in inserts it.
type CopyFilter interface {
	// Condition returns an SQL condition over table's columns selecting the rows to copy, or "" for
	// every row of the table.
	Condition(table *schema.Table) (string, error)
	// Matches reports whether a row image (values of every column of table, in column order, as
	// decoded from the binlog) belongs on the target. It must decide exactly as Condition does on the
	// source server; source evaluates SQL there, so a filter can let the server decide.
	Matches(ctx context.Context, source SourceEvaluator, table *schema.Table, row []any) (bool, error)
}

// FilterFingerprinter is implemented by a CopyFilter that can describe exactly which rows it
// selects. The checkpoint records the fingerprint, and a resume whose filter has another one is
// refused; a resume with a filter that has no Fingerprint method is refused too, since ferry cannot
// tell whether it selects the rows the checkpoint's run selected. Two filters must have the same
// fingerprint exactly when they select the same rows: include every parameter (column, value and
// its type, tenant list...).
type FilterFingerprinter interface {
	Fingerprint() string
}

// filterIdentity is what the checkpoint records for a filter, and whether it can be compared.
func filterIdentity(f CopyFilter) (string, bool) {
	if f == nil {
		return "", true
	}
	if fp, ok := f.(FilterFingerprinter); ok {
		return fp.Fingerprint(), true
	}
	return fmt.Sprintf("%T (no Fingerprint method)", f), false
}

// ColumnEquals is a CopyFilter selecting rows whose Column equals Value, in every table that has the
// column (tables without it are copied whole), e.g. ColumnEquals{Column: "tenant_id", Value: 42}.
// Value must be an integer or a string. It is written as a literal of the column's kind, so the
// comparison is exact: an integer literal for an integer column (a string there must hold an
// integer: MySQL compares an integer column with a string as doubles, where BIGINT values above
// 2^53 match their neighbours), an exact decimal literal for a DECIMAL column, a string
// literal otherwise (so 7 selects '7' in a VARCHAR column, not '07' or '7.0').
//
// Equality is the source server's, on both paths: the copy selects rows with "column = value", and
// a binlog row image is judged by the source server evaluating that same condition on the image's
// value, restored to the column's type and collation (see rowValueExpr). So under a case- and
// PAD SPACE-insensitive collation 'ACME' and 'acme ' are the tenant 'acme' on both paths; a DECIMAL
// '12.50' equals 12.5; a NULL never matches. Columns of types whose binlog values cannot be restored
// exactly (FLOAT, DOUBLE, BIT, ENUM, SET, JSON, spatial) are refused before anything is copied.
type ColumnEquals struct {
	Column string
	Value  any
}

// Condition implements CopyFilter.
func (f ColumnEquals) Condition(t *schema.Table) (string, error) {
	c := t.Column(f.Column)
	if c == nil {
		return "", nil
	}
	if _, err := rowValueExpr(c); err != nil {
		return "", &OptionError{What: fmt.Sprintf("row filter on %s.%s: %v", t, c.Name, err), Option: "Filter.Column",
			Effect: "to an integer, string, DECIMAL or temporal column"}
	}
	lit, err := filterLiteral(c, f.Value)
	if err != nil {
		return "", &OptionError{What: fmt.Sprintf("row filter on %s.%s: %v", t, c.Name, err), Option: "Filter.Value",
			Effect: "to a value of the column's type"}
	}
	return schema.QuoteIdent(c.Name) + " = " + lit, nil
}

// Fingerprint implements FilterFingerprinter: the column and the value's text. The value is written
// as a literal of the column's kind, so 7 and "7" select the same rows and have one fingerprint.
func (f ColumnEquals) Fingerprint() string {
	return fmt.Sprintf("%s = %q", f.Column, fmt.Sprint(f.Value))
}

// Matches implements CopyFilter: the source server evaluates Condition on the row's value.
func (f ColumnEquals) Matches(ctx context.Context, source SourceEvaluator, t *schema.Table, row []any) (bool, error) {
	c := t.Column(f.Column)
	if c == nil {
		return true, nil
	}
	if c.Ordinal >= len(row) {
		return false, fmt.Errorf("ColumnEquals: row of %s has %d values, column %s is #%d", t, len(row), c.Name, c.Ordinal)
	}
	v := row[c.Ordinal]
	if v == nil {
		return false, nil // "column = value" is NULL, so the copy does not select the row either
	}
	if source == nil {
		return false, errors.New("ColumnEquals needs the source server to evaluate its condition (no SourceEvaluator)")
	}
	build := func() (string, error) {
		cond, err := f.Condition(t)
		if err != nil {
			return "", err
		}
		return RowConditionQuery(c, cond)
	}
	var query string
	var err error
	if qc, ok := source.(queryCache); ok && isComparable(f.Value) {
		query, err = qc.cachedQuery(columnEqualsQuery{f, t}, build)
	} else {
		query, err = build()
	}
	if err != nil {
		return false, err
	}
	return source.True(ctx, query, v)
}

// columnEqualsQuery keys the query ColumnEquals builds for a table.
type columnEqualsQuery struct {
	f ColumnEquals
	t *schema.Table
}

// WriteMethod is how copied rows are written; see Config.CopyWriteMethod.
type WriteMethod string

const (
	WriteAuto     WriteMethod = ""
	WriteInsert   WriteMethod = "insert"
	WriteLoadData WriteMethod = "load-data"
)

// DefaultApplyWorkers is Config.ApplyWorkers when unset: one transaction at a time. On the 2-core
// machine the parallel apply was measured on (loaded by other work, so CPU-bound), 4 workers
// applied 0.68-0.76x the serial writer's events/s at about 14% more CPU per event (`make bench`,
// apply section, measures both in the same runs): raise it where the apply is bound by the
// target's round trips rather than by CPU.
const DefaultApplyWorkers = 1

// Config configures a Ferry. The zero value of every optional field is a sensible default.
type Config struct {
	Source ConnConfig
	Target ConnConfig
	// BinlogSource, when set, is a replica of Source to read the binlog from, so that the source
	// serves no binlog stream to ferry: rows are still read from Source, and the cut-over still
	// happens there. The replica must log what it replicates (log_slave_updates, binlog_format=ROW,
	// binlog_row_image=FULL) and have the same user with REPLICATION SLAVE and the binlog monitor
	// privilege; Initialize checks that and that its binlog holds the source's transactions. Positions
	// read on the source are mapped to the replica's binlog by GTID (docs/design.md, "Binlog from a
	// replica"): a lagging replica delays the cut-over, bounded by Cutover.Timeout, and never makes
	// it inexact. Checkpoints then hold positions of the replica's binlog, and a resume must read the
	// binlog from the same replica.
	BinlogSource *ConnConfig
	// Tables selects what to copy.
	Tables TableFilter
	// DatabaseRewrites maps a source database to the target database it is copied into.
	DatabaseRewrites map[string]string
	// TableRewrites maps a source table ("db.table" or "table") to a target table name.
	TableRewrites map[string]string
	// Filter restricts the rows copied; nil copies every row.
	Filter CopyFilter

	// BatchSize is the number of rows per copy batch; default 1000. SetBatchSize changes it while
	// running.
	BatchSize int
	// TargetChunkTime, when positive, makes the batch size adaptive: each batch (the locking read
	// on the source, the write to the target and its commit) is sized to take about this long,
	// from the rows per second of the recent batches, growing by at most 1.5x per batch and
	// shrinking at once when batches get slow; BatchSize is then the starting size. The source
	// rows of a batch stay share-locked until the target commits them, so this is also about the
	// longest an application UPDATE or DELETE of a row being copied waits for ferry. Zero keeps
	// BatchSize fixed. The command-line tools default to 500ms.
	TargetChunkTime time.Duration
	// MinBatchSize and MaxBatchSize bound the adaptive batch size; defaults 100 and 100,000 rows.
	MinBatchSize, MaxBatchSize int
	// MaxRowsPerSecond, when positive, caps how fast rows are copied, over all workers (it does
	// not slow the binlog apply). The wait is between batches, while no source row is locked.
	MaxRowsPerSecond float64
	// ExactRowCount counts each table's rows (with the copy filter) with SELECT COUNT(*) at
	// Initialize instead of taking information_schema's estimate, so Progress shows a true total
	// and ETA. The count scans every table once.
	ExactRowCount bool
	// PanicFlagFile, when set, is watched while Run runs: when the file exists, Run stops at once
	// with ErrPanicFlag — the open batches are rolled back, so no source row stays locked, and the
	// checkpoint is saved (if Checkpoints is set), so the work can be resumed.
	PanicFlagFile string
	// CopyWorkers is how many key ranges are copied at once, across all tables; default 4.
	CopyWorkers int
	// RangesPerTable splits each large table into this many key ranges copied in parallel; default
	// CopyWorkers.
	RangesPerTable int
	// ApplyBatchSize is the maximum number of binlog row events applied in one target transaction;
	// default 1000.
	ApplyBatchSize int
	// ApplyWorkers is how many target transactions the binlog apply runs at once (default
	// DefaultApplyWorkers; 1 applies one at a time, in binlog order). With more, source
	// transactions that change disjoint rows and unique values are applied concurrently; per-row
	// order and transaction atomicity are kept, and checkpoints only record positions below which
	// everything is applied (TargetBinlogWriter.Workers, docs/design.md).
	ApplyWorkers int

	// AllowNonEmptyTarget lets the copy write into target tables that already hold rows. Rows are
	// never deleted by the copy; existing rows with the same key are kept until a binlog event
	// replaces them.
	AllowNonEmptyTarget bool
	// CopyWriteMethod chooses how copied rows are written to the target:
	//   - WriteAuto (the zero value): LOAD DATA LOCAL INFILE from memory (LoadDataBatchWriter) when
	//     the target allows it (local_infile=ON), multi-row INSERTs otherwise;
	//   - WriteInsert: always multi-row INSERTs (TargetBatchWriter);
	//   - WriteLoadData: always LOAD DATA; Initialize fails if the target does not allow it.
	// LOAD DATA costs the target server about a third less CPU per row, which bounds the copy.
	CopyWriteMethod WriteMethod
	// CreateTargetTables creates missing target tables (and databases) from the source's definition.
	CreateTargetTables bool

	// CreateSchemaObjects creates on the target the schema objects of these kinds (ObjectViews,
	// ObjectRoutines, ObjectEvents, ObjectTriggers) found in the source databases that hold
	// selected tables: views and routines before the copy, triggers and events at cut-over right
	// before Swap, so they never fire on copied or applied rows (see SchemaObject). Objects of a
	// database or table renamed on the target are not created. Ferry.SchemaObjects lists every
	// object and whether it was created.
	CreateSchemaObjects []string

	// AllowForeignKeyCascades copies tables that a foreign key with ON DELETE/ON UPDATE CASCADE,
	// SET NULL or SET DEFAULT changes. Such changes are made inside the source's storage engine and
	// never reach the binlog, so ferry cannot apply them: Initialize refuses these tables, naming
	// each constraint, unless this is set. Setting it states that no parent row is deleted or has
	// its referenced key changed while ferry runs, or accepts that the target diverges when one is
	// (a checksum verification then reports the difference).
	AllowForeignKeyCascades bool
	// ApplyForeignKeyCascades has ferry carry out cascading foreign keys on the target itself: when
	// the binlog shows a parent row deleted or its referenced columns changed, the writer applies
	// the constraint's action to the child rows on the target, in the same place in binlog order.
	// This is exact (docs/design.md, "Foreign-key cascades"); Initialize refuses, by name, the
	// constraints it cannot apply exactly (a parent not selected, SET DEFAULT, cycles, ON UPDATE
	// CASCADE on a child's unique key, ON UPDATE actions under a copy filter, update-type actions
	// feeding further cascades).
	ApplyForeignKeyCascades bool
	// AllowTargetTriggers copies into target tables that have triggers. The triggers fire on every
	// copied and applied row and can rewrite them, so Initialize refuses such tables, naming each
	// trigger, unless this is set.
	AllowTargetTriggers bool

	// ServerID is the replica server_id the binlog streamer registers with; default a random one.
	ServerID uint32
	// MaxRetries bounds retries of one batch on transient errors (deadlock, lock wait timeout, lost
	// connection); default 10, with exponential backoff from 50ms.
	MaxRetries int

	// Resume, when set, continues an earlier run from its checkpoint instead of starting over.
	Resume *State

	// SourceResolver, when set, is asked for the source to continue on when Run stops because the
	// source is lost (its components gave up and the source no longer answers a ping, or the
	// binlog connection found its address leading to another server, ErrSourceChanged): typically
	// the primary promoted by a failover, e.g. from the host's discovery. Run then continues on it
	// in place, exactly as a resume would (docs/design.md, "Failover"): on the same server from the
	// applied position, on another one by GTID set only when it has every transaction the target
	// holds — otherwise Run returns the refusal, naming them. The call gets the error that stopped
	// the run; an error from it ends Run. It needs the default DataIterator, BinlogWriter and
	// BinlogStreamer and no BinlogSource. A failover replaces Ferry.Source and those components
	// on Run's goroutine under a lock that Progress, State, StartPosition, SourceLag, BinlogLag
	// and FlushBinlog also take (briefly), so a host may keep calling them meanwhile; a
	// FlushBinlog begun before the swap waits on the old components until its context ends. The
	// host's own reads of the exported fields (Ferry.Source, Ferry.BinlogWriter, …) and a
	// Cutover are not guarded: make them after Run has logged "ferry: failover: continuing on the
	// new source", or not during a failover.
	SourceResolver func(ctx context.Context, lost error) (ConnConfig, error)

	// Logger receives structured logs; default logrus.StandardLogger().
	Logger logrus.FieldLogger
}

func (c *Config) setDefaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.CopyWorkers <= 0 {
		c.CopyWorkers = 4
	}
	if c.RangesPerTable <= 0 {
		c.RangesPerTable = c.CopyWorkers
	}
	if c.ApplyBatchSize <= 0 {
		c.ApplyBatchSize = 1000
	}
	if c.ApplyWorkers <= 0 {
		c.ApplyWorkers = DefaultApplyWorkers
	}
	if c.MaxRetries <= 0 {
		c.MaxRetries = 10
	}
	if c.Logger == nil {
		c.Logger = logrus.StandardLogger()
	}
}

// Validate checks the configuration without connecting.
func (c *Config) Validate() error {
	if c.Source.User == "" {
		return errors.New("config: Source.User is empty")
	}
	if c.Target.User == "" {
		return errors.New("config: Target.User is empty")
	}
	if c.BinlogSource != nil && c.BinlogSource.User == "" {
		return errors.New("config: BinlogSource.User is empty")
	}
	if err := c.Tables.validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := validateObjectKinds(c.CreateSchemaObjects); err != nil {
		return err
	}
	if c.BatchSize < 0 || c.CopyWorkers < 0 || c.RangesPerTable < 0 || c.ApplyBatchSize < 0 || c.ApplyWorkers < 0 ||
		c.TargetChunkTime < 0 || c.MinBatchSize < 0 || c.MaxBatchSize < 0 || c.MaxRowsPerSecond < 0 {
		return errors.New("config: sizes and concurrencies must not be negative")
	}
	return nil
}

// targetName returns the target database and table for a source table, after rewrites.
func (c *Config) targetName(database, table string) (string, string) {
	tdb, ttable := database, table
	if r, ok := c.DatabaseRewrites[database]; ok {
		tdb = r
	}
	if r, ok := c.TableRewrites[database+"."+table]; ok {
		ttable = r
	} else if r, ok := c.TableRewrites[table]; ok {
		ttable = r
	}
	return tdb, ttable
}
