// Package test holds ferry's integration tests. They run against real MariaDB servers started by
// the sandbox package; nothing is mocked.
package test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/sandbox"
)

var source, target *sandbox.Server

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	var err error
	source, err = sandbox.Start(ctx, sandbox.Options{})
	if err == nil {
		target, err = sandbox.Start(ctx, sandbox.Options{})
	}
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start sandbox servers:", err)
		if source != nil {
			source.Stop()
		}
		os.Exit(1)
	}
	code := m.Run()
	if copydbBuild.dir != "" {
		os.RemoveAll(copydbBuild.dir)
	}
	source.Stop()
	target.Stop()
	os.Exit(code)
}

func conn(s *sandbox.Server) ferry.ConnConfig {
	return ferry.ConnConfig{Host: s.Host, Port: s.Port, User: s.User}
}

func testLogger(t testing.TB) logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	if testing.Verbose() {
		l.SetLevel(logrus.InfoLevel)
	}
	return l.WithField("test", t.Name())
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
