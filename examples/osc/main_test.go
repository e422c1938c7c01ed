package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
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
	// and does not suggest --resume.
	out.Reset()
	errOut.Reset()
	if code := run(ctx, append(common, "--alter", "ADD COLUMN extra INT NULL", "--execute", "--status-interval", "100ms"), &out, &errOut); code != 0 {
		t.Fatalf("second migration: exit %d, stderr %s", code, errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code = run(ctx, append(common, "--alter", "ADD COLUMN extra INT NULL", "--execute", "--resume"), &out, &errOut)
	if msg := errOut.String(); code != 1 || !strings.Contains(msg, "`shop`.`orders_del` exists") || strings.Contains(msg, "--resume") {
		t.Fatalf("--resume after a completed cut-over: exit %d, stderr %s", code, msg)
	}
	if code := run(ctx, []string{"--table", "x"}, &out, &errOut); code != 2 {
		t.Fatalf("missing flags: exit %d", code)
	}
}
