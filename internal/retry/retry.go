// Package retry is the one place that decides which errors are worth retrying and how: every part
// of ferry that talks to a server (the copy, the binlog writer, the checkpoint store, the verifiers)
// retries through Do, so a dropped connection, a server restart, a deadlock or a lock-wait timeout
// is absorbed the same way everywhere, and a permanent error is never retried.
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
		switch me.Number {
		case 1205, // lock wait timeout
			1213, // deadlock
			1040, // too many connections
			1053, // server shutdown in progress
			1290, // --read-only (failover)
			1836, // read-only mode
			1927, // connection killed (MariaDB)
			1317, // query interrupted
			2006, 2013:
			return true
		}
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// Do runs op until it succeeds, fails with a permanent error, runs out of attempts or ctx ends.
// Backoff doubles from 50ms up to 5s.
func Do(ctx context.Context, attempts int, log logrus.FieldLogger, what string, op func() error) error {
	delay := 50 * time.Millisecond
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
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay *= 2
		if delay > 5*time.Second {
			delay = 5 * time.Second
		}
	}
}

// permanentError marks an error that Do must not retry (e.g. a failure already retried by a
// lower layer).
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent marks err so that Do does not retry it.
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
