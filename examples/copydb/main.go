// Command copydb copies databases or tables from one MySQL/MariaDB server to another while the
// source keeps taking writes, keeps the copy current from the binlog, verifies it and cuts over.
//
//	copydb -source-host 10.0.0.1 -source-user ferry -target-host 10.0.0.2 -target-user ferry \
//	       -databases shop -create-tables -cutover read-only -verify checksum
//
// Each server is named the same way in every ferry tool: -source-host/-port/-user/-socket (or a
// DSN, -source user@tcp(host:3306)/), -source-defaults-file (a my.cnf [client] section), TLS with
// -source-ssl-ca/-ssl-cert/-ssl-key/-ssl-mode; likewise -target-*. Passwords come from
// -source-password-file, $FERRY_SOURCE_PASSWORD, the defaults file or -ask-pass (and the -target-*
// equivalents); -source-password on the command line works but warns, since ps shows it. Passwords
// are never printed or logged. Every flag can also be set in a config file given with -config: one
// "name = value" per line, '#' starts a comment. Logs: -log-level, -log-format text|json.
//
// With -binlog-from host:port the binlog is read from that replica of the source (log_slave_updates
// on) instead of the source; rows are still read, and the cut-over still happens, on the source,
// whose position under the lock is found in the replica's binlog by GTID before the swap.
//
// Throttling: -throttle-flag-file, -max-load, -critical-load, and gh-ost's
// -throttle-control-replicas with -max-lag-millis (replica lag; the -binlog-from replica is
// watched too). -cutover-max-lag (formerly
// -max-lag) is the binlog apply lag under which the cut-over starts. With -http 127.0.0.1:PORT it
// serves a status page with controls, /status and /metrics.
//
// With -create-tables it creates the missing target tables; -create-objects also creates the
// databases' views and routines (before the copy) and triggers and events (with writes stopped,
// right before the swap, so they never fire on copied rows); the summary lists every object that
// was not created. Tables changed by cascading foreign keys are refused unless -allow-fk-cascades,
// target tables with triggers unless -allow-target-triggers.
//
// While it runs it prints, every -progress interval, each table's rows copied, percentage, rate and
// ETA, and the binlog lag. With -state-file it checkpoints its progress atomically; after a crash,
// run the same command with -resume to continue where it stopped. If the source failed over, give
// -resume the promoted replica's -source-host/-source-port: copydb continues there by GTID when the
// replica has every transaction the target holds, and refuses (naming them) otherwise.
//
// Exit status: 0 on success, 1 on error, 3 when verification found differences (with any -cutover:
// nothing was swapped).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/internal/cli"
	"github.com/ferrykit/ferry/metrics"
	"github.com/ferrykit/ferry/throttler"
	"github.com/ferrykit/ferry/verifier"
)

type options struct {
	source, target        ferry.ConnConfig
	databases, tables     string
	exclude               string
	rewriteDBs, rewriteTs string
	filterColumn          string
	filterValue           string
	batchSize, workers    int
	applyWorkers          int
	targetChunkTime       time.Duration
	maxRowsPerSecond      float64
	exactRowCount         bool
	panicFlagFile         string
	createTables          bool
	createObjects         string
	allowFKCascades       bool
	applyFKCascades       bool
	allowTargetTriggers   bool
	writeMethod           string
	throttleFile          string
	maxLoad, critLoad     string
	allowNonEmpty         bool
	cutover               string
	verify                string
	stateFile             string
	checkpointEvery       time.Duration
	resume                bool
	progress              time.Duration
	maxLag                time.Duration
	cutoverTimeout        time.Duration
	log                   *logrus.Logger
	web                   *cli.HTTPFlags
	replicas              *cli.ReplicaFlags
	binlogFrom            *cli.BinlogFromFlag
	metrics               *metrics.Metrics
	summaryJSON           string
}

func main() {
	os.Exit(run())
}

