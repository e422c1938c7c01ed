// Command diff compares tables on two MySQL/MariaDB servers (or two tables on one) and prints the rows
// that differ, using ferry's verifiers.
//
//	diff --source 'root@tcp(127.0.0.1:3306)/' --target 'root@tcp(127.0.0.1:3307)/' \
//	     --tables shop.orders:shop_eu.orders --where "region = 'eu'" --strict
//
// Servers are named as in every ferry tool: a DSN (--source, --target) or --source-host/-port/-user/
// -socket, --source-defaults-file, --source-ssl-*; passwords from --source-password-file,
// $FERRY_SOURCE_PASSWORD, the defaults file or --ask-pass (a password in the DSN works but warns).
// Without any --target flag the target is the source server.
//
// --tables takes a comma-separated list of db.table (the same name on both sides),
// db.table:db2.table2 (a different target name) or db.* (every table of a database). Every table
// needs a primary key (or a NOT NULL unique key) that the target also has, with the same definition.
//
// --verifier chooses how: checksum (default: chunked server-side checksums, drilling into differing
// chunks), rowdiff (every row's hash merged in key order) or checksum-table (CHECKSUM TABLE, for
// identical definitions without --where or --ignore-columns; falls back to checksum to name rows).
//
// It prints a table of counts followed by the sample keys (or JSON with --json) and exits 0 when the
// tables match, 1 when they differ and 2 on any error.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/internal/cli"
	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/verifier"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitMatch = 0
	exitDiff  = 1
	exitError = 2
)

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("diff", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		srcConn   = cli.AddConn(fs, cli.ConnSpec{Prefix: "source", PasswordEnv: "FERRY_SOURCE_PASSWORD", DSN: true})
		tgtConn   = cli.AddConn(fs, cli.ConnSpec{Prefix: "target", PasswordEnv: "FERRY_TARGET_PASSWORD", DSN: true})
		askPass   = cli.AddAskPass(fs, os.Stdin, stderr)
		logFlags  = cli.AddLogFlags(fs, "warn")
		tables    = fs.String("tables", "", "tables to compare: db.t, db.t:db2.t2 or db.*, comma-separated")
		where     = fs.String("where", "", "copy filter: an SQL condition over the source's columns, applied to both sides")
		strict    = fs.Bool("strict", false, "with --where: report target rows outside the filter as extra")
		ignore    = fs.String("ignore-columns", "", "comma-separated columns to leave out of the comparison")
		asJSON    = fs.Bool("json", false, "print the result as JSON")
		which     = fs.String("verifier", "checksum", "checksum, rowdiff or checksum-table")
		chunk     = fs.Int("chunk-size", 0, "rows per chunk (checksum) or page (rowdiff); default 1000")
		sample    = fs.Int("sample", 0, "keys to print per category and table; default 100")
		workers   = fs.Int("concurrency", 0, "chunks checksummed at once; default 4")
		timeout   = fs.Duration("timeout", 0, "give up after this long (0: no limit)")
		phaseFlag = fs.String("phase", string(verifier.DuringCutover), "before-cutover re-checks differences a few times (for tables still written to)")
	)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: diff {--source DSN | --source-host H ...} [--target DSN | --target-host H ...] --tables db.t[:db2.t2],... [flags]")
		fmt.Fprintln(stderr, "without target flags the target is the source server")
		fmt.Fprintln(stderr, "exit status: 0 the tables match, 1 they differ, 2 error")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitMatch
		}
		return exitError
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "diff:", err)
		return exitError
	}
	if *tables == "" || fs.NArg() > 0 {
		fs.Usage()
		return exitError
	}
	log, err := logFlags.Logger(stderr)
	if err != nil {
		return fail(err)
	}
	srcCfg, err := srcConn.Config(askPass(), stderr)
	if err != nil {
		return fail(err)
	}
	srcDSN, tgtDSN, tgtCfg := srcConn.DSN(), srcConn.DSN(), srcCfg
	if tgtConn.Given() {
		if tgtCfg, err = tgtConn.Config(askPass(), stderr); err != nil {
			return fail(err)
		}
		tgtDSN = tgtConn.DSN()
	}
	phase := verifier.Phase(*phaseFlag)
	if phase != verifier.DuringCutover && phase != verifier.BeforeCutover {
		return fail(fmt.Errorf("--phase must be %s or %s", verifier.BeforeCutover, verifier.DuringCutover))
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	source, err := open(ctx, srcDSN, srcCfg)
	if err != nil {
		return fail(fmt.Errorf("source: %w", err))
	}
	defer source.Close()
	target, err := open(ctx, tgtDSN, tgtCfg)
	if err != nil {
		return fail(fmt.Errorf("target: %w", err))
	}
	defer target.Close()

	var ignored []string
	for _, c := range strings.Split(*ignore, ",") {
		if c = strings.TrimSpace(c); c != "" {
			ignored = append(ignored, c)
		}
	}
	pairs, err := parseTables(ctx, source, *tables)
	if err != nil {
		return fail(err)
	}
	for i := range pairs {
		pairs[i].Where = *where
		pairs[i].IgnoreColumns = ignored
	}

	var v verifier.Verifier
	switch *which {
	case "checksum":
		v = &verifier.Checksum{Source: source, Target: target, ChunkSize: *chunk, Concurrency: *workers, SampleSize: *sample, Strict: *strict, Logger: log}
	case "rowdiff", "differ":
		v = &verifier.Differ{Source: source, Target: target, PageSize: *chunk, SampleSize: *sample, Strict: *strict, Logger: log}
	case "checksum-table":
		v = &verifier.ChecksumTable{Source: source, Target: target, Logger: log,
			Fallback: &verifier.Checksum{ChunkSize: *chunk, Concurrency: *workers, SampleSize: *sample}}
	default:
		return fail(fmt.Errorf("--verifier must be checksum, rowdiff or checksum-table, not %q", *which))
	}
	res, err := v.Verify(ctx, phase, pairs)
	if err != nil {
		if errors.Is(err, verifier.ErrNotApplicable) {
			err = fmt.Errorf("%w\n(use --verifier=checksum)", err)
		}
		return fail(err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return fail(err)
		}
	} else {
		fmt.Fprint(stdout, res)
	}
	if !res.Match() {
		return exitDiff
	}
	return exitMatch
}

