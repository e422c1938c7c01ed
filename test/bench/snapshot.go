package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
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

// runTool runs cmd as a child, measuring its wall time, its CPU, its peak RSS and the servers'
// CPU. The peak RSS is the child's own VmHWM, polled while it runs (VmHWM only grows, so the last
// reading misses at most the final poll interval). The child's rusage cannot be used: its ru_maxrss
// includes the memory of this process, which the child shared between fork and exec.
func (b *bench) runTool(cmd *exec.Cmd, rows int64) (toolRun, error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	m := startCPU(b.src, b.dst)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return toolRun{}, fmt.Errorf("%s: %w", filepath.Base(cmd.Args[0]), err)
	}
	var hwmKB atomic.Int64
	stop, polled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(polled)
		status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
		for {
			if kb := vmHWMKB(status); kb > hwmKB.Load() {
				hwmKB.Store(kb)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	err := cmd.Wait()
	close(stop)
	<-polled
	if err != nil {
		return toolRun{}, fmt.Errorf("%s: %w: %s", filepath.Base(cmd.Args[0]), err, strings.TrimSpace(out.String()))
	}
	r := toolRun{wall: time.Since(start), rssKB: hwmKB.Load()}
	ps := cmd.ProcessState
	r.cpu = m.stop(ps.UserTime() + ps.SystemTime())
	r.cpu.Rows = rows
	return r, nil
}

// vmHWMKB reads VmHWM (kB) from a /proc/<pid>/status file; 0 once the process is gone.
func vmHWMKB(status string) int64 {
	b, err := os.ReadFile(status)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb
		}
	}
	return 0
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
	if err := b.snapshotRSS(bin, tmp, snapSeries[0], loadSeries[0]); err != nil {
		return err
	}
	dl := float64(b.dataLen) / (1 << 20)
	for j, t := range snaps {
		b.addSeries(&Figure{Name: "snapshot size: " + t.name, Unit: "MiB", Ceiling: dl, CeilingName: "DATA_LENGTH", Note: "ratio = stored size / InnoDB DATA_LENGTH"}, snapSeries[j].Of("size_mib"), nil)
	}
	// The raw data: the rows' text as the snapshot stores it before compression (the manifest's
	// raw sizes), i.e. what LOAD DATA reads back. The same in every run.
	m, err := snapshot.ReadManifest(ctx, &snapshot.Dir{Path: ferryDir(0)}, snapshot.ManifestName)
	if err != nil {
		return err
	}
	var stored, raw int64
	for _, t := range m.Tables {
		for _, f := range t.Files {
			stored, raw = stored+f.Size, raw+f.RawSize
		}
	}
	b.add(&Figure{Name: "snapshot size: ferry stored vs raw row text", Value: float64(stored) / (1 << 20), Unit: "MiB",
		Ceiling: float64(raw) / (1 << 20), CeilingName: "row text", Note: fmt.Sprintf("ratio = zstd-compressed size / uncompressed row text (%d bytes, %.0f bytes/row)", raw, float64(raw)/float64(rows))})
	return b.cloneUnderLoad(tmp)
}