func run() int {
	var o options
	fs := flag.NewFlagSet("copydb", flag.ContinueOnError)
	config := fs.String("config", "", "config file: one `name = value` per line (same names as the flags)")
	srcConn := cli.AddConn(fs, cli.ConnSpec{Prefix: "source", PasswordEnv: "FERRY_SOURCE_PASSWORD", DSN: true})
	tgtConn := cli.AddConn(fs, cli.ConnSpec{Prefix: "target", PasswordEnv: "FERRY_TARGET_PASSWORD", DSN: true})
	askPass := cli.AddAskPass(fs, os.Stdin, os.Stderr)
	logFlags := cli.AddLogFlags(fs, "info")
	o.web = cli.AddHTTPFlags(fs)
	fs.StringVar(&o.databases, "databases", "", "comma-separated databases to copy whole")
	fs.StringVar(&o.tables, "tables", "", "comma-separated table patterns db.table (wildcards * ?)")
	fs.StringVar(&o.exclude, "exclude", "", "comma-separated table patterns to leave out")
	fs.StringVar(&o.rewriteDBs, "rewrite-databases", "", "comma-separated src=dst database renames")
	fs.StringVar(&o.rewriteTs, "rewrite-tables", "", "comma-separated db.table=newname table renames")
	fs.StringVar(&o.filterColumn, "filter-column", "", "copy only rows whose column equals -filter-value (tables without the column are copied whole)")
	fs.StringVar(&o.filterValue, "filter-value", "", "value for -filter-column (integer or string)")
	fs.IntVar(&o.batchSize, "batch-size", 1000, "rows per copy batch: the starting size when -target-chunk-time adapts it; given alone (without -target-chunk-time), a fixed size")
	fs.DurationVar(&o.targetChunkTime, "target-chunk-time", 500*time.Millisecond, "size each copy batch to take about this long (100 to 100,000 rows); it is also about the longest an application write to a row being copied waits, since the batch's source rows stay share-locked until the target commits them; 0 keeps -batch-size fixed")
	fs.Float64Var(&o.maxRowsPerSecond, "max-rows-per-second", 0, "cap the copy at this many rows per second (0: no cap)")
	fs.BoolVar(&o.exactRowCount, "exact-rowcount", false, "count each table's rows with SELECT COUNT(*) before the copy instead of the statistics' estimate, for a true total and ETA")
	fs.StringVar(&o.panicFlagFile, "panic-flag-file", "", "stop at once when this file appears: open batches rolled back, checkpoint saved (resume with -resume)")
	fs.IntVar(&o.workers, "workers", 4, "key ranges copied at once")
	fs.IntVar(&o.applyWorkers, "apply-workers", ferry.DefaultApplyWorkers, "binlog transactions applied at once on disjoint rows (1: one at a time)")
	fs.StringVar(&o.throttleFile, "throttle-flag-file", "", "pause copy and apply while this file exists")
	fs.StringVar(&o.maxLoad, "max-load", "", "pause while source status variables reach these values, e.g. Threads_running=25")
	fs.StringVar(&o.critLoad, "critical-load", "", "stop (with a checkpoint) when source status variables reach these values, e.g. Threads_running=100")
	fs.StringVar(&o.writeMethod, "write-method", "", "how copied rows are written: empty for LOAD DATA when the target allows it (local_infile=ON) else INSERT, insert, or load-data")
	fs.BoolVar(&o.createTables, "create-tables", false, "create missing target tables from the source's definitions")
	fs.StringVar(&o.createObjects, "create-objects", "", "also create these schema objects of the copied databases on the target: comma-separated views, routines, events, triggers, or all (views and routines before the copy; triggers and events with writes stopped, right before the swap, so they never fire on copied rows)")
	fs.BoolVar(&o.allowFKCascades, "allow-fk-cascades", false, "copy tables changed by ON DELETE/UPDATE CASCADE or SET NULL foreign keys, accepting that the target diverges if a parent row is deleted or re-keyed during the copy (those changes never reach the binlog)")
	fs.BoolVar(&o.applyFKCascades, "apply-fk-cascades", false, "carry out ON DELETE/UPDATE CASCADE and SET NULL foreign keys on the target (exact; shapes that cannot be done exactly are refused by name)")
	fs.BoolVar(&o.allowTargetTriggers, "allow-target-triggers", false, "copy into target tables that have triggers (they fire on every copied and applied row)")
	fs.BoolVar(&o.allowNonEmpty, "allow-nonempty-target", false, "copy into target tables that already hold rows")
	fs.StringVar(&o.cutover, "cutover", "none", "how to cut over once caught up: none (stop after verifying, source untouched), read-only (set the source read_only, flush, swap), or wait (keep streaming until SIGUSR1, then read-only cut-over)")
	fs.StringVar(&o.verify, "verify", "checksum", "verification at the cut-over: checksum (every row checksummed before the lock; under the lock only the rows changed since), "+
		"checksum-under-lock (every row checksummed again under the lock: also sees changes that bypass the binlog after the first pass, but blocks writes for a whole table scan), "+
		"inline (fingerprints taken while copying; cannot see source rows the copy never read), none")
	fs.StringVar(&o.stateFile, "state-file", "", "checkpoint file, written atomically every -checkpoint-interval, on error and on SIGINT/SIGTERM")
	fs.DurationVar(&o.checkpointEvery, "checkpoint-interval", time.Second, "how often -state-file is written")
	fs.BoolVar(&o.resume, "resume", false, "resume from -state-file")
	fs.DurationVar(&o.progress, "progress", 2*time.Second, "progress interval")
	fs.DurationVar(&o.maxLag, "cutover-max-lag", 500*time.Millisecond, "binlog apply lag under which the cut-over starts (was -max-lag; for replica lag see -max-lag-millis)")
	o.replicas = cli.AddReplicaFlags(fs)
	o.binlogFrom = cli.AddBinlogFrom(fs, "source")
	fs.DurationVar(&o.cutoverTimeout, "cutover-timeout", ferry.DefaultCutoverTimeout, "longest the cut-over may block writes (apply the last changes, verify under the lock, swap); when reached, the cut-over is aborted and the source unlocked")
	fs.StringVar(&o.summaryJSON, "summary-json", "", "write the final summary as JSON to this file")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	if *config != "" {
		if err := loadConfig(fs, *config, onCommandLine); err != nil {
			fmt.Fprintln(os.Stderr, "copydb:", err)
			return 2
		}
	}
	set := map[string]bool{} // on the command line or in the -config file
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["batch-size"] && !set["target-chunk-time"] {
		o.targetChunkTime = 0 // a batch size given alone is a fixed one
	}
	var err error
	for _, side := range []struct {
		conn *cli.Conn
		to   *ferry.ConnConfig
		flag string
	}{{srcConn, &o.source, "source-password"}, {tgtConn, &o.target, "target-password"}} {
		warn := io.Writer(os.Stderr)
		if !onCommandLine[side.flag] && !onCommandLine[strings.TrimSuffix(side.flag, "-password")] {
			warn = nil // from the -config file, not the command line
		}
		if *side.to, err = side.conn.Config(askPass(), warn); err != nil {
			fmt.Fprintln(os.Stderr, "copydb:", err)
			return 2
		}
	}
	if o.log, err = logFlags.Logger(os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "copydb:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := copyDB(ctx, o)
	if sum != nil {
		printSummary(sum)
		if o.summaryJSON != "" {
			b, _ := json.MarshalIndent(sum, "", "  ")
			os.WriteFile(o.summaryJSON, b, 0o600) // like the state file: it names servers and tables
		}
	}
	if err != nil {
		var te *ferry.CutoverTimeoutError
		if errors.As(err, &te) {
			fmt.Fprintf(os.Stderr, "copydb: the cut-over bound -cutover-timeout %s was hit (step: %s); nothing was swapped.\n"+
				"copydb: raise -cutover-timeout (writes stay blocked up to that long), or cut over when the source changes fewer rows: the work under the lock grows with the rows changed since the last catch-up\n",
				te.Timeout, te.Step)
		}
		fmt.Fprintln(os.Stderr, "copydb:", describe(err))
		if errors.Is(err, ferry.ErrVerificationFailed) {
			return 3
		}
		// -resume is suggested only when it works: this run saved its progress (it got as far as
		// running), nothing was swapped, and the checkpoint is still usable (ferry.Resumable).
		if o.stateFile != "" && sum != nil && !sum.Cutover && ferry.Resumable(err) {
			if _, serr := os.Stat(o.stateFile); serr == nil {
				fmt.Fprintf(os.Stderr, "copydb: progress is saved in %s; after fixing the cause, run the same command with -resume to continue\n", o.stateFile)
			}
		}
		return 1
	}
	return 0
}

// cliFlags names copydb's flag for each Config option a refusal can name.
var cliFlags = map[string]string{
	"CreateTargetTables":      "-create-tables",
	"AllowNonEmptyTarget":     "-allow-nonempty-target",
	"AllowForeignKeyCascades": "-allow-fk-cascades",
	"ApplyForeignKeyCascades": "-apply-fk-cascades",
	"AllowTargetTriggers":     "-allow-target-triggers",
	"CopyWriteMethod":         "-write-method",
	"Filter.Column":           "-filter-column",
	"Filter.Value":            "-filter-value",
}

// describe is err's message with library option names replaced by copydb's flags.
func describe(err error) string {
	msg := err.Error()
	var oe *ferry.OptionError
	if errors.As(err, &oe) {
		msg = strings.Replace(msg, oe.Error(), oe.Message(func(option string) string {
			if flag, ok := cliFlags[option]; ok {
				return flag
			}
			return option
		}), 1)
	}
	return msg
}

func loadConfig(fs *flag.FlagSet, path string, alreadySet map[string]bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("config %s:%d: want name = value", path, n)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if alreadySet[k] { // the command line wins
			continue
		}
		if err := fs.Set(k, v); err != nil {
			return fmt.Errorf("config %s:%d: %w", path, n, err)
		}
	}
	return sc.Err()
}

