// Package sandbox starts throw-away MariaDB (or MySQL) servers for tests, examples and the demo.
//
// Each Server runs the installed mariadbd binary in its own temporary directory, listens only on a
// free loopback port, and is configured the way ferry needs a source to be: binary log on,
// binlog_format=ROW, binlog_row_image=FULL, a unique server_id. A Server can also be started as a
// replica of another (StartReplica), which the throttler tests use to produce real replication lag.
//
// Nothing here is mocked: the servers are real, which is the point. Servers are cheap (under a
// second to initialise a data directory, a second or two to accept connections), so every test
// package starts its own and Stop removes every file it made.
//
// The installed server decides the flavor: MariaDB's mariadbd (data directory made by
// mariadb-install-db) or MySQL's mysqld (made by mysqld --initialize-insecure, which is what MySQL
// 5.7 and later have instead of mysql_install_db).
//
// With FERRY_TEST_DSN set (EnvDSN), Start starts nothing: it hands out the server that DSN names, a
// server the user already runs, so the tests that need one server run against it (their databases
// are created on it). It must be a throw-away server configured for ferry (log_bin, binlog_format=ROW,
// binlog_row_image=FULL). A test that needs a second server at the same time (a source and a target,
// a replica), or that kills and restarts its server, cannot run that way: its second Start, Kill or
// Restart fails saying so.
package sandbox

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/ferrykit/ferry/schema"
)

// Options tune a sandbox server. The zero value gives a source suitable for ferry.
type Options struct {
	// ExtraArgs are appended to the mariadbd command line, e.g. "--binlog-format=STATEMENT" to
	// start a deliberately misconfigured server.
	ExtraArgs []string
	// BufferPool is innodb_buffer_pool_size; default 128M.
	BufferPool string
	// Dir is the parent directory for the server's files; default os.TempDir().
	Dir string
	// Logf, when set, receives a line for each server started and stopped.
	Logf func(format string, args ...any)
	// TLS, when set, makes the server offer TLS with these PEM files.
	TLS *TLSFiles
	// RequireSecureTransport refuses unencrypted TCP connections (require_secure_transport=ON).
	// The sandbox's own connections (DSN, DB, Exec) then use the unix socket, which the server
	// counts as secure.
	RequireSecureTransport bool
}

// TLSFiles are the PEM files a server presents: its CA, certificate and key.
type TLSFiles struct {
	CA, Cert, Key string
}

// EnvDSN is the environment variable naming a server the user already runs, for Start to hand out
// instead of starting one (a go-sql-driver/mysql DSN, e.g. "root:pw@tcp(127.0.0.1:3306)/").
const EnvDSN = "FERRY_TEST_DSN"

// Server is one running mariadbd (or mysqld), or the server EnvDSN names.
type Server struct {
	Port     int
	Host     string // 127.0.0.1 for a server the sandbox started
	User     string // root, no password, for a server the sandbox started
	Password string
	ServerID int
	Dir      string
	Socket   string
	// External is set for the server EnvDSN names: the sandbox did not start it and never stops,
	// kills or restarts it.
	External bool

	viaSocket bool // the sandbox's own connections use Socket
	cmd       *exec.Cmd
	exited    chan struct{}
	logf      func(string, ...any)
	stopped   sync.Once
}

var serverIDs atomic.Int64

func init() { serverIDs.Store(int64(os.Getpid()%1000) * 100) }

// Binaries reports the server and install binaries found on this machine, or an error telling the
// user how to install them. For MySQL's mysqld, installDB is empty: its data directory is made by
// mysqld --initialize-insecure.
func Binaries() (mariadbd, installDB string, err error) {
	for _, name := range []string{"mariadbd", "mysqld"} {
		if p, e := lookPath(name); e == nil {
			mariadbd = p
			break
		}
	}
	if mariadbd == "" {
		return "", "", errors.New("sandbox: neither mariadbd nor mysqld found; install the server with `apt-get install -y mariadb-server` (or run `make deps`), or point " + EnvDSN + " at a server of yours")
	}
	if isMySQL(mariadbd) {
		return mariadbd, "", nil
	}
	installDB, _ = lookPath("mariadb-install-db")
	if installDB == "" {
		installDB, _ = lookPath("mysql_install_db")
	}
	if installDB == "" {
		return "", "", errors.New("sandbox: mariadb-install-db not found; install the server with `apt-get install -y mariadb-server` (or run `make deps`)")
	}
	return mariadbd, installDB, nil
}

var versions sync.Map // binary path → its --version line

