// Command demo shows ferry end to end on this machine: it starts two MariaDB sandbox servers,
// creates a sample shop (200k+ rows of varied types), runs a write load against the source, runs
// examples/copydb to copy the shop to the target with an automatic read_only cut-over, compares
// every row of both servers with its own code, and prints a summary. `make demo` runs it.
package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/ferrykit/ferry/sandbox"
)

func main() {
	copydb := flag.String("copydb", "bin/copydb", "path to the copydb binary")
	orders := flag.Int("orders", 200_000, "rows in shop.orders")
	rate := flag.Int("writes", 300, "write transactions per second on the source during the copy")
	flag.Parse()
	if err := run(*copydb, *orders, *rate); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run(copydb string, orders, rate int) error {
	ctx := context.Background()
	step("starting two MariaDB sandbox servers")
	src, err := sandbox.Start(ctx, sandbox.Options{BufferPool: "256M"})
	if err != nil {
		return err
	}
	defer src.Stop()
	dst, err := sandbox.Start(ctx, sandbox.Options{BufferPool: "256M"})
	if err != nil {
		return err
	}
	defer dst.Stop()
	fmt.Printf("    source 127.0.0.1:%d, target 127.0.0.1:%d\n", src.Port, dst.Port)

	step("creating the sample schema (shop: customers, products, orders with %d rows)", orders)
	if err := createShop(ctx, src, orders); err != nil {
		return err
	}
	// The application's account: read_only stops it (root would not be stopped).
	if err := src.Exec(ctx, "CREATE USER app@'127.0.0.1' IDENTIFIED BY 'app-secret'", "GRANT SELECT, INSERT, UPDATE, DELETE ON shop.* TO app@'127.0.0.1'"); err != nil {
		return err
	}

	step("starting a write load of ~%d transactions/s on the source", rate)
	load := startLoad(src, orders, rate)

	step("running copydb with -cutover read-only -verify checksum (every row before the lock, changed rows under it)")
	sumFile := filepath.Join(os.TempDir(), fmt.Sprintf("ferry-demo-summary-%d.json", os.Getpid()))
	defer os.Remove(sumFile)
	cmd := exec.CommandContext(ctx, copydb,
		"-source-host", "127.0.0.1", "-source-port", fmt.Sprint(src.Port), "-source-user", "root",
		"-target-host", "127.0.0.1", "-target-port", fmt.Sprint(dst.Port), "-target-user", "root",
		"-databases", "shop", "-create-tables", "-cutover", "read-only", "-verify", "checksum",
		"-log-level", "warn", "-progress", "2s", "-summary-json", sumFile)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	started := time.Now()
	copyErr := cmd.Run()
	elapsed := time.Since(started)
	load.stop()
	if copyErr != nil {
		return fmt.Errorf("copydb failed: %w", copyErr)
	}
	var sum struct {
		Rows          int64   `json:"rows_copied"`
		RowsPerSecond float64 `json:"rows_per_second"`
		EventsApplied int64   `json:"events_applied"`
		BlockedMS     float64 `json:"write_blocked_ms"`
		Cutover       bool    `json:"cut_over"`
	}
	b, err := os.ReadFile(sumFile)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		return err
	}

	step("comparing every row of both servers (the demo's own comparison, not ferry's)")
	tables := []string{"customers", "products", "orders"}
	var compared int
	var mismatches []string
	for _, t := range tables {
		n, diff, err := compare(ctx, src, dst, "shop."+t)
		if err != nil {
			return err
		}
		compared += n
		if diff != "" {
			mismatches = append(mismatches, diff)
		}
	}
	result := "IDENTICAL"
	if len(mismatches) > 0 {
		result = "DIFFERENT: " + strings.Join(mismatches, "; ")
	}
	fmt.Printf(`
ferry demo summary
  rows copied            %d (%d tables)
  copy + cut-over time   %s
  copy rate              %.0f rows/s
  binlog events applied  %d
  writes during the copy %d committed, %d refused by read_only at cut-over
  write-blocked window   %.1f ms
  rows compared          %d
  result                 %s
`, sum.Rows, len(tables), elapsed.Round(time.Millisecond), sum.RowsPerSecond, sum.EventsApplied,
		load.ok.Load(), load.refused.Load(), sum.BlockedMS, compared, result)
	if len(mismatches) > 0 || !sum.Cutover {
		return errors.New("the copy is not identical")
	}
	return nil
}

