// Command bench measures ferry against the physical ceiling of this machine, in one run.
//
// It starts two sandbox MariaDB servers (source and target), generates an orders-like table and a
// narrow table on the source, measures the ceilings (same-server INSERT…SELECT, mariadb-dump |
// mariadb, and the benchmark's own plain chunked copiers), then ferry: cross-server copy idle and
// under a steady write load (with binlog lag), the binlog apply rate, each verifier, the cut-over
// write-blocked window and peak RSS. It prints one table (figure, value, ceiling, ratio, target),
// and writes it as JSON with -json.
//
//	go run ./test/bench                 # 300k-row orders table, everything (make bench)
//	go run ./test/bench -full           # 1M rows: about three times as long
//	go run ./test/bench -quick          # 50k rows, a smoke run
//	go run ./test/bench -only ceilings,copy -rows 200000 -json out.json -markdown table.md
//
// Every figure is measured in the same run as its ceiling, on the same servers; nothing is copied
// from an earlier run. Every figure is the median of -runs runs interleaved with its ceiling's
// (see measure.go), printed with its range and the load average during the runs.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ferrykit/ferry/sandbox"
)

var (
	rowsFlag         = flag.Int64("rows", 300_000, "rows in the orders-like table (-full: 1,000,000; -quick: 50,000)")
	narrowFlag       = flag.Int64("narrow-rows", 300_000, "rows in the narrow table (id, int, varchar(32)) (-full: 1,000,000; -quick: 50,000)")
	loadFlag         = flag.Float64("load", 500, "writes/s of the mixed load on the source during the under-load copy and the cut-overs")
	onlyFlag         = flag.String("only", "", "comma-separated sections to run: ceilings,copy,verify,rss,narrow,load,loaddata-load,inline,apply,cutover,osc,snapshot,shards (default all)")
	jsonFlag         = flag.String("json", "", "write the figures as JSON to this file")
	cutoversFlag     = flag.Int("cutovers", 20, "cut-overs (Ferry) and migrations (OSC) under load per run: each run gives a p50 and a p99")
	quickFlag        = flag.Bool("quick", false, "small smoke run: 50k orders rows, 50k narrow rows, 5 cut-overs per run")
	fullFlag         = flag.Bool("full", false, "the full size: 1M orders rows, 1M narrow rows (about 3x as long as the default)")
	workersFlag      = flag.Int("workers", 4, "copy workers for ferry and the plain copiers")
	applyWorkersFlag = flag.Int("apply-workers", 4, "binlog apply workers of the parallel writer in the apply section (its ceiling is ApplyWorkers=1, the default)")
	profileFlag      = flag.String("profile", "", "directory for CPU profiles of the ferry copy (child process) and the apply run")
	bufferFlag       = flag.String("buffer-pool", "512M", "innodb_buffer_pool_size of each sandbox server")
	runsFlag         = flag.Int("runs", 3, "runs of every measurement (each figure is their median, interleaved with its ceiling's runs)")
	markdownFlag     = flag.String("markdown", "", "write the result table as markdown to this file (for docs/benchmarks.md)")
)

