package verifier_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry/throttler"
	"github.com/ferrykit/ferry/verifier"
)

// killerUser is the account the verifiers of TestVerifiersSurviveKilledConnections connect as, so
// that the test can kill exactly their connections.
const killerUser = "vkill"

// poolAs opens a pool to the server behind db as killerUser.
func poolAs(t *testing.T, db *sql.DB, port int) *sql.DB {
	t.Helper()
	execOn(t, db, "CREATE USER IF NOT EXISTS '"+killerUser+"'@'%'", "CREATE USER IF NOT EXISTS '"+killerUser+"'@'localhost'",
		"GRANT ALL ON *.* TO '"+killerUser+"'@'%'", "GRANT ALL ON *.* TO '"+killerUser+"'@'localhost'")
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = killerUser, "tcp", fmt.Sprintf("127.0.0.1:%d", port)
	p, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// quietDriver silences the driver's log of the dead connections it notices (expected here) until
// the test and its pools are done.
func quietDriver(t *testing.T) {
	mysql.SetLogger(log.New(io.Discard, "", 0))
	t.Cleanup(func() { mysql.SetLogger(log.New(os.Stderr, "[mysql] ", log.Ldate|log.Ltime|log.Lshortfile)) })
}

// killAll kills every connection of killerUser on the server behind db and returns how many.
func killAll(ctx context.Context, db *sql.DB) (int, error) {
	rows, err := db.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?", killerUser)
	if err != nil {
		return 0, err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	for _, id := range ids {
		db.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id)) // it may have closed meanwhile
	}
	return len(ids), nil
}

// Every verifier retries a unit of work whose connection was killed, on a fresh connection, and
// still reports exactly the differences. The verifiers' connections (on both servers) are killed
// before every third chunk, page or batch: each pass loses its connections many times.
func TestVerifiersSurviveKilledConnections(t *testing.T) {
	ctx := context.Background()
	tbl, q, _ := baseTable(t)
	execOn(t, srcDB, "UPDATE "+q+" SET note = 'changed' WHERE id = 77", "DELETE FROM "+q+" WHERE id = 150")
	quietDriver(t)
	src, tgt := poolAs(t, srcDB, srcSrv.Port), poolAs(t, tgtDB, tgtSrv.Port)

	var calls, kills atomic.Int64
	killer := throttler.Func(func(ctx context.Context) (throttler.Status, error) {
		if calls.Add(1)%3 == 0 {
			for _, d := range []*sql.DB{srcDB, tgtDB} {
				n, err := killAll(ctx, d)
				if err != nil {
					return throttler.Status{}, err
				}
				kills.Add(int64(n))
			}
		}
		return throttler.Status{}, nil
	})
	quiet := logrus.New()
	quiet.SetLevel(logrus.ErrorLevel)
	inline := &verifier.Inline{Source: src, Target: tgt, PageSize: 20, BatchSize: 5, Rechecks: -1, Throttler: killer, Logger: quiet}
	copyRows(t, inline, tbl, "")
	inline.RowChanged(tbl, []any{int64(150)}) // the delete, as the binlog reports it
	for _, s := range []struct {
		name  string
		v     verifier.Verifier
		phase verifier.Phase
	}{
		{"checksum", &verifier.Checksum{Source: src, Target: tgt, ChunkSize: 10, Concurrency: 2, Throttler: killer, Logger: quiet}, verifier.DuringCutover},
		{"rowdiff", &verifier.Differ{Source: src, Target: tgt, PageSize: 10, Throttler: killer, Logger: quiet}, verifier.DuringCutover},
		{"inline", inline, verifier.BeforeCutover},
		{"incremental", &verifier.Incremental{Checksum: &verifier.Checksum{Source: src, Target: tgt, ChunkSize: 10, Rechecks: -1, Throttler: killer, Logger: quiet}}, verifier.BeforeCutover},
	} {
		t.Run(s.name, func(t *testing.T) {
			k0 := kills.Load()
			res, err := s.v.Verify(ctx, s.phase, []verifier.TablePair{{Source: tbl}})
			if err != nil {
				t.Fatalf("verification failed on killed connections: %v", err)
			}
			if kills.Load()-k0 < 3 {
				t.Fatalf("only %d connections were killed during the pass: the test did not exercise retries", kills.Load()-k0)
			}
			checkTable(t, res.Tables[0], nil, []verifier.Key{key("150")}, []verifier.RowDiff{diff(key("77"), "note")})
			if !strings.Contains(res.String(), "MISMATCH") {
				t.Errorf("report: %s", res)
			}
		})
	}
}

// The same with a killer running beside the verifiers, so connections also die in the middle of a
// query or a result set (as when a network drops connections every few seconds).
func TestVerifiersSurviveConnectionsKilledMidQuery(t *testing.T) {
	ctx := context.Background()
	tbl, q, _ := baseTable(t)
	execOn(t, tgtDB, "UPDATE "+q+" SET data = x'00' WHERE id = 9", "INSERT INTO "+q+" VALUES (999, 1, 'extra', NULL, NULL, NULL)")
	quietDriver(t)
	src, tgt := poolAs(t, srcDB, srcSrv.Port), poolAs(t, tgtDB, tgtSrv.Port)
	quiet := logrus.New()
	quiet.SetLevel(logrus.ErrorLevel)
	// Each chunk or page waits 20ms first, so a pass lasts long enough for several kills.
	pace := throttler.Func(func(context.Context) (throttler.Status, error) {
		time.Sleep(20 * time.Millisecond)
		return throttler.Status{}, nil
	})
	for _, s := range []struct {
		name string
		v    verifier.Verifier
	}{
		{"checksum", &verifier.Checksum{Source: src, Target: tgt, ChunkSize: 10, Concurrency: 2, Throttler: pace, Logger: quiet}},
		{"rowdiff", &verifier.Differ{Source: src, Target: tgt, PageSize: 10, Throttler: pace, Logger: quiet}},
	} {
		t.Run(s.name, func(t *testing.T) {
			var kills atomic.Int64
			stop, done := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(done)
				// Each round kills every connection, so it fails at most one attempt of a unit of
				// work; fewer rounds than a unit's attempts (MaxRetries, default 10) leave the pass
				// able to finish however slowly the machine runs it. Endless rounds 60ms apart
				// would fail it, as they should, wherever one attempt takes longer than 60ms.
				for round := 1; round <= 8; round++ {
					for _, d := range []*sql.DB{srcDB, tgtDB} {
						n, _ := killAll(ctx, d)
						kills.Add(int64(n))
					}
					select {
					case <-stop:
						return
					case <-time.After(60 * time.Millisecond):
					}
				}
			}()
			res, err := s.v.Verify(ctx, verifier.DuringCutover, []verifier.TablePair{{Source: tbl}})
			close(stop)
			<-done
			if err != nil {
				t.Fatalf("verification failed on killed connections: %v", err)
			}
			if kills.Load() < 3 {
				t.Fatal("no connection was killed during the pass: the test did not exercise retries")
			}
			checkTable(t, res.Tables[0], nil, []verifier.Key{key("999")}, []verifier.RowDiff{diff(key("9"), "data")})
		})
	}
}