// isMySQL reports whether the server binary is MySQL's (its --version does not say MariaDB).
func isMySQL(server string) bool {
	v, ok := versions.Load(server)
	if !ok {
		out, _ := exec.Command(server, "--version").CombinedOutput()
		v, _ = versions.LoadOrStore(server, string(out))
	}
	return isMySQLVersion(v.(string))
}

func isMySQLVersion(versionLine string) bool {
	return versionLine != "" && !strings.Contains(strings.ToLower(versionLine), "mariadb")
}

// initCommand is the command that makes a fresh data directory: mariadb-install-db for MariaDB,
// mysqld --initialize-insecure (root without a password) for MySQL.
func initCommand(server, installDB, data, tmp, user string) []string {
	if installDB == "" {
		return []string{server, "--no-defaults", "--initialize-insecure", "--datadir=" + data, "--tmpdir=" + tmp, "--user=" + user}
	}
	return []string{installDB, "--no-defaults", "--datadir=" + data, "--auth-root-authentication-method=normal", "--skip-test-db", "--user=" + user}
}

// flavorArgs are the server options that differ between MariaDB and MySQL.
func flavorArgs(mysql bool) []string {
	if mysql {
		// no X Protocol listener (it would take port 33060 in every sandbox); the replica option
		// under its 8.0.26+ name, loose so older servers start too
		return []string{"--mysqlx=OFF", "--loose-log-replica-updates", "--loose-log-slave-updates"}
	}
	return []string{"--log-slave-updates"}
}

func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/mysql/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// Start initialises a data directory and starts a server on a free loopback port. It returns once
// the server accepts connections, or with an error that includes the tail of the server's log.
func Start(ctx context.Context, opts Options) (*Server, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken between probe and bind
		s, err := start(ctx, opts)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func start(ctx context.Context, opts Options) (*Server, error) {
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return external(ctx, dsn)
	}
	mariadbd, installDB, err := Binaries()
	if err != nil {
		return nil, err
	}
	parent := opts.Dir
	if parent == "" {
		parent = os.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "ferry-sandbox-")
	if err != nil {
		return nil, fmt.Errorf("sandbox: make directory: %w", err)
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{
		Port:     port,
		Host:     "127.0.0.1",
		User:     "root",
		ServerID: int(serverIDs.Add(1)),
		Dir:      dir,
		Socket:   filepath.Join(dir, "mysqld.sock"),
		exited:   make(chan struct{}),
		logf:     opts.Logf,
	}
	data := filepath.Join(dir, "data")
	// Each server (and its bootstrap) gets its own tmpdir: at start-up mariadbd deletes every
	// "#sql*" file in its tmpdir, which in a shared /tmp are other running servers' on-disk
	// temporary tables (their queries then fail with "Error on delete of '/tmp/#sql-temptable-...'").
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("sandbox: make tmpdir: %w", err)
	}
	initArgs := initCommand(mariadbd, installDB, data, tmp, currentUser())
	install := exec.CommandContext(ctx, initArgs[0], initArgs[1:]...)
	install.Env = append(os.Environ(), "TMPDIR="+tmp)
	if out, err := install.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("sandbox: %s: %w\n%s", strings.Join(initArgs, " "), err, tail(out, 2000))
	}
	pool := opts.BufferPool
	if pool == "" {
		pool = "128M"
	}
	args := []string{
		"--no-defaults",
		"--datadir=" + data,
		"--tmpdir=" + tmp,
		"--socket=" + s.Socket,
		"--pid-file=" + filepath.Join(dir, "mysqld.pid"),
		"--log-error=" + filepath.Join(dir, "error.log"),
		"--port=" + strconv.Itoa(port),
		"--bind-address=127.0.0.1",
		"--skip-name-resolve",
		"--user=" + currentUser(),
		"--server-id=" + strconv.Itoa(s.ServerID),
		"--log-bin=" + filepath.Join(data, "binlog"),
		"--binlog-format=ROW",
		"--binlog-row-image=FULL",
		"--max-binlog-size=64M",
		"--innodb-buffer-pool-size=" + pool,
		"--innodb-log-file-size=128M",
		"--innodb-flush-log-at-trx-commit=2",
		"--sync-binlog=0",
		"--innodb-doublewrite=0",
		"--max-allowed-packet=64M",
		"--max-connections=500",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_general_ci",
		"--skip-performance-schema",
		"--loose-innodb-use-native-aio=0",
	}
	mysqlServer := installDB == ""
	args = append(args, flavorArgs(mysqlServer)...)
	if opts.TLS != nil {
		args = append(args, "--ssl-ca="+opts.TLS.CA, "--ssl-cert="+opts.TLS.Cert, "--ssl-key="+opts.TLS.Key)
	}
	if opts.RequireSecureTransport {
		args = append(args, "--require-secure-transport=ON")
		s.viaSocket = true
	}
	viaSocket := s.viaSocket
	if mysqlServer {
		// mysqld --initialize-insecure makes only root@localhost, which a TCP connection to
		// 127.0.0.1 is not (skip-name-resolve): start-up talks over the socket and adds root@127.0.0.1
		s.viaSocket = true
	}
	args = append(args, opts.ExtraArgs...)
	cmd := exec.Command(mariadbd, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("sandbox: start %s: %w", mariadbd, err)
	}
	s.cmd = cmd
	go func() { cmd.Wait(); close(s.exited) }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		db, err := sql.Open("mysql", s.DSN(""))
		if err == nil {
			err = db.PingContext(ctx)
			db.Close()
		}
		if err == nil {
			break
		}
		select {
		case <-s.exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			os.RemoveAll(dir)
			return nil, fmt.Errorf("sandbox: mariadbd exited during start-up: %s", tail(append(out.Bytes(), log...), 3000))
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			s.Stop()
			return nil, fmt.Errorf("sandbox: server on port %d did not accept connections within 60s: %s", port, tail(log, 3000))
		}
	}
	if mysqlServer {
		if err := s.Exec(ctx, "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'", "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION"); err != nil {
			s.Stop()
			return nil, err
		}
	}
	s.viaSocket = viaSocket
	if s.logf != nil {
		s.logf("sandbox: %s server_id=%d listening on 127.0.0.1:%d (%s)", filepath.Base(mariadbd), s.ServerID, port, dir)
	}
	return s, nil
}

