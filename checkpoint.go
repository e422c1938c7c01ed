package ferry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ferrykit/ferry/internal/retry"
	"github.com/ferrykit/ferry/schema"
)

// CheckpointSink stores the resumable state. Save must be atomic: a reader sees the previous state
// or the new one, never a mix.
type CheckpointSink interface {
	Save(ctx context.Context, s *State) error
}

// FileCheckpoint saves the state as JSON to a file, atomically (write to a temporary file, fsync,
// rename).
type FileCheckpoint struct{ Path string }

// Save implements CheckpointSink.
func (c FileCheckpoint) Save(_ context.Context, s *State) error {
	b, err := MarshalState(s)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.Path), ".ferry-state-*")
	if err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.Path); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	return nil
}

// LoadCheckpointFile reads a state saved by FileCheckpoint.
func LoadCheckpointFile(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load checkpoint: %w", err)
	}
	return UnmarshalState(b)
}

// ErrNoCheckpoint is returned (wrapped) by LoadCheckpointTable when no state was saved under the name.
var ErrNoCheckpoint = errors.New("no checkpoint saved")

// TableCheckpoint saves the state as JSON in one row of a table, usually on the target, so the state
// lives with the data it describes. Each Save is a single REPLACE, atomic like any statement; the
// table is created on first use:
//
//	CREATE TABLE IF NOT EXISTS <Database>.<Table> (name VARCHAR(191) PRIMARY KEY, state LONGTEXT NOT NULL, written DATETIME(6) NOT NULL)
//
// Put it in a database that is not copied. A save that fails on a transient error (the server
// restarting) is retried a few times; a failed periodic save only delays the checkpoint.
type TableCheckpoint struct {
	DB *sql.DB
	// Database and Table name the table; Table defaults to "_ferry_state".
	Database, Table string
	// Name identifies the run's row; default "default".
	Name string

	mu      sync.Mutex
	created bool
}

func (c *TableCheckpoint) qualified() string {
	table := c.Table
	if table == "" {
		table = "_ferry_state"
	}
	return schema.QuoteIdent(c.Database) + "." + schema.QuoteIdent(table)
}

func (c *TableCheckpoint) name() string {
	if c.Name == "" {
		return "default"
	}
	return c.Name
}

// Save implements CheckpointSink.
func (c *TableCheckpoint) Save(ctx context.Context, s *State) error {
	if c.Database == "" {
		return errors.New("save checkpoint: TableCheckpoint needs a Database")
	}
	b, err := MarshalState(s)
	if err != nil {
		return err
	}
	return retry.Do(ctx, 3, logrus.StandardLogger(), "save checkpoint to "+c.qualified(), func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.created {
			if _, err := c.DB.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+c.qualified()+
				" (name VARCHAR(191) NOT NULL PRIMARY KEY, state LONGTEXT NOT NULL, written DATETIME(6) NOT NULL) ENGINE=InnoDB"); err != nil {
				return fmt.Errorf("save checkpoint: create %s: %w", c.qualified(), err)
			}
			c.created = true
		}
		_, err := c.DB.ExecContext(ctx, "REPLACE INTO "+c.qualified()+" (name, state, written) VALUES (?, ?, ?)", c.name(), b, s.Written.UTC().Format("2006-01-02 15:04:05.000000"))
		if err != nil {
			return fmt.Errorf("save checkpoint to %s: %w", c.qualified(), err)
		}
		return nil
	})
}

// LoadCheckpointTable reads the state a TableCheckpoint saved under name ("" is "default").
func LoadCheckpointTable(ctx context.Context, db *sql.DB, database, table, name string) (*State, error) {
	c := &TableCheckpoint{Database: database, Table: table, Name: name}
	var b []byte
	err := db.QueryRowContext(ctx, "SELECT state FROM "+c.qualified()+" WHERE name = ?", c.name()).Scan(&b)
	if err == sql.ErrNoRows {
		return nil, fmt.Errorf("load checkpoint %q from %s: %w", c.name(), c.qualified(), ErrNoCheckpoint)
	}
	if err != nil {
		return nil, fmt.Errorf("load checkpoint from %s: %w", c.qualified(), err)
	}
	return UnmarshalState(b)
}

// CheckpointFunc adapts a function to CheckpointSink.
type CheckpointFunc func(ctx context.Context, s *State) error

// Save calls f.
func (f CheckpointFunc) Save(ctx context.Context, s *State) error { return f(ctx, s) }

func (f *Ferry) checkpointLoop(ctx context.Context, stop <-chan struct{}) {
	every := f.CheckpointInterval
	if every <= 0 {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-t.C:
			if err := f.Checkpoints.Save(ctx, f.State()); err != nil {
				f.log.WithError(err).Warn("ferry: checkpoint not saved")
			}
		}
	}
}