// open connects with cc; a DSN given on the command line keeps its driver parameters (cc carries
// its user, address and password, or those the other flags gave instead).
func open(ctx context.Context, dsn string, cc ferry.ConnConfig) (*sql.DB, error) {
	if dsn == "" {
		return cc.Open(ctx)
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.TLS = cc.User, cc.Password, "tcp", cc.Addr(), cc.TLS
	if cc.Socket != "" {
		cfg.Net = "unix"
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(connector)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// parseTables turns "db.t, db.t:db2.t2, db.*" into table pairs, loading each source table.
func parseTables(ctx context.Context, source *sql.DB, spec string) ([]verifier.TablePair, error) {
	var pairs []verifier.TablePair
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		src, dst, _ := strings.Cut(item, ":")
		sdb, stbl, ok := strings.Cut(src, ".")
		if !ok || sdb == "" || stbl == "" {
			return nil, fmt.Errorf("--tables: %q: want db.table[:db2.table2] or db.*", item)
		}
		tdb, ttbl := sdb, stbl
		if dst != "" {
			if tdb, ttbl, ok = strings.Cut(dst, "."); !ok || tdb == "" || ttbl == "" {
				return nil, fmt.Errorf("--tables: %q: want db.table[:db2.table2] or db.*", item)
			}
		}
		names := []string{stbl}
		if stbl == "*" {
			if ttbl != "*" {
				return nil, fmt.Errorf("--tables: %q: a whole database maps to a whole database (db.*:db2.*)", item)
			}
			var err error
			if names, err = schema.ListTables(ctx, source, sdb); err != nil {
				return nil, err
			}
			if len(names) == 0 {
				return nil, fmt.Errorf("--tables: database %s has no tables", sdb)
			}
		}
		for _, n := range names {
			t, err := schema.Load(ctx, source, sdb, n)
			if err != nil {
				return nil, err
			}
			tn := ttbl
			if stbl == "*" {
				tn = n
			}
			pairs = append(pairs, verifier.TablePair{Source: t, TargetDatabase: tdb, TargetTable: tn})
		}
	}
	if len(pairs) == 0 {
		return nil, errors.New("--tables: no tables given")
	}
	return pairs, nil
}
