package test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry/sandbox"
)

// writeLoad runs random INSERT/UPDATE/DELETE transactions against the test tables until stopped:
// primary-key updates, deletes of rows anywhere in the key space (so also rows not yet copied),
// unique-value swaps between two rows inside one transaction, and rows rewritten with other rows'
// values of every type.
type writeLoad struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ops    atomic.Int64
	errs   atomic.Int64
	first  atomic.Value
}

func startLoad(t testing.TB, s *sandbox.Server, db string, seed int64, workers int, bigRows int) *writeLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &writeLoad{cancel: cancel}
	pool, err := s.DB(db)
	must(t, err)
	pool.SetMaxOpenConns(workers + 1)
	for w := 0; w < workers; w++ {
		rng := rand.New(rand.NewSource(seed*100 + int64(w)))
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			// At most ~150 transactions/s per worker: a load the apply can keep up with even under
			// the race detector on a busy 2-core machine (an unbounded load would never let the
			// cut-over see a caught-up binlog).
			tick := time.NewTicker(time.Second / 150)
			defer tick.Stop()
			for ctx.Err() == nil {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if err := l.one(ctx, pool, rng, bigRows); err != nil && ctx.Err() == nil {
					l.errs.Add(1)
					l.first.CompareAndSwap(nil, err.Error())
				}
				l.ops.Add(1)
			}
		}()
	}
	t.Cleanup(func() { l.stop(); pool.Close() })
	return l
}

// stop ends the load and waits for in-flight transactions to finish: the test's "lock".
func (l *writeLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

func (l *writeLoad) one(ctx context.Context, db *sql.DB, rng *rand.Rand, bigRows int) error {
	tx, err := db.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		return err
	}
	n := 1 + rng.Intn(3)
	for i := 0; i < n; i++ {
		if err := l.statement(tx, rng, bigRows); err != nil {
			tx.Rollback()
			if isExpected(err) {
				return nil
			}
			return err
		}
	}
	return tx.Commit()
}

func randomBigID(rng *rand.Rand, bigRows int) int {
	return rng.Intn(bigRows+bigRows/5) - bigRows/10
}

