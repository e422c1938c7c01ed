package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"golang.org/x/sync/errgroup"

	"github.com/ferrykit/ferry/sandbox"
)

// dsnFor is a go-sql-driver DSN with ferry's own session settings (bytes move as bytes, UTC), so the
// ceilings read and write exactly what ferry reads and writes.
func dsnFor(s *sandbox.Server, database string, interpolate bool) string {
	cfg := mysql.NewConfig()
	cfg.User = s.User
	cfg.Net = "tcp"
	cfg.Addr = "127.0.0.1:" + strconv.Itoa(s.Port)
	cfg.DBName = database
	cfg.InterpolateParams = interpolate
	cfg.MaxAllowedPacket = 0
	cfg.Params = map[string]string{
		"time_zone":             "'+00:00'",
		"character_set_results": "binary",
		"sql_mode":              "'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
		"foreign_key_checks":    "0",
	}
	return cfg.FormatDSN()
}

func openDB(s *sandbox.Server, database string, interpolate bool) (*sql.DB, error) {
	db, err := sql.Open("mysql", dsnFor(s, database, interpolate))
	if err != nil {
		return nil, err
	}
	db.SetMaxIdleConns(16)
	return db, nil
}

// insertSelect is the same-server ceiling: INSERT INTO copy SELECT * FROM t.
func insertSelect(ctx context.Context, src *sandbox.Server, db, table, ddl string) (time.Duration, error) {
	if err := src.Exec(ctx, "DROP TABLE IF EXISTS "+db+"."+table+"_copy", fmt.Sprintf(ddl, db+"."+table+"_copy")); err != nil {
		return 0, err
	}
	start := time.Now()
	err := src.Exec(ctx, "INSERT INTO "+db+"."+table+"_copy SELECT * FROM "+db+"."+table)
	d := time.Since(start)
	if err2 := src.Exec(ctx, "DROP TABLE "+db+"."+table+"_copy"); err == nil {
		err = err2
	}
	return d, err
}

// dumpPipe is `mariadb-dump | mariadb` from the source to a fresh database on the target. It also
// returns the CPU time of the two client processes.
func dumpPipe(ctx context.Context, src, dst *sandbox.Server, db, table, dstDB string) (time.Duration, time.Duration, error) {
	if err := dst.Exec(ctx, "DROP DATABASE IF EXISTS "+dstDB, "CREATE DATABASE "+dstDB); err != nil {
		return 0, 0, err
	}
	dump := exec.CommandContext(ctx, "mariadb-dump", "--no-defaults", "-h127.0.0.1", "-P"+strconv.Itoa(src.Port), "-uroot",
		"--single-transaction", "--skip-add-locks", "--no-tablespaces", db, table)
	load := exec.CommandContext(ctx, "mariadb", "--no-defaults", "-h127.0.0.1", "-P"+strconv.Itoa(dst.Port), "-uroot", dstDB)
	pipe, err := dump.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	load.Stdin = pipe
	var dumpErr, loadErr bytes.Buffer
	dump.Stderr, load.Stderr = &dumpErr, &loadErr
	start := time.Now()
	if err := load.Start(); err != nil {
		return 0, 0, fmt.Errorf("mariadb: %w", err)
	}
	if err := dump.Start(); err != nil {
		return 0, 0, fmt.Errorf("mariadb-dump: %w", err)
	}
	if err := dump.Wait(); err != nil {
		return 0, 0, fmt.Errorf("mariadb-dump: %w: %s", err, dumpErr.String())
	}
	if err := load.Wait(); err != nil {
		return 0, 0, fmt.Errorf("mariadb: %w: %s", err, loadErr.String())
	}
	d := time.Since(start)
	return d, dump.ProcessState.UserTime() + dump.ProcessState.SystemTime() + load.ProcessState.UserTime() + load.ProcessState.SystemTime(), nil
}

// copyMode is how the plain copier writes a chunk.
type copyMode string

const (
	modeText     copyMode = "text"     // multi-row INSERT, values interpolated by the client (what ferry does)
	modePrepared copyMode = "prepared" // server-side prepared multi-row INSERT, binary protocol
	modeLoadData copyMode = "loaddata" // LOAD DATA LOCAL INFILE from memory
)

var readerSeq atomic.Int64

