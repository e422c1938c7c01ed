package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry/sandbox"
)

func TestCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := sandbox.Start(ctx, sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if err := s.Exec(ctx, "CREATE DATABASE shop",
		"USE shop", "CREATE TABLE shop.orders (id INT PRIMARY KEY, amount INT NOT NULL, note VARCHAR(20))",
		"INSERT INTO shop.orders SELECT seq, seq * 3, 'n' FROM seq_1_to_5000"); err != nil {
		t.Fatal(err)
	}
	common := []string{"--host", s.Host, "--port", fmt.Sprint(s.Port), "--user", s.User, "--database", "shop", "--table", "orders"}

	var out, errOut bytes.Buffer
	if code := run(ctx, append(common, "--alter", "CHANGE note remark VARCHAR(40)"), &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "--approve-renamed-columns") {
		t.Fatalf("unapproved rename: exit %d, stderr %s", code, errOut.String())
	}
	// -test-on-replica / -migrate-on-replica against a server that is not a replica: refused, naming
	// the flag.
	for _, flag := range []string{"-test-on-replica", "-migrate-on-replica"} {
		out.Reset()
		errOut.Reset()
		if code := run(ctx, append(common, "--alter", "ADD COLUMN extra INT NULL", "--execute", flag), &out, &errOut); code != 1 ||
			!strings.Contains(errOut.String(), "("+flag+")") || !strings.Contains(errOut.String(), "is not a replica") {
			t.Fatalf("%s on a primary: exit %d, stderr %s", flag, code, errOut.String())
		}
	}
	out.Reset()
	errOut.Reset()
	if code := run(ctx, append(common, "--alter", "CHANGE note remark VARCHAR(40)", "--approve-renamed-columns"), &out, &errOut); code != 0 || !strings.Contains(out.String(), "dry run") {
		t.Fatalf("dry run: exit %d, stdout %s, stderr %s", code, out.String(), errOut.String())
	}
	t.Log(out.String())
	out.Reset()
	errOut.Reset()
	code := run(ctx, append(common, "--alter", "CHANGE note remark VARCHAR(40)", "--approve-renamed-columns", "--execute",
		"--status-interval", "100ms", "--drop-old-table"), &out, &errOut)
	t.Log(out.String(), errOut.String())
	if code != 0 || !strings.Contains(out.String(), "writes blocked: ") {
		t.Fatalf("execute: exit %d", code)
	}
	db, err := s.DB("shop")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM orders WHERE remark = 'n'").Scan(&n); err != nil || n != 5000 {
		t.Fatalf("after the migration: %d rows with remark, %v", n, err)
	}
	// A migration whose cut-over completed and kept the original: --resume has nothing to resume,
	// says so, names what orders_del is, and gives the next step (not --resume again).
	out.Reset()
	errOut.Reset()
	if code := run(ctx, append(common, "--alter", "ADD COLUMN extra INT NULL", "--execute", "--status-interval", "100ms"), &out, &errOut); code != 0 {
		t.Fatalf("second migration: exit %d, stderr %s", code, errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code = run(ctx, append(common, "--alter", "ADD COLUMN extra INT NULL", "--execute", "--resume"), &out, &errOut)
	if msg := errOut.String(); code != 1 || !strings.Contains(msg, "nothing to resume for `shop`.`orders`: no migration of it is in progress") ||
		!strings.Contains(msg, "`shop`.`orders_del` is the original table kept by an earlier, completed migration") ||
		!strings.Contains(msg, "drop or rename it") || !strings.Contains(msg, "as a new one, without Resume (--resume)") ||
		strings.Contains(msg, "resume that migration") || strings.Contains(msg, "nothing marks it as ferry's") {
		t.Fatalf("--resume after a completed cut-over: exit %d, stderr %s", code, msg)
	}
	// A narrowing ALTER that a value does not fit: exit 1 with the server's error naming the row,
	// the table untouched (INSERT IGNORE used to truncate it and exit 0).
	if err := s.Exec(ctx, "CREATE TABLE shop.people (id INT PRIMARY KEY, name VARCHAR(255) NOT NULL, UNIQUE KEY (name))",
		"INSERT INTO shop.people VALUES (1, 'John Smith'), (2, 'John Travolta')"); err != nil {
		t.Fatal(err)
	}
	var before string
	if err := db.QueryRow("SHOW CREATE TABLE people").Scan(new(string), &before); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	people := append(append([]string{}, common[:len(common)-1]...), "people")
	code = run(ctx, append(people, "--alter", "MODIFY name VARCHAR(4) NOT NULL", "--execute"), &out, &errOut)
	if msg := errOut.String(); code != 1 || !strings.Contains(msg, "Error 1406") || !strings.Contains(msg, "Data too long for column 'name'") || !strings.Contains(msg, "row id=1") {
		t.Fatalf("narrowing ALTER: exit %d, stderr %s", code, msg)
	}
	t.Log(errOut.String())
	var after, names string
	if err := db.QueryRow("SHOW CREATE TABLE people").Scan(new(string), &after); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("SELECT GROUP_CONCAT(name ORDER BY id) FROM people").Scan(&names); err != nil {
		t.Fatal(err)
	}
	if after != before || names != "John Smith,John Travolta" {
		t.Fatalf("the table changed: %s\n%s", after, names)
	}
	if code := run(ctx, []string{"--table", "x"}, &out, &errOut); code != 2 {
		t.Fatalf("missing flags: exit %d", code)
	}
}

// The command socket takes gh-ost's throttle commands, and -http serves the status and controls.
func TestLiveThrottleCommandsAndStatusPage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := sandbox.Start(ctx, sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if err := s.Exec(ctx, "CREATE DATABASE shop", "USE shop", "CREATE TABLE shop.orders (id INT PRIMARY KEY, amount INT NOT NULL)",
		"INSERT INTO shop.orders SELECT seq, seq FROM seq_1_to_2000"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sock, postpone := filepath.Join(dir, "osc.sock"), filepath.Join(dir, "postpone")
	if err := os.WriteFile(postpone, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--port", fmt.Sprint(s.Port), "--database", "shop", "--table", "orders", "--alter", "ADD COLUMN note INT NULL",
			"--execute", "--serve-socket-file", sock, "--postpone-cut-over-flag-file", postpone, "--http", "127.0.0.1:0", "--status-interval", "1h",
			"--throttle-query", "SELECT 1"}, &out, &errOut)
	}()
	addr := regexp.MustCompile(`status page on (http://\S+/)`)
	waitUntil := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s never happened: %s", what, errOut.String())
			}
		}
	}
	waitUntil("the status page", func() bool { return addr.MatchString(errOut.String()) })
	base := addr.FindStringSubmatch(errOut.String())[1]
	var st struct {
		Phase      string
		RowsCopied int64 `json:"rows_copied"`
		Paused     string
		Controls   []string
	}
	status := func() {
		r, err := http.Get(base + "status")
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(r.Body).Decode(&st)
		r.Body.Close()
	}
	waitUntil("the throttle query holding the copy", func() bool { status(); return strings.Contains(st.Paused, "throttle query returned non-zero") })
	if st.RowsCopied != 0 {
		t.Errorf("%d rows copied while the throttle query said no", st.RowsCopied)
	}
	if got := command(t, sock, "throttle-query="); got != "throttle-query cleared" {
		t.Errorf("throttle-query=: %q", got)
	}
	waitUntil("the postponed cut-over", func() bool { return strings.Contains(command(t, sock, "status"), "postponed") })
	for _, tc := range []struct{ cmd, want string }{
		{"max-load=Threads_running=1000", "max-load=Threads_running=1000"},
		{"critical-load=Threads_running", "error"},
		{"max-lag-millis=500", "error: max-lag-millis: no replicas to watch; start osc with --throttle-control-replicas"},
		{"throttle-query=SELECT 0", "throttle-query set"},
		{"help", "commands: status"},
	} {
		if got := command(t, sock, tc.cmd); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.cmd, got, tc.want)
		}
	}
	if got := command(t, sock, "help"); !strings.Contains(got, "max-lag-millis=N, throttle-query=SQL") {
		t.Errorf("help: %q", got)
	}
	status()
	if fmt.Sprint(st.Controls) != "[throttle unthrottle unpostpone chunk-size abort]" {
		t.Errorf("controls %v", st.Controls)
	}
	req, _ := http.NewRequest("POST", base+"control/unpostpone", nil)
	req.Header.Set("X-Ferry-Control", "1")
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 200 {
		t.Fatalf("unpostpone from the page: %v %v", r, err)
	}
	if code := <-done; code != 0 {
		t.Fatalf("osc: exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
}

func command(t *testing.T, sock, cmd string) string {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return ""
	}
	defer c.Close()
	fmt.Fprintln(c, cmd)
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
