package osc

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/schema"
)

var q = schema.QuoteIdent

// detectFlavor asks the server what it is.
func detectFlavor(ctx context.Context, db *sql.DB) (ferry.Flavor, error) {
	var v string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&v); err != nil {
		return ferry.Flavor{}, fmt.Errorf("detect server version: %w", err)
	}
	f := ferry.Flavor{Version: v, MariaDB: strings.Contains(strings.ToLower(v), "mariadb")}
	parts := strings.SplitN(v, ".", 3)
	if len(parts) >= 2 {
		f.Major, _ = strconv.Atoi(parts[0])
		f.Minor, _ = strconv.Atoi(parts[1])
	}
	return f, nil
}

// currentPosition reads the server's binlog position now.
func currentPosition(ctx context.Context, db *sql.DB, f ferry.Flavor) (ferry.Position, error) {
	query := "SHOW MASTER STATUS"
	if !f.MariaDB && (f.Major > 8 || f.Major == 8 && f.Minor >= 4) {
		query = "SHOW BINARY LOG STATUS"
	}
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return ferry.Position{}, fmt.Errorf("read binlog position (%s): %w", query, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return ferry.Position{}, err
		}
		return ferry.Position{}, fmt.Errorf("read binlog position: %s returned no row: the binary log is off; start the server with log_bin", query)
	}
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return ferry.Position{}, err
	}
	pos, err := strconv.ParseUint(string(vals[1]), 10, 32)
	if err != nil {
		return ferry.Position{}, fmt.Errorf("read binlog position: bad position %q", vals[1])
	}
	return ferry.Position{File: string(vals[0]), Pos: uint32(pos)}, nil
}

// retryable reports errors worth another attempt of the same statement.
func retryable(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1205, 1213, 1040, 1927, 1317, 2006, 2013:
			return true
		}
		return false
	}
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

// withRetry runs op until it succeeds, fails with a non-retryable error or runs out of attempts.
func withRetry(ctx context.Context, attempts int, op func() error) error {
	delay := 20 * time.Millisecond
	var err error
	for i := 0; i < max(attempts, 1); i++ {
		if err = op(); err == nil || !retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
	return err
}

func mysqlErrno(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

func tableExists(ctx context.Context, db schema.Querier, database, table string) (bool, string, error) {
	var comment string
	err := db.QueryRowContext(ctx, `SELECT IFNULL(TABLE_COMMENT,'') FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?`, database, table).Scan(&comment)
	if errors.Is(err, sql.ErrNoRows) {
		return false, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("check table %s.%s: %w", database, table, err)
	}
	return true, comment, nil
}

// Key comparisons are built by package schema, shared with ferry's copy.
var (
	keyPlaceholder = schema.KeyPlaceholder
	keyCompare     = schema.KeyCompare
)

func keyArg(c *schema.Column, b []byte) (any, error) { return schema.KeyArg(c, b) }