// DSN returns a go-sql-driver/mysql data source name for this server and database (may be empty).
func (s *Server) DSN(database string) string {
	cfg := mysql.NewConfig()
	cfg.User = s.User
	cfg.Passwd = s.Password
	cfg.Net = "tcp"
	cfg.Addr = net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	if s.viaSocket {
		cfg.Net, cfg.Addr = "unix", s.Socket
	}
	cfg.DBName = database
	cfg.MultiStatements = true
	cfg.InterpolateParams = true
	cfg.Timeout = 5 * time.Second
	return cfg.FormatDSN()
}

// DB opens a connection pool to this server. The caller closes it.
func (s *Server) DB(database string) (*sql.DB, error) {
	return sql.Open("mysql", s.DSN(database))
}

// MustExec runs statements on the server and returns the first error, wrapped with the statement.
func (s *Server) Exec(ctx context.Context, stmts ...string) error {
	db, err := s.DB("")
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, q := range stmts {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("sandbox: %s: %w", abbreviate(q), err)
		}
	}
	return nil
}

// Running reports whether the server process is still alive (for an external server: whether it
// answers).
func (s *Server) Running() bool {
	if s.External {
		return s.Exec(context.Background(), "DO 1") == nil
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Kill stops the server abruptly (SIGKILL), as a crash would, keeping its files. Restart brings it
// back on the same port with the same data.
func (s *Server) Kill() {
	if s.External {
		// a test that crashes its server cannot run against a server it does not own; failing
		// loudly beats a test that passes without its crash
		panic("sandbox: Kill needs a server the sandbox started; run this test without " + EnvDSN)
	}
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// Restart starts the server again on its port and data directory after Kill.
func (s *Server) Restart(ctx context.Context) error {
	if s.External {
		return errors.New("sandbox: restart needs a server the sandbox started; run this test without " + EnvDSN)
	}
	if s.Running() {
		return errors.New("sandbox: restart: server is still running")
	}
	mariadbd, _, err := Binaries()
	if err != nil {
		return err
	}
	args := s.cmd.Args[1:]
	cmd := exec.Command(mariadbd, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("sandbox: restart: %w", err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	exited := s.exited
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		db, _ := sql.Open("mysql", s.DSN(""))
		err = db.PingContext(ctx)
		db.Close()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(s.Dir, "error.log"))
			return fmt.Errorf("sandbox: restart: mariadbd exited: %s", tail(log, 2000))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("sandbox: restart: server on port %d did not come back within 60s", s.Port)
}

// Stop shuts the server down and removes its directory. It is safe to call more than once.
func (s *Server) Stop() {
	s.stopped.Do(func() {
		if s.External {
			externalInUse.Store(false)
			return
		}
		if s.cmd != nil && s.cmd.Process != nil && s.Running() {
			s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.exited:
			case <-time.After(20 * time.Second):
				s.cmd.Process.Kill()
				<-s.exited
			}
		}
		os.RemoveAll(s.Dir)
		if s.logf != nil {
			s.logf("sandbox: stopped server on port %d", s.Port)
		}
	})
}

// StartReplica starts a new server replicating from primary (MariaDB GTID replication) from the
// start of primary's binlog, and waits until replication runs.
func StartReplica(ctx context.Context, primary *Server, opts Options) (*Server, error) {
	return startReplica(ctx, primary, opts, "")
}

// StartReplicaFromNow starts a new server replicating from primary's current GTID position: it
// has none of primary's earlier data (for a primary whose older binlogs are purged, or that holds
// much), only what primary logs from now on.
func StartReplicaFromNow(ctx context.Context, primary *Server, opts Options) (*Server, error) {
	db, err := primary.DB("")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var pos string
	if err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&pos); err != nil {
		return nil, fmt.Errorf("sandbox: read the primary's GTID position: %w", err)
	}
	return startReplica(ctx, primary, opts, pos)
}

func startReplica(ctx context.Context, primary *Server, opts Options, gtid string) (*Server, error) {
	opts.ExtraArgs = append([]string{"--read-only=0"}, opts.ExtraArgs...)
	r, err := Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	err = r.Exec(ctx,
		fmt.Sprintf("SET GLOBAL gtid_slave_pos = '%s'", gtid),
		fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1", primary.Port),
		"START SLAVE")
	if err != nil {
		r.Stop()
		return nil, err
	}
	db, err := r.DB("")
	if err != nil {
		r.Stop()
		return nil, err
	}
	defer db.Close()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st, err := SlaveStatus(ctx, db)
		if err == nil && st["Slave_IO_Running"] == "Yes" && st["Slave_SQL_Running"] == "Yes" {
			return r, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	st, _ := SlaveStatus(ctx, db)
	r.Stop()
	return nil, fmt.Errorf("sandbox: replica did not start replicating: IO=%q SQL=%q error=%q", st["Slave_IO_Running"], st["Slave_SQL_Running"], st["Last_Error"]+st["Last_IO_Error"])
}

// SlaveStatus returns SHOW SLAVE STATUS as a column→value map (empty when not a replica).
func SlaveStatus(ctx context.Context, db *sql.DB) (map[string]string, error) {
	row, err := schema.RowByName(ctx, db, "SHOW SLAVE STATUS")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for c, v := range row {
		out[c] = v.String
	}
	return out, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("sandbox: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if os.Geteuid() == 0 {
		return "root"
	}
	return strconv.Itoa(os.Geteuid())
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func abbreviate(q string) string {
	q = strings.Join(strings.Fields(q), " ")
	if len(q) > 120 {
		return q[:117] + "..."
	}
	return q
}

// externalInUse is set while the server EnvDSN names is handed out: there is one.
var externalInUse atomic.Bool

// external hands out the server dsn names (see EnvDSN), once at a time.
func external(ctx context.Context, dsn string) (*Server, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %s: %w", EnvDSN, err)
	}
	if !externalInUse.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("sandbox: this test needs a second server at the same time, and %s names one; run it without %s", EnvDSN, EnvDSN)
	}
	s := &Server{User: cfg.User, Password: cfg.Passwd, External: true, exited: make(chan struct{})}
	switch cfg.Net {
	case "unix":
		s.Socket, s.viaSocket = cfg.Addr, true
	default:
		host, port, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			externalInUse.Store(false)
			return nil, fmt.Errorf("sandbox: %s: address %q: %w", EnvDSN, cfg.Addr, err)
		}
		s.Host = host
		s.Port, _ = strconv.Atoi(port)
	}
	db, err := s.DB("")
	if err != nil {
		externalInUse.Store(false)
		return nil, err
	}
	defer db.Close()
	var logBin, format, image string
	err = db.QueryRowContext(ctx, "SELECT @@server_id, @@log_bin, @@binlog_format, @@binlog_row_image").Scan(&s.ServerID, &logBin, &format, &image)
	if err != nil {
		externalInUse.Store(false)
		return nil, fmt.Errorf("sandbox: the server %s names: %w", EnvDSN, err)
	}
	if (logBin != "1" && !strings.EqualFold(logBin, "ON")) || !strings.EqualFold(format, "ROW") || !strings.EqualFold(image, "FULL") {
		externalInUse.Store(false)
		return nil, fmt.Errorf("sandbox: the server %s names has log_bin=%s, binlog_format=%s, binlog_row_image=%s; the tests need log_bin, binlog_format=ROW and binlog_row_image=FULL", EnvDSN, logBin, format, image)
	}
	return s, nil
}