// plainCopy is the benchmark's own copier: workers take chunks of `chunk` consecutive ids in
// [1, maxID], read them with a plain SELECT and write them in one statement on the target.
func plainCopy(ctx context.Context, src, dst *sandbox.Server, db, table, dstDB string, maxID int64, cols, workers, chunk int, mode copyMode) (int64, time.Duration, error) {
	srcDB, err := openDB(src, db, true)
	if err != nil {
		return 0, 0, err
	}
	defer srcDB.Close()
	dstConnDB, err := openDB(dst, dstDB, mode != modePrepared)
	if err != nil {
		return 0, 0, err
	}
	defer dstConnDB.Close()
	var next atomic.Int64
	var copied atomic.Int64
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for w := 0; w < workers; w++ {
		g.Go(func() error {
			conn, err := dstConnDB.Conn(gctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			stmts := map[int]*sql.Stmt{}
			defer func() {
				for _, s := range stmts {
					s.Close()
				}
			}()
			var buf bytes.Buffer
			name := fmt.Sprintf("bench-%d", readerSeq.Add(1))
			var cur []byte
			var curMu sync.Mutex
			if mode == modeLoadData {
				mysql.RegisterReaderHandler(name, func() io.Reader {
					curMu.Lock()
					defer curMu.Unlock()
					return bytes.NewReader(cur)
				})
				defer mysql.DeregisterReaderHandler(name)
			}
			for {
				lo := next.Add(int64(chunk)) - int64(chunk) + 1
				if lo > maxID {
					return nil
				}
				hi := lo + int64(chunk) - 1
				rows, err := readChunk(gctx, srcDB, table, cols, lo, hi)
				if err != nil {
					return err
				}
				if len(rows) == 0 {
					continue
				}
				switch mode {
				case modeText, modePrepared:
					args := make([]any, 0, len(rows)*cols)
					for _, r := range rows {
						args = append(args, r...)
					}
					if mode == modeText {
						_, err = conn.ExecContext(gctx, "INSERT INTO "+table+" VALUES "+placeholders(cols, len(rows)), args...)
					} else {
						st := stmts[len(rows)]
						if st == nil {
							if st, err = conn.PrepareContext(gctx, "INSERT INTO "+table+" VALUES "+placeholders(cols, len(rows))); err != nil {
								return err
							}
							stmts[len(rows)] = st
						}
						_, err = st.ExecContext(gctx, args...)
					}
				case modeLoadData:
					buf.Reset()
					for _, r := range rows {
						for i, v := range r {
							if i > 0 {
								buf.WriteByte('\t')
							}
							if v == nil {
								buf.WriteString(`\N`)
								continue
							}
							for _, c := range v.([]byte) {
								switch c {
								case '\\':
									buf.WriteString(`\\`)
								case '\t':
									buf.WriteString(`\t`)
								case '\n':
									buf.WriteString(`\n`)
								case 0:
									buf.WriteString(`\0`)
								default:
									buf.WriteByte(c)
								}
							}
						}
						buf.WriteByte('\n')
					}
					curMu.Lock()
					cur = buf.Bytes()
					curMu.Unlock()
					_, err = conn.ExecContext(gctx, "LOAD DATA LOCAL INFILE 'Reader::"+name+"' INTO TABLE "+table+
						" CHARACTER SET binary FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'")
				}
				if err != nil {
					return fmt.Errorf("plain copier (%s): %w", mode, err)
				}
				copied.Add(int64(len(rows)))
			}
		})
	}
	err = g.Wait()
	return copied.Load(), time.Since(start), err
}

func readChunk(ctx context.Context, db *sql.DB, table string, cols int, lo, hi int64) ([][]any, error) {
	rs, err := db.QueryContext(ctx, "SELECT * FROM "+table+" WHERE id BETWEEN ? AND ?", lo, hi)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	raw := make([]sql.RawBytes, cols)
	ptrs := make([]any, cols)
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	var out [][]any
	for rs.Next() {
		if err := rs.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]any, cols)
		for i, b := range raw {
			if b != nil {
				row[i] = append([]byte(nil), b...)
			}
		}
		out = append(out, row)
	}
	return out, rs.Err()
}

// checksumTable returns CHECKSUM TABLE of db.table (the sanity check that a ceiling copied the same
// rows: a ceiling that copied wrong data would not be a ceiling).
func checksumTable(ctx context.Context, s *sandbox.Server, table string) (int64, error) {
	db, err := s.DB("")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var name string
	var sum sql.NullInt64
	err = db.QueryRowContext(ctx, "CHECKSUM TABLE "+table).Scan(&name, &sum)
	return sum.Int64, err
}
