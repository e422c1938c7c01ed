package verifier_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry/sandbox"
	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/verifier"
)

// TestRowEncodingOverMaxAllowedPacketIsRefused: the server makes a CONCAT longer than
// max_allowed_packet NULL (with only a warning), so a row whose hash input could pass it would drop
// out of the chunk checksum and the row hash alike, and a difference in it would be reported as a
// match. The verifiers refuse such a table by its schema before reading a row, saying what to
// raise; a table whose rows fit is still compared and its difference found.
func TestRowEncodingOverMaxAllowedPacketIsRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := sandbox.Start(ctx, sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	setup, err := srv.DB("")
	if err != nil {
		t.Fatal(err)
	}
	defer setup.Close()
	for _, q := range []string{
		"CREATE DATABASE src", "CREATE DATABASE dst",
		// wide: 6000 bytes can pass a 4 KiB packet; fits: 3000 bytes cannot.
		"CREATE TABLE src.wide (id INT PRIMARY KEY, v VARCHAR(6000) CHARACTER SET latin1 NOT NULL)",
		"CREATE TABLE dst.wide LIKE src.wide",
		"CREATE TABLE src.fits (id INT PRIMARY KEY, v VARCHAR(3000) CHARACTER SET latin1 NOT NULL)",
		"CREATE TABLE dst.fits LIKE src.fits",
		"INSERT INTO src.wide VALUES (1, REPEAT('a', 5000)), (2, 'short')",
		"INSERT INTO dst.wide VALUES (1, CONCAT(REPEAT('a', 4999), 'b')), (2, 'short')",
		"INSERT INTO src.fits VALUES (1, REPEAT('a', 2900)), (2, 'short')",
		"INSERT INTO dst.fits VALUES (1, CONCAT(REPEAT('a', 2899), 'b')), (2, 'short')",
		// Sessions opened from now on get a 4 KiB max_allowed_packet.
		"SET GLOBAL max_allowed_packet = 4096",
	} {
		if _, err := setup.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	src, err := srv.DB("")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := srv.DB("")
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	verifiers := []verifier.Verifier{
		&verifier.Checksum{Source: src, Target: dst, ChunkSize: 10},
		&verifier.Differ{Source: src, Target: dst, PageSize: 10},
		&verifier.Incremental{Checksum: &verifier.Checksum{Source: src, Target: dst, ChunkSize: 10}},
	}
	for _, table := range []string{"wide", "fits"} {
		tbl, err := schema.Load(ctx, src, "src", table)
		if err != nil {
			t.Fatal(err)
		}
		pair := verifier.TablePair{Source: tbl, TargetDatabase: "dst", TargetTable: table}
		for _, v := range verifiers {
			res, err := v.Verify(ctx, verifier.DuringCutover, []verifier.TablePair{pair})
			switch table {
			case "wide":
				if err == nil {
					t.Errorf("%T on %s: no error (match=%v); want a refusal naming max_allowed_packet", v, table, res.Match())
				} else if !strings.Contains(err.Error(), "max_allowed_packet") || !strings.Contains(err.Error(), "raise") {
					t.Errorf("%T on %s: %v; want it to name max_allowed_packet and what to raise", v, table, err)
				}
			case "fits":
				if err != nil {
					t.Errorf("%T on %s: %v", v, table, err)
				} else if res.Match() || res.Tables[0].DifferentCount != 1 {
					t.Errorf("%T on %s: match=%v, %d different; want the one differing row found", v, table, res.Match(), res.Tables[0].DifferentCount)
				}
			}
		}
	}
}
