package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

const ordersDDL = `CREATE TABLE %s (
  id BIGINT NOT NULL,
  customer_id INT NOT NULL,
  status TINYINT NOT NULL,
  quantity INT NULL,
  title VARCHAR(120) NOT NULL,
  note VARCHAR(255) NULL,
  amount DECIMAL(12,2) NOT NULL,
  created_at DATETIME(6) NOT NULL,
  updated_at DATETIME(6) NULL,
  attrs JSON NULL,
  payload BLOB NULL,
  PRIMARY KEY (id),
  KEY idx_customer (customer_id, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`

const narrowDDL = `CREATE TABLE %s (
  id BIGINT NOT NULL,
  n INT NOT NULL,
  s VARCHAR(32) NOT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`

const ordersCols = 11

var words = []string{"order", "parcel", "café", "naïve", "Straße", "東京", "配送", "данные", "доставка", "🚚", "ürün", "crème", "brûlée", "São", "Paulo", "Kraków", "smörgås", "ευχαριστώ", "shipping", "express", "gift", "wrap", "return"}

func sentence(rng *rand.Rand, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[rng.Intn(len(words))])
	}
	return b.String()
}

var baseTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// orderRow returns the values of one orders row; about a tenth of the nullable columns are NULL.
func orderRow(rng *rand.Rand, id int64) []any {
	created := baseTime.Add(time.Duration(id)*37*time.Second + time.Duration(rng.Intn(1e6))*time.Microsecond)
	var quantity, note, updated, attrs, payload any
	if rng.Intn(10) != 0 {
		quantity = rng.Intn(50) + 1
	}
	if rng.Intn(10) != 0 {
		note = sentence(rng, 8+rng.Intn(8))
	}
	if rng.Intn(10) != 0 {
		updated = created.Add(time.Duration(rng.Intn(86400e6)) * time.Microsecond).Format("2006-01-02 15:04:05.000000")
	}
	if rng.Intn(10) != 0 {
		attrs = fmt.Sprintf(`{"sku": "SKU-%06d", "tags": ["%s", "%s"], "weight": %d.%02d, "gift": %t, "city": "%s"}`,
			rng.Intn(1e6), words[rng.Intn(len(words))], words[rng.Intn(len(words))], rng.Intn(40), rng.Intn(100), rng.Intn(2) == 0, words[rng.Intn(len(words))])
	}
	if rng.Intn(10) != 0 {
		p := make([]byte, 32+rng.Intn(64))
		rng.Read(p)
		payload = p
	}
	return []any{id, rng.Intn(100000), rng.Intn(6), quantity, sentence(rng, 3+rng.Intn(4)), note,
		fmt.Sprintf("%d.%02d", rng.Intn(100000), rng.Intn(100)), created.Format("2006-01-02 15:04:05.000000"), updated, attrs, payload}
}

func narrowRow(rng *rand.Rand, id int64) []any {
	return []any{id, rng.Int31(), fmt.Sprintf("n-%d-%s", id, words[rng.Intn(len(words))])}
}

func placeholders(cols, rows int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	return strings.TrimSuffix(strings.Repeat(one+",", rows), ",")
}

