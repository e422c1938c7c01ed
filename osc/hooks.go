package osc

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// HookPoint names a step of a migration at which hooks run.
type HookPoint string

const (
	HookStartup         HookPoint = "startup"           // before validation
	HookValidated       HookPoint = "validated"         // validation passed, ghost table created
	HookRowCopyComplete HookPoint = "row-copy-complete" // every row copied, before the cut-over waits
	HookBeforeCutover   HookPoint = "before-cut-over"   // right before the first cut-over attempt
	HookSuccess         HookPoint = "success"           // the table has its new schema
	HookFailure         HookPoint = "failure"           // Run is about to return an error
	HookStatus          HookPoint = "status"            // every StatusInterval
)

// Hooks run at each HookPoint: first Func, then the executable Commands[point]. An error from a hook
// at startup, validated, row-copy-complete or before-cut-over aborts the migration (the original
// table unchanged); errors of the other hooks are logged.
//
// Executables get the migration in their environment: FERRY_OSC_HOOK, FERRY_OSC_DATABASE,
// FERRY_OSC_TABLE, FERRY_OSC_GHOST_TABLE, FERRY_OSC_OLD_TABLE, FERRY_OSC_ALTER, FERRY_OSC_STATE,
// FERRY_OSC_ROWS_COPIED, FERRY_OSC_ROWS_ESTIMATED, FERRY_OSC_EVENTS_APPLIED, FERRY_OSC_LAG_MS,
// FERRY_OSC_ELAPSED_SECONDS, FERRY_OSC_STATUS (the status line), FERRY_OSC_ERROR (failure only).
// They are killed after Timeout (default 30s), which counts as a failure.
type Hooks struct {
	Func     func(ctx context.Context, point HookPoint, st Status, runErr error) error
	Commands map[HookPoint]string
	Timeout  time.Duration
}

func (m *Migration) hookEnv(point HookPoint, runErr error) []string {
	st := m.Status()
	env := []string{
		"FERRY_OSC_HOOK=" + string(point),
		"FERRY_OSC_DATABASE=" + m.Database,
		"FERRY_OSC_TABLE=" + m.Table,
		"FERRY_OSC_GHOST_TABLE=" + m.ghostName(),
		"FERRY_OSC_OLD_TABLE=" + m.oldName(),
		"FERRY_OSC_ALTER=" + m.Alter,
		"FERRY_OSC_STATE=" + st.State,
		"FERRY_OSC_ROWS_COPIED=" + strconv.FormatInt(st.RowsCopied, 10),
		"FERRY_OSC_ROWS_ESTIMATED=" + strconv.FormatInt(st.RowsEstimated, 10),
		"FERRY_OSC_EVENTS_APPLIED=" + strconv.FormatInt(st.EventsApplied, 10),
		"FERRY_OSC_LAG_MS=" + strconv.FormatInt(st.Lag.Milliseconds(), 10),
		"FERRY_OSC_ELAPSED_SECONDS=" + strconv.FormatInt(int64(st.Elapsed.Seconds()), 10),
		"FERRY_OSC_STATUS=" + st.String(),
	}
	if runErr != nil {
		env = append(env, "FERRY_OSC_ERROR="+runErr.Error())
	}
	return env
}

// runHook runs the hooks of one point.
func (m *Migration) runHook(ctx context.Context, point HookPoint, runErr error) error {
	err := m.runHookErr(ctx, point, runErr)
	if err == nil {
		return nil
	}
	switch point {
	case HookStartup, HookValidated, HookRowCopyComplete, HookBeforeCutover:
		return fmt.Errorf("%s hook: %w", point, err)
	}
	m.log.WithError(err).Warnf("osc: %s hook failed", point)
	return nil
}

func (m *Migration) runHookErr(ctx context.Context, point HookPoint, runErr error) error {
	h := m.Hooks
	if h.Func != nil {
		if err := h.Func(ctx, point, m.Status(), runErr); err != nil {
			return err
		}
	}
	path := h.Commands[point]
	if path == "" {
		return nil
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, path)
	cmd.Env = append(hookEnviron(), m.hookEnv(point, runErr)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		if cctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("%s: killed after %s", path, timeout)
		}
		return fmt.Errorf("%s: %w: %s", path, err, strings.TrimSpace(tailString(out.String(), 500)))
	}
	if s := strings.TrimSpace(out.String()); s != "" {
		m.log.WithField("hook", string(point)).Info(tailString(s, 2000))
	}
	return nil
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func removeFile(path string) { os.Remove(path) }

// hookEnviron is this process's environment without the database passwords it may hold (MYSQL_PWD,
// FERRY_*PASSWORD*): hooks are the operator's scripts, and a password inherited through the
// environment would reach every program they start and be readable in /proc/PID/environ.
func hookEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "MYSQL_PWD" || (strings.HasPrefix(k, "FERRY_") && strings.Contains(k, "PASSWORD")) {
			continue
		}
		env = append(env, kv)
	}
	return env
}
