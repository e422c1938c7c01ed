package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/snapshot"
)

// snapshotRuns is how many interleaved runs of each snapshot and restore tool are measured; the
// figures are their medians, with the range in the note.
const snapshotRuns = 3

// toolRun is one run of a dump or load tool (a child process).
type toolRun struct {
	wall  time.Duration
	cpu   CPU
	rssKB int64
	size  int64
}

// runTool runs cmd as a child, measuring its wall time, its CPU and peak RSS (with the children it
// waited for: a shell pipeline counts all its stages) and the servers' CPU.
func (b *bench) runTool(cmd *exec.Cmd, rows int64) (toolRun, error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	m := startCPU(b.src, b.dst)
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return toolRun{}, fmt.Errorf("%s: %w: %s", filepath.Base(cmd.Args[0]), err, strings.TrimSpace(out.String()))
	}
	r := toolRun{wall: time.Since(start)}
	ps := cmd.ProcessState
	r.cpu = m.stop(ps.UserTime() + ps.SystemTime())
	r.cpu.Rows = rows
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		r.rssKB = ru.Maxrss
	}
	return r, nil
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// median returns the run with the median wall time and the range of rates.
func median(runs []toolRun, rows int64) (toolRun, string) {
	s := append([]toolRun(nil), runs...)
	sort.Slice(s, func(i, j int) bool { return s[i].wall < s[j].wall })
	rates := make([]string, len(s))
	for i := range s {
		rates[len(s)-1-i] = fmt.Sprintf("%.0f", rate(rows, s[i].wall))
	}
	return s[len(s)/2], "rows/s of the runs: " + strings.Join(rates, ", ")
}

