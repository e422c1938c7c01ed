package ferry

import (
	"io"
	"log/slog"
)

// quietSlog silences go-mysql's own logging; ferry logs what matters through its logrus logger.
func quietSlog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