func createShop(ctx context.Context, s *sandbox.Server, orders int) error {
	if err := s.Exec(ctx,
		"CREATE DATABASE shop",
		`CREATE TABLE shop.customers (id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, email VARCHAR(120) NOT NULL UNIQUE,
			name VARCHAR(100) CHARACTER SET utf8mb4, country CHAR(2), created_at DATETIME(6) NOT NULL, vip BIT(1), notes TEXT)`,
		`CREATE TABLE shop.products (sku VARCHAR(32) NOT NULL PRIMARY KEY, title VARCHAR(200) CHARACTER SET utf8mb4,
			price DECIMAL(10,2) NOT NULL, weight FLOAT, tags SET('new','sale','eco'), attrs JSON)`,
		`CREATE TABLE shop.orders (id BIGINT NOT NULL PRIMARY KEY, customer_id INT UNSIGNED NOT NULL, sku VARCHAR(32) NOT NULL,
			qty SMALLINT NOT NULL, total DECIMAL(12,2) NOT NULL, status ENUM('new','paid','shipped','cancelled') NOT NULL,
			placed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), note VARCHAR(255) CHARACTER SET utf8mb4, receipt BLOB,
			total_cents BIGINT AS (total * 100) VIRTUAL, KEY (customer_id))`,
	); err != nil {
		return err
	}
	rng := rand.New(rand.NewSource(42))
	names := []string{"Zoë", "José", "Ødegaard", "李雷", "Алёна", "Siobhán", "Nguyễn", "O'Brien", "Müller", "🙂 Sam"}
	var vals []string
	for i := 1; i <= 20000; i++ {
		vals = append(vals, fmt.Sprintf("(%d, 'c%d@example.com', '%s %d', '%s', '2024-01-01 00:00:00' + INTERVAL %d SECOND, b'%d', %s)",
			i, i, strings.ReplaceAll(names[rng.Intn(len(names))], "'", "''"), i, []string{"DE", "FR", "US", "JP", "BR"}[rng.Intn(5)], rng.Intn(3e7), rng.Intn(2),
			[]string{"NULL", "''", "'likes tea ☕'"}[rng.Intn(3)]))
	}
	if err := insertChunks(ctx, s, "INSERT INTO shop.customers VALUES ", vals); err != nil {
		return err
	}
	vals = vals[:0]
	for i := 0; i < 1000; i++ {
		vals = append(vals, fmt.Sprintf("('SKU-%05d', 'Product %d — édition n°%d', %d.%02d, %g, '%s', '{\"color\": \"%s\", \"size\": %d, \"ratio\": 1.0}')",
			i, i, rng.Intn(9), 1+rng.Intn(500), rng.Intn(100), float32(rng.Float64()*10), []string{"", "new", "sale,eco"}[rng.Intn(3)],
			[]string{"red", "blue", "green"}[rng.Intn(3)], rng.Intn(50)))
	}
	if err := insertChunks(ctx, s, "INSERT INTO shop.products VALUES ", vals); err != nil {
		return err
	}
	vals = vals[:0]
	for i := 1; i <= orders; i++ {
		vals = append(vals, fmt.Sprintf("(%d, %d, 'SKU-%05d', %d, %d.%02d, '%s', '2025-01-01' + INTERVAL %d SECOND, %s, %s, DEFAULT)",
			i, 1+rng.Intn(20000), rng.Intn(1000), 1+rng.Intn(5), rng.Intn(2000), rng.Intn(100), []string{"new", "paid", "shipped", "cancelled"}[rng.Intn(4)],
			rng.Intn(3e7), []string{"NULL", "'gift 🎁'", "'leave at door'"}[rng.Intn(3)], []string{"NULL", "x'00FF00FF'", "RANDOM_BYTES(16)"}[rng.Intn(3)]))
	}
	return insertChunks(ctx, s, "INSERT INTO shop.orders VALUES ", vals)
}

