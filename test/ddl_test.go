package test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

// On a real binlog stream, statements that only mention a copied table's name leave the run going,
// and statements that change the table stop it, even when they do not name it.
func TestDDLOnRealStream(t *testing.T) {
	harmless := []string{
		"CREATE EVENT ddl_cls.t ON SCHEDULE EVERY 1 HOUR DISABLE DO DELETE FROM ddl_cls.t",
		"DROP EVENT ddl_cls.t",
		"CREATE VIEW ddl_cls.v AS SELECT id, v FROM ddl_cls.t",
		"CREATE TRIGGER ddl_cls.other_bi BEFORE INSERT ON ddl_cls.other FOR EACH ROW SET NEW.v = (SELECT COUNT(*) FROM ddl_cls.t)",
		"CREATE TABLE ddl_other.t (id INT PRIMARY KEY)",
		"DROP TABLE ddl_other.t",
		"ALTER TABLE ddl_cls.other ADD COLUMN t INT COMMENT 'like t'",
		"CREATE TABLE IF NOT EXISTS ddl_cls.t (id INT PRIMARY KEY)",
	}
	for _, c := range []struct {
		name, stmt, want string
	}{
		{"truncate", "TRUNCATE ddl_cls.t", "DDL on copied table ddl_cls.t"},
		{"drop database", "DROP DATABASE ddl_cls", "DDL on copied table ddl_cls.t"},
		{"rename other to t", "RENAME TABLE ddl_cls.t TO ddl_cls.t_old, ddl_cls.other TO ddl_cls.t", "DDL on copied table ddl_cls.t"},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS ddl_cls", "DROP DATABASE IF EXISTS ddl_other",
				"CREATE DATABASE ddl_cls", "CREATE DATABASE ddl_other",
				"CREATE TABLE ddl_cls.t (id INT PRIMARY KEY, v VARCHAR(20))",
				"CREATE TABLE ddl_cls.other (id INT PRIMARY KEY, v VARCHAR(20))",
				"INSERT INTO ddl_cls.t VALUES (1, 'a'), (2, 'b')"))
			must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS ddl_cls"))
			f, err := ferry.New(ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Include: []string{"ddl_cls.t"}},
				CreateTargetTables: true, Logger: testLogger(t)})
			must(t, err)
			defer f.Close()
			must(t, f.Initialize(ctx))
			must(t, f.Start(ctx))
			errc := make(chan error, 1)
			go func() { errc <- f.Run(ctx) }()
			must(t, f.WaitUntilRowCopyIsComplete(ctx))

			must(t, source.Exec(ctx, harmless...))
			must(t, source.Exec(ctx, "UPDATE ddl_cls.t SET v = 'after' WHERE id = 1"))
			waitFor(t, ctx, "the update after the harmless statements on the target", func() bool {
				select {
				case err := <-errc:
					t.Fatalf("a statement that only mentions the copied table stopped the run: %v", err)
				default:
				}
				return count(t, target, "SELECT COUNT(*) FROM ddl_cls.t WHERE id = 1 AND v = 'after'") == 1
			})

			must(t, source.Exec(ctx, c.stmt))
			select {
			case err := <-errc:
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("Run returned %v, want an error containing %q", err, c.want)
				}
			case <-ctx.Done():
				t.Fatalf("%s did not stop the run", c.stmt)
			}
		})
	}
}
