package main

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/metrics"
	"github.com/ferrykit/ferry/sandbox"
	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/throttler"
	"github.com/ferrykit/ferry/verifier"
)

// A verification pass shows its advance while it runs, before its result: the metrics
// (ferry_verification_running, ferry_verification_progress_rows/_chunks by table) and the status
// page's verification section give the phase and the rows and chunks compared so far, and the totals
// once it ends. The pass compares 240 rows in chunks of 50 (one of them differs and is drilled into),
// one chunk at a time; before each chunk the figures must count exactly the chunks already done.
func TestVerifierProgressIsLive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := sandbox.Start(ctx, sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if err := s.Exec(ctx, "CREATE DATABASE a", "CREATE DATABASE b",
		"CREATE TABLE a.t (id INT PRIMARY KEY, v VARCHAR(20))", "INSERT INTO a.t SELECT seq, 'v' FROM a.seq_1_to_240",
		"CREATE TABLE b.t LIKE a.t", "INSERT INTO b.t SELECT * FROM a.t", "UPDATE b.t SET v = 'other' WHERE id = 120"); err != nil {
		t.Fatal(err)
	}
	db, err := s.DB("")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tbl, err := schema.Load(ctx, db, "a", "t")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ferry.New(ferry.Config{Source: ferry.ConnConfig{Host: s.Host, Port: s.Port, User: s.User},
		Target: ferry.ConnConfig{Host: s.Host, Port: s.Port, User: s.User}, Tables: ferry.TableFilter{Databases: []string{"a"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	reg := prometheus.NewRegistry()
	m, err := metrics.Register(reg, f)
	if err != nil {
		t.Fatal(err)
	}
	ctl := newControls(f, cancel, false)

	type figures struct {
		running       bool
		rows, chunks  float64
		statusRows    int64
		statusChunks  int64
		statusPhase   verifier.Phase
		statusRunning bool
	}
	read := func() figures {
		var fg figures
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, mt := range mf.GetMetric() {
				switch mf.GetName() {
				case "ferry_verification_running":
					fg.running = mt.GetGauge().GetValue() == 1 && label(mt, "phase") == string(verifier.DuringCutover)
				case "ferry_verification_progress_rows":
					if label(mt, "table") == "a.t" {
						fg.rows = mt.GetGauge().GetValue()
					}
				case "ferry_verification_progress_chunks":
					if label(mt, "table") == "a.t" {
						fg.chunks = mt.GetGauge().GetValue()
					}
				}
			}
		}
		if v := ctl.status().Verification; v != nil && len(v.Tables) == 1 && v.Tables[0].Table == "a.t" {
			fg.statusRows, fg.statusChunks, fg.statusPhase, fg.statusRunning = v.Tables[0].Rows, v.Tables[0].Chunks, v.Phase, v.Running
		}
		return fg
	}
	var seen []figures
	c := &verifier.Checksum{Source: db, Target: db, ChunkSize: 50, Concurrency: 1,
		Throttler: throttler.Func(func(context.Context) (throttler.Status, error) {
			seen = append(seen, read())
			return throttler.Status{}, nil
		})}
	m.WatchVerifier(c)
	ctl.watchVerifier(c)
	if got := ctl.status().Verification; got != nil {
		t.Fatalf("status before any pass: %+v, want no verification section", got)
	}
	res, err := c.Verify(ctx, verifier.DuringCutover, []verifier.TablePair{{Source: tbl, TargetDatabase: "b", TargetTable: "t"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Tables[0].DifferentCount != 1 {
		t.Fatalf("the pass found %d different rows, want 1", res.Tables[0].DifferentCount)
	}
	if len(seen) != 5 {
		t.Fatalf("the pass checked %d chunks, want 5", len(seen))
	}
	for i, fg := range seen {
		want := figures{running: true, rows: float64(50 * i), chunks: float64(i), statusRows: int64(50 * i), statusChunks: int64(i),
			statusPhase: verifier.DuringCutover, statusRunning: true}
		if fg != want {
			t.Errorf("before chunk %d: %+v, want %+v", i, fg, want)
		}
	}
	want := figures{running: false, rows: 240, chunks: 5, statusRows: 240, statusChunks: 5, statusPhase: verifier.DuringCutover}
	if fg := read(); fg != want {
		t.Errorf("after the pass: %+v, want %+v", fg, want)
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
