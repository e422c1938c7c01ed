package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// copydb takes passwords from files, the environment, a defaults file and a prompt; a password on
// the command line works but is warned about; no password ever reaches its output, logs (at debug),
// summary or state file, and the files it writes are readable by their owner only.
func TestCopydbPasswordsNeverShown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := rsBuildCopydb(t, dir)
	const srcPW, tgtPW = "s3cret-source-Pw", "s3cret-target-Pw"
	for _, u := range []struct {
		s interface {
			Exec(context.Context, ...string) error
		}
		pw string
	}{{source, srcPW}, {target, tgtPW}} {
		must(t, u.s.Exec(ctx, "CREATE USER IF NOT EXISTS 'pwuser'@'%' IDENTIFIED BY '"+u.pw+"'",
			"GRANT ALL PRIVILEGES ON *.* TO 'pwuser'@'%'"))
	}
	createSchema(t, source, "cdpw", 200)
	pwFile := filepath.Join(dir, "source.pw")
	must(t, os.WriteFile(pwFile, []byte(srcPW+"\n"), 0o600))
	cnf := filepath.Join(dir, "target.cnf")
	must(t, os.WriteFile(cnf, []byte(fmt.Sprintf("# target\n[mysql]\nuser = wrong\n[client]\nuser = pwuser\npassword = \"%s\"\nhost = 127.0.0.1\nport = %d\n", tgtPW, target.Port)), 0o600))

	copydb := func(stdin string, env []string, args ...string) (string, error) {
		must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS cdpw"))
		cmd := exec.CommandContext(ctx, bin, append([]string{"-databases", "cdpw", "-create-tables", "-cutover", "none",
			"-verify", "checksum", "-progress", "50ms", "-log-level", "debug"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdin = strings.NewReader(stdin)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	check := func(name, out string, files ...string) {
		t.Helper()
		for _, pw := range []string{srcPW, tgtPW} {
			if strings.Contains(out, pw) {
				t.Errorf("%s: a password is in copydb's output:\n%s", name, out)
			}
			for _, f := range files {
				b, err := os.ReadFile(f)
				must(t, err)
				if bytes.Contains(b, []byte(pw)) {
					t.Errorf("%s: a password is in %s", name, f)
				}
				if st, err := os.Stat(f); err == nil && st.Mode().Perm() != 0o600 {
					t.Errorf("%s: %s has mode %v, want 0600", name, f, st.Mode().Perm())
				}
			}
		}
	}

	summary, state := filepath.Join(dir, "summary.json"), filepath.Join(dir, "state.json")
	out, err := copydb("", nil, "-source-host", "127.0.0.1", "-source-port", fmt.Sprint(source.Port), "-source-user", "pwuser",
		"-source-password-file", pwFile, "-target-defaults-file", cnf, "-summary-json", summary, "-state-file", state)
	if err != nil || !strings.Contains(out, "MATCH") {
		t.Fatalf("password file and defaults file: %v\n%s", err, rsTailString(out, 3000))
	}
	if strings.Contains(out, "warning: ") {
		t.Errorf("a warning without a password on the command line:\n%s", rsTailString(out, 2000))
	}
	check("files", out, summary, state)

	// The source password on the command line (warned), the target's through the prompt.
	out, err = copydb(tgtPW+"\n", nil, "-source", fmt.Sprintf("pwuser:%s@tcp(127.0.0.1:%d)/", srcPW, source.Port),
		"-target-host", "127.0.0.1", "-target-port", fmt.Sprint(target.Port), "-target-user", "pwuser", "-ask-pass")
	if err != nil || !strings.Contains(out, "MATCH") {
		t.Fatalf("DSN and prompt: %v\n%s", err, rsTailString(out, 3000))
	}
	if !strings.Contains(out, "warning: -source (a DSN with a password) puts the password on the command line") {
		t.Errorf("no warning about the password on the command line:\n%s", rsTailString(out, 2000))
	}
	check("argv and prompt", out)

	// The environment, and the -source-password flag; logs as JSON.
	out, err = copydb("", []string{"FERRY_TARGET_PASSWORD=" + tgtPW},
		"-source-port", fmt.Sprint(source.Port), "-source-user", "pwuser", "-source-password", srcPW,
		"-target-port", fmt.Sprint(target.Port), "-target-user", "pwuser", "-log-format", "json")
	if err != nil || !strings.Contains(out, "MATCH") {
		t.Fatalf("environment and -source-password: %v\n%s", err, rsTailString(out, 3000))
	}
	if !strings.Contains(out, "warning: -source-password puts the password on the command line") {
		t.Errorf("no warning about -source-password:\n%s", rsTailString(out, 2000))
	}
	check("env and -source-password", out)
	var jsonLines int
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "{") {
			var entry map[string]any
			if err := json.Unmarshal([]byte(line), &entry); err != nil || entry["level"] == nil || entry["msg"] == nil {
				t.Errorf("-log-format json: a line that is not a JSON log entry: %s (%v)", line, err)
			}
			jsonLines++
		} else if strings.Contains(line, "level=") {
			t.Errorf("-log-format json: a text log line: %s", line)
		}
	}
	if jsonLines == 0 {
		t.Errorf("-log-format json: no JSON log line at debug level:\n%s", rsTailString(out, 2000))
	}
}
