package test

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/sandbox"
)

// Every bad input is refused by Initialize with an error that says what to change, before anything
// is written to the target.
func TestBadInputIsRefusedBeforeAnyWrite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	noBinlog, err := sandbox.Start(ctx, sandbox.Options{ExtraArgs: []string{"--skip-log-bin"}})
	must(t, err)
	defer noBinlog.Stop()
	innodbReadOnly, err := sandbox.Start(ctx, sandbox.Options{ExtraArgs: []string{"--innodb-read-only"}})
	must(t, err)
	defer innodbReadOnly.Stop()
	// A proxy in front of the source: another address, the same server.
	proxy := startTCPProxy(t, source.Host, source.Port)

	must(t, source.Exec(ctx,
		"DROP DATABASE IF EXISTS bad", "CREATE DATABASE bad",
		"CREATE TABLE bad.ok (id INT PRIMARY KEY, v VARCHAR(10))",
		"INSERT INTO bad.ok VALUES (1, 'a'), (2, 'b')",
		"CREATE TABLE bad.nokey (a INT, b INT)",
		"INSERT INTO bad.nokey VALUES (1, 2)",
		"CREATE TABLE bad.nullable_unique (a INT NULL, UNIQUE KEY (a))",
		"DROP USER IF EXISTS weak@'127.0.0.1'",
		"CREATE USER weak@'127.0.0.1'",
		"GRANT SELECT ON bad.* TO weak@'127.0.0.1'",
	))
	must(t, noBinlog.Exec(ctx, "CREATE DATABASE bad", "CREATE TABLE bad.ok (id INT PRIMARY KEY)"))

	cases := []struct {
		name  string
		setup []string // on the source, undone by undo
		undo  []string
		// on the target, undone by targetUndo
		targetSetup, targetUndo []string
		cfg                     func(c *ferry.Config)
		target                  func()
		want                    string
	}{
		{name: "binlog off", cfg: func(c *ferry.Config) { c.Source = conn(noBinlog) }, want: "binary log is off"},
		{name: "statement format", setup: []string{"SET GLOBAL binlog_format = 'STATEMENT'"}, undo: []string{"SET GLOBAL binlog_format = 'ROW'"}, want: "binlog_format is STATEMENT"},
		{name: "mixed format", setup: []string{"SET GLOBAL binlog_format = 'MIXED'"}, undo: []string{"SET GLOBAL binlog_format = 'ROW'"}, want: "ferry needs ROW"},
		{name: "minimal row image", setup: []string{"SET GLOBAL binlog_row_image = 'MINIMAL'"}, undo: []string{"SET GLOBAL binlog_row_image = 'FULL'"}, want: "binlog_row_image is MINIMAL"},
		{name: "missing privileges", cfg: func(c *ferry.Config) { c.Source.User = "weak" }, want: "lacks privileges: REPLICATION SLAVE ON *.*"},
		{name: "table without key", cfg: func(c *ferry.Config) { c.Tables = ferry.TableFilter{Include: []string{"bad.nokey"}} }, want: "no primary key"},
		{name: "unique key on nullable column", cfg: func(c *ferry.Config) { c.Tables = ferry.TableFilter{Include: []string{"bad.nullable_unique"}} }, want: "add a primary key"},
		{name: "missing source table", cfg: func(c *ferry.Config) { c.Tables = ferry.TableFilter{Include: []string{"bad.nope"}} }, want: "table bad.nope does not exist"},
		{name: "missing source database", cfg: func(c *ferry.Config) { c.Tables = ferry.TableFilter{Databases: []string{"nope"}} }, want: `database "nope" does not exist`},
		{name: "missing target table", cfg: func(c *ferry.Config) { c.CreateTargetTables = false }, target: func() {
			must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS bad", "CREATE DATABASE bad"))
		}, want: "create it first"},
		{name: "target table holds rows", target: func() {
			must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS bad", "CREATE DATABASE bad", "CREATE TABLE bad.ok (id INT PRIMARY KEY, v VARCHAR(10))", "INSERT INTO bad.ok VALUES (7, 'x')"))
		}, want: "already holds rows"},
		{name: "target lacks a column", target: func() {
			must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS bad", "CREATE DATABASE bad", "CREATE TABLE bad.ok (id INT PRIMARY KEY)"))
		}, want: "has no column v"},
		{name: "no tables selected", cfg: func(c *ferry.Config) { c.Tables = ferry.TableFilter{} }, want: "no tables selected"},
		{name: "bad pattern", cfg: func(c *ferry.Config) { c.Tables = ferry.TableFilter{Include: []string{"noperiod"}} }, want: `want "database.table"`},
		{name: "read_only target", targetSetup: []string{"SET GLOBAL read_only = 1"}, targetUndo: []string{"SET GLOBAL read_only = 0"},
			want: "the server is read-only (read_only is ON); run SET GLOBAL read_only = 0 on the target"},
		{name: "innodb_read_only target", cfg: func(c *ferry.Config) { c.Target = conn(innodbReadOnly) },
			want: "the server is read-only: innodb_read_only is ON, so no InnoDB table can be written; restart the target without --innodb-read-only"},
		{name: "target is the source", cfg: func(c *ferry.Config) { c.Target = conn(source); c.AllowNonEmptyTarget = true }, want: "are the same server"},
		{name: "target is the source by another name", cfg: func(c *ferry.Config) { c.Target.Host = "localhost"; c.Target.Port = source.Port },
			want: "are the same server"},
		{name: "target is the source behind a proxy", cfg: func(c *ferry.Config) { c.Target.Host = "127.0.0.1"; c.Target.Port = proxy },
			want: "are the same server"},
		{name: "unreachable source", cfg: func(c *ferry.Config) { c.Source.Port = 1 }, want: "connect root@127.0.0.1:1"},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS bad"))
			if c.target != nil {
				c.target()
			}
			before := targetState(t)
			must(t, source.Exec(ctx, c.setup...))
			defer func() { must(t, source.Exec(ctx, c.undo...)) }()
			must(t, target.Exec(ctx, c.targetSetup...))
			defer func() { must(t, target.Exec(ctx, c.targetUndo...)) }()
			cfg := ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Include: []string{"bad.ok"}},
				CreateTargetTables: true, Logger: testLogger(t)}
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			f := &ferry.Ferry{Config: cfg}
			defer f.Close()
			err := f.Initialize(ctx)
			if err == nil {
				t.Fatalf("Initialize succeeded, want an error containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
			if after := targetState(t); after != before {
				t.Fatalf("the target changed: before %q, after %q", before, after)
			}
		})
	}
}

// startTCPProxy forwards connections from a free loopback port to host:port until the test ends, and
// returns the port.
func startTCPProxy(t *testing.T, host string, port int) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(out, in); out.Close() }()
			go func() { defer wg.Done(); io.Copy(in, out); in.Close() }()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// targetState summarises what the target holds in database bad.
func targetState(t *testing.T) string {
	db, err := target.DB("")
	must(t, err)
	defer db.Close()
	rows, err := db.Query("SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'bad' ORDER BY 1")
	must(t, err)
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var n string
		var r any
		must(t, rows.Scan(&n, &r))
		b.WriteString(n + ";")
		b.WriteString(strings.TrimSpace(strings.Repeat(" ", 0)))
	}
	var c int
	if db.QueryRow("SELECT COUNT(*) FROM bad.ok").Scan(&c) == nil {
		b.WriteString("ok rows " + fmtInt(int64(c)))
	}
	return b.String()
}
