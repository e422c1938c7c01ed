package ferry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/ferrykit/ferry/schema"
	"github.com/ferrykit/ferry/verifier"
)

// CutoverHooks are the host's own steps of a cut-over: ferry never decides how writes are stopped
// or where traffic goes.
type CutoverHooks interface {
	// Lock stops writes to the source tables (read_only, an application lock, LOCK TABLES...).
	Lock(ctx context.Context) error
	// Swap points traffic at the target. It runs only after every change is applied (and verified,
	// if a verifier is set).
	Swap(ctx context.Context) error
	// Unlock lets writes go on. swapped says whether Swap succeeded: after a failed or aborted
	// cut-over the source must become writable again.
	Unlock(ctx context.Context, swapped bool) error
}

// HookFuncs builds CutoverHooks from functions; a nil function does nothing.
type HookFuncs struct {
	LockFunc   func(ctx context.Context) error
	SwapFunc   func(ctx context.Context) error
	UnlockFunc func(ctx context.Context, swapped bool) error
}

func (h HookFuncs) Lock(ctx context.Context) error {
	if h.LockFunc == nil {
		return nil
	}
	return h.LockFunc(ctx)
}

func (h HookFuncs) Swap(ctx context.Context) error {
	if h.SwapFunc == nil {
		return nil
	}
	return h.SwapFunc(ctx)
}

func (h HookFuncs) Unlock(ctx context.Context, swapped bool) error {
	if h.UnlockFunc == nil {
		return nil
	}
	return h.UnlockFunc(ctx, swapped)
}

// WritesStoppedChecker is implemented by hooks that can confirm from the source itself that writes
// stopped. Cutover calls CheckWritesStopped with the position every change is applied up to, after
// the verification under the lock and just before Swap. An error aborts the cut-over before anything
// is swapped: the source is unlocked and the Ferry keeps streaming.
type WritesStoppedChecker interface {
	CheckWritesStopped(ctx context.Context, applied Position) error
}

// ReadOnlyHooks stop writes for a whole-server move by setting the source read_only.
//
// read_only does not stop sessions of users with SUPER (MySQL) or READ_ONLY ADMIN (MariaDB), nor
// replication threads and events of such definers: applications must use ordinary accounts. Since
// nothing may write to the server while it is read-only, the hooks check it: Lock watches the
// binlog position for Settle after setting read_only, and CheckWritesStopped checks that it is
// still the position applied to the target before the swap. If it moved, the cut-over is aborted
// (the source made writable again, the Ferry still streaming) with ErrWritesNotStopped, naming the
// tables written and the sessions active meanwhile.
//
// After a successful swap the source stays read-only unless ReleaseAfterSwap is set, so stray writes
// of ordinary users cannot land on the old server.
type ReadOnlyHooks struct {
	Source           *sql.DB
	SwapFunc         func(ctx context.Context) error
	ReleaseAfterSwap bool
	// Settle is how long Lock watches the binlog after setting read_only; default 100ms. Writes are
	// blocked meanwhile.
	Settle time.Duration
}

func (h ReadOnlyHooks) Lock(ctx context.Context) error {
	if _, err := h.Source.ExecContext(ctx, "SET GLOBAL read_only = 1"); err != nil {
		return fmt.Errorf("set source read_only: %w", err)
	}
	flavor, err := DetectFlavor(ctx, h.Source)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	// read_only waits for running statements and commits, so nothing an ordinary user does can
	// reach the binlog from here on.
	from, err := CurrentPosition(ctx, h.Source, flavor)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	settle := h.Settle
	if settle <= 0 {
		settle = 100 * time.Millisecond
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(settle):
	}
	return h.CheckWritesStopped(ctx, from)
}

// CheckWritesStopped implements WritesStoppedChecker: the source's binlog must not have moved past
// applied.
func (h ReadOnlyHooks) CheckWritesStopped(ctx context.Context, applied Position) error {
	flavor, err := DetectFlavor(ctx, h.Source)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	now, err := CurrentPosition(ctx, h.Source, flavor)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if now.Compare(applied) <= 0 {
		return nil
	}
	return fmt.Errorf("%w: the source is read_only, yet its binlog moved from %s to %s%s; read_only does not stop users with SUPER or READ_ONLY ADMIN: stop those writers (or have them connect as ordinary users) and cut over again",
		ErrWritesNotStopped, applied, now, describeWriters(ctx, h.Source, applied))
}

