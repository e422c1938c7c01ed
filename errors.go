package ferry

import (
	"errors"
	"time"

	"github.com/ferrykit/ferry/internal/apply"
)

// Decisions a host can test for with errors.Is. The error ferry returns wraps one of these and says,
// in its own text, what exactly was found and what to do about it; the sentinel's text is a word or
// two of that sentence.
var (
	// ErrBinlogPurged: the source no longer has the binary log the stream (or a resume) must read,
	// so the changes in it are lost to ferry: the copy must start over, and the source should keep
	// its binlogs longer.
	ErrBinlogPurged = errors.New("purged")
	// ErrSchemaChanged: the definition of a copied table changed while ferry was running (DDL on it,
	// or a binlog row of a different shape); ferry stopped before writing a row under the wrong
	// schema.
	ErrSchemaChanged = errors.New("schema changed")
	// ErrResumeMismatch: a checkpoint cannot be resumed on what it was handed (another ALTER, a
	// table whose definition changed, a missing or different target table, a purged binlog, an
	// unknown state format): the work must start over.
	ErrResumeMismatch = errors.New("cannot resume")
	// ErrSameServer: source and target are one server (the same address, an alias or a proxy).
	ErrSameServer = errors.New("same server")
	// ErrTargetReadOnly: the target server refuses writes (read_only, super_read_only,
	// innodb_read_only).
	ErrTargetReadOnly = errors.New("read-only")
	// ErrWritesNotStopped: after the cut-over's Lock the source still took writes, so the cut-over
	// was aborted before anything was swapped (the source unlocked, the Ferry still streaming).
	ErrWritesNotStopped = errors.New("writes did not stop")
	// ErrRowTooLarge: a row does not fit in one statement the target accepts (its
	// max_allowed_packet); the error names the table, the row's key, the size and the setting.
	ErrRowTooLarge = apply.ErrRowTooLarge
	// ErrPanicFlag: the Config.PanicFlagFile appeared, so the run stopped at once: the open copy
	// batches were rolled back (no source row stays locked) and the checkpoint was saved, so the
	// work can be resumed.
	ErrPanicFlag = errors.New("panic flag file")
	// ErrStatementFormat: a session wrote a copied table with binlog_format=STATEMENT (or MIXED
	// chose statement format), so the binlog holds the statement, not the rows it changed; ferry
	// cannot apply it faithfully, and a resume would stop at the same event again.
	ErrStatementFormat = errors.New("statement-format DML")
	// ErrSourceChanged: the binlog connection reached another server than the one the run was
	// reading (an address moved to a promoted replica): its binlog files and offsets mean nothing
	// for the run's position, so the stream stopped. A resume (or Config.SourceResolver) continues
	// on the new server by GTID when that is exact.
	ErrSourceChanged = errors.New("source server changed")
)

// startOver is the one next step after an error that no resume can get past.
const startOver = "start the copy over: empty (or drop) the target tables and run without resume"

// Resumable reports whether a run that failed with err can be continued from its checkpoint
// (Config.Resume) once the cause is fixed: false when the checkpoint itself is unusable (its binlog
// purged, a schema changed, a statement-format change it cannot apply, another selection or server)
// or when the copy was found to differ.
func Resumable(err error) bool {
	for _, e := range []error{ErrBinlogPurged, ErrSchemaChanged, ErrStatementFormat, ErrResumeMismatch, ErrVerificationFailed, ErrSameServer} {
		if errors.Is(err, e) {
			return false
		}
	}
	return err != nil
}

// LagReporter is the optional capability of a BinlogWriter to say how far behind the source it is;
// Ferry.BinlogLag and the cut-over's wait for the catch-up use it when the writer has it.
type LagReporter interface {
	// Lag is how long the oldest change not yet applied has been waiting (0 when caught up).
	Lag() time.Duration
}
