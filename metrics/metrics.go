// Package metrics exports a running Ferry as Prometheus metrics, on a registry the host passes (never
// the global default registry, so an embedding program keeps control of what it exposes).
//
// Two kinds of figures: timings observed as they happen (copy batch latency and size, binlog apply
// latency and changes by kind, cut-over phases, verification results), and the state read from
// Ferry.Progress at each scrape (rows copied and estimated per table, rates, the true binlog lag,
// stalls, throttling, and, with WatchVerifier, the running verification pass's rows and chunks
// compared so far). Reading the state at scrape time means a metric can never disagree with the
// progress line or the status page: they are the same figures.
//
// The lag is the true one (Ferry.SourceLag): how far the target is behind the source by the
// source's binlog timestamps and heartbeats, growing while the stream is silent — not how long a
// change waited inside ferry, which reads 0 while the stream itself is behind or stalled.
package metrics

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/verifier"
)

// Metrics is registered on one registry for one Ferry.
type Metrics struct {
	f *ferry.Ferry

	batchSeconds *prometheus.HistogramVec
	batchBytes   *prometheus.CounterVec
	applySeconds prometheus.Histogram
	applied      *prometheus.CounterVec
	cutoverPhase *prometheus.GaugeVec
	cutovers     *prometheus.CounterVec
	verified     *prometheus.GaugeVec
	verifyRuns   *prometheus.CounterVec
	retries      prometheus.Counter

	verifierProgress atomic.Pointer[func() verifier.Progress]
}

// ProgressReporter is a verifier that says how far its running pass has got (verifier.Checksum,
// verifier.Incremental).
type ProgressReporter interface {
	Progress() verifier.Progress
}

// WatchVerifier exports v's progress at each scrape (ferry_verification_progress_*), so a long
// verification shows its advance before its result.
func (m *Metrics) WatchVerifier(v ProgressReporter) {
	if m == nil || v == nil {
		return
	}
	f := v.Progress
	m.verifierProgress.Store(&f)
}

// Register registers f's metrics on reg and sets f.Observer (call before f.Start, so the binlog
// writer is built with it).
func Register(reg prometheus.Registerer, f *ferry.Ferry) (*Metrics, error) {
	m := &Metrics{
		f: f,
		batchSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ferry_copy_batch_seconds",
			Help: "Time to write one copy batch to the target, by table.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}, []string{"table"}),
		batchBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_copy_bytes_total",
			Help: "Bytes of row values copied, by table."}, []string{"table"}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ferry_binlog_apply_seconds",
			Help: "Time to apply one batch of binlog changes on the target.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15)}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_binlog_changes_applied_total",
			Help: "Row changes from the binlog applied on the target, by kind."}, []string{"kind"}),
		cutoverPhase: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_cutover_phase_seconds",
			Help: "Duration of each phase of the last cut-over; phase=blocked is how long writes were blocked."}, []string{"phase"}),
		cutovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_cutovers_total",
			Help: "Cut-overs attempted, by result (swapped, failed, verification_failed)."}, []string{"result"}),
		verified: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_verification_rows",
			Help: "Rows of the last verification, by kind: compared, and the differences missing, extra, different."}, []string{"kind"}),
		verifyRuns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_verifications_total",
			Help: "Verifications run, by result (match, mismatch)."}, []string{"result"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_retries_total",
			Help: "Transient errors retried during the run (lost connections, deadlocks, lock wait timeouts...)."}),
	}
	for _, c := range []prometheus.Collector{m.batchSeconds, m.batchBytes, m.applySeconds, m.applied, m.cutoverPhase,
		m.cutovers, m.verified, m.verifyRuns, m.retries, progressCollector{f}, verifyProgressCollector{m}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, k := range []ferry.DMLType{ferry.Insert, ferry.Update, ferry.Delete} {
		m.applied.WithLabelValues(k.String()) // present from the start, at 0
	}
	f.Observer = m
	return m, nil
}

// BatchCopied implements ferry.Observer.
func (m *Metrics) BatchCopied(table string, rows int, bytes int64, took time.Duration) {
	m.batchSeconds.WithLabelValues(table).Observe(took.Seconds())
	m.batchBytes.WithLabelValues(table).Add(float64(bytes))
}

// ChangesApplied implements ferry.Observer.
func (m *Metrics) ChangesApplied(byKind map[ferry.DMLType]int, took time.Duration) {
	m.applySeconds.Observe(took.Seconds())
	for k, n := range byKind {
		m.applied.WithLabelValues(k.String()).Add(float64(n))
	}
}

// Retried counts a retry (ferry calls it for every transient error retried during Run).
func (m *Metrics) Retried(string) { m.retries.Inc() }

// ObserveCutover records a cut-over's report and outcome. A nil Metrics ignores it.
func (m *Metrics) ObserveCutover(rep *ferry.CutoverReport, err error) {
	if m == nil {
		return
	}
	result := "swapped"
	switch {
	case errors.Is(err, ferry.ErrVerificationFailed):
		result = "verification_failed"
	case err != nil || rep == nil || !rep.Swapped:
		result = "failed"
	}
	m.cutovers.WithLabelValues(result).Inc()
	if rep == nil {
		return
	}
	for phase, d := range map[string]time.Duration{"blocked": rep.Blocked, "flush": rep.Flush, "verify": rep.Verify, "verify_before_lock": rep.VerifyBeforeLock} {
		m.cutoverPhase.WithLabelValues(phase).Set(d.Seconds())
	}
	if rep.Result != nil {
		m.ObserveVerification(rep.Result)
	}
}

// ObserveVerification records a verifier's result. A nil Metrics ignores it.
func (m *Metrics) ObserveVerification(res *verifier.Result) {
	if m == nil || res == nil {
		return
	}
	var missing, extra, different, compared int64
	for _, t := range res.Tables {
		missing += t.MissingCount
		extra += t.ExtraCount
		different += t.DifferentCount
		compared += t.RowsCompared
	}
	m.verified.WithLabelValues("compared").Set(float64(compared))
	m.verified.WithLabelValues("missing").Set(float64(missing))
	m.verified.WithLabelValues("extra").Set(float64(extra))
	m.verified.WithLabelValues("different").Set(float64(different))
	result := "match"
	if !res.Match() {
		result = "mismatch"
	}
	m.verifyRuns.WithLabelValues(result).Inc()
}
