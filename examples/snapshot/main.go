// Command snapshot takes online snapshots of a live MySQL/MariaDB source and restores, clones,
// splits and verifies them (package github.com/ferrykit/ferry/snapshot).
//
//	snapshot snapshot -source-host h -databases shop -to /backups/shop-1      (or -to s3://bucket/prefix)
//	snapshot split    -source-host h -databases shop -to DIR -split-column tenant -split-bounds 100,200
//	snapshot restore  -target-host h2 -from DIR [-from DIR2 ...] [-resume] [-delay-secondary-indexes] [-rewrite-databases shop=shop_copy] [-create-objects all]
//	snapshot clone    -source-host h -target-host h2 -from DIR -cutover read-only|none
//	snapshot verify   -from DIR [-source-host h -target-host h2]   (files; with servers: subset diff)
//
// S3: -s3-endpoint host:port, credentials from $FERRY_S3_ACCESS_KEY and $FERRY_S3_SECRET_KEY.
// Exit status: 0 success, 1 failure, 2 usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/internal/cli"
	"github.com/ferrykit/ferry/snapshot"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func main() { os.Exit(run(os.Args[1:])) }

func usage() {
	fmt.Fprintln(os.Stderr, "usage: snapshot snapshot|split|restore|clone|verify [flags]; snapshot <command> -h for the flags")
}

