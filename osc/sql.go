package osc

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ferrykit/ferry/schema"
)

var q = schema.QuoteIdent

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
