package osc

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Command runs one interactive command and returns its answer:
//
//	status                   the status line
//	throttle / no-throttle   pause / resume the row copy
//	chunk-size=N             rows per copy chunk from the next chunk on
//	cut-over / unpostpone    let a postponed cut-over go
//	panic                    stop the migration now (the original table stays unchanged)
//	help                     this list
func (m *Migration) Command(cmd string) (string, error) {
	cmd = strings.TrimSpace(cmd)
	name, arg, _ := strings.Cut(cmd, "=")
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "status", "":
		return m.Status().String(), nil
	case "throttle":
		m.Throttle(true)
		return "throttled", nil
	case "no-throttle", "unthrottle":
		m.Throttle(false)
		return "not throttled", nil
	case "chunk-size":
		n, err := strconv.Atoi(strings.TrimSpace(arg))
		if err != nil {
			return "", fmt.Errorf("chunk-size=N: %q is not a number", arg)
		}
		if err := m.SetChunkSize(n); err != nil {
			return "", err
		}
		return fmt.Sprintf("chunk size %d", n), nil
	case "cut-over", "unpostpone":
		m.Unpostpone()
		return "cut-over allowed", nil
	case "panic":
		m.Panic()
		return "stopping", nil
	case "help":
		return "commands: status, throttle, no-throttle, chunk-size=N, cut-over (unpostpone), panic" + m.extraHelp(), nil
	}
	if m.ExtraCommands != nil {
		if answer, ok, err := m.ExtraCommands(strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(arg)); ok {
			return answer, err
		}
	}
	return "", fmt.Errorf("unknown command %q (try help)", cmd)
}

func (m *Migration) extraHelp() string {
	if m.ExtraCommands == nil {
		return ""
	}
	if a, ok, _ := m.ExtraCommands("help", ""); ok && a != "" {
		return ", " + a
	}
	return ""
}

// ServeSocket answers Command lines on a unix socket (one command per line, one answer line each,
// e.g. `echo status | nc -U /tmp/osc.sock`) until the returned stop function is called.
func (m *Migration) ServeSocket(path string) (stop func(), err error) {
	if st, err := os.Stat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
		if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("osc: socket %s is in use by another process", path)
		}
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("osc: serve socket: %w", err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Minute))
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					ans, err := m.Command(sc.Text())
					if err != nil {
						ans = "error: " + err.Error()
					}
					fmt.Fprintln(c, ans)
				}
			}()
		}
	}()
	return func() { l.Close(); os.Remove(path) }, nil
}
