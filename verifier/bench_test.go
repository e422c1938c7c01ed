package verifier_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/verifier"
)

// Benchmarks against the shared sandbox servers. Tables are filled by the servers themselves
// (MariaDB's sequence engine) with the binary log off for the session, so a large table neither takes
// long to build nor fills the disk with binlog.
//
//	go test -run NONE -bench . -benchtime 3x ./verifier/
//	FERRY_BENCH_ROWS=1000000 go test -run NONE -bench 'Verify' -benchtime 1x ./verifier/

var (
	benchMu     sync.Mutex
	benchTables = map[int]*schema.Table{}
)

// benchOrders returns an orders-like table of n identical rows on both servers, built once per size.
func benchOrders(b *testing.B, n int) *schema.Table {
	b.Helper()
	benchMu.Lock()
	defer benchMu.Unlock()
	if t := benchTables[n]; t != nil {
		return t
	}
	db := fmt.Sprintf("bench_orders_%d", n)
	stmts := []string{
		"SET SESSION sql_log_bin = 0",
		"DROP DATABASE IF EXISTS " + db,
		"CREATE DATABASE " + db,
		"CREATE TABLE " + db + `.orders (
			id BIGINT NOT NULL PRIMARY KEY,
			customer_id INT NOT NULL,
			status VARCHAR(16) NOT NULL,
			amount DECIMAL(12,2) NOT NULL,
			weight DOUBLE,
			note VARCHAR(64),
			created_at DATETIME(6) NOT NULL,
			KEY (customer_id))`,
		"INSERT INTO " + db + ".orders SELECT seq, seq % 9973, ELT(1 + seq % 4, 'new', 'paid', 'shipped', 'returned'), " +
			"(seq % 100000) / 100, seq / 7, IF(seq % 10 = 0, NULL, CONCAT('note ', seq)), " +
			"'2026-01-01' + INTERVAL seq SECOND FROM " + db + ".seq_1_to_" + strconv.Itoa(n),
	}
	for _, s := range []interface {
		Exec(context.Context, ...string) error
	}{srcSrv, tgtSrv} {
		if err := s.Exec(context.Background(), stmts...); err != nil {
			b.Fatal(err)
		}
	}
	t := load(b, db, "orders")
	benchTables[n] = t
	return t
}

func benchRows() int {
	if n, err := strconv.Atoi(os.Getenv("FERRY_BENCH_ROWS")); err == nil && n > 0 {
		return n
	}
	return 100000
}

// BenchmarkVerify reports each verifier's rows/s over an identical orders table (default 100k rows;
// FERRY_BENCH_ROWS sets it).
func BenchmarkVerify(b *testing.B) {
	n := benchRows()
	tbl := benchOrders(b, n)
	pairs := []verifier.TablePair{{Source: tbl}}
	ctx := context.Background()
	run := func(b *testing.B, v verifier.Verifier, phase verifier.Phase) {
		for b.Loop() {
			res, err := v.Verify(ctx, phase, pairs)
			if err != nil {
				b.Fatal(err)
			}
			if !res.Match() {
				b.Fatal(res)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	}
	b.Run("checksum", func(b *testing.B) {
		run(b, &verifier.Checksum{Source: srcDB, Target: tgtDB}, verifier.DuringCutover)
	})
	b.Run("checksum-chunk5000", func(b *testing.B) {
		run(b, &verifier.Checksum{Source: srcDB, Target: tgtDB, ChunkSize: 5000}, verifier.DuringCutover)
	})
	b.Run("rowdiff", func(b *testing.B) {
		run(b, &verifier.Differ{Source: srcDB, Target: tgtDB}, verifier.DuringCutover)
	})
	b.Run("checksum-table", func(b *testing.B) {
		run(b, &verifier.ChecksumTable{Source: srcDB, Target: tgtDB}, verifier.DuringCutover)
	})
	b.Run("inline-before-cutover", func(b *testing.B) {
		v := &verifier.Inline{Source: srcDB, Target: tgtDB}
		copyRows(b, v, tbl, "")
		b.ResetTimer()
		run(b, v, verifier.BeforeCutover)
	})
}

// BenchmarkInlineDuringCutover: the inline DuringCutover pass after 1,000 rows changed, on tables of
// 100k and 1M rows. Its time must not grow with the table (it reads only the changed keys).
func BenchmarkInlineDuringCutover(b *testing.B) {
	sizes := []int{100000, 1000000}
	if testing.Short() {
		sizes = []int{10000, 100000}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			tbl := benchOrders(b, n)
			pairs := []verifier.TablePair{{Source: tbl}}
			ctx := context.Background()
			v := &verifier.Inline{Source: srcDB, Target: tgtDB}
			copyRows(b, v, tbl, "")
			if _, err := v.Verify(ctx, verifier.BeforeCutover, pairs); err != nil {
				b.Fatal(err)
			}
			var total time.Duration
			for b.Loop() {
				b.StopTimer()
				for i := 0; i < 1000; i++ {
					v.RowChanged(tbl, []any{int64(1 + i*(n/1000))})
				}
				b.StartTimer()
				start := time.Now()
				res, err := v.Verify(ctx, verifier.DuringCutover, pairs)
				total += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				if !res.Match() || res.Tables[0].RowsCompared != 1000 {
					b.Fatal(res)
				}
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/pass")
		})
	}
}