// Figure is one line of the result table.
type Figure struct {
	Name        string  `json:"name"`
	Value       float64 `json:"value"`
	Unit        string  `json:"unit"`
	Ceiling     float64 `json:"ceiling,omitempty"`
	CeilingName string  `json:"ceiling_name,omitempty"`
	Ratio       float64 `json:"ratio,omitempty"`
	Target      string  `json:"target,omitempty"`
	Note        string  `json:"note,omitempty"`
	CPU         *CPU    `json:"cpu,omitempty"`
	NotMeasured bool    `json:"not_measured,omitempty"`
	// CPURatio compares CPU cost instead of speed: the reference's CPU-seconds per row (source +
	// target mariadbd + Go) divided by this figure's; for the copy the reference is the plain copier
	// that needs the fewest CPU-seconds per row. Unlike Ratio it hardly moves when other
	// processes share the machine, so it is the better comparison on a busy machine.
	CPURatio float64 `json:"cpu_normalised_ratio,omitempty"`
	// Ref names the figure whose CPU record is the ceiling's, for CPURatio.
	Ref string `json:"-"`

	// Runs is how many runs Value is the median of (1: a single run, marked as such); Samples are
	// their values in run order, Min and Max their range.
	Runs    int       `json:"runs"`
	Samples []float64 `json:"samples,omitempty"`
	Min     float64   `json:"min,omitempty"`
	Max     float64   `json:"max,omitempty"`
	// The ceiling's runs, interleaved with the figure's when RatioPaired.
	CeilingSamples []float64 `json:"ceiling_samples,omitempty"`
	CeilingMin     float64   `json:"ceiling_min,omitempty"`
	CeilingMax     float64   `json:"ceiling_max,omitempty"`
	// RatioPaired: Ratio is the median of the per-run ratios figure/ceiling of interleaved runs,
	// RatioMin–RatioMax their range; otherwise Ratio is the ratio of the medians.
	RatioPaired bool    `json:"ratio_paired,omitempty"`
	RatioMin    float64 `json:"ratio_min,omitempty"`
	RatioMax    float64 `json:"ratio_max,omitempty"`
	// LoadAvg is the machine's 1-minute load average sampled during the runs.
	LoadAvg *LoadStat `json:"loadavg_1m,omitempty"`
}

// SingleRun says the figure comes from one run (no median, no range).
func (f *Figure) SingleRun() bool { return !f.NotMeasured && f.Runs <= 1 }

func (c *CPU) perRow() float64 {
	if c == nil || c.Rows <= 0 {
		return 0
	}
	return (c.Source + c.Target + c.Go) / float64(c.Rows)
}

type bench struct {
	ctx       context.Context
	src, dst  *sandbox.Server
	rows      int64
	narrow    int64
	figures   []*Figure
	named     map[string]*Figure
	only      map[string]bool
	dataLen   int64  // DATA_LENGTH of the orders table, bytes
	bestPlain string // name of the fastest plain copier figure on orders
	// cheapestPlain names the plain copier figure with the fewest CPU-seconds per row: the reference
	// of the CPU-normalised ratios of the copy.
	cheapestPlain string
	bestMode      copyMode
	bestWorkers   int
	load          *loadSampler // the 1-minute load average through the whole benchmark
}

func (b *bench) want(section string) bool { return len(b.only) == 0 || b.only[section] }

func (b *bench) add(f *Figure) *Figure {
	if f.CPU != nil { // callers reuse one CPU variable: keep this figure's own copy
		c := *f.CPU
		f.CPU = &c
	}
	if f.Runs == 0 && !f.NotMeasured { // not from a Series: one run, measured just now
		f.Runs = 1
		if f.LoadAvg == nil {
			f.LoadAvg = loadStat(b.load.during(time.Now(), time.Now()))
		}
	}
	if f.Ceiling > 0 && f.Value > 0 && f.Ratio == 0 {
		f.Ratio = f.Value / f.Ceiling
	}
	if ref := b.named[f.Ref]; ref != nil && ref.CPU.perRow() > 0 && f.CPU.perRow() > 0 {
		f.CPURatio = ref.CPU.perRow() / f.CPU.perRow()
	}
	b.figures = append(b.figures, f)
	b.named[f.Name] = f
	line := fmt.Sprintf("  %-58s %12s %-10s %s", f.Name, fmtVal(f.Value, f.NotMeasured), f.Unit, f.runsText())
	if f.Ceiling > 0 {
		line += fmt.Sprintf("\n      ceiling %s (%s), ratio %s", f.ceilingText(), f.CeilingName, f.ratioText())
	}
	if f.CPURatio > 0 {
		line += fmt.Sprintf(", CPU-normalised ratio %.2f", f.CPURatio)
	}
	if f.CPU != nil {
		line += "\n      " + f.CPU.String()
	}
	if f.LoadAvg != nil {
		line += "\n      loadavg 1m during the runs " + f.LoadAvg.String()
	}
	if f.Note != "" {
		line += "\n      " + f.Note
	}
	fmt.Println(line)
	return f
}