func (l *writeLoad) statement(tx *sql.Tx, rng *rand.Rand, bigRows int) error {
	exec := func(q string, args ...any) error {
		_, err := tx.Exec(q, args...)
		return err
	}
	switch op := rng.Intn(20); op {
	case 0, 1, 2:
		return exec("UPDATE big SET payload = ?, amount = amount + 1 WHERE id = ?", fmt.Sprintf("upd %d ✓", rng.Int()), randomBigID(rng, bigRows))
	case 3:
		return exec("DELETE FROM big WHERE id = ?", randomBigID(rng, bigRows))
	case 4:
		id := randomBigID(rng, bigRows)
		return exec("INSERT INTO big VALUES (?, ?, ?, 'ins', 1.5)", id, 10_000_000+rng.Intn(1e8), rng.Intn(4))
	case 5: // primary-key update
		return exec("UPDATE big SET id = ? WHERE id = ?", randomBigID(rng, bigRows)+bigRows*2, randomBigID(rng, bigRows))
	case 6: // swap unique values of two rows inside one transaction
		a, b := randomBigID(rng, bigRows), randomBigID(rng, bigRows)
		var ua, ub int
		if err := tx.QueryRow("SELECT u FROM big WHERE id = ? FOR UPDATE", a).Scan(&ua); err != nil {
			return nil
		}
		if err := tx.QueryRow("SELECT u FROM big WHERE id = ? FOR UPDATE", b).Scan(&ub); err != nil || a == b {
			return nil
		}
		tmp := -1 - rng.Intn(1e9)
		if err := exec("UPDATE big SET u = ? WHERE id = ?", tmp, a); err != nil {
			return err
		}
		if err := exec("UPDATE big SET u = ? WHERE id = ?", ua, b); err != nil {
			return err
		}
		return exec("UPDATE big SET u = ? WHERE id = ?", ub, a)
	case 7, 8:
		return exec("UPDATE composite SET c = ?, payload = CONCAT('u', ?) WHERE a = ? AND b LIKE ?", rng.Int63(), rng.Intn(100), rng.Intn(100)-50, words[rng.Intn(len(words))]+"%")
	case 9: // key update to a collation-equal value with different bytes, or a new key
		if rng.Intn(2) == 0 {
			return exec("UPDATE composite SET b = UPPER(b) WHERE a = ? LIMIT 1", rng.Intn(100)-50)
		}
		return exec("UPDATE composite SET a = a + 1000 WHERE a = ? LIMIT 1", rng.Intn(100)-50)
	case 10:
		return exec("DELETE FROM composite WHERE a = ? LIMIT 2", rng.Intn(100)-50)
	case 11:
		return exec("INSERT INTO composite VALUES (?, ?, ?, ?, 'new')", rng.Intn(200)-100, keyWord(rng, rng.Intn(80)), rng.Int63(), rng.Intn(4))
	case 12:
		return exec("UPDATE strkey SET v = v + 1 WHERE k LIKE ? LIMIT 3", words[rng.Intn(len(words))]+"%")
	case 13:
		return exec("DELETE FROM strkey WHERE k LIKE ? LIMIT 1", words[rng.Intn(len(words))]+"%")
	case 14:
		return exec("INSERT INTO strkey VALUES (?, ?, ?, ?)", keyWord(rng, rng.Intn(5000))+"-n", rng.Intn(100), rng.Intn(4), 100_000+rng.Intn(1e8))
	case 15: // swap unique values in strkey
		if err := exec("UPDATE strkey SET u = -u - 1 WHERE u IN (?, ?)", rng.Intn(3000), rng.Intn(3000)); err != nil {
			return err
		}
		return exec("UPDATE strkey SET u = -u - 1 WHERE u < 0 AND u > -4000")
	case 16: // rewrite a type row with another row's values
		src, dst := typeRowID(rng, len(typeRows)), typeRowID(rng, len(typeRows)+20)
		return exec("REPLACE INTO types ("+typeColumns+") SELECT ?, "+typeColumns[4:]+" FROM types WHERE id = ?", dst, src)
	case 17:
		return exec("DELETE FROM types WHERE id = ?", len(typeRows)+1+rng.Intn(20))
	case 18:
		return exec("UPDATE types SET tm = ?, ts = ?, j = JSON_SET(IFNULL(j,'{}'), '$.k', ?), e = ?, st = ?, b64 = ? WHERE id = ?",
			fmt.Sprintf("-%02d:%02d:%02d.%06d", rng.Intn(800), rng.Intn(60), rng.Intn(60), rng.Intn(1e6)),
			time.Unix(int64(1e9+rng.Intn(1e9)), 0).UTC().Format("2006-01-02 15:04:05.000000"),
			rng.Float64(), []string{"a", "b", "c"}[rng.Intn(3)], []string{"", "x", "y,z"}[rng.Intn(3)], rng.Uint64(), typeRowID(rng, len(typeRows)+20))
	default:
		return exec("UPDATE big SET tenant = ? WHERE id = ?", rng.Intn(4), randomBigID(rng, bigRows))
	}
}

func isExpected(err error) bool {
	s := err.Error()
	for _, code := range []string{"Error 1062", "Error 1213", "Error 1205", "Error 1292"} {
		if len(s) >= len(code) && s[:len(code)] == code {
			return true
		}
	}
	return false
}

// typeRowID picks a row of the types table other than 4, the row with the multi-megabyte blob: the
// test updates that one once, so the binlog stays small.
func typeRowID(rng *rand.Rand, n int) int {
	for {
		if id := 1 + rng.Intn(n); id != 4 {
			return id
		}
	}
}