// snapshotRSS shows that the snapshot's and the restore's peak RSS do not grow with the table: it
// snapshots and restores a quarter of the orders table (orders_quarter, copied for this), -runs
// times, and sets their peak RSS beside that of the runs on orders. Both tables are split into the
// same number of key ranges, so the same number of connections is busy.
func (b *bench) snapshotRSS(bin, tmp string, bigSnap, bigLoad *Series) error {
	ctx := b.ctx
	small := max(b.rows/4, 1000)
	quarter := srcDB + ".orders_quarter"
	if err := b.src.Exec(ctx, "SET SESSION sql_log_bin = 0", "DROP TABLE IF EXISTS "+quarter, "CREATE TABLE "+quarter+" LIKE "+srcDB+".orders",
		fmt.Sprintf("INSERT INTO %s SELECT * FROM %s.orders WHERE id <= %d", quarter, srcDB, small), "ANALYZE TABLE "+quarter); err != nil {
		return err
	}
	defer b.src.Exec(ctx, "SET SESSION sql_log_bin = 0", "DROP TABLE IF EXISTS "+quarter)
	_, smallRuns, err := b.measure("snapshot and restore of orders_quarter (peak RSS)", nil, func(i int) (Sample, error) {
		dir := filepath.Join(tmp, "ferry-quarter-"+strconv.Itoa(i))
		defer os.RemoveAll(dir)
		snap, err := b.runTool(exec.CommandContext(ctx, bin, "snapshot", "-source-host", "127.0.0.1", "-source-port", strconv.Itoa(b.src.Port), "-source-user", "root",
			"-tables", quarter, "-to", dir, "-threads", strconv.Itoa(*workersFlag), "-log-level", "warn"), small)
		if err != nil {
			return Sample{}, err
		}
		if err := b.dst.Exec(ctx, "DROP DATABASE IF EXISTS "+srcDB, "DROP DATABASE IF EXISTS _ferry"); err != nil {
			return Sample{}, err
		}
		load, err := b.runTool(exec.CommandContext(ctx, bin, "restore", "-target-host", "127.0.0.1", "-target-port", strconv.Itoa(b.dst.Port), "-target-user", "root",
			"-from", dir, "-threads", strconv.Itoa(*workersFlag), "-log-level", "warn"), small)
		if err != nil {
			return Sample{}, err
		}
		return Sample{Value: float64(snap.rssKB) / 1024, Also: map[string]float64{"restore_rss_mib": float64(load.rssKB) / 1024}}, nil
	})
	if err != nil {
		return err
	}
	note := fmt.Sprintf("ratio = peak RSS of the CLI at %d rows / at %d rows (orders_quarter); ≈ 1 is flat", b.rows, small)
	if small < 20000 {
		note += "; the quarter is under 20,000 rows, read as one range by one connection: not comparable (use -rows ≥ 80000)"
	}
	b.addSeries(&Figure{Name: "snapshot: ferry peak RSS, orders vs a quarter of it", Unit: "MiB", CeilingName: "a quarter of the rows",
		Target: "≈ 1× (flat in table size)", Note: note}, bigSnap.Of("rss_mib"), smallRuns)
	b.addSeries(&Figure{Name: "restore: ferry peak RSS, orders vs a quarter of it", Unit: "MiB", CeilingName: "a quarter of the rows",
		Target: "≈ 1× (flat in table size)", Note: note}, bigLoad.Of("rss_mib"), smallRuns.Of("restore_rss_mib"))
	return nil
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
		Note: fmt.Sprintf("identical at cut-over in every run (after it, with the load still paused: every row compared by the strict row differ, %s rows, and CHECKSUM TABLE); medians (range), seconds: snapshot %s, restore %s, catch-up %s, cut-over blocked %s; load %s writes/s",
			fig.Of("compared_rows").Summary(), fig.Of("snapshot_s").Summary(), fig.Of("restore_s").Summary(), fig.Of("catchup_s").Summary(), fig.Of("blocked_s").Summary(), fig.Of("achieved").Summary())}, fig, nil)
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
	sdb, err := conn(b.src.Port).Open(ctx)
	if err != nil {
		return Sample{}, err
	}
	defer sdb.Close()
	tdb, err := conn(b.dst.Port).Open(ctx)
	if err != nil {
		return Sample{}, err
	}
	defer tdb.Close()
	load := startLoad(db, srcDB+".orders", *loadFlag, b.rows, 4) // updates and deletes hit the generated keys 1..rows
	defer load.Stop()
	dir := &snapshot.Dir{Path: dirPath}
	start := time.Now()
	ms, err := snapshot.Take(ctx, snapshot.Options{Source: conn(b.src.Port), Tables: ferry.TableFilter{Include: []string{srcDB + ".orders"}},
		Storage: dir, Threads: *workersFlag, Logger: quietLogger()})
	if err != nil {
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
	// The load stays paused from the cut-over's lock until both tables are compared, so the
	// comparison sees the state at the cut-over without counting in the write-blocked time.
	cr, err := (&ferry.Cutover{Ferry: f, Hooks: ferry.HookFuncs{
		LockFunc: func(context.Context) error { load.Pause(); return nil },
	}}).Run(ctx)
	if err != nil {
		load.Resume()
		return Sample{}, err
	}
	if err := <-runErr; err != nil {
		load.Resume()
		return Sample{}, err
	}
	start = time.Now()
	diff, err := snapshot.SubsetDiff(ctx, sdb, tdb, ms[0])
	compared := time.Since(start)
	a, err1 := checksumTable(ctx, b.src, srcDB+".orders")
	c, err2 := checksumTable(ctx, b.dst, srcDB+".orders")
	load.Resume()
	wps, _ := load.Stop()
	if err != nil {
		return Sample{}, fmt.Errorf("clone: compare rows: %w", err)
	}
	if !diff.Match() || a != c || err1 != nil || err2 != nil {
		return Sample{}, fmt.Errorf("clone: target differs from the source at the cut-over: %s; CHECKSUM TABLE %d / %d (%v, %v)", diff, a, c, err1, err2)
	}
	var compareRows int64
	for _, t := range diff.Tables {
		compareRows += t.RowsCompared
	}
	return Sample{Value: (snapTook + restoreTook + catchUp).Seconds(), Also: map[string]float64{"snapshot_s": snapTook.Seconds(), "restore_s": restoreTook.Seconds(),
		"catchup_s": catchUp.Seconds(), "blocked_s": cr.Blocked.Seconds(), "achieved": wps, "rows": float64(rep.Rows),
		"compared_rows": float64(compareRows), "compare_s": compared.Seconds()}}, nil
}
