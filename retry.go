package ferry

import (
	"context"

	"github.com/sirupsen/logrus"

	iretry "github.com/ferrykit/ferry/internal/retry"
)

// The retry policy lives in internal/retry, shared with the verifiers; these are its names inside
// this package.

func isTransient(err error) bool { return iretry.Transient(err) }

func retry(ctx context.Context, attempts int, log logrus.FieldLogger, what string, op func() error) error {
	return iretry.Do(ctx, attempts, log, what, op)
}

func permanent(err error) error { return iretry.Permanent(err) }

func unwrapPermanent(err error) error { return iretry.Unwrap(err) }

func asPermanent(err error) (error, bool) { return iretry.AsPermanent(err) }
