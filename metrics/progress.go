package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrykit/ferry"
)

var (
	descRows          = prometheus.NewDesc("ferry_copy_rows_copied_total", "Rows copied to the target, by table (counting rows a resumed run found copied).", []string{"table"}, nil)
	descEstimated     = prometheus.NewDesc("ferry_copy_rows_estimated", "Rows the table is estimated to hold (exact once its copy completed), by table.", []string{"table"}, nil)
	descTableDone     = prometheus.NewDesc("ferry_copy_table_complete", "1 once the table's copy completed.", []string{"table"}, nil)
	descCopyComplete  = prometheus.NewDesc("ferry_copy_complete", "1 once every table is copied.", nil, nil)
	descRate          = prometheus.NewDesc("ferry_copy_rows_per_second", "The copy's own rate: rows this run copied over the time its copy took.", nil, nil)
	descETA           = prometheus.NewDesc("ferry_copy_eta_seconds", "Estimated time left for the copy (0 when done or unknown).", nil, nil)
	descCopyIdle      = prometheus.NewDesc("ferry_copy_idle_seconds", "While copying: time since the last batch was written (a stall when not throttled).", nil, nil)
	descLag           = prometheus.NewDesc("ferry_binlog_lag_seconds", "How far the target is behind the source: source binlog timestamps and heartbeats, growing while the stream is silent.", nil, nil)
	descApplyWait     = prometheus.NewDesc("ferry_binlog_apply_wait_seconds", "How long the oldest received change has waited inside ferry.", nil, nil)
	descSilence       = prometheus.NewDesc("ferry_binlog_stream_silence_seconds", "Time since anything (an event or a heartbeat, sent every second when idle) came from the binlog connection.", nil, nil)
	descLastEvent     = prometheus.NewDesc("ferry_binlog_last_event_timestamp_seconds", "Source timestamp of the last binlog event received (Unix seconds).", nil, nil)
	descEventsApplied = prometheus.NewDesc("ferry_binlog_events_applied_total", "Row changes applied from the binlog.", nil, nil)
	descThrottled     = prometheus.NewDesc("ferry_throttled", "1 while the copy and apply are paused by a throttler; the reason is on ferry_throttle_reason.", nil, nil)
	descThrottleWhy   = prometheus.NewDesc("ferry_throttle_reason", "1 for the current throttle reason while throttled.", []string{"reason"}, nil)
)

// progressCollector reads Ferry.Progress at each scrape.
type progressCollector struct{ f *ferry.Ferry }

func (c progressCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRows, descEstimated, descTableDone, descCopyComplete, descRate, descETA, descCopyIdle,
		descLag, descApplyWait, descSilence, descLastEvent, descEventsApplied, descThrottled, descThrottleWhy} {
		ch <- d
	}
}

func (c progressCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.f.Progress()
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, t := range p.Tables {
		ch <- prometheus.MustNewConstMetric(descRows, prometheus.CounterValue, float64(t.RowsCopied), t.Table)
		ch <- prometheus.MustNewConstMetric(descEstimated, prometheus.GaugeValue, float64(t.EstimatedRows), t.Table)
		ch <- prometheus.MustNewConstMetric(descTableDone, prometheus.GaugeValue, b(t.Completed), t.Table)
	}
	ch <- prometheus.MustNewConstMetric(descCopyComplete, prometheus.GaugeValue, b(p.CopyComplete))
	ch <- prometheus.MustNewConstMetric(descRate, prometheus.GaugeValue, p.RowsPerSecond)
	ch <- prometheus.MustNewConstMetric(descETA, prometheus.GaugeValue, p.ETA.Seconds())
	ch <- prometheus.MustNewConstMetric(descCopyIdle, prometheus.GaugeValue, p.CopyIdle.Seconds())
	ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, p.BinlogLag.Seconds())
	ch <- prometheus.MustNewConstMetric(descApplyWait, prometheus.GaugeValue, p.ApplyWait.Seconds())
	ch <- prometheus.MustNewConstMetric(descSilence, prometheus.GaugeValue, p.StreamSilence.Seconds())
	if !p.LastEventTime.IsZero() {
		ch <- prometheus.MustNewConstMetric(descLastEvent, prometheus.GaugeValue, float64(p.LastEventTime.Unix()))
	}
	ch <- prometheus.MustNewConstMetric(descEventsApplied, prometheus.CounterValue, float64(p.EventsApplied))
	ch <- prometheus.MustNewConstMetric(descThrottled, prometheus.GaugeValue, b(p.Throttled))
	if p.Throttled {
		ch <- prometheus.MustNewConstMetric(descThrottleWhy, prometheus.GaugeValue, 1, p.ThrottleReason)
	}
}

var (
	descVerifyRunning = prometheus.NewDesc("ferry_verification_running", "1 while a verification pass runs, by phase (of the running or last pass).", []string{"phase"}, nil)
	descVerifyRows    = prometheus.NewDesc("ferry_verification_progress_rows", "Source rows the running (or last) verification pass compared so far, by table.", []string{"table"}, nil)
	descVerifyChunks  = prometheus.NewDesc("ferry_verification_progress_chunks", "Chunks the running (or last) verification pass compared so far, by table.", []string{"table"}, nil)
)

// verifyProgressCollector reads the watched verifier's Progress at each scrape.
type verifyProgressCollector struct{ m *Metrics }

func (c verifyProgressCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descVerifyRunning
	ch <- descVerifyRows
	ch <- descVerifyChunks
}

func (c verifyProgressCollector) Collect(ch chan<- prometheus.Metric) {
	get := c.m.verifierProgress.Load()
	if get == nil {
		return
	}
	p := (*get)()
	if p.Phase == "" {
		return // no pass yet
	}
	running := 0.0
	if p.Running {
		running = 1
	}
	ch <- prometheus.MustNewConstMetric(descVerifyRunning, prometheus.GaugeValue, running, string(p.Phase))
	for _, t := range p.Tables {
		ch <- prometheus.MustNewConstMetric(descVerifyRows, prometheus.GaugeValue, float64(t.Rows), t.Table)
		ch <- prometheus.MustNewConstMetric(descVerifyChunks, prometheus.GaugeValue, float64(t.Chunks), t.Table)
	}
}
