package test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

// A change the streamer cannot apply faithfully stops the run with a clear error instead of being
// skipped: statement-format DML and DDL on a copied table.
func TestStreamerRefusesWhatItCannotApply(t *testing.T) {
	for _, c := range []struct {
		name string
		stmt []string
		want string
	}{
		{"statement DML", []string{"SET SESSION binlog_format = 'STATEMENT'", "UPDATE refuse.big SET payload = 'stmt' WHERE id < 10"}, "statement-format DML on copied table refuse.big"},
		{"DDL", []string{"ALTER TABLE refuse.strkey ADD COLUMN extra INT"}, "DDL on copied table refuse.strkey"},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			createSchema(t, source, "refuse", 1000)
			must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS refuse"))
			f, errc := startFerry(t, ctx, "refuse", nil)
			must(t, f.WaitUntilRowCopyIsComplete(ctx))
			must(t, source.Exec(ctx, strings.Join(c.stmt, ";\n")))
			select {
			case err := <-errc:
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("Run returned %v, want an error containing %q", err, c.want)
				}
				// The checkpoint is before the event: a resume would stop at it again.
				if ferry.Resumable(err) {
					t.Fatalf("ferry.Resumable(%v) = true, want false", err)
				}
			case <-ctx.Done():
				t.Fatal("Run did not stop")
			}
		})
	}
}
