package sandbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/ferrykit/ferry/sandbox"
)

func TestServerIsConfiguredForFerry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := sandbox.Start(ctx, sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	db, err := s.DB("")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := map[string]string{"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL"}
	for name, v := range want {
		var n, got string
		if err := db.QueryRowContext(ctx, "SHOW GLOBAL VARIABLES LIKE ?", name).Scan(&n, &got); err != nil {
			t.Fatal(err)
		}
		if got != v {
			t.Errorf("%s = %q, want %q", name, got, v)
		}
	}
}

func TestReplicaFollowsPrimary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := sandbox.Start(ctx, sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	r, err := sandbox.StartReplica(ctx, p, sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	if err := p.Exec(ctx, "CREATE DATABASE d", "CREATE TABLE d.t (id INT PRIMARY KEY)", "INSERT INTO d.t VALUES (1),(2)"); err != nil {
		t.Fatal(err)
	}
	db, _ := r.DB("")
	defer db.Close()
	var n int
	for i := 0; i < 200; i++ {
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM d.t").Scan(&n); err == nil && n == 2 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("replica has %d rows, want 2", n)
}