// describeWriters names what wrote to the source since from: the tables in the binlog, and the
// client sessions active in the last second (the writers are among them).
func describeWriters(ctx context.Context, db *sql.DB, from Position) string {
	var out strings.Builder
	tables := map[string]bool{}
	var names []string
	if rows, err := db.QueryContext(ctx, fmt.Sprintf("SHOW BINLOG EVENTS IN %s FROM %d LIMIT 500", schema.QuoteString(from.File), from.Pos)); err == nil {
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]sql.NullString, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if rows.Scan(ptrs...) != nil || len(vals) < 6 || vals[2].String != "Table_map" {
				continue
			}
			info := vals[5].String // "table_id: 33 (db.t)"
			if i := strings.LastIndexByte(info, '('); i >= 0 && strings.HasSuffix(info, ")") {
				if name := info[i+1 : len(info)-1]; !tables[name] {
					tables[name] = true
					names = append(names, name)
				}
			}
		}
		rows.Close()
	}
	if len(names) > 0 {
		out.WriteString(" (tables written: " + strings.Join(names, ", ") + ")")
	}
	rows, err := db.QueryContext(ctx, `SELECT ID, USER, HOST, COMMAND, IFNULL(LEFT(INFO, 80), '') FROM information_schema.PROCESSLIST
		WHERE ID <> CONNECTION_ID() AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon', 'Killed')
		AND USER NOT IN ('system user', 'event_scheduler', 'unauthenticated user') AND (COMMAND <> 'Sleep' OR TIME = 0)
		ORDER BY ID`)
	if err != nil {
		return out.String()
	}
	defer rows.Close()
	var sessions []string
	for rows.Next() {
		var id int64
		var user, host, command, info string
		if rows.Scan(&id, &user, &host, &command, &info) != nil {
			continue
		}
		s := fmt.Sprintf("%s@%s (thread %d, %s", user, host, id, command)
		if info != "" {
			s += ": " + info
		}
		sessions = append(sessions, s+")")
	}
	if len(sessions) > 0 {
		out.WriteString("; sessions active meanwhile: " + strings.Join(sessions, ", "))
	}
	return out.String()
}

func (h ReadOnlyHooks) Swap(ctx context.Context) error {
	if h.SwapFunc == nil {
		return nil
	}
	return h.SwapFunc(ctx)
}

func (h ReadOnlyHooks) Unlock(ctx context.Context, swapped bool) error {
	if swapped && !h.ReleaseAfterSwap {
		return nil
	}
	if _, err := h.Source.ExecContext(ctx, "SET GLOBAL read_only = 0"); err != nil {
		return fmt.Errorf("clear source read_only: %w", err)
	}
	return nil
}

// Cutover drives a Ferry's cut-over around the host's hooks: wait for the copy and the binlog to be
// caught up, Lock, apply the last changes, verify (optional), create the requested triggers and
// events (Config.CreateSchemaObjects), Swap, stop streaming, Unlock. The
// window between Lock returning and Unlock being called is measured and bounded by Timeout; on any
// failure the source is unlocked and the error says which step failed. A failure up to and including
// Swap (a lock that fails, a verification mismatch, a Swap hook returning an error) leaves the Ferry
// streaming, so Run can be called again on the same Cutover; streaming stops only after a successful
// Swap.
type Cutover struct {
	Ferry *Ferry
	Hooks CutoverHooks
	// Verifier runs with writes stopped; a mismatch aborts before Swap. Default: Ferry.Verifier.
	Verifier verifier.Verifier
	// MaxLag is the binlog lag below which the cut-over locks; default 500ms.
	MaxLag time.Duration
	// Timeout bounds the write-blocked window (flush + verify + swap); default DefaultCutoverTimeout.
	// When it is reached the cut-over is aborted before Swap, the source is unlocked, and Run
	// returns a *CutoverTimeoutError.
	Timeout time.Duration
	// SkipSchemaObjects leaves the triggers and events Config.CreateSchemaObjects asks for to the
	// host (Ferry.CreateDeferredSchemaObjects once Run returned), for a Lock that does not stop
	// the source's writes: Run otherwise creates them with writes stopped, right before Swap.
	SkipSchemaObjects bool
}

// DefaultCutoverTimeout is Cutover.Timeout when unset.
const DefaultCutoverTimeout = 30 * time.Second

