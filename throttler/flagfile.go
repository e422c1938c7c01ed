package throttler

import (
	"context"
	"errors"
	"io/fs"
	"os"
)

// FlagFile throttles while a file exists at Path (gh-ost's --throttle-flag-file): an operator runs
// `touch` to pause ferry and `rm` to let it go on.
//
// Guarantees: Check stats the file on every call (no caching: a stat is cheap), so removing the
// file releases the throttle at the next poll. If the file's existence cannot be determined (for
// example permission denied on its directory) Check fails closed: throttled, with the error in
// the reason. An empty Path never throttles.
type FlagFile struct {
	Path string
}

// Check implements Throttler.
func (f FlagFile) Check(context.Context) (Status, error) {
	if f.Path == "" {
		return Status{}, nil
	}
	_, err := os.Stat(f.Path)
	switch {
	case err == nil:
		return Status{Throttled: true, Reason: "flag file " + f.Path + " exists"}, nil
	case errors.Is(err, fs.ErrNotExist):
		return Status{}, nil
	default:
		return Status{Throttled: true, Reason: "flag file " + f.Path + " cannot be checked", Detail: err.Error()}, nil
	}
}
