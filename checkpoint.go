package ferry

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
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
