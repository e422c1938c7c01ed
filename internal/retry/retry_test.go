package retry

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/sirupsen/logrus"
)

func serverError(code uint16) error { return &mysql.MySQLError{Number: code, Message: "test"} }

func TestTransient(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"deadlock", serverError(CodeDeadlock), true},
		{"lock wait timeout", serverError(CodeLockWaitTimeout), true},
		{"server gone", serverError(CodeServerGone), true},
		{"server lost", serverError(CodeServerLost), true},
		{"server shutdown", serverError(CodeServerShutdown), true},
		{"read-only mode", serverError(CodeReadOnlyMode), true},
		{"connection killed", serverError(CodeConnectionKilled), true},
		{"query interrupted", serverError(CodeQueryInterrupted), true},
		{"too many connections", serverError(CodeTooManyConnections), true},
		{"wrapped deadlock", fmt.Errorf("insert into t: %w", serverError(CodeDeadlock)), true},
		{"--read-only (failover) is permanent", serverError(CodeOptionPrevents), false},
		{"duplicate key", serverError(1062), false},
		{"no such table", serverError(1146), false},
		{"table definition changed", serverError(CodeTableDefChanged), false},
		{"bad connection", driver.ErrBadConn, true},
		{"invalid connection", mysql.ErrInvalidConn, true},
		{"EOF", io.EOF, true},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"connection refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{"connection reset", syscall.ECONNRESET, true},
		{"broken pipe", syscall.EPIPE, true},
		{"plain error", errors.New("boom"), false},
		{"marked permanent", Permanent(serverError(CodeDeadlock)), false},
		{"marked permanent, wrapped", fmt.Errorf("copy: %w", Permanent(io.EOF)), false},
	} {
		if got := Transient(c.err); got != c.want {
			t.Errorf("%s: Transient(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

func TestCode(t *testing.T) {
	if got := Code(fmt.Errorf("x: %w", serverError(CodeLockWaitTimeout))); got != CodeLockWaitTimeout {
		t.Errorf("Code = %d, want %d", got, CodeLockWaitTimeout)
	}
	if got := Code(io.EOF); got != 0 {
		t.Errorf("Code(io.EOF) = %d, want 0", got)
	}
}

func TestDo(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctx := context.Background()
	for _, c := range []struct {
		name      string
		errs      []error // what op returns on each call; nil afterwards
		attempts  int
		wantCalls int
		wantErr   string // "" for success
	}{
		{"success at once", nil, 3, 1, ""},
		{"transient then success", []error{serverError(CodeDeadlock), io.EOF}, 3, 3, ""},
		{"gives up after the attempts", []error{io.EOF, io.EOF, io.EOF, io.EOF}, 3, 3, "write: giving up after 3 attempts: EOF"},
		{"permanent error is not retried", []error{serverError(CodeOptionPrevents)}, 3, 1, "Error 1290: test"},
		{"at least one attempt", []error{io.EOF}, 0, 1, "write: giving up after 1 attempts: EOF"},
	} {
		calls := 0
		err := Do(ctx, c.attempts, log, "write", func() error {
			calls++
			if calls <= len(c.errs) {
				return c.errs[calls-1]
			}
			return nil
		})
		if calls != c.wantCalls {
			t.Errorf("%s: %d calls, want %d", c.name, calls, c.wantCalls)
		}
		if got := fmt.Sprint(err); (c.wantErr == "" && err != nil) || (c.wantErr != "" && got != c.wantErr) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.wantErr)
		}
	}
	// A cancelled context stops the retries.
	cctx, cancel := context.WithCancel(ctx)
	calls := 0
	err := Do(cctx, 10, log, "write", func() error { calls++; cancel(); return io.EOF })
	if calls != 1 || !errors.Is(err, io.EOF) {
		t.Errorf("after cancel: %d calls, error %v; want 1 call returning the op's error", calls, err)
	}
}

func TestPermanentMark(t *testing.T) {
	inner := errors.New("boom")
	if Unwrap(Permanent(inner)) != inner {
		t.Error("Unwrap does not return the marked error")
	}
	if cause, ok := AsPermanent(fmt.Errorf("stream: %w", Permanent(inner))); !ok || cause != inner {
		t.Errorf("AsPermanent = %v, %v", cause, ok)
	}
	if _, ok := AsPermanent(inner); ok {
		t.Error("AsPermanent finds a mark where there is none")
	}
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) is not nil")
	}
}

// A context's observer is told of each retry, naming the operation; the final attempt is not one.
func TestDoTellsTheContextsObserver(t *testing.T) {
	var seen []string
	ctx := WithObserver(context.Background(), func(what string) { seen = append(seen, what) })
	calls := 0
	err := Do(ctx, 3, logrus.New(), "copy db.t", func() error {
		calls++
		return &mysql.MySQLError{Number: CodeDeadlock}
	})
	if err == nil || calls != 3 {
		t.Fatalf("err %v after %d calls", err, calls)
	}
	if len(seen) != 2 || seen[0] != "copy db.t" {
		t.Errorf("observer saw %v, want two retries of copy db.t", seen)
	}
}
