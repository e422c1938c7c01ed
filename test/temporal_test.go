package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

// temporalKeyTables have DATETIME, TIMESTAMP, TIME, DATE and composite temporal primary keys, with
// fractional seconds, negative times and zero dates among the keys.
var temporalKeyTables = []struct {
	name, def string
	key       func(i int) string // the i-th key (SQL), spaced so that shift(key) is never another key
	shift     string             // SQL moving a key to a free value
}{
	{"kdt", "k DATETIME(6) NOT NULL PRIMARY KEY", func(i int) string {
		return fmt.Sprintf("'2024-03-01 00:00:00' + INTERVAL %d SECOND + INTERVAL %d MICROSECOND", 2*i*3607, i%7)
	}, "k = k + INTERVAL 3607 SECOND"},
	{"kts", "k TIMESTAMP(3) NOT NULL PRIMARY KEY", func(i int) string {
		// Across a whole year, so every daylight-saving change of any zone is crossed.
		return fmt.Sprintf("'2023-01-01 00:00:00.125' + INTERVAL %d SECOND", 2*i*86407)
	}, "k = k + INTERVAL 86407 SECOND"},
	{"ktm", "k TIME(3) NOT NULL PRIMARY KEY", func(i int) string {
		return fmt.Sprintf("SEC_TO_TIME(%d - 400000 + 0.001 * %d)", 2*i*2311, i%5)
	}, "k = ADDTIME(k, '00:38:31')"},
	{"kd", "k DATE NOT NULL PRIMARY KEY", func(i int) string {
		if i == 0 {
			return "'0000-00-00'"
		}
		return fmt.Sprintf("'1000-01-01' + INTERVAL %d DAY", 2*i*97)
	}, "k = k + INTERVAL 97 DAY"},
	{"kcomp", "d DATE NOT NULL, t TIME NOT NULL, PRIMARY KEY (d, t)", func(i int) string {
		return fmt.Sprintf("'2024-01-01' + INTERVAL %d DAY, SEC_TO_TIME(%d)", i/10, 2*(i%10)*3600-30000)
	}, "t = ADDTIME(t, '01:00:00')"},
}

// Temporal primary keys page the copy and identify rows for binlog updates (including key changes)
// and deletes, with the source server in UTC and at time_zone '+05:00'; at '+05:00' the whole type
// matrix is copied under load once more.
func TestTemporalKeysAndSourceTimeZone(t *testing.T) {
	admin, err := source.DB("")
	must(t, err)
	defer admin.Close()
	var tz0 string
	must(t, admin.QueryRow("SELECT @@GLOBAL.time_zone").Scan(&tz0))
	defer admin.Exec("SET GLOBAL time_zone = '" + tz0 + "'")

	for _, tz := range []string{"+00:00", "+05:00"} {
		t.Run("tz"+strings.ReplaceAll(strings.ReplaceAll(tz, ":", ""), "+", "plus"), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			_, err := admin.ExecContext(ctx, "SET GLOBAL time_zone = '"+tz+"'")
			must(t, err)
			db := "tkeys" + strings.NewReplacer("+", "", ":", "").Replace(tz)
			must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db))
			must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db))
			const rows = 200
			for _, tb := range temporalKeyTables {
				must(t, source.Exec(ctx, fmt.Sprintf("CREATE TABLE %s.%s (%s, v VARCHAR(20)) ENGINE=InnoDB", db, tb.name, tb.def)))
				var vals []string
				for i := 0; i < rows; i++ {
					vals = append(vals, fmt.Sprintf("(%s, 'v%d')", tb.key(i), i))
				}
				must(t, source.Exec(ctx, "SET SESSION sql_mode = ''; INSERT INTO "+db+"."+tb.name+" VALUES "+strings.Join(vals, ", ")))
			}

			f, err := ferry.New(ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{db}},
				BatchSize: 16, CopyWorkers: 2, CreateTargetTables: true, Logger: testLogger(t)})
			must(t, err)
			defer f.Close()
			must(t, f.Initialize(ctx))
			must(t, f.Start(ctx))
			errc := make(chan error, 1)
			go func() { errc <- f.Run(ctx) }()
			must(t, f.WaitUntilRowCopyIsComplete(ctx))

			// Through the binlog only: key changes, other changes, deletes, inserts.
			src, err := source.DB(db)
			must(t, err)
			defer src.Close()
			src.SetMaxOpenConns(1)
			exec := func(q string) {
				t.Helper()
				if _, err := src.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			exec("SET SESSION sql_mode = ''")
			for _, tb := range temporalKeyTables {
				exec(fmt.Sprintf("UPDATE %s SET %s, v = 'moved' WHERE v IN ('v1', 'v7', 'v50', 'v99', 'v150', 'v199')", tb.name, tb.shift))
				exec(fmt.Sprintf("UPDATE %s SET v = 'changed' WHERE v IN ('v0', 'v2', 'v60', 'v120')", tb.name))
				exec(fmt.Sprintf("DELETE FROM %s WHERE v IN ('v3', 'v4', 'v100', 'v198')", tb.name))
				exec(fmt.Sprintf("INSERT INTO %s VALUES (%s, 'inserted')", tb.name, tb.key(rows+1)))
				// A key moved and moved back inside one transaction.
				exec("BEGIN")
				exec(fmt.Sprintf("UPDATE %s SET %s WHERE v = 'v10'", tb.name, tb.shift))
				exec(fmt.Sprintf("UPDATE %s SET v = 'v10 twice' WHERE v = 'v10'", tb.name))
				exec("COMMIT")
			}
			must(t, f.FlushBinlogAndStopStreaming(ctx))
			must(t, <-errc)
			for _, tb := range temporalKeyTables {
				var moved int
				must(t, src.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+tb.name+" WHERE v = 'moved'").Scan(&moved))
				if moved != 6 {
					t.Errorf("%s: %d keys moved, want 6 (the test's keys collide)", tb.name, moved)
				}
				if n := assertSameRows(t, db+"."+tb.name, "", db+"."+tb.name); n < rows-4 {
					t.Errorf("%s: only %d rows compared", tb.name, n)
				}
			}
			if tz != "+00:00" {
				// The whole type matrix once more, with the source's sessions at +05:00 by default.
				runCopy(t, copyCase{seed: 6, bigRows: 3000, batch: 200})
			}
		})
	}
}
