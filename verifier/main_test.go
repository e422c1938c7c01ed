package verifier_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry/sandbox"
	"github.com/ferrykit/ferry/schema"
)

// Two real servers shared by every test: srcDB plays the source, tgtDB the target. Each test works in
// its own databases.
var (
	srcSrv, tgtSrv *sandbox.Server
	srcDB, tgtDB   *sql.DB
	dbCounter      atomic.Int64
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var errS, errT error
	wg.Add(2)
	go func() { defer wg.Done(); srcSrv, errS = sandbox.Start(ctx, sandbox.Options{}) }()
	go func() { defer wg.Done(); tgtSrv, errT = sandbox.Start(ctx, sandbox.Options{}) }()
	wg.Wait()
	defer func() {
		for _, s := range []*sandbox.Server{srcSrv, tgtSrv} {
			if s == nil {
				continue
			}
			if !s.Running() { // keep the evidence: Stop removes the server's directory
				log, _ := os.ReadFile(filepath.Join(s.Dir, "error.log"))
				if len(log) > 6000 {
					log = log[len(log)-6000:]
				}
				fmt.Fprintf(os.Stderr, "verifier tests: server on port %d died:\n%s\n", s.Port, log)
			}
			s.Stop()
		}
	}()
	if errS != nil || errT != nil {
		fmt.Fprintln(os.Stderr, "verifier tests: start sandbox servers:", errS, errT)
		return 1
	}
	srcDB, _ = srcSrv.DB("")
	tgtDB, _ = tgtSrv.DB("")
	defer srcDB.Close()
	defer tgtDB.Close()
	return m.Run()
}

var nonWord = regexp.MustCompile(`[^A-Za-z0-9]+`)

// newDatabase creates a fresh database with the same name on both servers.
func newDatabase(t testing.TB) string {
	t.Helper()
	name := strings.ToLower(nonWord.ReplaceAllString(t.Name(), "_"))
	if len(name) > 40 {
		name = name[:40]
	}
	name = fmt.Sprintf("%s_%d", name, dbCounter.Add(1))
	execBoth(t, "CREATE DATABASE "+schema.QuoteIdent(name))
	return name
}

func execOn(t testing.TB, db *sql.DB, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// execBoth runs the statements on both servers: the "copy" of these tests is the same SQL on both.
func execBoth(t testing.TB, stmts ...string) {
	t.Helper()
	execOn(t, srcDB, stmts...)
	execOn(t, tgtDB, stmts...)
}

func load(t testing.TB, db, table string) *schema.Table {
	t.Helper()
	tbl, err := schema.Load(context.Background(), srcDB, db, table)
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}
