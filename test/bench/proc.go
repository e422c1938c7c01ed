package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ferrykit/ferry/sandbox"
)

// procCPU is the CPU time (user+system) a process has used, from /proc/<pid>/stat; 0 if unknown.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * time.Second / 100 // USER_HZ is 100 on Linux
}

func serverPID(s *sandbox.Server) int {
	b, err := os.ReadFile(filepath.Join(s.Dir, "mysqld.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// cpuMeter measures the CPU seconds each process spent during a measured interval: where the time
// went, which is what bounds a figure on a 2-core machine.
type cpuMeter struct {
	srcPID, dstPID    int
	src0, dst0, self0 time.Duration
	busy0             time.Duration
	t0                time.Time
}

// machineBusy is the CPU time all processes on the machine have used (from /proc/stat).
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line := strings.SplitN(string(b), "\n", 2)[0]
	f := strings.Fields(line)
	var ticks int64
	for i, x := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already counted in user
			break
		}
		n, _ := strconv.ParseInt(x, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// CPU is CPU-seconds per process over an interval, and the interval's wall time.
type CPU struct {
	Wall   float64 `json:"wall_s"`
	Source float64 `json:"source_mariadbd_cpu_s"`
	Target float64 `json:"target_mariadbd_cpu_s"`
	Go     float64 `json:"go_process_cpu_s"`
	// Other is CPU used by every other process on the machine meanwhile (other benchmarks, tests):
	// a measurement taken while Other is large ran on a shared machine.
	Other   float64 `json:"other_processes_cpu_s"`
	LoadAvg string  `json:"loadavg_1m_at_end"`
	// Rows is the number of rows (or row events) the interval moved, when known: CPU-seconds per
	// million rows are far less sensitive to a busy machine than rows/s.
	Rows int64 `json:"rows,omitempty"`
}

func (c CPU) perM(x float64) string { return fmt.Sprintf("%.1f", x*1e6/float64(c.Rows)) }

func startCPU(src, dst *sandbox.Server) *cpuMeter {
	m := &cpuMeter{srcPID: serverPID(src), dstPID: serverPID(dst)}
	m.src0, m.dst0, m.self0 = procCPU(m.srcPID), procCPU(m.dstPID), procCPU(os.Getpid())
	m.busy0 = machineBusy()
	m.t0 = time.Now()
	return m
}

// stop returns the interval's CPU use; extraGo adds a child process's CPU (the ferry copy child).
func (m *cpuMeter) stop(extraGo time.Duration) CPU {
	c := CPU{
		Wall:    time.Since(m.t0).Seconds(),
		Source:  (procCPU(m.srcPID) - m.src0).Seconds(),
		Target:  (procCPU(m.dstPID) - m.dst0).Seconds(),
		Go:      (procCPU(os.Getpid()) - m.self0 + extraGo).Seconds(),
		LoadAvg: loadAvg(),
	}
	c.Other = max(0, (machineBusy()-m.busy0).Seconds()-c.Source-c.Target-c.Go)
	return c
}

func (c CPU) String() string {
	if c.Wall == 0 {
		return ""
	}
	s := "cpu: source mariadbd " + pct(c.Source/c.Wall) + ", target mariadbd " + pct(c.Target/c.Wall) + ", Go " + pct(c.Go/c.Wall) + ", other processes " + pct(c.Other/c.Wall) + " (of one core; loadavg " + c.LoadAvg + ")"
	if c.Rows > 0 {
		s += "\n      cpu-seconds per 1M rows: target mariadbd " + c.perM(c.Target) + ", source mariadbd " + c.perM(c.Source) + ", Go " + c.perM(c.Go)
	}
	return s
}

func pct(f float64) string { return strconv.Itoa(int(f*100+0.5)) + "%" }