func run(args []string) int {
	if len(args) == 0 {
		usage()
		return 2
	}
	cmd := args[0]
	fs := flag.NewFlagSet("snapshot "+cmd, flag.ContinueOnError)
	src := cli.AddConn(fs, cli.ConnSpec{Prefix: "source", PasswordEnv: "FERRY_SOURCE_PASSWORD", DSN: true})
	tgt := cli.AddConn(fs, cli.ConnSpec{Prefix: "target", PasswordEnv: "FERRY_TARGET_PASSWORD", DSN: true})
	askPass := cli.AddAskPass(fs, os.Stdin, os.Stderr)
	logFlags := cli.AddLogFlags(fs, "info")
	var from, rewrites multi
	fs.Var(&from, "from", "snapshot location to read (a directory or s3://bucket/prefix); repeat to restore several into one target")
	to := fs.String("to", "", "snapshot location to write (a directory or s3://bucket/prefix)")
	databases := fs.String("databases", "", "comma-separated databases to snapshot whole")
	tables := fs.String("tables", "", "comma-separated table patterns db.table (wildcards * ?)")
	exclude := fs.String("exclude", "", "comma-separated table patterns to leave out")
	threads := fs.Int("threads", 4, "connections reading (snapshot) or files loading (restore) at once")
	maxFile := fs.Int64("max-file-size", 64<<20, "bytes of row text per data file (stored files are this size or less once compressed)")
	compression := fs.String("compression", "zstd", "data file compression: zstd, gzip, none")
	level := fs.Int("compression-level", 0, "compression level (0: the fastest)")
	maxRate := fs.Int("max-rows-per-second", 0, "limit rows read (snapshot) or loaded (restore) per second; 0: no limit")
	lockWait := fs.Duration("lock-wait-timeout", 10*time.Second, "longest wait for the brief commit lock (when the lock-free snapshot keeps racing commits)")
	splitColumn := fs.String("split-column", "", "split: the column whose values divide rows into shards")
	splitBounds := fs.String("split-bounds", "", "split: comma-separated increasing values; N values give N+1 ranges")
	shards := fs.Int("shards", 0, "split: number of shards by a hash of -split-column (without -split-bounds)")
	fs.Var(&rewrites, "rewrite-databases", "restore, clone, verify: comma-separated src=dst database renames (repeatable): restore the tables of database src into dst")
	createObjects := fs.String("create-objects", "", "restore, clone: also create the snapshot's views and stored routines: comma-separated views, routines, or all (after the rows are loaded)")
	resume := fs.Bool("resume", false, "restore: continue an interrupted restore of the same snapshot, skipping the files it loaded")
	allowNonEmpty := fs.Bool("allow-non-empty", false, "restore: load into tables that already hold rows")
	delayIdx := fs.Bool("delay-secondary-indexes", false, "restore: add plain secondary indexes after the rows are loaded")
	cutover := fs.String("cutover", "none", "clone: none (catch up, verify, stop; source untouched) or read-only (set the source read_only, apply the last changes, verify)")
	s3Endpoint := fs.String("s3-endpoint", "", "S3 server host:port for s3:// locations")
	s3Secure := fs.Bool("s3-https", true, "use HTTPS to reach -s3-endpoint")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this run to the file")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	log, err := logFlags.Logger(os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s3 := snapshot.S3Options{Endpoint: *s3Endpoint, Secure: *s3Secure, AccessKey: os.Getenv("FERRY_S3_ACCESS_KEY"), SecretKey: os.Getenv("FERRY_S3_SECRET_KEY")}
	open := func(loc string) (snapshot.Storage, error) {
		if strings.HasPrefix(loc, "s3://") && *s3Endpoint == "" {
			return nil, errors.New("an s3:// location needs -s3-endpoint")
		}
		return snapshot.OpenStorage(loc, s3)
	}
	dbRewrites, err := cli.Pairs(rewrites...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "snapshot "+cmd+": -rewrite-databases: "+err.Error())
		return 2
	}
	filter := ferry.TableFilter{Databases: split(*databases), Include: split(*tables), Exclude: split(*exclude)}
	conn := func(c *cli.Conn, name string) (ferry.ConnConfig, error) {
		if !c.Given() {
			return ferry.ConnConfig{}, fmt.Errorf("%s: give -%s-host (or -%s)", cmd, name, name)
		}
		return c.Config(askPass(), os.Stderr)
	}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "snapshot "+cmd+": "+err.Error())
		return 1
	}
	switch cmd {
	case "snapshot", "split":
		if *to == "" {
			return fail(errors.New("give -to (a directory or s3://bucket/prefix)"))
		}
		sc, err := conn(src, "source")
		if err != nil {
			return fail(err)
		}
		st, err := open(*to)
		if err != nil {
			return fail(err)
		}
		o := snapshot.Options{Source: sc, Tables: filter, Storage: st, Threads: *threads, MaxFileSize: *maxFile,
			Compression: *compression, CompressionLevel: *level, MaxRowsPerSecond: *maxRate, LockWaitTimeout: *lockWait, Logger: log}
		if cmd == "split" {
			o.Split = &snapshot.Split{Column: *splitColumn, Shards: *shards, Bounds: split(*splitBounds)}
		}
		start := time.Now()
		ms, err := snapshot.Take(ctx, o)
		if err != nil {
			return fail(err)
		}
		for i, m := range ms {
			var rows, files, size, raw int64
			for _, t := range m.Tables {
				rows += t.Rows
				for _, f := range t.Files {
					files++
					size += f.Size
					raw += f.RawSize
				}
			}
			where := *to
			if m.Shard != nil {
				where += "/" + snapshot.ShardLocation(i)
			}
			fmt.Printf("snapshot %s: %d tables (%d views and routines), %d rows, %d files, %d bytes stored (%d of row text) at %s (gtid %s, %s) in %s\n",
				where, len(m.Tables), len(m.Objects), rows, files, size, raw, m.Position, m.Position.GTID, m.Consistency, time.Since(start).Round(time.Millisecond))
		}
		return 0
	case "restore", "clone":
		if len(from) == 0 {
			return fail(errors.New("give -from (a directory or s3://bucket/prefix)"))
		}
		tc, err := conn(tgt, "target")
		if err != nil {
			return fail(err)
		}
		var sts []snapshot.Storage
		for _, loc := range from {
			st, err := open(loc)
			if err != nil {
				return fail(err)
			}
			sts = append(sts, st)
		}
		kinds := split(*createObjects)
		if *createObjects == "all" {
			kinds = []string{ferry.ObjectViews, ferry.ObjectRoutines}
		}
		ro := snapshot.RestoreOptions{CreateSchemaObjects: kinds, Target: tc, Snapshots: sts, Threads: *threads, DelaySecondaryIndexes: *delayIdx,
			AllowNonEmpty: *allowNonEmpty, Resume: *resume, DatabaseRewrites: dbRewrites, MaxRowsPerSecond: *maxRate, ProgressInterval: 2 * time.Second, Logger: log}
		if cmd == "restore" {
			rep, err := snapshot.Restore(ctx, ro)
			if err != nil {
				return fail(err)
			}
			fmt.Printf("restored %d rows from %d files (%d loaded earlier): verify %s, load %s, indexes %s\n",
				rep.Rows, rep.Files, rep.SkippedFiles, rep.Verify.Round(time.Millisecond), rep.Load.Round(time.Millisecond), rep.Indexes.Round(time.Millisecond))
			if len(rep.ObjectsCreated)+len(rep.ObjectsExisting) > 0 {
				fmt.Printf("created %s; already on the target (left as they are): %s\n", listOrNone(rep.ObjectsCreated), listOrNone(rep.ObjectsExisting))
			}
			return 0
		}
		sc, err := conn(src, "source")
		if err != nil {
			return fail(err)
		}
		return clone(ctx, log, snapshot.CloneOptions{Restore: ro, Ferry: ferry.Config{Source: sc, Target: tc, Logger: log}}, *cutover, fail)
	case "verify":
		if len(from) != 1 {
			return fail(errors.New("give one -from"))
		}
		st, err := open(from[0])
		if err != nil {
			return fail(err)
		}
		m, err := snapshot.Verify(ctx, st)
		if err != nil {
			return fail(err)
		}
		fmt.Printf("%s: %d tables, every file present with its size and SHA-256\n", st.Describe(snapshot.ManifestName), len(m.Tables))
		if !src.Given() && !tgt.Given() {
			return 0
		}
		sc, err := conn(src, "source")
		if err != nil {
			return fail(err)
		}
		tc, err := conn(tgt, "target")
		if err != nil {
			return fail(err)
		}
		sdb, err := sc.Open(ctx)
		if err != nil {
			return fail(err)
		}
		defer sdb.Close()
		tdb, err := tc.Open(ctx)
		if err != nil {
			return fail(err)
		}
		defer tdb.Close()
		res, err := snapshot.SubsetDiffRewritten(ctx, sdb, tdb, m, dbRewrites)
		if err != nil {
			return fail(err)
		}
		fmt.Println(res)
		if !res.Match() {
			return 1
		}
		return 0
	}
	usage()
	return 2
}

func clone(ctx context.Context, log logrus.FieldLogger, o snapshot.CloneOptions, cutover string, fail func(error) int) int {
	if cutover != "none" && cutover != "read-only" {
		return fail(fmt.Errorf("-cutover %q: want none or read-only", cutover))
	}
	start := time.Now()
	f, rep, err := snapshot.Clone(ctx, o)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	restored := time.Since(start)
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()
	// Catch-up: apply every change committed on the source since the snapshot, up to now.
	if _, err := f.FlushBinlog(ctx); err != nil {
		return fail(err)
	}
	caught := time.Since(start) - restored
	var hooks ferry.CutoverHooks = ferry.HookFuncs{}
	if cutover == "read-only" {
		hooks = ferry.ReadOnlyHooks{Source: f.Source}
	}
	cr, err := (&ferry.Cutover{Ferry: f, Hooks: hooks}).Run(ctx)
	if err != nil {
		return fail(err)
	}
	if err := <-runErr; err != nil {
		return fail(err)
	}
	log.Info("clone: done")
	fmt.Printf("cloned %d rows: restore %s, catch-up %s, cut-over blocked writes %s\n", rep.Rows, restored.Round(time.Millisecond), caught.Round(time.Millisecond), cr.Blocked)
	return 0
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
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
