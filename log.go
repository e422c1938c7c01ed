package ferry

import (
	"context"
	"log/slog"

	"github.com/sirupsen/logrus"
)

// goMySQLLogger routes go-mysql's own log (the binlog connection's reconnects, heartbeat settings,
// protocol oddities) into the host's logger at debug level, tagged component=go-mysql: invisible by
// default, there when debugging a stream. Its levels are kept as a field, not mapped up, so a
// library's warning never outranks ferry's own judgement of what matters.
func goMySQLLogger(log logrus.FieldLogger) *slog.Logger {
	return slog.New(logrusHandler{log: log.WithField("component", "go-mysql")})
}

type logrusHandler struct {
	log   logrus.FieldLogger
	attrs []slog.Attr
	group string
}

func (h logrusHandler) Enabled(context.Context, slog.Level) bool {
	if l, ok := h.log.(interface{ Logger() *logrus.Logger }); ok {
		return l.Logger().IsLevelEnabled(logrus.DebugLevel)
	}
	if e, ok := h.log.(*logrus.Entry); ok {
		return e.Logger.IsLevelEnabled(logrus.DebugLevel)
	}
	if l, ok := h.log.(*logrus.Logger); ok {
		return l.IsLevelEnabled(logrus.DebugLevel)
	}
	return true
}

func (h logrusHandler) Handle(_ context.Context, r slog.Record) error {
	fields := logrus.Fields{"go_mysql_level": r.Level.String()}
	add := func(a slog.Attr) {
		k := a.Key
		if h.group != "" {
			k = h.group + "." + k
		}
		fields[k] = a.Value.Resolve().Any()
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(func(a slog.Attr) bool { add(a); return true })
	h.log.WithFields(fields).Debug(r.Message)
	return nil
}

func (h logrusHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return h
}

func (h logrusHandler) WithGroup(name string) slog.Handler {
	if h.group != "" {
		name = h.group + "." + name
	}
	h.group = name
	return h
}
