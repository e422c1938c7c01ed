package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/snapshot"
)

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

// toolSeries is the runs of one tool as a Series of rows/s (with CPU, size and peak RSS).
func toolSeries(runs []toolRun, rows int64, batch int, load []float64) *Series {
	s := &Series{batch: batch, Load: load}
	for _, r := range runs {
		c := r.cpu
		s.Samples = append(s.Samples, Sample{Value: rate(rows, r.wall), CPU: &c, Also: map[string]float64{"size_mib": float64(r.size) / (1 << 20), "rss_mib": float64(r.rssKB) / 1024}})
	}
	return s
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
	t0 := time.Now()
	for i := 0; i < *runsFlag; i++ {
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
	snapLoad := b.load.during(t0, time.Now())
	t0 = time.Now()
	for i := 0; i < *runsFlag; i++ {
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
	restoreLoad := b.load.during(t0, time.Now())
	// Each round ran every tool once (the order rotating), so the runs pair by index.
	measureBatches++
	snapSeries := make([]*Series, len(snaps))
	for j := range snaps {
		snapSeries[j] = toolSeries(snapRuns[j], rows, measureBatches, snapLoad)
	}
	measureBatches++
	loadSeries := make([]*Series, len(loads))
	for j := range loads {
		loadSeries[j] = toolSeries(loadRuns[j], rows, measureBatches, restoreLoad)
	}
	figure := func(name string, series []*Series, tools []tool, idx, vs int, target string) {
		f := &Figure{Name: name, Unit: "rows/s", Target: target}
		if vs >= 0 {
			f.CeilingName = tools[vs].name + ", interleaved"
			f.Ref = name + " ref " + tools[vs].name
			b.named[f.Ref] = &Figure{CPU: series[vs].medianSample().CPU}
		}
		b.addSeries(f, series[idx], series[vs])
	}
	figure("snapshot: ferry vs mariadb-dump | zstd", snapSeries, snaps, 0, 1, "≥ 2×")
	if haveMy {
		figure("snapshot: ferry vs mydumper (gzip, same threads)", snapSeries, snaps, 0, 2, "≥ 1.0×")
	} else {
		b.add(&Figure{Name: "snapshot: ferry vs mydumper", NotMeasured: true, Note: "mydumper not installed (scripts/bench-deps.sh)"})
	}
	figure("restore: ferry vs mariadb < dump", loadSeries, loads, 0, 1, "")
	if haveMy {
		figure("restore: ferry vs myloader (same threads)", loadSeries, loads, 0, 2, "≥ 1.0×")
	}
	b.addSeries(&Figure{Name: "snapshot: ferry peak RSS", Unit: "MiB", Note: fmt.Sprintf("orders %d rows", rows)}, snapSeries[0].Of("rss_mib"), nil)
	dl := float64(b.dataLen) / (1 << 20)
	for j, t := range snaps {
		b.addSeries(&Figure{Name: "snapshot size: " + t.name, Unit: "MiB", Ceiling: dl, CeilingName: "DATA_LENGTH", Note: "ratio = stored size / InnoDB DATA_LENGTH"}, snapSeries[j].Of("size_mib"), nil)
	}
	return b.cloneUnderLoad(tmp)
}

// cloneUnderLoad measures -runs clones under load (cloneOnce) and reports the medians.
func (b *bench) cloneUnderLoad(tmp string) error {
	_, fig, err := b.measure("clone under load", nil, func(i int) (Sample, error) {
		return b.cloneOnce(filepath.Join(tmp, "clone-"+strconv.Itoa(i)))
	})
	if err != nil {
		return err
	}
	b.addSeries(&Figure{Name: "clone under load: snapshot + restore + catch-up", Unit: "s",
		Note: fmt.Sprintf("identical at cut-over (CHECKSUM TABLE) in every run; medians (range), seconds: snapshot %s, restore %s, catch-up %s, cut-over blocked %s; load %s writes/s",
			fig.Of("snapshot_s").Summary(), fig.Of("restore_s").Summary(), fig.Of("catchup_s").Summary(), fig.Of("blocked_s").Summary(), fig.Of("achieved").Summary())}, fig, nil)
	return nil
}

// cloneOnce snapshots the orders table into dir while the write load runs, clones it (restore,
// binlog catch-up from the snapshot's position) and cuts over with the load paused; it checks that
// the target is identical to the source at the cut-over and reports each phase's time.
func (b *bench) cloneOnce(dirPath string) (Sample, error) {
	ctx := b.ctx
	if err := b.dst.Exec(ctx, "DROP DATABASE IF EXISTS "+srcDB, "DROP DATABASE IF EXISTS _ferry"); err != nil {
		return Sample{}, err
	}
	db, err := b.src.DB(srcDB)
	if err != nil {
		return Sample{}, err
	}
	defer db.Close()
	defer os.RemoveAll(dirPath)
	load := startLoad(db, srcDB+".orders", *loadFlag, b.rows, 4) // updates and deletes hit the generated keys 1..rows
	defer load.Stop()
	dir := &snapshot.Dir{Path: dirPath}
	start := time.Now()
	if _, err := snapshot.Take(ctx, snapshot.Options{Source: conn(b.src.Port), Tables: ferry.TableFilter{Include: []string{srcDB + ".orders"}},
		Storage: dir, Threads: *workersFlag, Logger: quietLogger()}); err != nil {
		return Sample{}, err
	}
	snapTook := time.Since(start)
	start = time.Now()
	f, rep, err := snapshot.Clone(ctx, snapshot.CloneOptions{
		Restore: snapshot.RestoreOptions{Target: conn(b.dst.Port), Snapshots: []snapshot.Storage{dir}, Threads: *workersFlag, Logger: quietLogger()},
		Ferry:   ferry.Config{Source: conn(b.src.Port), Target: conn(b.dst.Port), Logger: quietLogger()}})
	if err != nil {
		return Sample{}, err
	}
	defer f.Close()
	restoreTook := time.Since(start)
	start = time.Now()
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()
	// Catch-up: apply every change committed on the source since the snapshot, up to now.
	if _, err := f.FlushBinlog(ctx); err != nil {
		return Sample{}, err
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
		return Sample{}, err
	}
	if err := <-runErr; err != nil {
		return Sample{}, err
	}
	wps, _ := load.Stop()
	if !identical {
		return Sample{}, fmt.Errorf("clone: target differs from the source at the cut-over: %v", sumErr)
	}
	return Sample{Value: (snapTook + restoreTook + catchUp).Seconds(), Also: map[string]float64{"snapshot_s": snapTook.Seconds(), "restore_s": restoreTook.Seconds(),
		"catchup_s": catchUp.Seconds(), "blocked_s": cr.Blocked.Seconds(), "achieved": wps, "rows": float64(rep.Rows)}}, nil
}