// snapshots measures ferry's snapshot and restore of the orders table against mydumper/myloader and
// mariadb-dump | zstd / mariadb < dump, interleaved, in the same run; the sizes; and a clone (restore
// + catch-up + cut-over) of a snapshot taken under the write load.
func (b *bench) snapshots() error {
	ctx := b.ctx
	tmp, err := os.MkdirTemp("", "ferry-bench-snapshot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "snapshot")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./examples/snapshot").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./examples/snapshot: %v: %s", err, out)
	}
	_, myErr := exec.LookPath("mydumper")
	_, mylErr := exec.LookPath("myloader")
	haveMy := myErr == nil && mylErr == nil
	workers := strconv.Itoa(*workersFlag)
	sp, dp := strconv.Itoa(b.src.Port), strconv.Itoa(b.dst.Port)
	table := srcDB + ".orders"
	rows := b.rows
	want, err := checksumTable(ctx, b.src, table)
	if err != nil {
		return err
	}
	ferryDir := func(i int) string { return filepath.Join(tmp, "ferry-"+strconv.Itoa(i)) }
	myDir := func(i int) string { return filepath.Join(tmp, "mydumper-"+strconv.Itoa(i)) }
	dumpFile := func(i int) string { return filepath.Join(tmp, "dump-"+strconv.Itoa(i)+".sql.zst") }
	type tool struct {
		name string
		cmd  func(i int) *exec.Cmd
		size func(i int) int64
	}
	snaps := []tool{
		{"ferry snapshot", func(i int) *exec.Cmd {
			args := []string{"snapshot", "-source-host", "127.0.0.1", "-source-port", sp, "-source-user", "root",
				"-tables", table, "-to", ferryDir(i), "-threads", workers, "-log-level", "warn"}
			if *profileFlag != "" {
				args = append(args, "-cpuprofile", filepath.Join(*profileFlag, "snapshot-"+strconv.Itoa(i)+".pprof"))
			}
			return exec.CommandContext(ctx, bin, args...)
		}, func(i int) int64 { return dirSize(ferryDir(i)) }},
		{"mariadb-dump | zstd", func(i int) *exec.Cmd {
			return exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", "mariadb-dump --no-defaults -h127.0.0.1 -P"+sp+" -uroot --single-transaction --skip-add-locks --no-tablespaces "+
				srcDB+" orders | zstd -q -1 -o "+dumpFile(i))
		}, func(i int) int64 { return dirSize(dumpFile(i)) }},
	}
	if haveMy {
		// mydumper 0.10 (Debian 12) compresses with gzip only; -r splits the table for its threads.
		snaps = append(snaps, tool{"mydumper", func(i int) *exec.Cmd {
			return exec.CommandContext(ctx, "mydumper", "-h", "127.0.0.1", "-P", sp, "-u", "root", "-B", srcDB, "--regex", "^"+srcDB+"\\.orders$",
				"-o", myDir(i), "-t", workers, "-r", "100000", "-c", "--trx-consistency-only")
		}, func(i int) int64 { return dirSize(myDir(i)) }})
	}
	dropTarget := func() error {
		return b.dst.Exec(ctx, "DROP DATABASE IF EXISTS "+srcDB, "DROP DATABASE IF EXISTS _ferry")
	}
	loads := []tool{
		{"ferry restore", func(i int) *exec.Cmd {
			return exec.CommandContext(ctx, bin, "restore", "-target-host", "127.0.0.1", "-target-port", dp, "-target-user", "root",
				"-from", ferryDir(i), "-threads", workers, "-log-level", "warn")
		}, nil},
		{"mariadb < dump", func(i int) *exec.Cmd {
			return exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", "mariadb --no-defaults -h127.0.0.1 -P"+dp+" -uroot -e 'CREATE DATABASE "+srcDB+"' && zstd -dc "+dumpFile(i)+
				" | mariadb --no-defaults -h127.0.0.1 -P"+dp+" -uroot "+srcDB)
		}, nil},
	}
	if haveMy {
		loads = append(loads, tool{"myloader", func(i int) *exec.Cmd {
			return exec.CommandContext(ctx, "myloader", "-h", "127.0.0.1", "-P", dp, "-u", "root", "-d", myDir(i), "-t", workers, "-o", "-B", srcDB)
		}, nil})
	}
	snapRuns := make([][]toolRun, len(snaps))
	loadRuns := make([][]toolRun, len(loads))
	for i := 0; i < snapshotRuns; i++ {
		for k := range snaps {
			j := (k + i) % len(snaps) // rotate the order: no tool always runs first
			r, err := b.runTool(snaps[j].cmd(i), rows)
			if err != nil {
				return err
			}
			r.size = snaps[j].size(i)
			snapRuns[j] = append(snapRuns[j], r)
			logf("  %s run %d: %.0f rows/s, %d bytes", snaps[j].name, i+1, rate(rows, r.wall), r.size)
		}
	}
	for i := 0; i < snapshotRuns; i++ {
		for k := range loads {
			j := (k + i) % len(loads)
			if err := dropTarget(); err != nil {
				return err
			}
			r, err := b.runTool(loads[j].cmd(i), rows)
			if err != nil {
				return err
			}
			if got, err := checksumTable(ctx, b.dst, table); err != nil || got != want {
				return fmt.Errorf("%s run %d: target checksum %d, source %d (%v)", loads[j].name, i+1, got, want, err)
			}
			loadRuns[j] = append(loadRuns[j], r)
			logf("  %s run %d: %.0f rows/s", loads[j].name, i+1, rate(rows, r.wall))
		}
	}
	busy := fmt.Sprintf("; medians of %d interleaved runs; loadavg %s: a shared, busy machine", snapshotRuns, loadAvg())
	figure := func(name string, runs [][]toolRun, tools []tool, idx int, vs int, target string) {
		me, note := median(runs[idx], rows)
		f := &Figure{Name: name, Value: rate(rows, me.wall), Unit: "rows/s", Note: note + busy, CPU: &me.cpu, Target: target}
		if vs >= 0 {
			ref, _ := median(runs[vs], rows)
			f.Ceiling, f.CeilingName = rate(rows, ref.wall), tools[vs].name
			f.Ref = name + " ref " + tools[vs].name
			b.named[f.Ref] = &Figure{CPU: &ref.cpu}
		}
		b.add(f)
	}
	figure("snapshot: ferry vs mariadb-dump | zstd", snapRuns, snaps, 0, 1, "≥ 2×")
	if haveMy {
		figure("snapshot: ferry vs mydumper (gzip, same threads)", snapRuns, snaps, 0, 2, "≥ 1.0×")
	} else {
		b.add(&Figure{Name: "snapshot: ferry vs mydumper", NotMeasured: true, Note: "mydumper not installed (scripts/bench-deps.sh)"})
	}
	figure("restore: ferry vs mariadb < dump", loadRuns, loads, 0, 1, "")
	if haveMy {
		figure("restore: ferry vs myloader (same threads)", loadRuns, loads, 0, 2, "≥ 1.0×")
	}
	me, _ := median(snapRuns[0], rows)
	b.add(&Figure{Name: "snapshot: ferry peak RSS", Value: float64(me.rssKB) / 1024, Unit: "MiB", Note: fmt.Sprintf("orders %d rows", rows)})
	for j, t := range snaps {
		m, _ := median(snapRuns[j], rows)
		b.add(&Figure{Name: "snapshot size: " + t.name, Value: float64(m.size) / (1 << 20), Unit: "MiB",
			Ceiling: float64(b.dataLen) / (1 << 20), CeilingName: "DATA_LENGTH", Note: "ratio = stored size / InnoDB DATA_LENGTH"})
	}
	return b.cloneUnderLoad(tmp)
}

