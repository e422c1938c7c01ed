package ferry

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

// go-mysql's log reaches the host's logger at debug level, with its attributes, and nothing at info.
func TestGoMySQLLogRoutedAtDebug(t *testing.T) {
	var buf bytes.Buffer
	l := logrus.New()
	l.SetOutput(&buf)
	l.SetLevel(logrus.InfoLevel)
	goMySQLLogger(l.WithField("run", 1)).Warn("retry sync", "position", 4)
	if buf.Len() != 0 {
		t.Fatalf("logged at info level: %s", buf.String())
	}
	l.SetLevel(logrus.DebugLevel)
	goMySQLLogger(l.WithField("run", 1)).With("conn", 7).Warn("retry sync", "position", 4)
	for _, w := range []string{"level=debug", `msg="retry sync"`, "component=go-mysql", "go_mysql_level=WARN", "position=4", "conn=7", "run=1"} {
		if !strings.Contains(buf.String(), w) {
			t.Errorf("log line lacks %s: %s", w, buf.String())
		}
	}
}
