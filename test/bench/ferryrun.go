package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/throttler"
	"github.com/ferrykit/ferry/verifier"
)

// ferryOpts describes one ferry run of the benchmark.
type ferryOpts struct {
	SrcPort, DstPort int
	Table            string // "db.table" on the source
	DstDB            string // target database (created, with the table)
	Workers          int
	BatchSize        int
	ApplyWorkers     int                 // 0: ferry's default
	Writer           string              // "" for INSERTs (TargetBatchWriter), "loaddata" for LOAD DATA (LoadDataBatchWriter)
	Verifier         verifier.Verifier   `json:"-"`
	Throttler        throttler.Throttler `json:"-"`
	Observer         ferry.Observer      `json:"-"`
}

type ferryRun struct {
	F    *ferry.Ferry
	done chan error
	t0   time.Time
}

func quietLogger() logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	l.SetOutput(os.Stderr)
	return l
}

func conn(port int) ferry.ConnConfig {
	return ferry.ConnConfig{Host: "127.0.0.1", Port: port, User: "root"}
}

// startFerry initialises, starts and runs a Ferry copying one table into DstDB.
func startFerry(ctx context.Context, o ferryOpts) (*ferryRun, error) {
	srcDB := o.Table[:indexByte(o.Table, '.')]
	f, err := ferry.New(ferry.Config{
		Source: conn(o.SrcPort), Target: conn(o.DstPort),
		Tables:             ferry.TableFilter{Include: []string{o.Table}},
		DatabaseRewrites:   map[string]string{srcDB: o.DstDB},
		CreateTargetTables: true,
		CopyWorkers:        o.Workers,
		BatchSize:          o.BatchSize,
		ApplyWorkers:       o.ApplyWorkers,
		Logger:             quietLogger(),
		CopyWriteMethod:    map[bool]ferry.WriteMethod{true: ferry.WriteLoadData, false: ferry.WriteInsert}[o.Writer == "loaddata"],
	})
	if err != nil {
		return nil, err
	}
	f.Verifier = o.Verifier
	f.Throttler = o.Throttler
	if o.Observer != nil {
		f.Observer = o.Observer
	}
	if err := f.Initialize(ctx); err != nil {
		return nil, err
	}
	if err := f.Start(ctx); err != nil {
		f.Close()
		return nil, err
	}
	r := &ferryRun{F: f, done: make(chan error, 1), t0: time.Now()}
	go func() { r.done <- f.Run(ctx) }()
	return r, nil
}

// finish applies the last changes, stops streaming and waits for Run.
func (r *ferryRun) finish(ctx context.Context) error {
	err := r.F.FlushBinlogAndStopStreaming(ctx)
	if err == nil {
		err = <-r.done
	}
	r.F.Close()
	return err
}

func (r *ferryRun) rowsCopied() int64 {
	var n int64
	for _, t := range r.F.Tables {
		n += t.State().RowsCopied
	}
	return n
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return len(s)
}

// childResult is what the copy child prints.
type childResult struct {
	Rows    int64   `json:"rows"`
	Seconds float64 `json:"seconds"`
	Error   string  `json:"error,omitempty"`
}

// childMain is the ferry copy run in its own process, so that its peak RSS and CPU are ferry's alone.
func childMain(spec string, cpuProfile string) {
	var o ferryOpts
	res := childResult{}
	defer func() { json.NewEncoder(os.Stdout).Encode(res) }()
	if err := json.Unmarshal([]byte(spec), &o); err != nil {
		res.Error = err.Error()
		return
	}
	defer startProfile(cpuProfile)()
	ctx := context.Background()
	r, err := startFerry(ctx, o)
	if err != nil {
		res.Error = err.Error()
		return
	}
	if err := r.F.WaitUntilRowCopyIsComplete(ctx); err != nil {
		res.Error = err.Error()
		return
	}
	res.Seconds = time.Since(r.t0).Seconds()
	res.Rows = r.rowsCopied()
	if err := r.finish(ctx); err != nil {
		res.Error = err.Error()
	}
}

// childCopy runs the copy in a child process and returns its result, peak RSS (bytes) and CPU.
func childCopy(ctx context.Context, o ferryOpts, cpuProfile string) (childResult, int64, time.Duration, error) {
	var res childResult
	ps, err := runChild(ctx, "-child-copy", o, cpuProfile, &res)
	if err == nil && res.Error != "" {
		err = errors.New("copy child: " + res.Error)
	}
	if err != nil {
		return res, 0, 0, err
	}
	ru := ps.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return res, ru.Maxrss * 1024, cpu, nil
}

// runChild runs this program again with childFlag set to spec as JSON (and a CPU profile file, if
// any), decodes the JSON it prints into out and returns its process state.
func runChild(ctx context.Context, childFlag string, spec any, cpuProfile string, out any) (*os.ProcessState, error) {
	data, _ := json.Marshal(spec)
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{childFlag, string(data)}
	if cpuProfile != "" {
		args = append(args, "-child-cpuprofile", cpuProfile)
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stderr = os.Stderr
	printed, err := cmd.Output()
	if jerr := json.Unmarshal(printed, out); jerr != nil {
		return nil, fmt.Errorf("%s child: %v (output %q)", childFlag, errors.Join(err, jerr), printed)
	}
	return cmd.ProcessState, err
}

// startProfile writes a CPU profile of this process to path until the returned func is called.
func startProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

var childFlag = flag.String("child-copy", "", "internal: run one ferry copy described by this JSON and print the result")
var childProfile = flag.String("child-cpuprofile", "", "internal: CPU profile file for the copy child")

// lagSampler records a ferry's binlog lag every 20ms.
type lagSampler struct {
	mu      sync.Mutex
	samples []time.Duration
	stop    chan struct{}
	done    chan struct{}
}

func sampleLag(f *ferry.Ferry) *lagSampler {
	s := &lagSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				l := f.BinlogLag()
				s.mu.Lock()
				s.samples = append(s.samples, l)
				s.mu.Unlock()
			}
		}
	}()
	return s
}

// Stop returns max and p99 of the lag samples.
func (s *lagSampler) Stop() (maxLag, p99 time.Duration) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return percentile(s.samples, 1), percentile(s.samples, 0.99)
}

func percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	c := append([]time.Duration(nil), xs...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	i := int(p*float64(len(c))+0.5) - 1
	i = max(0, min(i, len(c)-1))
	return c[i]
}

// gate is a throttler.Throttler the benchmark opens and closes: with it closed the binlog writer
// queues events without applying them, so a burst can be applied in isolation afterwards.
type gate struct {
	mu     sync.Mutex
	closed bool
}

func (g *gate) Check(context.Context) (throttler.Status, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return throttler.Status{Throttled: true, Reason: "benchmark gate closed"}, nil
	}
	return throttler.Status{}, nil
}

func (g *gate) set(closed bool) {
	g.mu.Lock()
	g.closed = closed
	g.mu.Unlock()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
