package cli

import (
	"flag"
	"fmt"
	"io"

	"github.com/sirupsen/logrus"
)

// LogFlags are -log-level and -log-format.
type LogFlags struct {
	level, format string
}

// AddLogFlags registers -log-level (default level) and -log-format (text or json) on fs.
func AddLogFlags(fs *flag.FlagSet, level string) *LogFlags {
	l := &LogFlags{}
	fs.StringVar(&l.level, "log-level", level, "log level: debug, info, warn, error")
	fs.StringVar(&l.format, "log-format", "text", "log format: text, or json (one object per line, for log collectors)")
	return l
}

// SetLevel changes the level as if -log-level had been given (for a tool's older -verbose flag).
func (l *LogFlags) SetLevel(level string) { l.level = level }

// Logger builds the logger the flags describe, writing to w.
func (l *LogFlags) Logger(w io.Writer) (*logrus.Logger, error) {
	log := logrus.New()
	log.SetOutput(w)
	lvl, err := logrus.ParseLevel(l.level)
	if err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	log.SetLevel(lvl)
	switch l.format {
	case "text":
	case "json":
		log.SetFormatter(&logrus.JSONFormatter{})
	default:
		return nil, fmt.Errorf("-log-format %q: want text or json", l.format)
	}
	return log, nil
}
