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

// A partitioned source: the copy and the binlog stream stop hearing from it. Progress says so —
// the copy idle, the stream silent, the lag growing — instead of a lag of 0 and a steady ETA.
func TestProgressShowsStallsAndTrueLag(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS stall", "CREATE DATABASE stall", "USE stall",
		"CREATE TABLE stall.t (id INT PRIMARY KEY, v VARCHAR(20))",
		"INSERT INTO stall.t SELECT seq, 'row' FROM seq_1_to_20000"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS stall"))
	proxy := startFaultProxy(t, fmt.Sprintf("127.0.0.1:%d", source.Port))
	src := conn(source)
	src.Port = proxy.Port()
	f, err := ferry.New(ferry.Config{Source: src, Target: conn(target), Tables: ferry.TableFilter{Databases: []string{"stall"}},
		BatchSize: 50, CopyWorkers: 1, CreateTargetTables: true, Logger: testLogger(t)})
	must(t, err)
	defer f.Close()
	must(t, f.Initialize(ctx))
	must(t, f.Start(ctx))
	runCtx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- f.Run(runCtx) }()
	waitFor(t, ctx, "the copy under way and the stream heard", func() bool {
		p := f.Progress()
		return p.RowsCopied >= 200 && !p.CopyComplete && p.StreamSilence > 0 && p.StreamSilence < time.Second
	})
	if p := f.Progress(); p.BinlogLag > 2*time.Second || p.CopyIdle > 2*time.Second {
		t.Errorf("before the partition: lag %s, copy idle %s", p.BinlogLag, p.CopyIdle)
	}
	proxy.Blackhole(true)
	must(t, source.Exec(ctx, "UPDATE stall.t SET v = 'unseen' WHERE id = 20000"))
	time.Sleep(5 * time.Second)
	p := f.Progress()
	t.Logf("partitioned 5s: %d rows, copy idle %s, stream silent %s, lag %s, apply wait %s, ETA %s",
		p.RowsCopied, p.CopyIdle, p.StreamSilence, p.BinlogLag, p.ApplyWait, p.ETA)
	if p.CopyIdle < 4*time.Second {
		t.Errorf("copy idle %s after 5 s without any row copied", p.CopyIdle)
	}
	if p.StreamSilence < 4*time.Second {
		t.Errorf("stream silence %s after 5 s without a byte from the source", p.StreamSilence)
	}
	if p.BinlogLag < time.Second {
		t.Errorf("binlog lag %s while the stream has been silent for %s; want the lag to grow with the silence", p.BinlogLag, p.StreamSilence)
	}
	stop()
	proxy.Close()
	<-errc
}