// generate fills table (ids 1..rows) with multi-row INSERTs over `workers` connections, without
// writing the binlog (the rows exist before any measured run starts).
func generate(ctx context.Context, db *sql.DB, table string, rows int64, cols int, row func(*rand.Rand, int64) []any, workers int) error {
	const per = 1000
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for w := 0; w < workers; w++ {
		rng := rand.New(rand.NewSource(int64(w) + 1))
		g.Go(func() error {
			conn, err := db.Conn(gctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			if _, err := conn.ExecContext(gctx, "SET SESSION sql_log_bin = 0"); err != nil {
				return err
			}
			full := "INSERT INTO " + table + " VALUES " + placeholders(cols, per)
			for {
				lo := next.Add(per) - per + 1
				if lo > rows {
					return nil
				}
				hi := min(lo+per-1, rows)
				q := full
				if hi-lo+1 != per {
					q = "INSERT INTO " + table + " VALUES " + placeholders(cols, int(hi-lo+1))
				}
				args := make([]any, 0, int(hi-lo+1)*cols)
				for id := lo; id <= hi; id++ {
					args = append(args, row(rng, id)...)
				}
				if _, err := conn.ExecContext(gctx, q, args...); err != nil {
					return fmt.Errorf("generate %s: %w", table, err)
				}
			}
		})
	}
	return g.Wait()
}

// loadGen issues a steady rate of single-statement autocommit writes on the source's orders-like
// table: half UPDATEs of a random existing row, a quarter INSERTs of new rows (keys above the
// generated ones), a quarter DELETEs of a random row. Pause/Resume are the cut-over "lock": Pause
// returns once no write is in flight.
type loadGen struct {
	db      *sql.DB
	table   string
	rate    float64
	maxID   int64
	nextID  atomic.Int64
	ops     atomic.Int64
	errs    atomic.Int64
	firstMu sync.Mutex
	first   error
	// latencies of the successful writes (the application's view of a migration)
	latMu sync.Mutex
	lat   []time.Duration

	mu     sync.Mutex
	paused bool
	cond   *sync.Cond
	inFl   sync.WaitGroup

	cancel context.CancelFunc
	done   sync.WaitGroup
	start  time.Time
}

// loadKeyBlocks hands every load generator of the process its own block of new keys.
var loadKeyBlocks atomic.Int64

// startLoad starts the mixed load on table (existing keys 1..maxID). Its INSERTs take keys from a
// block of 10M keys above maxID that no other load generator of this benchmark process uses, so
// a section may run the load any number of times on the same table without a duplicate key.
func startLoad(db *sql.DB, table string, rate float64, maxID int64, workers int) *loadGen {
	return startLoadFrom(db, table, rate, maxID, maxID+10_000_000*loadKeyBlocks.Add(1), workers)
}

// startLoadFrom is startLoad with the inserted keys starting above newIDs (a run that follows
// another on the same table must not insert its keys again).
func startLoadFrom(db *sql.DB, table string, rate float64, maxID, newIDs int64, workers int) *loadGen {
	ctx, cancel := context.WithCancel(context.Background())
	l := &loadGen{db: db, table: table, rate: rate, maxID: maxID, cancel: cancel, start: time.Now()}
	l.cond = sync.NewCond(&l.mu)
	l.nextID.Store(newIDs)
	tokens := make(chan struct{}, workers*4)
	l.done.Add(1)
	go func() { // pacing: a token per write, at the configured rate
		defer l.done.Done()
		defer close(tokens)
		if rate <= 0 {
			return
		}
		interval := time.Duration(float64(time.Second) / rate)
		next := time.Now()
		for ctx.Err() == nil {
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			select {
			case tokens <- struct{}{}:
			case <-ctx.Done():
				return
			default: // writers are behind: drop the token rather than bursting later
			}
		}
	}()
	for w := 0; w < workers; w++ {
		rng := rand.New(rand.NewSource(int64(w) + 1000))
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			for range tokens {
				l.mu.Lock()
				for l.paused {
					l.cond.Wait()
				}
				l.inFl.Add(1)
				l.mu.Unlock()
				began := time.Now()
				err := l.one(ctx, rng)
				took := time.Since(began)
				l.inFl.Done()
				if err != nil && ctx.Err() == nil {
					l.errs.Add(1)
					l.firstMu.Lock()
					if l.first == nil {
						l.first = err
					}
					l.firstMu.Unlock()
				} else if err == nil {
					l.ops.Add(1)
					l.latMu.Lock()
					l.lat = append(l.lat, took)
					l.latMu.Unlock()
				}
			}
		}()
	}
	return l
}

func (l *loadGen) one(ctx context.Context, rng *rand.Rand) error {
	var err error
	switch r := rng.Intn(4); {
	case r <= 1:
		id := 1 + rng.Int63n(l.maxID)
		_, err = l.db.ExecContext(ctx, "UPDATE "+l.table+" SET quantity = ?, note = ?, updated_at = NOW(6), attrs = JSON_SET(COALESCE(attrs, '{}'), '$.touched', ?) WHERE id = ?",
			rng.Intn(100), sentence(rng, 6), rng.Intn(1000), id)
	case r == 2:
		id := l.nextID.Add(1)
		_, err = l.db.ExecContext(ctx, "INSERT INTO "+l.table+" (id, customer_id, status, quantity, title, note, amount, created_at, updated_at, attrs, payload) VALUES "+placeholders(ordersCols, 1), orderRow(rng, id)...)
	default:
		id := 1 + rng.Int63n(l.maxID)
		_, err = l.db.ExecContext(ctx, "DELETE FROM "+l.table+" WHERE id = ?", id)
	}
	return err
}

// Pause stops issuing writes and waits for the in-flight ones: the cut-over's lock.
func (l *loadGen) Pause() {
	l.mu.Lock()
	l.paused = true
	l.mu.Unlock()
	l.inFl.Wait()
}

func (l *loadGen) Resume() {
	l.mu.Lock()
	l.paused = false
	l.cond.Broadcast()
	l.mu.Unlock()
}

// Latency returns the p-th percentile of the successful writes' latencies so far.
func (l *loadGen) Latency(p float64) time.Duration {
	l.latMu.Lock()
	defer l.latMu.Unlock()
	return percentile(l.lat, p)
}

// Stop ends the load; it returns the achieved writes/s and the first error, if any.
func (l *loadGen) Stop() (float64, error) {
	l.Resume()
	l.cancel()
	l.done.Wait()
	el := time.Since(l.start).Seconds()
	l.firstMu.Lock()
	defer l.firstMu.Unlock()
	return float64(l.ops.Load()) / el, l.first
}
