package osc

import (
	"context"
	"testing"
)

// Statements that only mention the migrated table's name — an event named like it, a view and a
// trigger over it, the same name in another schema — do not stop the online schema change (it
// shares the binlog streamer's parser-based classification), while the change still finishes
// exactly. They run while the stream is being applied, after the row copy.
func TestMentionsOfTheTableDoNotStopTheMigration(t *testing.T) {
	f := newFixture(t, 5000)
	alter := "ADD COLUMN x INT NULL"
	m := f.migration(alter)
	m.Hooks.Func = func(ctx context.Context, point HookPoint, st Status, runErr error) error {
		if point != HookRowCopyComplete {
			return nil
		}
		for _, q := range []string{
			"CREATE EVENT t ON SCHEDULE EVERY 1 HOUR DISABLE DO DELETE FROM t",
			"DROP EVENT t",
			"CREATE VIEW v AS SELECT * FROM t",
			"DROP VIEW v",
			"CREATE TABLE twin_log (id INT PRIMARY KEY)",
			"CREATE TRIGGER twin_ai AFTER INSERT ON twin_log FOR EACH ROW SET @n = (SELECT COUNT(*) FROM t)",
			"DROP TABLE twin_log",
		} {
			if _, err := f.db.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}
	runUnderLoad(t, f, m, alter)
}