func insertChunks(ctx context.Context, s *sandbox.Server, head string, vals []string) error {
	for i := 0; i < len(vals); i += 5000 {
		j := min(i+5000, len(vals))
		if err := s.Exec(ctx, head+strings.Join(vals[i:j], ",")); err != nil {
			return err
		}
	}
	return nil
}

type load struct {
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	ok, refused atomic.Int64
}

func (l *load) stop() { l.cancel(); l.wg.Wait() }

// startLoad runs rate transactions per second as the app user: new orders, status updates, deletes,
// customer renames. It stops by itself when read_only refuses its writes (the cut-over).
func startLoad(s *sandbox.Server, orders, rate int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = "app", "app-secret", "tcp", fmt.Sprintf("127.0.0.1:%d", s.Port), "shop"
	cfg.InterpolateParams = true
	db, _ := sql.Open("mysql", cfg.FormatDSN())
	const workers = 4
	var nextID atomic.Int64
	nextID.Store(int64(orders) + 1)
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go func(w int) {
			defer l.wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			tick := time.NewTicker(time.Second * workers / time.Duration(rate))
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				var err error
				switch rng.Intn(6) {
				case 0, 1:
					_, err = db.Exec("INSERT INTO orders (id, customer_id, sku, qty, total, status, note) VALUES (?, ?, ?, ?, ?, 'new', ?)",
						nextID.Add(1), 1+rng.Intn(20000), fmt.Sprintf("SKU-%05d", rng.Intn(1000)), 1+rng.Intn(5), float64(rng.Intn(100000))/100, "live ✓")
				case 2, 3:
					_, err = db.Exec("UPDATE orders SET status = ?, total = total + 1 WHERE id = ?", []string{"paid", "shipped"}[rng.Intn(2)], 1+rng.Intn(orders))
				case 4:
					_, err = db.Exec("DELETE FROM orders WHERE id = ?", 1+rng.Intn(orders))
				default:
					_, err = db.Exec("UPDATE customers SET name = CONCAT(name, '·') WHERE id = ?", 1+rng.Intn(20000))
				}
				var me *mysql.MySQLError
				switch {
				case err == nil:
					l.ok.Add(1)
				case errors.As(err, &me) && (me.Number == 1290 || me.Number == 1836):
					l.refused.Add(1)
				}
			}
		}(w)
	}
	go func() { <-ctx.Done(); l.wg.Wait(); db.Close() }()
	return l
}

// compare reads both tables in key order as raw bytes and reports the first difference.
func compare(ctx context.Context, a, b *sandbox.Server, table string) (int, string, error) {
	ra, err := dump(ctx, a, table)
	if err != nil {
		return 0, "", err
	}
	rb, err := dump(ctx, b, table)
	if err != nil {
		return 0, "", err
	}
	if len(ra) != len(rb) {
		return len(ra), fmt.Sprintf("%s: %d rows on the source, %d on the target", table, len(ra), len(rb)), nil
	}
	for i := range ra {
		if !bytes.Equal(ra[i], rb[i]) {
			return len(ra), fmt.Sprintf("%s: row %d differs", table, i), nil
		}
	}
	return len(ra), "", nil
}

func dump(ctx context.Context, s *sandbox.Server, table string) ([][]byte, error) {
	db, err := s.DB("")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	c, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, "SET character_set_results = binary, time_zone = '+00:00'"); err != nil {
		return nil, err
	}
	// Each row as one byte string: hex of every column (FLOAT as DOUBLE), NULL marked.
	parts := strings.SplitN(table, ".", 2)
	rows, err := c.QueryContext(ctx, "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION", parts[0], parts[1])
	if err != nil {
		return nil, err
	}
	var cols []string
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			rows.Close()
			return nil, err
		}
		col := "`" + name + "`"
		if typ == "float" {
			col = "CAST(" + col + " AS DOUBLE)"
		}
		cols = append(cols, "IFNULL(HEX("+col+"), 'N')")
	}
	rows.Close()
	if len(cols) == 0 {
		return nil, fmt.Errorf("%s: no such table", table)
	}
	expr := strings.Join(cols, ", ',', ")
	rows, err = c.QueryContext(ctx, "SELECT CONCAT("+expr+") FROM "+table+" ORDER BY 1")
	if err != nil {
		return nil, fmt.Errorf("dump %s: %w", table, err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}
