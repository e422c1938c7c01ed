package main

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Repetition: every figure of the table is the median of -runs runs, interleaved with the runs of
// its ceiling (ceiling, figure, ceiling, figure, ...), so that a change of the machine's load during
// the section hits both; the table gives each median with its range (min–max) and the 1-minute
// load average sampled while the runs went on. A section measures with
//
//	ceil, fig, err := b.measure("copy idle", plainCopyRun, ferryCopyRun)
//	b.addSeries(&Figure{Name: "ferry copy, idle", Unit: "rows/s", CeilingName: "plain copier"}, fig, ceil)
//
// where each run function performs one run and returns its Sample. measureAll interleaves one
// ceiling with several figures (ceiling, a, b, ceiling, a, b, ...); a nil ceiling only repeats the
// figures. A figure added with b.add without a Series is marked as coming from a single run.

// Sample is what one run of a measured function returns.
type Sample struct {
	Value float64 // the figure of this run (rows/s, ms, ...)
	// CPU is the run's CPU record (optional); the table shows the one of the median run.
	CPU *CPU
	// Also holds secondary figures of the same run (binlog lag p99, peak RSS, ...): Series.Of turns
	// one into its own Series.
	Also map[string]float64
	// Note is anything the run has to say (a checksum result, a load error); the figure's note
	// lists each distinct note once.
	Note string
}

// runFn performs run i (0-based) of a measurement; i lets a run choose fresh keys or names.
type runFn func(i int) (Sample, error)

// Series is the samples of one measured function, in run order, and the 1-minute load average
// sampled during the measurement they belong to.
type Series struct {
	Samples []Sample
	Load    []float64
	batch   int // the measure call that produced it: samples of one batch are paired by index
}

// Values returns the samples' values in run order.
func (s *Series) Values() []float64 {
	out := make([]float64, len(s.Samples))
	for i, x := range s.Samples {
		out[i] = x.Value
	}
	return out
}

// Median is the median of the values (the mean of the middle two for an even count).
func (s *Series) Median() float64 { m, _, _ := medianRange(s.Values()); return m }

// Summary is "median (lo–hi)" of the values in fmtVal's precision ("median" alone if all are equal).
func (s *Series) Summary() string {
	m, lo, hi := medianRange(s.Values())
	if r := fmtRange(lo, hi); r != "" {
		return fmtVal(m, false) + " (" + r + ")"
	}
	return fmtVal(m, false)
}

// Of returns the secondary figure key of every sample (Sample.Also) as a Series of the same
// measurement; a run that did not record it counts as 0.
func (s *Series) Of(key string) *Series {
	return s.Map(func(x Sample) float64 { return x.Also[key] })
}

// Map returns f of every sample as a Series of the same measurement (e.g. rows/s → MiB/s).
func (s *Series) Map(f func(Sample) float64) *Series {
	out := &Series{Load: s.Load, batch: s.batch}
	for _, x := range s.Samples {
		out.Samples = append(out.Samples, Sample{Value: f(x), CPU: x.CPU, Note: x.Note})
	}
	return out
}

// medianSample is the sample whose value is the median (the lower middle for an even count).
func (s *Series) medianSample() Sample {
	if len(s.Samples) == 0 {
		return Sample{}
	}
	c := append([]Sample(nil), s.Samples...)
	sort.SliceStable(c, func(i, j int) bool { return c[i].Value < c[j].Value })
	return c[(len(c)-1)/2]
}

func (s *Series) notes() string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s.Samples {
		if x.Note != "" && !seen[x.Note] {
			seen[x.Note] = true
			out = append(out, x.Note)
		}
	}
	return strings.Join(out, "; ")
}

var measureBatches int

// measure runs ceiling and figure alternately, -runs times each, ceiling first, and returns
// both series. A nil ceiling only repeats figure (and returns a nil ceiling Series).
func (b *bench) measure(name string, ceiling, figure runFn) (ceil, fig *Series, err error) {
	ceil, figs, err := b.measureAll(name, ceiling, figure)
	return ceil, figs[0], err
}

// measureAll is measure with several figures interleaved with one ceiling: ceiling, figures[0],
// figures[1], ..., then again, -runs times.
func (b *bench) measureAll(name string, ceiling runFn, figures ...runFn) (*Series, []*Series, error) {
	runs := max(*runsFlag, 1)
	measureBatches++
	batch := measureBatches
	t0 := time.Now()
	var ceil *Series
	if ceiling != nil {
		ceil = &Series{batch: batch}
	}
	figs := make([]*Series, len(figures))
	for k := range figs {
		figs[k] = &Series{batch: batch}
	}
	finish := func() {
		load := b.load.during(t0, time.Now())
		if ceil != nil {
			ceil.Load = load
		}
		for _, f := range figs {
			f.Load = load
		}
	}
	for i := 0; i < runs; i++ {
		var line []string
		if ceiling != nil {
			s, err := ceiling(i)
			if err != nil {
				finish()
				return ceil, figs, fmt.Errorf("%s: ceiling, run %d: %w", name, i+1, err)
			}
			ceil.Samples = append(ceil.Samples, s)
			line = append(line, "ceiling "+fmtVal(s.Value, false))
		}
		for k, f := range figures {
			s, err := f(i)
			if err != nil {
				finish()
				return ceil, figs, fmt.Errorf("%s: run %d: %w", name, i+1, err)
			}
			figs[k].Samples = append(figs[k].Samples, s)
			line = append(line, fmtVal(s.Value, false))
		}
		logf("  %s: run %d/%d: %s (loadavg %s)", name, i+1, runs, strings.Join(line, ", "), loadAvg())
	}
	finish()
	return ceil, figs, nil
}