// Summary is what copydb prints (and writes as JSON) at the end.
type Summary struct {
	Rows          int64                 `json:"rows_copied"`
	Tables        []ferry.TableProgress `json:"tables"`
	Elapsed       time.Duration         `json:"elapsed_ns"`
	RowsPerSecond float64               `json:"rows_per_second"`
	EventsApplied int64                 `json:"events_applied"`
	BlockedMS     float64               `json:"write_blocked_ms"`
	// VerificationBeforeLock is the pass run while writes went on; Verification the pass under the
	// lock (with -cutover none, the only pass).
	VerificationBeforeLock *verifier.Result     `json:"verification_before_lock,omitempty"`
	Verification           *verifier.Result     `json:"verification,omitempty"`
	Cutover                bool                 `json:"cut_over"`
	SchemaObjects          []ferry.SchemaObject `json:"schema_objects,omitempty"`
	Result                 string               `json:"result"`
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func copyDB(ctx context.Context, o options) (*Summary, error) {
	log := o.log
	var err error
	cfg := ferry.Config{
		Source: o.source, Target: o.target,
		Tables:                  ferry.TableFilter{Databases: split(o.databases), Include: split(o.tables), Exclude: split(o.exclude)},
		BatchSize:               o.batchSize,
		TargetChunkTime:         o.targetChunkTime,
		MaxRowsPerSecond:        o.maxRowsPerSecond,
		ExactRowCount:           o.exactRowCount,
		PanicFlagFile:           o.panicFlagFile,
		CopyWorkers:             o.workers,
		ApplyWorkers:            o.applyWorkers,
		CreateTargetTables:      o.createTables,
		AllowForeignKeyCascades: o.allowFKCascades,
		ApplyForeignKeyCascades: o.applyFKCascades,
		AllowTargetTriggers:     o.allowTargetTriggers,
		CreateSchemaObjects:     split(o.createObjects),
		CopyWriteMethod:         ferry.WriteMethod(o.writeMethod),
		AllowNonEmptyTarget:     o.allowNonEmpty,
		Logger:                  log,
	}
	if o.createObjects == "all" {
		cfg.CreateSchemaObjects = []string{ferry.ObjectViews, ferry.ObjectRoutines, ferry.ObjectEvents, ferry.ObjectTriggers}
	}
	if err := cfg.Validate(); err != nil && strings.Contains(err.Error(), "CreateSchemaObjects") {
		return nil, fmt.Errorf("-create-objects %q: want a comma-separated list of views, routines, events, triggers, or all", o.createObjects)
	}
	if cfg.DatabaseRewrites, err = cli.Pairs(o.rewriteDBs); err != nil {
		return nil, fmt.Errorf("-rewrite-databases: %w", err)
	}
	if cfg.TableRewrites, err = cli.Pairs(o.rewriteTs); err != nil {
		return nil, fmt.Errorf("-rewrite-tables: %w", err)
	}
	if cfg.BinlogSource, err = o.binlogFrom.Config(o.source); err != nil {
		return nil, err
	}
	if o.filterColumn != "" {
		var v any = o.filterValue
		var n int64
		if _, err := fmt.Sscan(o.filterValue, &n); err == nil && fmt.Sprint(n) == o.filterValue {
			v = n
		}
		cfg.Filter = ferry.ColumnEquals{Column: o.filterColumn, Value: v}
	}
	if o.resume {
		if o.stateFile == "" {
			return nil, errors.New("-resume needs -state-file")
		}
		st, err := ferry.LoadCheckpointFile(o.stateFile)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("-resume: there is no state file %s, so there is nothing to resume; run without -resume to start the copy", o.stateFile)
		}
		if err != nil {
			return nil, fmt.Errorf("-resume: the state file %s cannot be used (%w); the progress it recorded is lost: start the copy over: empty (or drop) the target tables and run without -resume", o.stateFile, err)
		}
		cfg.Resume = st
	}
	switch o.cutover {
	case "none", "read-only", "wait":
	default:
		return nil, fmt.Errorf("-cutover %q: want none, read-only or wait", o.cutover)
	}
	f, err := ferry.New(cfg)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if o.stateFile != "" {
		f.Checkpoints = ferry.FileCheckpoint{Path: o.stateFile}
		f.CheckpointInterval = o.checkpointEvery
	}
	if err := f.Initialize(ctx); err != nil {
		if bse := (*ferry.BinlogSourceError)(nil); errors.As(err, &bse) {
			return nil, fmt.Errorf("-binlog-from %s: %w", o.binlogFrom.Addr(), err)
		}
		return nil, err
	}
	if o.resume {
		// A read-only cut-over killed in its critical section leaves the source read-only.
		var ro int
		if err := f.Source.QueryRowContext(ctx, "SELECT @@GLOBAL.read_only").Scan(&ro); err == nil && ro != 0 {
			log.Warn("copydb: the source is read-only — an interrupted read-only cut-over leaves it so; application writes are blocked until the cut-over completes or you run SET GLOBAL read_only = 0")
		}
	}
	var throttlers throttler.Composite
	if o.throttleFile != "" {
		throttlers = append(throttlers, throttler.FlagFile{Path: o.throttleFile})
	}
	if o.maxLoad != "" || o.critLoad != "" {
		lc := throttler.LoadConfig{DB: f.Source}
		if o.maxLoad != "" {
			if lc.Max, err = throttler.ParseThresholds(o.maxLoad); err != nil {
				return nil, fmt.Errorf("-max-load: %w", err)
			}
		}
		if o.critLoad != "" {
			if lc.Critical, err = throttler.ParseThresholds(o.critLoad); err != nil {
				return nil, fmt.Errorf("-critical-load: %w", err)
			}
		}
		l, err := throttler.NewLoad(lc)
		if err != nil {
			return nil, err
		}
		throttlers = append(throttlers, l)
	}
	replicas, closeReplicas, err := o.replicas.Throttler(ctx, o.source, o.binlogFrom.Addr())
	if err != nil {
		return nil, err
	}
	defer closeReplicas()
	if replicas != nil {
		throttlers = append(throttlers, replicas)
	}
	var ctl *controls
	if o.web.Enabled() {
		var abort context.CancelFunc
		ctx, abort = context.WithCancel(ctx) // the page's Abort acts as SIGINT does
		defer abort()
		ctl = newControls(f, abort, o.cutover == "wait")
		throttlers = append(throttlers, ctl)
		reg := prometheus.NewRegistry()
		if o.metrics, err = metrics.Register(reg, f); err != nil {
			return nil, err
		}
		srv := ctl.server()
		srv.Metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
		webCtx, stopWeb := context.WithCancel(context.WithoutCancel(ctx))
		wait, err := o.web.Serve(webCtx, srv, os.Stderr, "copydb")
		if err != nil {
			stopWeb()
			return nil, err
		}
		defer wait()
		defer stopWeb()
	}
	if len(throttlers) > 0 {
		f.Throttler = throttlers
	}
	// Into target tables that were empty (no -allow-nonempty-target), every target row outside the
	// row filter is a difference: the verifiers apply the filter to the source only (Strict), so
	// such a row is reported, not left unread.
	strict := !o.allowNonEmpty
	checksum := &verifier.Checksum{Source: f.Source, Target: f.Target, Strict: strict, Logger: log}
	switch o.verify {
	case "checksum":
		f.Verifier = &verifier.Incremental{Checksum: checksum}
	case "checksum-under-lock":
		f.Verifier = checksum
	case "inline":
		if o.resume {
			f.Verifier = &verifier.Incremental{Checksum: checksum} // fingerprints of the earlier run are gone
		} else {
			f.Verifier = &verifier.Inline{Source: f.Source, Target: f.Target, Strict: strict, Logger: log}
		}
	case "none":
	default:
		return nil, fmt.Errorf("-verify %q: want checksum, checksum-under-lock, inline or none", o.verify)
	}
	if pr, ok := f.Verifier.(metrics.ProgressReporter); ok {
		o.metrics.WatchVerifier(pr)
		ctl.watchVerifier(pr)
	}
	if err := f.Start(ctx); err != nil {
		return nil, err
	}
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(runCtx) }()
	ctl.setPhase("copying")

	// SIGINT/SIGTERM: stop the run; Run saves a final checkpoint. During the cut-over the signal
	// aborts it first (the Cutover unlocks the source on any failure), so the checkpoint is never
	// taken inside its critical section.
	stopRun := context.AfterFunc(ctx, cancelRun)
	defer stopRun()

	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(o.progress)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				printProgress(f.Progress())
			}
		}
	}()

	sum := &Summary{}
	finish := func(result string) *Summary {
		ctl.setPhase(result)
		p := f.Progress()
		sum.Rows, sum.Tables, sum.Elapsed, sum.RowsPerSecond, sum.EventsApplied = p.RowsCopied, p.Tables, p.Elapsed, p.RowsPerSecond, p.EventsApplied
		sum.Result = result
		sum.SchemaObjects = f.SchemaObjects()
		return sum
	}
	if o.cutover == "wait" {
		usr := make(chan os.Signal, 1)
		signal.Notify(usr, syscall.SIGUSR1)
		defer signal.Stop(usr)
		log.Info("copydb: streaming; send SIGUSR1 to cut over")
		var cutoverNow chan struct{}
		if ctl != nil {
			cutoverNow = ctl.cutoverCh
		}
		select {
		case <-usr:
		case <-cutoverNow:
		case err := <-runErr:
			return finish("failed"), err
		case <-ctx.Done():
			return finish("interrupted"), waitRun(runErr, ctx.Err())
		}
	}
	var hooks ferry.CutoverHooks
	switch o.cutover {
	case "none":
		// Stop streaming without touching the source: verify what is there now.
		hooks = ferry.HookFuncs{}
	default:
		hooks = ferry.ReadOnlyHooks{Source: f.Source}
	}
	cut := &ferry.Cutover{Ferry: f, Hooks: hooks, MaxLag: o.maxLag, Timeout: o.cutoverTimeout}
	var mismatch error
	if o.cutover == "none" {
		// The source is not locked: triggers and events are created once ferry stopped writing.
		cut.SkipSchemaObjects = true
		cut.Verifier = nil
		if f.Verifier != nil {
			// Without stopping writes a verification is only a before-cut-over pass.
			if err := f.WaitUntilRowCopyIsComplete(ctx); err != nil {
				return finish("failed"), waitRun(runErr, err)
			}
			if _, err := f.FlushBinlog(ctx); err != nil {
				return finish("failed"), waitRun(runErr, err)
			}
			ctl.setPhase("verifying")
			res, err := f.Verifier.Verify(ctx, verifier.BeforeCutover, f.TablePairs())
			if err != nil {
				return finish("failed"), waitRun(runErr, err)
			}
			sum.Verification = res
			o.metrics.ObserveVerification(res)
			if !res.Match() {
				// Still stop streaming cleanly below, then fail: a difference is never "ok".
				mismatch = fmt.Errorf("%w (the source was not locked, so rows changing right now can differ too: run again, or use -cutover read-only to verify with writes stopped)", ferry.ErrVerificationFailed)
			}
		}
		f.Verifier = nil
	}
	ctl.setPhase("cutting over")
	rep, err := cut.Run(ctx)
	o.metrics.ObserveCutover(rep, err)
	if rep != nil {
		sum.BlockedMS = float64(rep.Blocked.Microseconds()) / 1000
		if rep.Result != nil {
			sum.Verification = rep.Result
		}
		sum.VerificationBeforeLock = rep.ResultBeforeLock
		sum.Cutover = rep.Swapped && o.cutover != "none"
	}
	if err != nil {
		cancelRun()
		<-runErr
		return finish("failed"), err
	}
	if err := <-runErr; err != nil {
		return finish("failed"), err
	}
	if mismatch != nil {
		return finish("failed"), mismatch
	}
	if cut.SkipSchemaObjects {
		if err := f.CreateDeferredSchemaObjects(ctx); err != nil {
			return finish("failed"), err
		}
	}
	return finish("ok"), nil
}