// ErrCutoverTimeout is matched (errors.Is) by the error of a cut-over aborted because the
// write-blocked window reached Cutover.Timeout.
var ErrCutoverTimeout = errors.New("cut-over timeout reached")

// CutoverTimeoutError says that the write-blocked window reached Cutover.Timeout, in which step,
// and that nothing was swapped. Hosts translate Timeout into the name of their own setting.
type CutoverTimeoutError struct {
	Timeout time.Duration // the bound
	Step    string        // the step that was running when it was reached, e.g. "verify"
	Err     error         // the error of that step (a context deadline)
}

func (e *CutoverTimeoutError) Error() string {
	return fmt.Sprintf("cutover: %s: the write-blocked window reached the cut-over bound (%s), so the cut-over was aborted and nothing was swapped: %v",
		e.Step, e.Timeout, e.Err)
}

func (e *CutoverTimeoutError) Unwrap() []error { return []error{ErrCutoverTimeout, e.Err} }

// CutoverReport says what happened.
type CutoverReport struct {
	// Blocked is the write-blocked window: from the moment Lock was called (a Lock blocks writes
	// while it waits for them to stop, and ReadOnlyHooks while it watches the binlog settle) to the
	// moment Unlock was called.
	Blocked time.Duration `json:"blocked_ns"`
	// Flush is the part of Blocked spent applying the last changes.
	Flush  time.Duration `json:"flush_ns"`
	Verify time.Duration `json:"verify_ns"`
	// VerifyBeforeLock is the time of the verification pass run while writes still went on, and
	// ResultBeforeLock its result (with Result, the pass under the lock, it tells per table how many
	// rows each pass compared and what the verifier cannot see).
	VerifyBeforeLock time.Duration    `json:"verify_before_lock_ns"`
	ResultBeforeLock *verifier.Result `json:"verification_before_lock,omitempty"`
	Position         Position         `json:"position"`
	Result           *verifier.Result `json:"verification,omitempty"`
	Swapped          bool             `json:"swapped"`
	StartedAt        time.Time        `json:"started_at"`
}

// ErrVerificationFailed is returned (wrapped) when the verifier finds differences during cut-over.
var ErrVerificationFailed = errors.New("verification found differences")