// addSeries adds f with its value, range and CPU record taken from fig and, if ceil is not nil,
// its ceiling from ceil. Ceiling runs interleaved with the figure's (the same measure call) give a
// ratio per pair of runs: the figure's ratio is the median of those, with their range; otherwise
// the ratio is of the medians.
func (b *bench) addSeries(f *Figure, fig, ceil *Series) *Figure {
	f.Runs = len(fig.Samples)
	f.Samples = fig.Values()
	f.Value, f.Min, f.Max = medianRange(f.Samples)
	if m := fig.medianSample(); m.CPU != nil && f.CPU == nil {
		f.CPU = m.CPU
	}
	if n := fig.notes(); n != "" {
		f.Note = strings.TrimPrefix(f.Note+"; "+n, "; ")
	}
	f.LoadAvg = loadStat(fig.Load)
	if ceil != nil && len(ceil.Samples) > 0 {
		f.CeilingSamples = ceil.Values()
		f.Ceiling, f.CeilingMin, f.CeilingMax = medianRange(f.CeilingSamples)
		if ceil.batch == fig.batch && len(ceil.Samples) == len(fig.Samples) {
			var ratios []float64
			for i := range f.Samples {
				if f.CeilingSamples[i] > 0 {
					ratios = append(ratios, f.Samples[i]/f.CeilingSamples[i])
				}
			}
			f.Ratio, f.RatioMin, f.RatioMax = medianRange(ratios)
			f.RatioPaired = true
		}
	}
	return b.add(f)
}

// LoadStat is the machine's 1-minute load average sampled during a figure's runs.
type LoadStat struct {
	Median  float64 `json:"median"`
	Min     float64 `json:"min"`
	Max     float64 `json:"max"`
	Samples int     `json:"samples"`
}

func loadStat(xs []float64) *LoadStat {
	if len(xs) == 0 {
		return nil
	}
	m, lo, hi := medianRange(xs)
	return &LoadStat{Median: m, Min: lo, Max: hi, Samples: len(xs)}
}

func (l *LoadStat) String() string {
	if l == nil {
		return "?"
	}
	if l.Min == l.Max {
		return fmt.Sprintf("%.1f", l.Median)
	}
	return fmt.Sprintf("%.1f (%.1f–%.1f)", l.Median, l.Min, l.Max)
}

// loadSampler reads the 1-minute load average every 2 s for the whole benchmark, so that any
// interval can be given the load it ran under.
type loadSampler struct {
	mu      sync.Mutex
	at      []time.Time
	v       []float64
	stop    chan struct{}
	stopped sync.WaitGroup
}

func startLoadSampler() *loadSampler {
	l := &loadSampler{stop: make(chan struct{})}
	l.sample()
	l.stopped.Add(1)
	go func() {
		defer l.stopped.Done()
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				l.sample()
			}
		}
	}()
	return l
}

func (l *loadSampler) sample() {
	v, ok := loadAvg1()
	if !ok {
		return
	}
	l.mu.Lock()
	l.at = append(l.at, time.Now())
	l.v = append(l.v, v)
	l.mu.Unlock()
}

func (l *loadSampler) Stop() {
	close(l.stop)
	l.stopped.Wait()
}

// during returns the samples taken in [t0, t1], and the current reading (an interval shorter than
// the sampling period still gets one).
func (l *loadSampler) during(t0, t1 time.Time) []float64 {
	var out []float64
	if l != nil {
		l.mu.Lock()
		for i, at := range l.at {
			if !at.Before(t0) && !at.After(t1) {
				out = append(out, l.v[i])
			}
		}
		l.mu.Unlock()
	}
	if v, ok := loadAvg1(); ok {
		out = append(out, v)
	}
	return out
}

// loadAvg1 is the 1-minute load average from /proc/loadavg.
func loadAvg1() (float64, bool) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	return v, err == nil
}

// medianRange returns the median (the mean of the middle two for an even count), lowest and
// highest of xs.
func medianRange(xs []float64) (median, lo, hi float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	s := append([]float64{}, xs...)
	sort.Float64s(s)
	n := len(s)
	median = s[n/2]
	if n%2 == 0 {
		median = (s[n/2-1] + s[n/2]) / 2
	}
	return median, s[0], s[n-1]
}

// fmtRange is "lo–hi" in fmtVal's precision, or "" for a single value.
func fmtRange(lo, hi float64) string {
	if lo == hi || math.IsNaN(lo) {
		return ""
	}
	return fmtVal(lo, false) + "–" + fmtVal(hi, false)
}