// runsText is "median of 3, range a–b" or "single run".
func (f *Figure) runsText() string {
	switch {
	case f.NotMeasured:
		return ""
	case f.SingleRun():
		return "(single run)"
	case f.Min == f.Max:
		return fmt.Sprintf("(median of %d runs, all equal)", f.Runs)
	}
	return fmt.Sprintf("(median of %d runs, range %s)", f.Runs, fmtRange(f.Min, f.Max))
}

func (f *Figure) ceilingText() string {
	s := fmtVal(f.Ceiling, false)
	if r := fmtRange(f.CeilingMin, f.CeilingMax); r != "" && len(f.CeilingSamples) > 1 {
		s += " (" + r + ")"
	}
	return s
}

func (f *Figure) ratioText() string {
	s := fmt.Sprintf("%.2fx", f.Ratio)
	if f.RatioPaired && f.RatioMin != f.RatioMax {
		s += fmt.Sprintf(" (%.2f–%.2f)", f.RatioMin, f.RatioMax)
	}
	if !f.RatioPaired && len(f.CeilingSamples) > 1 {
		s += " (of the medians)"
	}
	return s
}

func (b *bench) value(name string) float64 {
	if f := b.named[name]; f != nil && !f.NotMeasured {
		return f.Value
	}
	return 0
}

