package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

type copyCase struct {
	seed     int64
	bigRows  int
	filter   ferry.CopyFilter
	rewrite  bool
	batch    int
	killDump bool // KILL the streamer's connection mid-run
	loadData bool // copy with LOAD DATA instead of INSERTs
}

// runCopy copies the four test tables from source to target under a random write load, cuts over
// with the load stopped, and checks every row byte for byte with the test's own comparison.
func runCopy(t *testing.T, c copyCase) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	srcDB := fmt.Sprintf("src_%s_%d", sanitize(t.Name()), c.seed)
	dstDB := srcDB
	createSchema(t, source, srcDB, c.bigRows)
	cfg := ferry.Config{
		Source:          conn(source),
		Target:          conn(target),
		Tables:          ferry.TableFilter{Databases: []string{srcDB}},
		BatchSize:       c.batch,
		Logger:          testLogger(t),
		Filter:          c.filter,
		CopyWriteMethod: map[bool]ferry.WriteMethod{true: ferry.WriteLoadData, false: ferry.WriteInsert}[c.loadData],
	}
	if c.rewrite {
		dstDB = srcDB + "_rw"
		cfg.DatabaseRewrites = map[string]string{srcDB: dstDB}
		cfg.TableRewrites = map[string]string{"big": "big_copy"}
	}
	if c.loadData {
		// BIT columns go through the INSERT writer; a copy of the type matrix without them goes
		// through LOAD DATA.
		must(t, source.Exec(ctx, "CREATE TABLE "+srcDB+".types_nobit LIKE "+srcDB+".types",
			"ALTER TABLE "+srcDB+".types_nobit DROP COLUMN b1, DROP COLUMN b64",
			"SET SESSION sql_mode = ''; INSERT INTO "+srcDB+".types_nobit ("+noBits(typeColumns)+") SELECT "+noBits(typeColumns)+" FROM "+srcDB+".types"))
	}
	cfg.CreateTargetTables = true
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+dstDB))

	load := startLoad(t, source, srcDB, c.seed, 3, c.bigRows)
	time.Sleep(200 * time.Millisecond) // changes before the copy starts are in the tables, not the stream

	f, err := ferry.New(cfg)
	must(t, err)
	defer f.Close()
	must(t, f.Initialize(ctx))
	must(t, f.Start(ctx))
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()

	// One change of the multi-megabyte row goes through the binlog path too.
	must(t, source.Exec(ctx, "UPDATE "+srcDB+".types SET lb = CONCAT(lb, x'01'), vc = 'big row updated' WHERE id = 4"))
	if c.killDump {
		killBinlogDump(t, ctx)
	}
	cut := &ferry.Cutover{Ferry: f, Hooks: ferry.HookFuncs{
		LockFunc: func(context.Context) error { load.stop(); return nil },
	}}
	rep, err := cut.Run(ctx)
	must(t, err)
	must(t, <-runErr)
	t.Logf("load: %d transactions (%d unexpected errors, first: %v); cut-over blocked writes for %s",
		load.ops.Load(), load.errs.Load(), load.first.Load(), rep.Blocked)
	if load.ops.Load() < 50 {
		t.Errorf("the write load ran only %d transactions during the copy; the test did not exercise the race", load.ops.Load())
	}

	where := func(table string) string {
		if c.filter == nil {
			return ""
		}
		return "tenant = 1"
	}
	tables := []string{"types", "composite", "strkey", "big"}
	if c.loadData {
		tables = append(tables, "types_nobit")
	}
	for _, tb := range tables {
		dst := tb
		if c.rewrite && tb == "big" {
			dst = "big_copy"
		}
		w := where(tb)
		if strings.HasPrefix(tb, "types") {
			w = ""
		}
		n := assertSameRows(t, srcDB+"."+tb, w, dstDB+"."+dst)
		if n == 0 {
			t.Errorf("%s: no rows compared", tb)
		}
	}
}

func sanitize(s string) string {
	out := []byte{}
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			out = append(out, c)
		}
	}
	if len(out) > 30 {
		out = out[len(out)-30:]
	}
	return string(out)
}

// killBinlogDump waits for the streamer's dump connection and kills it on the server.
func killBinlogDump(t *testing.T, ctx context.Context) {
	db, err := source.DB("")
	must(t, err)
	defer db.Close()
	for i := 0; i < 200; i++ {
		var id int64
		err := db.QueryRowContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump' LIMIT 1").Scan(&id)
		if err == nil {
			time.Sleep(300 * time.Millisecond)
			_, err = db.ExecContext(ctx, fmt.Sprintf("KILL %d", id))
			must(t, err)
			t.Logf("killed binlog dump connection %d", id)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no binlog dump connection appeared")
}

func TestCopyUnderConcurrentWrites(t *testing.T) {
	seeds := []int64{1, 2}
	if testing.Short() {
		seeds = seeds[:1]
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			runCopy(t, copyCase{seed: seed, bigRows: 100_000, batch: 500})
		})
	}
}

func TestCopyWithFilterAndRewrites(t *testing.T) {
	runCopy(t, copyCase{seed: 3, bigRows: 30_000, batch: 300, rewrite: true, filter: ferry.ColumnEquals{Column: "tenant", Value: 1}})
}

func TestStreamerReconnectsAfterKill(t *testing.T) {
	runCopy(t, copyCase{seed: 4, bigRows: 30_000, batch: 200, killDump: true})
}

func TestCopyWithLoadDataWriter(t *testing.T) {
	runCopy(t, copyCase{seed: 5, bigRows: 30_000, batch: 500, loadData: true})
}

func noBits(cols string) string {
	return strings.ReplaceAll(cols, "b1, b64, ", "")
}
