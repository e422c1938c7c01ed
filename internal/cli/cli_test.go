package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

func parse(t *testing.T, spec ConnSpec, args ...string) (*Conn, *flag.FlagSet) {
	t.Helper()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c := AddConn(fs, spec)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return c, fs
}

func TestReadDefaultsFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "my.cnf")
	os.WriteFile(p, []byte(`# comment
[mysqld]
port = 1
[client]
user=ferry
password = "a b#\"c" # trailing comment
host = db1   # comment
ssl_ca = /ca.pem
ssl-verify-server-cert
[mysql]
user = other
`), 0o600)
	got, err := ReadDefaultsFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"user": "ferry", "password": `a b#"c`, "host": "db1", "ssl-ca": "/ca.pem", "ssl-verify-server-cert": ""}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	os.WriteFile(p, []byte("[client]\n!include /etc/secret.cnf\n"), 0o600)
	if _, err := ReadDefaultsFile(p); err == nil || !strings.Contains(err.Error(), "!include is not supported") {
		t.Errorf("!include: %v", err)
	}
}

// Flags given win over the DSN, which wins over the defaults file; password sources in order.
func TestConnConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	cnf := filepath.Join(dir, "my.cnf")
	os.WriteFile(cnf, []byte("[client]\nhost=cnfhost\nport=3400\nuser=cnfuser\npassword=cnfpw\n"), 0o600)
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("filepw\nignored\n"), 0o600)
	t.Setenv("T_PW", "")
	spec := ConnSpec{Prefix: "source", PasswordEnv: "T_PW", DSN: true}
	for _, tc := range []struct {
		name, env            string
		args                 []string
		host, user, pw, warn string
		port                 int
	}{
		{name: "defaults file", args: []string{"-source-defaults-file", cnf}, host: "cnfhost", port: 3400, user: "cnfuser", pw: "cnfpw"},
		{name: "flags over defaults file", args: []string{"-source-defaults-file", cnf, "-source-host", "h", "-source-port", "1"}, host: "h", port: 1, user: "cnfuser", pw: "cnfpw"},
		{name: "env over defaults file", env: "envpw", args: []string{"-source-defaults-file", cnf}, host: "cnfhost", port: 3400, user: "cnfuser", pw: "envpw"},
		{name: "file over env", env: "envpw", args: []string{"-source-password-file", pwFile}, host: "127.0.0.1", port: 3306, user: "root", pw: "filepw"},
		{name: "DSN", args: []string{"-source", "u:dsnpw@tcp(dsnhost:3401)/"}, host: "dsnhost", port: 3401, user: "u", pw: "dsnpw", warn: "-source (a DSN with a password)"},
		{name: "argv password", env: "envpw", args: []string{"-source-password", "argvpw"}, host: "127.0.0.1", port: 3306, user: "root", pw: "argvpw", warn: "-source-password puts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("T_PW", tc.env)
			c, _ := parse(t, spec, tc.args...)
			var warn bytes.Buffer
			cc, err := c.Config(nil, &warn)
			if err != nil {
				t.Fatal(err)
			}
			if cc.Host != tc.host || cc.Port != tc.port || cc.User != tc.user || cc.Password != tc.pw {
				t.Errorf("got %s:%d %s pw %q, want %s:%d %s pw %q", cc.Host, cc.Port, cc.User, cc.Password, tc.host, tc.port, tc.user, tc.pw)
			}
			if (tc.warn == "") != (warn.Len() == 0) || !strings.Contains(warn.String(), tc.warn) {
				t.Errorf("warning %q, want one containing %q", warn.String(), tc.warn)
			}
			if strings.Contains(warn.String(), tc.pw) {
				t.Errorf("the warning shows the password: %s", warn.String())
			}
		})
	}
}

