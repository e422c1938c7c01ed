package test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/sandbox"
)

// hostPool opens a pool the way a host application would: its own DSN, plus params.
func hostPool(t *testing.T, s *sandbox.Server, params map[string]string, parseTime bool) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(s.DSN(""))
	must(t, err)
	cfg.Params = params
	cfg.ParseTime = parseTime
	c, err := mysql.NewConnector(cfg)
	must(t, err)
	db := sql.OpenDB(c)
	t.Cleanup(func() { db.Close() })
	return db
}

// A pool handed in by the host is refused, naming each setting and how to fix the DSN, unless its
// sessions have ferry's settings; and Close never closes a pool the host owns.
func TestHostSuppliedPools(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const db = "hostpool"
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db,
		"CREATE TABLE "+db+".t (id INT PRIMARY KEY, ts TIMESTAMP NULL, c CHAR(5))",
		"INSERT INTO "+db+".t VALUES (1, '2024-01-01 00:00:00', 'a')"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db,
		"CREATE TABLE "+db+".t (id INT PRIMARY KEY, ts TIMESTAMP NULL, c CHAR(5))"))
	cfg := ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{db}}, Logger: testLogger(t)}

	refused := []struct {
		name      string
		source    bool
		params    map[string]string
		parseTime bool
		want      []string
	}{
		{"plain DSN as target", false, nil, false, []string{"Ferry.Target", "time_zone", "character_set_results", "NO_AUTO_VALUE_ON_ZERO", "foreign_key_checks", "ferry.SessionParams()"}},
		{"plain DSN as source", true, nil, false, []string{"Ferry.Source", "time_zone", "character_set_results"}},
		{"foreign key checks on", false, withParam(ferry.SessionParams(), "foreign_key_checks", "1"), false, []string{"foreign_key_checks is 1"}},
		{"CHAR padded", true, withParam(ferry.SessionParams(), "sql_mode", "'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,PAD_CHAR_TO_FULL_LENGTH'"), false, []string{"PAD_CHAR_TO_FULL_LENGTH"}},
		{"session time zone", true, withParam(ferry.SessionParams(), "time_zone", "'+05:00'"), false, []string{`time_zone is "+05:00"`}},
		{"parseTime", false, ferry.SessionParams(), true, []string{"parseTime=true"}},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			pool := hostPool(t, map[bool]*sandbox.Server{true: source, false: target}[c.source], c.params, c.parseTime)
			f := &ferry.Ferry{Config: cfg}
			if c.source {
				f.Source = pool
			} else {
				f.Target = pool
			}
			err := f.Initialize(ctx)
			f.Close()
			if err == nil {
				t.Fatal("Initialize accepted the pool")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q: %v", w, err)
				}
			}
			must(t, pool.PingContext(ctx)) // Close left the host's pool open
		})
	}

	// Pools with ferry's settings are accepted, used, and left open by Close: a host Source with a
	// ferry-opened Target, then both from the host.
	for _, both := range []bool{false, true} {
		src := hostPool(t, source, ferry.SessionParams(), false)
		f := &ferry.Ferry{Config: cfg, Source: src}
		if both {
			f.Target = hostPool(t, target, ferry.SessionParams(), false)
			f.Config.AllowNonEmptyTarget = true
		}
		must(t, f.Initialize(ctx))
		must(t, f.Start(ctx))
		runErr := make(chan error, 1)
		go func() { runErr <- f.Run(ctx) }()
		_, err := (&ferry.Cutover{Ferry: f, Hooks: ferry.HookFuncs{}}).Run(ctx)
		must(t, err)
		must(t, <-runErr)
		ownTarget := f.Target
		must(t, f.Close())
		if err := src.PingContext(ctx); err != nil {
			t.Fatalf("Close closed the host's source pool: %v", err)
		}
		if both {
			must(t, f.Target.PingContext(ctx))
		} else if err := ownTarget.PingContext(ctx); err == nil {
			t.Fatal("Close left open the target pool ferry opened")
		}
		assertSameRows(t, db+".t", "", db+".t")
	}
}

func withParam(m map[string]string, k, v string) map[string]string {
	m[k] = v
	return m
}
