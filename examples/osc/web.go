package main

import (
	"context"
	"io"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferrykit/ferry/internal/cli"
	"github.com/ferrykit/ferry/osc"
	"github.com/ferrykit/ferry/statuspage"
)

// serveWeb serves osc's status page (-http): the migration's status, its socket commands as
// buttons, and a few gauges at /metrics.
func serveWeb(ctx context.Context, web *cli.HTTPFlags, m *osc.Migration, table string, stderr io.Writer) (wait func(), err error) {
	command := func(cmd string) statuspage.Action {
		return func(arg string) (string, error) {
			line := cmd
			if arg != "" {
				line += "=" + arg
			}
			return m.Command(line)
		}
	}
	srv := &statuspage.Server{
		Status: func() statuspage.Status {
			s := m.Status()
			st := statuspage.Status{Tool: "osc", Phase: s.State, Elapsed: s.Elapsed, RowsCopied: s.RowsCopied, EstimatedRows: s.RowsEstimated,
				Percent: s.Percent, ETA: s.ETA, BinlogLag: s.Lag, EventsApplied: s.EventsApplied, Paused: s.Throttled, ChunkSize: s.ChunkSize}
			if s.Elapsed > 0 {
				st.RowsPerSecond = float64(s.RowsCopied) / s.Elapsed.Seconds()
			}
			state := "copying"
			if strings.Contains(s.State, "cut") || s.Percent >= 100 {
				state = "done"
			}
			st.Tables = []statuspage.Table{{Name: table, RowsCopied: s.RowsCopied, EstimatedRows: s.RowsEstimated, Percent: s.Percent, State: state}}
			return st
		},
		Actions: map[string]statuspage.Action{
			"throttle": command("throttle"), "unthrottle": command("no-throttle"),
			"unpostpone": command("unpostpone"), "chunk-size": command("chunk-size"), "abort": command("panic"),
		},
	}
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, f func(osc.Status) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(m.Status()) }))
	}
	gauge("ferry_osc_rows_copied", "Rows copied into the ghost table.", func(s osc.Status) float64 { return float64(s.RowsCopied) })
	gauge("ferry_osc_rows_estimated", "Rows the table is estimated to hold.", func(s osc.Status) float64 { return float64(s.RowsEstimated) })
	gauge("ferry_osc_binlog_lag_seconds", "How far the binlog apply trails the server.", func(s osc.Status) float64 { return s.Lag.Seconds() })
	gauge("ferry_osc_binlog_backlog", "Binlog row changes received, not yet applied.", func(s osc.Status) float64 { return float64(s.Backlog) })
	gauge("ferry_osc_events_applied", "Binlog row changes applied to the ghost table.", func(s osc.Status) float64 { return float64(s.EventsApplied) })
	gauge("ferry_osc_throttled", "1 while the copy is throttled.", func(s osc.Status) float64 {
		if s.Throttled != "" {
			return 1
		}
		return 0
	})
	srv.Metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return web.Serve(ctx, srv, stderr, "osc")
}