func TestAskPassReadsEachPasswordInTurn(t *testing.T) {
	r, w, _ := os.Pipe()
	w.WriteString("first\nsecond\n")
	w.Close()
	var prompts bytes.Buffer
	p := &Prompter{In: r, Out: &prompts}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	a := AddConn(fs, ConnSpec{Prefix: "source"})
	b := AddConn(fs, ConnSpec{Prefix: "target"})
	fs.Parse(nil)
	ca, err := a.Config(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := b.Config(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Password != "first" || cb.Password != "second" {
		t.Errorf("passwords %q, %q", ca.Password, cb.Password)
	}
	if !strings.Contains(prompts.String(), "Enter password for source server root@127.0.0.1:3306") {
		t.Errorf("prompt: %q", prompts.String())
	}
}

func TestTLSModes(t *testing.T) {
	for _, tc := range []struct {
		opts       TLSOptions
		wantNil    bool
		err        string
		skipVerify bool
		serverName string
	}{
		{opts: TLSOptions{}, wantNil: true},
		{opts: TLSOptions{Mode: "disabled"}, wantNil: true},
		{opts: TLSOptions{Mode: "REQUIRED"}, skipVerify: true},
		{opts: TLSOptions{Mode: "VERIFY_IDENTITY"}, serverName: "db1"},
		{opts: TLSOptions{Mode: "PREFERRED"}, err: "fall back"},
		{opts: TLSOptions{Mode: "bogus"}, err: "want DISABLED"},
		{opts: TLSOptions{Mode: "DISABLED", CA: "/x"}, err: "DISABLED with"},
		{opts: TLSOptions{Cert: "/x"}, err: "go together"},
		{opts: TLSOptions{CA: "/nonexistent"}, err: "ssl-ca"},
	} {
		cfg, err := tc.opts.Config("db1")
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: error %v, want %q", tc.opts, err, tc.err)
			}
		case err != nil:
			t.Errorf("%+v: %v", tc.opts, err)
		case tc.wantNil != (cfg == nil):
			t.Errorf("%+v: config %v", tc.opts, cfg)
		case cfg != nil && (cfg.InsecureSkipVerify != tc.skipVerify || cfg.ServerName != tc.serverName):
			t.Errorf("%+v: skip verify %v, server name %q", tc.opts, cfg.InsecureSkipVerify, cfg.ServerName)
		}
	}
}

func TestReplicaFlags(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	r := AddReplicaFlags(fs)
	fs.Parse(nil)
	if th, closeFn, err := r.Throttler(context.Background(), ferry.ConnConfig{}); th != nil || err != nil {
		t.Errorf("without replicas: %v, %v", th, err)
	} else {
		closeFn()
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	r = AddReplicaFlags(fs)
	fs.Parse([]string{"-throttle-control-replicas", addr, "-max-lag-millis", "250"})
	if _, _, err := r.Throttler(context.Background(), ferry.ConnConfig{User: "u", Timeout: time.Second}); err == nil || !strings.Contains(err.Error(), "-throttle-control-replicas") {
		t.Errorf("an unreachable replica: %v, want an error naming the flag", err)
	}
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	r = AddReplicaFlags(fs)
	fs.Parse([]string{"-throttle-control-replicas", addr, "-max-lag-millis", "0"})
	if _, _, err := r.Throttler(context.Background(), ferry.ConnConfig{}); err == nil || !strings.Contains(err.Error(), "-max-lag-millis") {
		t.Errorf("-max-lag-millis 0: %v", err)
	}
}

func TestLogFormat(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	l := AddLogFlags(fs, "info")
	fs.Parse([]string{"-log-format", "json"})
	var buf bytes.Buffer
	log, err := l.Logger(&buf)
	if err != nil {
		t.Fatal(err)
	}
	log.WithField("table", "db.t").Info("copied")
	if !strings.HasPrefix(buf.String(), "{") || !strings.Contains(buf.String(), `"table":"db.t"`) {
		t.Errorf("json log: %s", buf.String())
	}
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	l = AddLogFlags(fs, "info")
	fs.Parse([]string{"-log-format", "xml"})
	if _, err := l.Logger(&buf); err == nil || !strings.Contains(err.Error(), "-log-format") {
		t.Errorf("-log-format xml: %v", err)
	}
}

// A replica named by host:port is reached like its source (user, password, TLS), but on its own
// address, with a certificate checked against its own host name.
func TestReplicaOf(t *testing.T) {
	src := ferry.ConnConfig{Host: "primary.db", Port: 3307, Socket: "/run/mysqld.sock", User: "ferry", Password: "pw",
		TLS: &tls.Config{ServerName: "primary.db"}}
	r, err := ReplicaOf(src, "replica.db:3308")
	if err != nil {
		t.Fatal(err)
	}
	if r.Host != "replica.db" || r.Port != 3308 || r.Socket != "" || r.User != "ferry" || r.Password != "pw" {
		t.Errorf("replica connection %+v", r)
	}
	if r.TLS == nil || r.TLS.ServerName != "replica.db" || src.TLS.ServerName != "primary.db" {
		t.Errorf("TLS server name: replica %q, source %q; want replica.db and primary.db unchanged", r.TLS.ServerName, src.TLS.ServerName)
	}
	if r, err := ReplicaOf(src, "replica.db"); err != nil || r.Port != 3306 {
		t.Errorf("replica without a port: %+v, %v; want port 3306", r, err)
	}
	if _, err := ReplicaOf(src, "replica.db:x"); err == nil {
		t.Error("a replica address with a bad port was accepted")
	}
}