// Run performs the cut-over.
func (c *Cutover) Run(ctx context.Context) (rep *CutoverReport, err error) {
	f := c.Ferry
	if f == nil || c.Hooks == nil {
		return nil, errors.New("cutover: Ferry and Hooks must be set")
	}
	maxLag := c.MaxLag
	if maxLag <= 0 {
		maxLag = 500 * time.Millisecond
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultCutoverTimeout
	}
	v := c.Verifier
	if v == nil {
		v = f.Verifier
	}
	if o, ok := v.(verifier.BinlogObserver); ok && !sameObserver(o, f.observer) {
		// Its pass under the lock would trust a record of changed rows that nobody keeps.
		return nil, fmt.Errorf("cutover: verifier %T relies on being told the binlog's changes, but the binlog writer does not report to it: "+
			"set it as Ferry.Verifier before Start (the default binlog writer reports to that one)", v)
	}
	rep = &CutoverReport{StartedAt: time.Now()}
	if err := f.WaitUntilRowCopyIsComplete(ctx); err != nil {
		return rep, fmt.Errorf("cutover: wait for row copy: %w", err)
	}
	if err := f.WaitUntilBinlogCaughtUp(ctx, maxLag); err != nil {
		return rep, fmt.Errorf("cutover: wait for binlog catch-up: %w", err)
	}
	// A first verification pass while writes go on: it does the expensive work (the inline verifier
	// compares every copied row here) so the pass under the lock only re-checks what changed since.
	// Differences here can be rows in flight; they are checked again under the lock.
	if v != nil {
		if _, err := f.FlushBinlog(ctx); err != nil {
			return rep, fmt.Errorf("cutover: catch up before verification: %w", err)
		}
		vstart := time.Now()
		res, err := v.Verify(ctx, verifier.BeforeCutover, f.TablePairs())
		if err != nil {
			return rep, fmt.Errorf("cutover: verify before lock: %w", err)
		}
		rep.VerifyBeforeLock = time.Since(vstart)
		rep.ResultBeforeLock = res
		if !res.Match() {
			f.log.WithField("result", res.String()).Warn("ferry: differences before the lock (rows may be in flight); checking again under the lock")
		}
		if err := f.WaitUntilBinlogCaughtUp(ctx, maxLag); err != nil {
			return rep, fmt.Errorf("cutover: wait for binlog catch-up: %w", err)
		}
	}
	// Catch up once more without the lock, so the locked flush has little left to do.
	if _, err := f.FlushBinlog(ctx); err != nil {
		return rep, fmt.Errorf("cutover: catch up before lock: %w", err)
	}
	lockCalled := time.Now()
	if err := c.Hooks.Lock(ctx); err != nil {
		rep.Blocked = time.Since(lockCalled)
		unlockErr := c.Hooks.Unlock(context.WithoutCancel(ctx), false)
		return rep, errors.Join(fmt.Errorf("cutover: lock: %w", err), unlockErr)
	}
	locked := time.Now()
	swapped := false
	defer func() {
		rep.Blocked = time.Since(lockCalled)
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if uerr := c.Hooks.Unlock(uctx, swapped); uerr != nil {
			err = errors.Join(err, fmt.Errorf("cutover: unlock: %w", uerr))
		}
		rep.Swapped = swapped
		l := f.log.WithField("blocked_ms", float64(rep.Blocked.Microseconds())/1000)
		if err != nil {
			l.WithError(err).Error("ferry: cut-over aborted, source unlocked")
		} else {
			l.Info("ferry: cut-over complete")
		}
	}()
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// failed names the step that failed; when the failure is the bound being reached, it says so.
	failed := func(step string, err error) error {
		if errors.Is(lctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			return &CutoverTimeoutError{Timeout: timeout, Step: step, Err: err}
		}
		return fmt.Errorf("cutover: %s: %w", step, err)
	}
	pos, streamPos, err := f.flushBinlog(lctx)
	if err != nil {
		return rep, failed("apply last changes under lock", err)
	}
	rep.Position = pos
	rep.Flush = time.Since(locked)
	if v != nil {
		vstart := time.Now()
		res, err := v.Verify(lctx, verifier.DuringCutover, f.TablePairs())
		rep.Verify = time.Since(vstart)
		rep.Result = res
		if err != nil {
			return rep, failed("verify", err)
		}
		if !res.Match() {
			return rep, fmt.Errorf("cutover: %w; nothing was swapped:\n%s", ErrVerificationFailed, res)
		}
	}
	// Writes that slipped past the lock would be lost: check before the swap (the stream still
	// runs, so an abort leaves the Ferry streaming).
	if checker, ok := c.Hooks.(WritesStoppedChecker); ok {
		if err := checker.CheckWritesStopped(lctx, pos); err != nil {
			return rep, failed("check that writes stopped", fmt.Errorf("%w (nothing was swapped; the Ferry keeps streaming and the cut-over can be run again)", err))
		}
	}
	// Swap runs while the Ferry still streams: with the source's writes stopped and every change
	// up to pos applied there is nothing left to apply, and a failed Swap leaves the Ferry running
	// exactly as before the cut-over, so Run can be called again. Streaming stops only once Swap
	// succeeded.
	// Triggers and events are created now: every change is applied and nothing more will be, so a
	// trigger never fires on a row ferry writes. A failed Swap drops them again.
	if !c.SkipSchemaObjects {
		if err := f.CreateDeferredSchemaObjects(lctx); err != nil {
			return rep, errors.Join(failed("create triggers and events", err), f.dropDeferredSchemaObjects(context.WithoutCancel(ctx)))
		}
	}
	if err := c.Hooks.Swap(lctx); err != nil {
		return rep, errors.Join(failed("swap", fmt.Errorf("%w (nothing was swapped; the Ferry keeps streaming and the cut-over can be run again)", err)),
			f.dropDeferredSchemaObjects(context.WithoutCancel(ctx)))
	}
	swapped = true
	f.BinlogStreamer.StopAt(streamPos)
	select {
	case <-f.streamDone:
	case <-f.runDone:
		return rep, fmt.Errorf("cutover: after swap: %w", f.runError())
	case <-lctx.Done():
		return rep, fmt.Errorf("cutover: after swap: stop streaming: %w", lctx.Err())
	}
	return rep, nil
}

// sameObserver reports whether a and b are the same observer (false for values that cannot be
// compared).
func sameObserver(a, b verifier.BinlogObserver) bool {
	if a == nil || b == nil || !reflect.TypeOf(a).Comparable() || reflect.TypeOf(a) != reflect.TypeOf(b) {
		return false
	}
	return a == b
}
