package verifier

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry/internal/retry"
)

// Verifiers retry transient errors (a lost or killed connection, a server restart, a deadlock, a
// lock-wait timeout) the way the rest of ferry does, through internal/retry, one unit of work at a
// time: a chunk, a page, a batch of keys. A unit only reads, so running it again is harmless; the
// connection that failed is discarded, never handed back to the caller's pool, and the next attempt
// pins a fresh one. A pass over a large table therefore survives connections dropped every few
// seconds, and fails only when one unit fails MaxRetries times in a row or with a permanent error.

// defaultMaxRetries is the attempts per unit of work when a verifier's MaxRetries is zero (the
// same default as ferry.Config.MaxRetries).
const defaultMaxRetries = 10

// retrier runs units of work with retries.
type retrier struct {
	attempts int
	log      logrus.FieldLogger
}

func newRetrier(maxRetries int, log logrus.FieldLogger) retrier {
	if maxRetries <= 0 {
		maxRetries = defaultMaxRetries
	}
	if log == nil {
		log = logrus.StandardLogger()
	}
	return retrier{attempts: maxRetries, log: log}
}

// do runs op until it succeeds or fails for good. After a transient failure every given conn drops
// its session, so the next attempt works on fresh connections.
func (r retrier) do(ctx context.Context, what string, op func() error, conns ...*conn) error {
	return retry.Do(ctx, r.attempts, r.log, "verifier: "+what, func() error {
		err := op()
		if err != nil && retry.Transient(err) {
			for _, c := range conns {
				c.drop()
			}
		}
		return err
	})
}

// conn is one side's session for units of work that may be retried: pinned on first use, dropped
// after a transient failure (the next get pins a new one), released at the end.
type conn struct {
	db *sql.DB
	st *sideStats
	s  *session
	// snapshot: s holds a consistent-snapshot transaction (Checksum.Snapshot), which a new session
	// could not see: a lost one is not replaced.
	snapshot bool
}

func newConn(db *sql.DB, st *sideStats) *conn { return &conn{db: db, st: st} }

func (c *conn) get(ctx context.Context) (*session, error) {
	if c.s == nil && c.snapshot {
		return nil, errors.New("verifier: a session holding the consistent snapshot was lost; the comparison cannot go on in a new one")
	}
	if c.s == nil {
		s, err := pin(ctx, c.db, c.st)
		if err != nil {
			return nil, err
		}
		c.s = s
	}
	return c.s, nil
}

func (c *conn) drop() {
	if c.s != nil {
		c.s.discard()
		c.s = nil
	}
}

// beginSnapshot starts a read-only REPEATABLE READ transaction with a consistent snapshot on the
// session, which then stays in it until release.
func (c *conn) beginSnapshot(ctx context.Context) error {
	s, err := c.get(ctx)
	if err != nil {
		return err
	}
	if _, err := s.conn.ExecContext(ctx, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
		return fmt.Errorf("verifier: begin snapshot: %w", err)
	}
	if _, err := s.conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
		return fmt.Errorf("verifier: begin snapshot: %w", err)
	}
	c.snapshot = true
	return nil
}

func (c *conn) release() {
	if c.s != nil && c.snapshot {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.s.conn.ExecContext(ctx, "ROLLBACK")
		cancel()
		if err != nil {
			c.drop()
		}
	}
	if c.s != nil {
		c.s.release()
		c.s = nil
	}
}

// sessions pins both sides' sessions.
func sessions(ctx context.Context, src, tgt *conn) (*session, *session, error) {
	s, err := src.get(ctx)
	if err != nil {
		return nil, nil, err
	}
	t, err := tgt.get(ctx)
	if err != nil {
		return nil, nil, err
	}
	return s, t, nil
}
