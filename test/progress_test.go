package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

// The copy rate is the copy's own: once the last row is copied it stays what it was, however long
// the stream then runs before the cut-over (a rate of rows over total time falls and falls).
func TestProgressRowsPerSecondIsTheCopysOwnRate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var rows []string
	for i := 1; i <= 2000; i++ {
		rows = append(rows, fmt.Sprintf("(%d, 'row %d')", i, i))
	}
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS rate", "CREATE DATABASE rate",
		"CREATE TABLE rate.t (id INT PRIMARY KEY, v VARCHAR(20))",
		"INSERT INTO rate.t VALUES "+strings.Join(rows, ",")))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS rate", "CREATE DATABASE rate"))
	f, err := ferry.New(ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{"rate"}},
		BatchSize: 100, CreateTargetTables: true, Logger: testLogger(t)})
	must(t, err)
	defer f.Close()
	must(t, f.Initialize(ctx))
	must(t, f.Start(ctx))
	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx) }()
	must(t, f.WaitUntilRowCopyIsComplete(ctx))
	first := f.Progress()
	if first.RowsCopied != 2000 || first.RowsPerSecond <= 0 {
		t.Fatalf("after the copy: %d rows at %.0f rows/s, want 2000 rows at a positive rate", first.RowsCopied, first.RowsPerSecond)
	}
	time.Sleep(1500 * time.Millisecond) // streaming, nothing copied
	later := f.Progress()
	if later.RowsPerSecond != first.RowsPerSecond {
		t.Errorf("rows/s moved from %.1f to %.1f while nothing was copied; want the copy's own rate", first.RowsPerSecond, later.RowsPerSecond)
	}
	if min := 2000 / later.Elapsed.Seconds(); later.RowsPerSecond <= min {
		t.Errorf("rows/s %.1f is no more than rows over the whole run (%.1f)", later.RowsPerSecond, min)
	}
	must(t, f.FlushBinlogAndStopStreaming(ctx))
	must(t, <-errc)
}