// cloneUnderLoad snapshots the orders table while the write load runs, clones it (restore, binlog
// catch-up from the snapshot's position) and cuts over with the load paused; it checks that the
// target is identical to the source at the cut-over and reports each phase's time.
func (b *bench) cloneUnderLoad(tmp string) error {
	ctx := b.ctx
	if err := b.dst.Exec(ctx, "DROP DATABASE IF EXISTS "+srcDB, "DROP DATABASE IF EXISTS _ferry"); err != nil {
		return err
	}
	db, err := b.src.DB(srcDB)
	if err != nil {
		return err
	}
	defer db.Close()
	var maxID int64
	db.QueryRowContext(ctx, "SELECT MAX(id) FROM orders").Scan(&maxID)
	load := startLoad(db, srcDB+".orders", *loadFlag, maxID, 4)
	defer load.Stop()
	dir := &snapshot.Dir{Path: filepath.Join(tmp, "clone")}
	start := time.Now()
	if _, err := snapshot.Take(ctx, snapshot.Options{Source: conn(b.src.Port), Tables: ferry.TableFilter{Include: []string{srcDB + ".orders"}},
		Storage: dir, Threads: *workersFlag, Logger: quietLogger()}); err != nil {
		return err
	}
	snapTook := time.Since(start)
	start = time.Now()
	f, rep, err := snapshot.Clone(ctx, snapshot.CloneOptions{
		Restore: snapshot.RestoreOptions{Target: conn(b.dst.Port), Snapshots: []snapshot.Storage{dir}, Threads: *workersFlag, Logger: quietLogger()},
		Ferry:   ferry.Config{Source: conn(b.src.Port), Target: conn(b.dst.Port), Logger: quietLogger()}})
	if err != nil {
		return err
	}
	defer f.Close()
	restoreTook := time.Since(start)
	start = time.Now()
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()
	// Catch-up: apply every change committed on the source since the snapshot, up to now.
	if _, err := f.FlushBinlog(ctx); err != nil {
		return err
	}
	catchUp := time.Since(start)
	identical := false
	var sumErr error
	cr, err := (&ferry.Cutover{Ferry: f, Hooks: ferry.HookFuncs{
		LockFunc: func(context.Context) error { load.Pause(); return nil },
		SwapFunc: func(context.Context) error {
			a, err1 := checksumTable(ctx, b.src, srcDB+".orders")
			c, err2 := checksumTable(ctx, b.dst, srcDB+".orders")
			identical, sumErr = a == c && err1 == nil && err2 == nil, fmt.Errorf("checksums %d / %d (%v, %v)", a, c, err1, err2)
			return nil
		},
		UnlockFunc: func(context.Context, bool) error { load.Resume(); return nil },
	}}).Run(ctx)
	if err != nil {
		return err
	}
	if err := <-runErr; err != nil {
		return err
	}
	wps, _ := load.Stop()
	if !identical {
		return fmt.Errorf("clone: target differs from the source at the cut-over: %v", sumErr)
	}
	note := fmt.Sprintf("identical at cut-over (CHECKSUM TABLE); snapshot %s, restore %s (%d rows), catch-up %s, cut-over blocked %s; load %.0f writes/s; loadavg %s",
		snapTook.Round(time.Millisecond), restoreTook.Round(time.Millisecond), rep.Rows, catchUp.Round(time.Millisecond), cr.Blocked.Round(time.Millisecond), wps, loadAvg())
	b.add(&Figure{Name: "clone under load: snapshot + restore + catch-up", Value: (snapTook + restoreTook + catchUp).Seconds(), Unit: "s", Note: note})
	return nil
}
