package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/ferrykit/ferry/sandbox"
)

// TestCLI runs the command against one real server holding both the "source" and "target" databases.
// Its DSN uses server-side prepared statements (no interpolateParams), the other protocol path.
func TestCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := sandbox.Start(ctx, sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	cfg, err := mysql.ParseDSN(s.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	cfg.InterpolateParams = false
	cfg.ParseTime = true
	dsn := cfg.FormatDSN()
	var stmts []string
	for _, db := range []string{"a", "b"} {
		stmts = append(stmts,
			"CREATE DATABASE "+db,
			"CREATE TABLE "+db+".t (id BIGINT UNSIGNED PRIMARY KEY, name VARCHAR(20) COLLATE utf8mb4_general_ci, at DATETIME(6), tenant INT)",
			"CREATE TABLE "+db+".s (code VARCHAR(10) COLLATE utf8mb4_general_ci PRIMARY KEY, v INT)",
			"INSERT INTO "+db+".t VALUES (1, 'x', '2024-01-01 00:00:00.5', 1), (2, 'y', NULL, 2), (18446744073709551615, 'max', '2024-01-01', 1)",
			"INSERT INTO "+db+".s VALUES ('Alpha', 1), ('beta', 2), ('Ünï', 3)")
	}
	if err := s.Exec(ctx, stmts...); err != nil {
		t.Fatal(err)
	}
	diff := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(ctx, append([]string{"--source", dsn, "--target", dsn}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	for _, v := range []string{"checksum", "rowdiff", "checksum-table"} {
		if code, out, errs := diff("--tables", "a.*:b.*", "--verifier", v); code != 0 || !strings.Contains(out, "MATCH") {
			t.Fatalf("%s identical: exit %d\n%s%s", v, code, out, errs)
		}
	}
	if err := s.Exec(ctx, "UPDATE b.t SET name = 'X' WHERE id = 1", "DELETE FROM b.t WHERE id = 18446744073709551615",
		"INSERT INTO b.s VALUES ('gamma', 4)"); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"checksum", "rowdiff", "checksum-table"} {
		code, out, errs := diff("--tables", "a.t:b.t,a.s:b.s", "--verifier", v)
		if code != 1 {
			t.Fatalf("%s: exit %d, want 1\n%s%s", v, code, out, errs)
		}
		for _, want := range []string{"different (1) in columns name", "missing on target (18446744073709551615)", "extra on target (gamma)"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: output lacks %q:\n%s", v, want, out)
			}
		}
	}
	code, out, _ := diff("--tables", "a.t:b.t", "--json", "--ignore-columns", "name")
	var res struct {
		Match  bool `json:"match"`
		Tables []struct {
			MissingCount int `json:"missing_count"`
		} `json:"tables"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 1 || res.Match || res.Tables[0].MissingCount != 1 {
		t.Errorf("json: exit %d, %v\n%s", code, err, out)
	}
	// A filtered comparison: tenant 1 only. Row 2 (tenant 2) is outside the filter on both sides;
	// with --strict it counts as extra, because the target should hold tenant 1 only.
	if code, out, _ := diff("--tables", "a.t:b.t", "--where", "tenant = 1", "--ignore-columns", "name"); code != 1 || !strings.Contains(out, "missing on target (18446744073709551615)") {
		t.Errorf("where: exit %d\n%s", code, out)
	}
	if code, out, _ := diff("--tables", "a.t:b.t", "--where", "tenant = 1", "--strict", "--ignore-columns", "name"); code != 1 || !strings.Contains(out, "extra on target (2)") {
		t.Errorf("strict: exit %d\n%s", code, out)
	}
	if code, _, errs := diff("--tables", "a.t:b.t", "--where", "tenant = 1", "--verifier", "checksum-table"); code != 2 || !strings.Contains(errs, "copy filter") {
		t.Errorf("checksum-table with --where: exit %d, %s", code, errs)
	}
	if code, _, errs := diff("--tables", "a.nope"); code != 2 || !strings.Contains(errs, "does not exist") {
		t.Errorf("missing table: exit %d, %s", code, errs)
	}
	if code, _, _ := diff("--tables", "a.t", "--verifier", "magic"); code != 2 {
		t.Errorf("bad verifier: exit %d", code)
	}
	if code := run(ctx, nil, &bytes.Buffer{}, &bytes.Buffer{}); code != 2 {
		t.Errorf("no flags: exit %d", code)
	}
}