func fmtVal(v float64, nm bool) string {
	switch {
	case nm:
		return "—"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

func main() {
	flag.Parse()
	if *childOSCFlag != "" {
		oscChildMain(*childOSCFlag, *childProfile)
		return
	}
	if *childFlag != "" {
		childMain(*childFlag, *childProfile)
		return
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	size := map[bool]int64{true: 50_000, false: 1_000_000}[*quickFlag]
	if *quickFlag || *fullFlag {
		if !set["rows"] {
			*rowsFlag = size
		}
		if !set["narrow-rows"] {
			*narrowFlag = size
		}
	}
	if *quickFlag && !set["cutovers"] {
		*cutoversFlag = 5
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	b := &bench{ctx: ctx, rows: *rowsFlag, narrow: *narrowFlag, named: map[string]*Figure{}, only: map[string]bool{}}
	for _, s := range strings.Split(*onlyFlag, ",") {
		if s = strings.TrimSpace(s); s != "" {
			b.only[s] = true
		}
	}
	b.load = startLoadSampler()
	defer b.load.Stop()
	started := time.Now()
	var err error
	opts := sandbox.Options{BufferPool: *bufferFlag}
	if b.src, err = sandbox.Start(ctx, opts); err != nil {
		return err
	}
	defer b.src.Stop()
	if b.dst, err = sandbox.Start(ctx, opts); err != nil {
		return err
	}
	defer b.dst.Stop()
	var version string
	if db, err := b.src.DB(""); err == nil {
		db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version)
		db.Close()
	}
	logf("servers: source :%d, target :%d, %s; %d CPUs; orders %d rows, narrow %d rows", b.src.Port, b.dst.Port, version, runtime.NumCPU(), b.rows, b.narrow)

	if err := b.setup(); err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	sections := []struct {
		name string
		fn   func() error
	}{
		{"ceilings", b.ceilings},
		{"copy", b.copyIdle},
		{"verify", b.verifiers},
		{"rss", b.rss},
		{"narrow", b.narrowCopy},
		{"load", func() error { return b.copyUnderLoad("", "INSERT writer") }},
		{"loaddata-load", func() error { return b.copyUnderLoad("loaddata", "default LOAD DATA writer") }},
		{"inline", b.inline},
		{"apply", b.apply},
		{"cutover", b.cutovers},
		{"osc", b.osc},
		{"snapshot", b.snapshots},
		{"shards", b.shards},
	}
	for _, s := range sections {
		if !b.want(s.name) {
			continue
		}
		logf("section %s", s.name)
		t0 := time.Now()
		err := s.fn()
		logf("section %s took %s", s.name, time.Since(t0).Round(time.Second))
		if err != nil {
			b.add(&Figure{Name: s.name + ": FAILED", NotMeasured: true, Note: err.Error()})
			logf("section %s failed: %v", s.name, err)
		}
		if s.name == "copy" {
			b.purgeBinlogs() // the idle copy stays for the verify section
		} else {
			b.purge()
		}
	}
	logf("benchmark took %s", time.Since(started).Round(time.Second))
	b.printTable(os.Stdout, version, time.Since(started))
	if *markdownFlag != "" {
		f, err := os.Create(*markdownFlag)
		if err != nil {
			return err
		}
		b.printTable(f, version, time.Since(started))
		if err := f.Close(); err != nil {
			return err
		}
	}
	if *jsonFlag != "" {
		out := map[string]any{
			"date": time.Now().UTC().Format(time.RFC3339), "cpus": runtime.NumCPU(), "mariadb": version, "runs": *runsFlag,
			"duration_s":  time.Since(started).Seconds(),
			"orders_rows": b.rows, "narrow_rows": b.narrow, "orders_data_length": b.dataLen, "load_writes_per_s": *loadFlag,
			"figures": b.figures,
		}
		data, _ := json.MarshalIndent(out, "", "  ")
		if err := os.WriteFile(*jsonFlag, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// purge drops the target's copies and both servers' binlogs (a 1M-row copy leaves ~1 GB of binlog).
func (b *bench) purge() {
	ctx := context.WithoutCancel(b.ctx)
	if db, err := b.dst.DB(""); err == nil {
		rows, err := db.QueryContext(ctx, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN ('mysql','information_schema','performance_schema','sys')")
		if err == nil {
			var names []string
			for rows.Next() {
				var n string
				rows.Scan(&n)
				names = append(names, n)
			}
			rows.Close()
			for _, n := range names {
				db.ExecContext(ctx, "DROP DATABASE `"+n+"`")
			}
		}
		db.Close()
	}
	b.purgeBinlogs()
}

func (b *bench) purgeBinlogs() {
	ctx := context.WithoutCancel(b.ctx)
	b.dst.Exec(ctx, "RESET MASTER")
	b.src.Exec(ctx, "RESET MASTER")
}

// printTable writes the result table in markdown: the table docs/benchmarks.md shows.
func (b *bench) printTable(w io.Writer, version string, took time.Duration) {
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(data), "\n", 2)[0], "MemTotal:"), "%d", &kb)
		mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
	}
	fmt.Fprintf(w, "\n## ferry benchmark — %s, %d CPUs, %s RAM, %s, orders %d rows (%.0f MiB), narrow %d rows, load %.0f writes/s, %d runs per figure, took %s\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), mem, version, b.rows, float64(b.dataLen)/(1<<20), b.narrow, *loadFlag, *runsFlag, took.Round(time.Second))
	fmt.Fprintln(w, "| figure | median (range) | runs | ceiling, same run: median (range) | ratio (range) | CPU-normalised ratio | loadavg 1m during the runs | target |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	esc := func(s string) string { return strings.ReplaceAll(s, "|", "\\|") }
	for _, f := range b.figures {
		val := fmtVal(f.Value, f.NotMeasured) + " " + f.Unit
		if r := fmtRange(f.Min, f.Max); r != "" && !f.SingleRun() {
			val += " (" + r + ")"
		}
		runs := strconv.Itoa(f.Runs)
		if f.SingleRun() {
			runs = "**1 (single run)**"
		}
		if f.NotMeasured {
			val, runs = "not measured", ""
			if f.Note != "" {
				val += " (" + f.Note + ")"
			}
		}
		ceil, ratio := "", ""
		if f.Ceiling > 0 {
			ceil = f.ceilingText() + " (" + f.CeilingName + ")"
			if f.Ratio > 0 {
				ratio = f.ratioText()
			}
		}
		cr := ""
		if f.CPURatio > 0 {
			cr = fmt.Sprintf("%.2fx", f.CPURatio)
		}
		load := ""
		if f.LoadAvg != nil {
			load = f.LoadAvg.String()
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", esc(f.Name), esc(val), runs, esc(ceil), ratio, cr, load, esc(f.Target))
	}
	fmt.Fprintln(w)
}