func waitRun(runErr chan error, err error) error {
	if rerr := <-runErr; rerr != nil && !errors.Is(rerr, context.Canceled) {
		return errors.Join(err, rerr)
	}
	return err
}

func printProgress(p ferry.Progress) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, t := range p.Tables {
		state := "copying"
		if t.Completed {
			state = "done"
		}
		fmt.Fprintf(tw, "  %s\t%d/%d rows\t%5.1f%%\t%s\n", t.Table, t.RowsCopied, t.EstimatedRows, t.Percent, state)
	}
	tw.Flush()
	fmt.Printf("[%s] %s\n%s", p.Elapsed.Round(time.Second), progressLine(p), b.String())
}

// Stalls worth an operator's attention: the source sends a binlog heartbeat every second when idle,
// and a copy batch takes well under a second unless something is wrong.
const (
	streamStall = 5 * time.Second
	copyStall   = 10 * time.Second
)

// progressLine is the summary part of a progress line: rates, the true binlog lag, and any stall.
func progressLine(p ferry.Progress) string {
	eta := "-"
	if p.ETA > 0 {
		eta = p.ETA.Round(time.Second).String()
	}
	if p.CopyIdle >= copyStall && !p.Throttled {
		eta = "- (stalled)"
	}
	line := fmt.Sprintf("%d/%d rows, %.0f rows/s, ETA %s, binlog lag %s, %d events applied",
		p.RowsCopied, p.EstimatedRows, p.RowsPerSecond, eta, p.BinlogLag.Round(time.Second), p.EventsApplied)
	if p.Throttled {
		line += " throttled: " + p.ThrottleReason
	}
	for _, s := range stalls(p) {
		line += "; " + s
	}
	return line
}

