// Command osc changes the schema of a live MySQL/MariaDB table online, the way gh-ost does, with
// ferry's osc package: a ghost table, an in-server chunked copy, the table's binlog changes applied to
// the ghost, and an atomic cut-over that blocks writes for a moment.
//
//	osc --host 127.0.0.1 --port 3306 --user root --database shop --table orders \
//	    --alter "ADD COLUMN note VARCHAR(100) NULL" --execute
//
// The server is named as in every ferry tool: --host/--port/--user/--socket, --defaults-file (a
// my.cnf [client] section), --ssl-ca/--ssl-cert/--ssl-key/--ssl-mode; the password comes from
// --password-file, $MYSQL_PWD, the defaults file or --ask-pass (--password works but warns: ps shows
// it). Hooks never see the password in their environment. Logs: --log-level, --log-format json.
//
// Without --execute it is a dry run: it validates, creates and drops the empty ghost table, prints
// the plan (copied, renamed, dropped, added columns; whether ALGORITHM=INSTANT would do) and
// changes nothing. With --execute it prints a status line every --status-interval and, at the end,
// how long writes were blocked by each cut-over attempt.
//
// While it runs: touch the --postpone-cut-over-flag-file to hold the cut-over; send commands to
// --serve-socket-file (`echo status | nc -U /tmp/osc.sock`): status, throttle, no-throttle, chunk-size=N,
// cut-over, panic, and gh-ost's max-load=, critical-load=, max-lag-millis=, throttle-query=. With
// --http 127.0.0.1:PORT the same controls are buttons on a status page (also /status, /metrics).
// Throttling: --max-load, --critical-load, --throttle-query, --throttle-control-replicas with
// --max-lag-millis (gh-ost's names and meanings), --max-apply-lag (the binlog apply's own lag). Hooks: --hook-<point>=/path/to/executable for startup, validated,
// row-copy-complete, before-cut-over, success, failure and status, with FERRY_OSC_* environment
// variables describing the migration.
//
// With --binlog-from host:port the binlog is read from that replica of the server (log_slave_updates
// on; reached with the server's user, password and TLS) instead of from the server itself; the copy,
// the ghost table and the cut-over stay on the server, and a lagging replica only fails a cut-over
// attempt, which is retried.
//
// If it is interrupted (killed, the server restarted), run it again with the same flags and --resume:
// it checks the tables did not change and goes on from the checkpoint kept in _<t>_ghc (the last
// copied chunk and the binlog position applied).
//
// Exit status: 0 done (or dry run passed), 1 refused or failed (the original table unchanged; the
// message says what to clean up), 2 bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/internal/cli"
	"github.com/ferrykit/ferry/osc"
	"github.com/ferrykit/ferry/throttler"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("osc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		connFlags       = cli.AddConn(fs, cli.ConnSpec{PasswordEnv: "MYSQL_PWD"})
		askPass         = cli.AddAskPass(fs, os.Stdin, stderr)
		logFlags        = cli.AddLogFlags(fs, "warn")
		database        = fs.String("database", "", "database of the table")
		table           = fs.String("table", "", "table to alter")
		alter           = fs.String("alter", "", `ALTER clause, without "ALTER TABLE t", e.g. "ADD COLUMN c INT, DROP COLUMN d"`)
		execute         = fs.Bool("execute", false, "run the migration (default: dry run)")
		instant         = fs.Bool("instant", false, "run the ALTER in place with ALGORITHM=INSTANT when the server can (no copy)")
		chunkSize       = fs.Int("chunk-size", 1000, "rows per copy chunk (10..100000): the starting size when -target-chunk-time adapts it; given alone (without -target-chunk-time), a fixed size")
		copyWorkers     = fs.Int("copy-workers", 2, "chunks copied at once, each on its own connection (1..64); each holds share locks on its rows, so more also make application writes wait on the copy more often")
		targetChunkTime = fs.Duration("target-chunk-time", 500*time.Millisecond, "size each copy chunk to take about this long (100..100000 rows); it is also about the longest an application write to a row being copied waits, since a chunk's rows stay share-locked until it commits; 0 keeps -chunk-size fixed")
		maxRowsPerSec   = fs.Float64("max-rows-per-second", 0, "cap the copy at this many rows per second (0: no cap)")
		exactRowCount   = fs.Bool("exact-rowcount", false, "count the table's rows with SELECT COUNT(*) before the copy instead of the statistics' estimate, for a true total and ETA")
		panicFile       = fs.String("panic-flag-file", "", "stop the migration at once when this file appears (the original table is left as it is)")
		approveRenames  = fs.Bool("approve-renamed-columns", false, "approve the column renames the ALTER makes (CHANGE old new, RENAME COLUMN)")
		allowFK         = fs.Bool("allow-foreign-keys", false, "migrate a table with foreign keys (they do not follow the cut-over; fix them after)")
		allowTriggers   = fs.Bool("allow-triggers", false, "migrate a table with triggers (they stay on the old table; recreate them after)")
		skipVerify      = fs.Bool("skip-verification", false, "skip the comparison of the new table with the original before the cut-over (on by default when the ALTER keeps the columns' values)")
		includeTriggers = fs.Bool("include-triggers", false, "recreate the table's triggers on the new table within the cut-over, under their own names")
		sqlMode         = fs.String("sql-mode", "", "sql_mode for the ghost table's DDL, the copy and the apply (default: the server's; STRICT_ALL_TABLES and NO_AUTO_VALUE_ON_ZERO are added)")
		timeZone        = fs.String("time-zone", "", "time zone in which TIMESTAMP values are converted to and from other types (default: the server's time_zone)")
		allowUnique     = fs.Bool("allow-new-unique-key", false, "allow adding a unique key (duplicates checked before the copy, row counts at cut-over)")
		dropLeftovers   = fs.Bool("drop-leftovers", false, "drop _<t>_gho, _<t>_ghc, <t>_del left by an earlier run")
		resume          = fs.Bool("resume", false, "resume a migration interrupted earlier from the checkpoint in its leftover _<t>_ghc (starts afresh if there is none)")
		dropOld         = fs.Bool("drop-old-table", false, "drop <t>_del (the original table) after the cut-over")
		migrateReplica  = fs.Bool("migrate-on-replica", false, "the server is a replica (log_slave_updates): migrate and cut over its table only; replication goes on into the new table")
		testReplica     = fs.Bool("test-on-replica", false, "the server is a replica (log_slave_updates): migrate its table, stop replication at the cut-over, swap the tables back and print how to compare the original with the migrated table and how to resume replication")
		lockTimeout     = fs.Duration("cut-over-lock-timeout", 3*time.Second, "bound of each wait of a cut-over attempt (1s..10s)")
		cutoverKind     = fs.String("cut-over", "atomic", "atomic (writes wait, the table never goes missing) or two-step (the table is missing for a moment)")
		attempts        = fs.Int("cut-over-attempts", 60, "cut-over attempts before giving up")
		postponeFile    = fs.String("postpone-cut-over-flag-file", "", "hold the cut-over while this file exists")
		maxApplyLag     = fs.Duration("max-apply-lag", 1500*time.Millisecond, "throttle the copy while the binlog apply lags more than this (was --max-lag; for replica lag see --max-lag-millis)")
		throttleQuery   = fs.String("throttle-query", "", "throttle while this query returns a non-zero value, e.g. \"SELECT COUNT(*) > 0 FROM ops.maintenance\"")
		replicaFlags    = cli.AddReplicaFlags(fs)
		binlogFrom      = cli.AddBinlogFrom(fs, "server")
		web             = cli.AddHTTPFlags(fs)
		throttleFile    = fs.String("throttle-flag-file", "", "throttle the copy while this file exists")
		maxLoad         = fs.String("max-load", "", "throttle while a status variable exceeds a threshold, e.g. Threads_running=25")
		criticalLoad    = fs.String("critical-load", "", "abort when a status variable exceeds a threshold, e.g. Threads_running=200")
		serveSocket     = fs.String("serve-socket-file", "", "unix socket for interactive commands (-socket is the server's socket)")
		statusInterval  = fs.Duration("status-interval", 5*time.Second, "how often to print the status line")
		hookTimeout     = fs.Duration("hook-timeout", 30*time.Second, "kill hook executables after this long")
		verbose         = fs.Bool("verbose", false, "log every step")
		hookFlags       = map[osc.HookPoint]*string{}
		hookPointsOrder = []osc.HookPoint{osc.HookStartup, osc.HookValidated, osc.HookRowCopyComplete, osc.HookBeforeCutover, osc.HookSuccess, osc.HookFailure, osc.HookStatus}
	)
	fs.StringVar(postponeFile, "postpone-cutover-flag-file", "", "same as --postpone-cut-over-flag-file")
	for _, p := range hookPointsOrder {
		hookFlags[p] = fs.String("hook-"+string(p), "", "executable to run at "+string(p))
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["chunk-size"] && !set["target-chunk-time"] {
		*targetChunkTime = 0 // a chunk size given alone is a fixed one
	}
	if *database == "" || *table == "" || *alter == "" {
		fmt.Fprintln(stderr, "osc: --database, --table and --alter are required")
		fs.Usage()
		return 2
	}
	if *cutoverKind != "atomic" && *cutoverKind != "two-step" {
		fmt.Fprintln(stderr, "osc: --cut-over must be atomic or two-step")
		return 2
	}
	conn, err := connFlags.Config(askPass(), stderr)
	if err != nil {
		fmt.Fprintln(stderr, "osc:", err)
		return 2
	}
	if *verbose {
		logFlags.SetLevel("info")
	}
	log, err := logFlags.Logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "osc:", err)
		return 2
	}

	var fixed []throttler.Throttler
	if *throttleFile != "" {
		fixed = append(fixed, throttler.FlagFile{Path: *throttleFile})
	}
	db, err := conn.Open(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "osc:", err)
		return 1
	}
	defer db.Close()
	binlogConn, err := binlogFrom.Config(conn)
	if err != nil {
		fmt.Fprintln(stderr, "osc:", err)
		return 2
	}
	replicas, closeReplicas, err := replicaFlags.Throttler(ctx, conn, binlogFrom.Addr())
	if err != nil {
		fmt.Fprintln(stderr, "osc:", err)
		return 2
	}
	defer closeReplicas()
	live, err := newLiveThrottle(db, replicas, fixed, *maxLoad, *criticalLoad, *throttleQuery)
	if err != nil {
		fmt.Fprintln(stderr, "osc:", err)
		return 2
	}
	var th throttler.Throttler = live

	m := &osc.Migration{
		Conn: conn, BinlogConn: binlogConn, Database: *database, Table: *table, Alter: *alter, Execute: *execute,
		UseInstant: *instant, ChunkSize: *chunkSize, ApproveRenamedColumns: *approveRenames, AllowForeignKeys: *allowFK,
		AllowTriggers: *allowTriggers, IncludeTriggers: *includeTriggers, SkipVerification: *skipVerify, SQLMode: *sqlMode, TimeZone: *timeZone, AllowNewUniqueKey: *allowUnique, DropLeftovers: *dropLeftovers, Resume: *resume,
		DropOldTable: *dropOld, MigrateOnReplica: *migrateReplica, TestOnReplica: *testReplica, CutoverTwoStep: *cutoverKind == "two-step", CutoverLockTimeout: *lockTimeout, CutoverAttempts: *attempts,
		TargetChunkTime: *targetChunkTime, CopyWorkers: *copyWorkers, MaxRowsPerSecond: *maxRowsPerSec, ExactRowCount: *exactRowCount, PanicFlagFile: *panicFile,
		PostponeFlagFile: *postponeFile, MaxLag: *maxApplyLag, Throttler: th, ExtraCommands: live.command, SocketPath: *serveSocket,
		StatusInterval: *statusInterval, Logger: log,
		OnStatus: func(s osc.Status) { fmt.Fprintln(stdout, time.Now().UTC().Format("15:04:05"), s) },
		Hooks:    osc.Hooks{Commands: map[osc.HookPoint]string{}, Timeout: *hookTimeout},
	}
	for p, v := range hookFlags {
		if *v != "" {
			m.Hooks.Commands[p] = *v
		}
	}
	if web.Enabled() {
		webCtx, stopWeb := context.WithCancel(context.WithoutCancel(ctx))
		wait, err := serveWeb(webCtx, web, m, *database+"."+*table, stderr)
		if err != nil {
			stopWeb()
			fmt.Fprintln(stderr, "osc:", err)
			return 2
		}
		defer wait()
		defer stopWeb()
	}
	res, err := m.Run(ctx)
	if res != nil && res.Plan != nil {
		fmt.Fprintln(stdout, "plan:", res.Plan)
	}
	if err != nil {
		if bse := (*ferry.BinlogSourceError)(nil); errors.As(err, &bse) {
			err = fmt.Errorf("--binlog-from %s: %w", binlogFrom.Addr(), err)
		}
		fmt.Fprintln(stderr, err)
		return 1
	}
	if !*execute {
		fmt.Fprintln(stdout, "dry run: validation passed, nothing changed; run again with --execute")
		return 0
	}
	var blocked []string
	for _, d := range res.WriteBlocked {
		blocked = append(blocked, fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000))
	}
	if res.Instant {
		fmt.Fprintf(stdout, "done in place with ALGORITHM=INSTANT in %s, writes blocked: %s\n", res.Elapsed.Round(time.Millisecond), strings.Join(blocked, ", "))
		return 0
	}
	fmt.Fprintf(stdout, "done in %s: %d rows copied, %d binlog events applied, %d cut-over attempt(s), writes blocked: %s\n",
		res.Elapsed.Round(time.Millisecond), res.RowsCopied, res.EventsApplied, res.CutoverAttempts, strings.Join(blocked, ", "))
	if res.Verification != "" {
		fmt.Fprintln(stdout, "verification of the new table before the cut-over:", res.Verification)
	}
	if res.ReplicaTest != nil {
		fmt.Fprint(stdout, res.ReplicaTest)
	}
	if res.OldTable != "" {
		fmt.Fprintf(stdout, "the original table is kept as %s.%s; drop it when you no longer need it\n", *database, res.OldTable)
	}
	return 0
}
