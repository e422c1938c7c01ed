package test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/sandbox"
)

// A row larger than the target's max_allowed_packet cannot be written by one statement. The INSERT
// copy and the binlog apply fail before writing anything of the batch, with ErrRowTooLarge naming
// the table, the row's key, the statement's size and the setting to raise (the copy used to fail
// with a bare error 1105); rows that fit are split into statements under the limit; and once the
// limit is raised, a resume finishes with every row.
func TestRowLargerThanTargetPacketIsNamed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	small, err := sandbox.Start(ctx, sandbox.Options{ExtraArgs: []string{"--max-allowed-packet=4M", "--local-infile=1"}})
	must(t, err)
	defer small.Stop()
	const db = "packet_limit"
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db,
		"CREATE TABLE "+db+".docs (id INT PRIMARY KEY, body LONGBLOB)",
		// 40 rows of 300 KB: 12 MB, more than one 4 MB statement
		"INSERT INTO "+db+".docs SELECT seq, REPEAT(CHAR(65 + seq % 26), 300000) FROM "+db+".seq_1_to_40",
		// a row of 3.6 MB of bytes that each need escaping: 7.2 MB as a statement
		"INSERT INTO "+db+".docs VALUES (77, REPEAT(x'00275C', 1200000))"))
	wantNamed := func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, ferry.ErrRowTooLarge) {
			t.Fatalf("want ErrRowTooLarge, got %v", err)
		}
		for _, want := range []string{"`" + db + "`.`docs`", "row (id)=(77)", "7200", "max_allowed_packet of 4194304 bytes", "SET GLOBAL max_allowed_packet = 7340032"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error does not say %q:\n%v", want, err)
			}
		}
	}

	t.Run("insert copy", func(t *testing.T) {
		must(t, small.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
		cfg := rsFaultConfig(t, source, small, db)
		cfg.CopyWriteMethod = ferry.WriteInsert
		cfg.BatchSize = 100
		f := &ferry.Ferry{Config: cfg}
		defer f.Close()
		must(t, f.Initialize(ctx))
		must(t, f.Start(ctx))
		wantNamed(t, f.Run(ctx))
		if n := count(t, small, "SELECT COUNT(*) FROM "+db+".docs"); n != 0 {
			t.Errorf("the failed batch left %d rows on the target", n)
		}
	})

	t.Run("binlog apply", func(t *testing.T) {
		// LOAD DATA streams the big row; its binlog update is a REPLACE that cannot be sent.
		must(t, small.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
		cfg := rsFaultConfig(t, source, small, db)
		cfg.CopyWriteMethod = ferry.WriteLoadData
		f := &ferry.Ferry{Config: cfg}
		defer f.Close()
		must(t, f.Initialize(ctx))
		must(t, f.Start(ctx))
		runErr := make(chan error, 1)
		go func() { runErr <- f.Run(ctx) }()
		must(t, f.WaitUntilRowCopyIsComplete(ctx))
		rsSameRowsBetween(t, source, small, db+".docs", db+".docs")
		must(t, source.Exec(ctx, "UPDATE "+db+".docs SET body = CONCAT(body, 'x') WHERE id = 77"))
		select {
		case err := <-runErr:
			wantNamed(t, err)
		case <-time.After(time.Minute):
			t.Fatal("the apply of a row larger than max_allowed_packet did not fail")
		}
	})

	t.Run("raised limit", func(t *testing.T) {
		must(t, small.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "SET GLOBAL max_allowed_packet = 8388608"))
		cfg := rsFaultConfig(t, source, small, db)
		cfg.CopyWriteMethod = ferry.WriteInsert
		f := &ferry.Ferry{Config: cfg}
		defer f.Close()
		must(t, f.Initialize(ctx))
		must(t, f.Start(ctx))
		runErr := make(chan error, 1)
		go func() { runErr <- f.Run(ctx) }()
		rsCutover(t, ctx, f, runErr, &writeLoad{cancel: func() {}})
		rsSameRowsBetween(t, source, small, db+".docs", db+".docs")
	})
}