// stalls names what is stuck: a copy that wrote nothing for a while (not throttled), a silent stream.
func stalls(p ferry.Progress) []string {
	var out []string
	if p.CopyIdle >= copyStall && !p.Throttled {
		out = append(out, fmt.Sprintf("STALLED: no rows copied for %s", p.CopyIdle.Round(time.Second)))
	}
	if p.StreamSilence >= streamStall {
		last := "none yet"
		if !p.LastEventTime.IsZero() {
			last = p.LastEventTime.UTC().Format("15:04:05")
		}
		out = append(out, fmt.Sprintf("STALLED: binlog stream silent for %s (last event %s UTC)", p.StreamSilence.Round(time.Second), last))
	}
	return out
}

func printSummary(s *Summary) {
	fmt.Printf("\ncopydb: %s — %d rows in %s (%.0f rows/s), %d binlog events applied", s.Result, s.Rows, s.Elapsed.Round(time.Millisecond), s.RowsPerSecond, s.EventsApplied)
	if s.Cutover {
		fmt.Printf(", cut over with writes blocked for %.1f ms", s.BlockedMS)
	}
	fmt.Println()
	if s.VerificationBeforeLock != nil {
		fmt.Print(s.VerificationBeforeLock.String())
	}
	if s.Verification != nil {
		fmt.Print(s.Verification.String())
	}
	var created, missing []string
	for _, o := range s.SchemaObjects {
		if o.Created {
			created = append(created, o.Kind+" "+o.Name)
		} else {
			missing = append(missing, fmt.Sprintf("  %s %s: %s", o.Kind, o.Name, o.Note))
		}
	}
	if len(created) > 0 {
		fmt.Printf("schema objects created on the target: %s\n", strings.Join(created, ", "))
	}
	if len(missing) > 0 {
		fmt.Printf("schema objects NOT created on the target (-create-objects views,routines,events,triggers or all creates them):\n%s\n", strings.Join(missing, "\n"))
	}
}
