// Package retry is ferry's one retry policy, shared by the copy, the binlog apply, the verifiers and
// the online schema change: which errors are transient (the same statement can succeed a moment
// later, so retrying it cannot change the result) and how long to keep trying.
//
// The hazard it answers is a retry that is not harmless: only errors after which the statement or
// transaction did not take effect, or takes effect idempotently when repeated, are listed. An error
// that will not go away by waiting — read_only on a server that was failed over (error 1290), a
// missing table, a duplicate key — is permanent: retrying it would only hide the cause for as long
// as the retries last.
package retry

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/sirupsen/logrus"
)

// Server error numbers ferry decides on (MySQL and MariaDB share them).
const (
	CodeTooManyConnections = 1040 // ER_CON_COUNT_ERROR
	CodeServerShutdown     = 1053 // ER_SERVER_SHUTDOWN
	CodeLockWaitTimeout    = 1205 // ER_LOCK_WAIT_TIMEOUT
	CodeDeadlock           = 1213 // ER_LOCK_DEADLOCK
	CodeDuplicateKey       = 1062 // ER_DUP_ENTRY
	CodeOptionPrevents     = 1290 // ER_OPTION_PREVENTS_STATEMENT, e.g. --read-only: permanent
	CodeQueryInterrupted   = 1317 // ER_QUERY_INTERRUPTED
	CodeTableDefChanged    = 1412 // ER_TABLE_DEF_CHANGED
	CodeBinlogUnavailable  = 1236 // ER_MASTER_FATAL_ERROR_READING_BINLOG (purged binlog)
	CodeReadOnlyMode       = 1836 // ER_READ_ONLY_MODE
	CodeConnectionKilled   = 1927 // ER_CONNECTION_KILLED (MariaDB)
	CodeServerGone         = 2006 // CR_SERVER_GONE_ERROR
	CodeServerLost         = 2013 // CR_SERVER_LOST
)

// transientCodes are the server errors worth another attempt of the same statement.
var transientCodes = map[uint16]bool{
	CodeTooManyConnections: true,
	CodeServerShutdown:     true,
	CodeLockWaitTimeout:    true,
	CodeDeadlock:           true,
	CodeQueryInterrupted:   true,
	CodeReadOnlyMode:       true,
	CodeConnectionKilled:   true,
	CodeServerGone:         true,
	CodeServerLost:         true,
}

// Code returns the server error number of err, or 0 when err is not a server error.
func Code(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// Transient reports errors worth retrying: the same statement can succeed a moment later.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	var p permanentError
	if errors.As(err, &p) {
		return false
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return transientCodes[me.Number]
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// Backoff bounds: the delay doubles from MinDelay up to MaxDelay between attempts.
const (
	MinDelay = 50 * time.Millisecond
	MaxDelay = 5 * time.Second
)

// Do runs op until it succeeds, fails with an error that is not Transient, runs out of attempts
// (at least one) or ctx ends. Each retry is logged as a warning naming what.
func Do(ctx context.Context, attempts int, log logrus.FieldLogger, what string, op func() error) error {
	if log == nil {
		log = logrus.StandardLogger()
	}
	delay := MinDelay
	var err error
	for i := 1; ; i++ {
		err = op()
		if err == nil || !Transient(err) || ctx.Err() != nil {
			return err
		}
		if i >= attempts {
			return fmt.Errorf("%s: giving up after %d attempts: %w", what, i, err)
		}
		log.WithError(err).WithField("attempt", i).Warnf("%s: transient error, retrying in %s", what, delay)
		if f, ok := ctx.Value(observerKey{}).(func(string)); ok {
			f(what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, MaxDelay)
	}
}

// permanentError marks an error that Do must not retry (e.g. a failure already retried by a
// lower layer).
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent marks err as not to be retried, whatever it wraps.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// Unwrap removes the mark Permanent put on err (only the outermost one).
func Unwrap(err error) error {
	var p permanentError
	if errors.As(err, &p) && err == error(p) {
		return p.err
	}
	return err
}

// AsPermanent reports whether err carries the Permanent mark, and returns the marked error
// without it.
func AsPermanent(err error) (error, bool) {
	var p permanentError
	if errors.As(err, &p) {
		return p.err, true
	}
	return nil, false
}

type observerKey struct{}

// WithObserver returns a context under which Do calls f (with what) before each retry, so that a
// host can count retries (ferry's metrics do) without every caller passing a counter down.
func WithObserver(ctx context.Context, f func(what string)) context.Context {
	return context.WithValue(ctx, observerKey{}, f)
}
