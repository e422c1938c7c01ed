package sandbox

import (
	"context"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// With FERRY_TEST_DSN set, Start hands out that server instead of starting one: once at a time,
// never stopped, killed or restarted by the sandbox, and refused when it is not configured for ferry.
func TestExternalServerFromEnv(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	own, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer own.Stop()
	if err := own.Exec(ctx, "CREATE USER 'ext'@'127.0.0.1' IDENTIFIED BY 'pw'", "GRANT ALL ON *.* TO 'ext'@'127.0.0.1'"); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvDSN, "ext:pw@tcp("+own.Host+":"+strconv.Itoa(own.Port)+")/")

	ext, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !ext.External || ext.Port != own.Port || ext.User != "ext" || ext.ServerID != own.ServerID {
		t.Fatalf("external server %+v, want the server on port %d (server_id %d) as user ext", ext, own.Port, own.ServerID)
	}
	if err := ext.Exec(ctx, "CREATE DATABASE extdb", "CREATE TABLE extdb.t (id INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if !ext.Running() {
		t.Error("the external server does not answer")
	}
	if _, err := Start(ctx, Options{}); err == nil || !strings.Contains(err.Error(), "needs a second server") {
		t.Errorf("a second server while the first is handed out: %v, want a refusal naming the reason", err)
	}
	if err := ext.Restart(ctx); err == nil || !strings.Contains(err.Error(), EnvDSN) {
		t.Errorf("Restart of the external server: %v, want a refusal naming %s", err, EnvDSN)
	}
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(r.(string), EnvDSN) {
				t.Errorf("Kill of the external server: %v, want a refusal naming %s", r, EnvDSN)
			}
		}()
		ext.Kill()
	}()
	ext.Stop()
	if !own.Running() {
		t.Fatal("Stop of the external server stopped the server itself")
	}
	if err := own.Exec(ctx, "DO (SELECT COUNT(*) FROM extdb.t)"); err != nil {
		t.Errorf("the database created through the external server is not on the server: %v", err)
	}
	again, err := Start(ctx, Options{})
	if err != nil {
		t.Fatalf("Start after Stop of the external server: %v", err)
	}
	again.Stop()

	// a server that is not configured for ferry is refused, saying what is missing
	if err := own.Exec(ctx, "SET GLOBAL binlog_format = 'MIXED'"); err != nil {
		t.Fatal(err)
	}
	defer own.Exec(context.Background(), "SET GLOBAL binlog_format = 'ROW'")
	if _, err := Start(ctx, Options{}); err == nil || !strings.Contains(err.Error(), "binlog_format=MIXED") {
		t.Errorf("a server with binlog_format=MIXED: %v, want a refusal naming it", err)
	}
	t.Setenv(EnvDSN, "not a dsn")
	if _, err := Start(ctx, Options{}); err == nil || !strings.Contains(err.Error(), EnvDSN) {
		t.Errorf("an unreadable %s: %v", EnvDSN, err)
	}
}

// How a data directory is made and which options differ, by server flavor. MySQL is not installed
// on the machines this runs on, so its path is checked here as far as it can be without a mysqld.
func TestFlavorCommands(t *testing.T) {
	for line, want := range map[string]bool{
		"/usr/sbin/mariadbd  Ver 10.11.6-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)": false,
		"/usr/sbin/mysqld  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)":              true,
		"/usr/sbin/mysqld  Ver 8.4.0 for Linux on x86_64 (MySQL Community Server - GPL)":               true,
		"": false, // --version failed: not known to be MySQL
	} {
		if got := isMySQLVersion(line); got != want {
			t.Errorf("isMySQLVersion(%q) = %v, want %v", line, got, want)
		}
	}
	if got, want := initCommand("/usr/sbin/mysqld", "", "/d/data", "/d/tmp", "me"),
		[]string{"/usr/sbin/mysqld", "--no-defaults", "--initialize-insecure", "--datadir=/d/data", "--tmpdir=/d/tmp", "--user=me"}; !reflect.DeepEqual(got, want) {
		t.Errorf("MySQL init: %q, want %q", got, want)
	}
	if got, want := initCommand("/usr/sbin/mariadbd", "/usr/bin/mariadb-install-db", "/d/data", "/d/tmp", "me"),
		[]string{"/usr/bin/mariadb-install-db", "--no-defaults", "--datadir=/d/data", "--auth-root-authentication-method=normal", "--skip-test-db", "--user=me"}; !reflect.DeepEqual(got, want) {
		t.Errorf("MariaDB init: %q, want %q", got, want)
	}
	if got := strings.Join(flavorArgs(true), " "); !strings.Contains(got, "--mysqlx=OFF") || strings.Contains(got, "--log-slave-updates ") {
		t.Errorf("MySQL options %q: want the X Protocol off and only loose replica options", got)
	}
}
