package osc

import (
	"reflect"
	"sort"
	"strings"
	"testing"
)

// What parseAlter learns from the ALTER clause alone: renames (which must be approved), and the
// columns dropped and added by name (a column dropped and added again is a new column). It needs
// no server; the rest of the plan comes from comparing the original with the altered ghost table.
func TestParseAlter(t *testing.T) {
	for _, c := range []struct {
		alter   string
		renames [][2]string
		dropped []string
		added   []string
	}{
		{alter: "ADD COLUMN c INT", added: []string{"c"}},
		{alter: "ADD c INT NULL, ADD COLUMN IF NOT EXISTS `D e` VARCHAR(3)", added: []string{"c", "d e"}},
		{alter: "ADD COLUMN (a INT, b DECIMAL(10,2) DEFAULT 0)", added: []string{"a", "b"}},
		{alter: "DROP COLUMN x, DROP y", dropped: []string{"x", "y"}},
		{alter: "DROP COLUMN IF EXISTS x", dropped: []string{"x"}},
		// dropping an index, key or constraint drops no column
		{alter: "DROP INDEX i, DROP KEY k, DROP PRIMARY KEY, DROP FOREIGN KEY f, DROP CONSTRAINT c, DROP CHECK ch"},
		{alter: "ADD INDEX i (a), ADD UNIQUE KEY u (b), ADD PRIMARY KEY (id), ADD FULLTEXT (t), ADD CONSTRAINT c CHECK (a > 0)"},
		{alter: "CHANGE old new INT", renames: [][2]string{{"old", "new"}}},
		{alter: "CHANGE COLUMN a a BIGINT"}, // same name: a type change, not a rename
		{alter: "CHANGE COLUMN A a BIGINT"}, // names are case-insensitive
		{alter: "RENAME COLUMN a TO b, RENAME INDEX i TO j", renames: [][2]string{{"a", "b"}}},
		{alter: "MODIFY c BIGINT NOT NULL, ENGINE=InnoDB, CONVERT TO CHARACTER SET utf8mb4"},
		{alter: "DROP COLUMN c, ADD COLUMN c INT", dropped: []string{"c"}, added: []string{"c"}},
		// comments, quoted names with commas and strings with keywords do not confuse the clauses
		{alter: "ADD COLUMN `a,b` INT /* DROP COLUMN z */ DEFAULT 1, ADD d VARCHAR(9) DEFAULT 'x, DROP y' -- RENAME COLUMN p TO q\n;",
			added: []string{"a,b", "d"}},
	} {
		info, err := parseAlter(c.alter)
		if err != nil {
			t.Errorf("parseAlter(%q): %v", c.alter, err)
			continue
		}
		if !reflect.DeepEqual(info.renameOrder, c.renames) {
			t.Errorf("parseAlter(%q): renames %v, want %v", c.alter, info.renameOrder, c.renames)
		}
		for _, kind := range []struct {
			name string
			got  map[string]bool
			want []string
		}{{"dropped", info.dropped, c.dropped}, {"added", info.added, c.added}} {
			var got []string
			for n := range kind.got {
				got = append(got, n)
			}
			sort.Strings(got)
			if !reflect.DeepEqual(got, kind.want) && (len(got) > 0 || len(kind.want) > 0) {
				t.Errorf("parseAlter(%q): %s %v, want %v", c.alter, kind.name, got, kind.want)
			}
		}
	}
	if info, _ := parseAlter("DROP COLUMN c, ADD COLUMN c INT"); !info.readded("C") {
		t.Error("a column dropped and added again is not reported as re-added")
	}
}

// parseAlter refuses, before anything is written, what an online schema change through a ghost
// table cannot do, saying what to do instead.
func TestParseAlterRefuses(t *testing.T) {
	for _, c := range []struct{ alter, want string }{
		{"", "empty ALTER clause"},
		{" ; ", "empty ALTER clause"},
		{"ALTER TABLE t ADD COLUMN c INT", "give only the ALTER clause"},
		{"RENAME TO t2", "renames the table"},
		{"ADD COLUMN c INT, ALGORITHM=INPLACE", "has an ALGORITHM clause; leave it out"},
		{"ADD COLUMN c INT, LOCK=NONE", "has an LOCK clause; leave it out"},
		{"DISCARD TABLESPACE", "DISCARD is not a schema change"},
		{"TRUNCATE PARTITION p0", "TRUNCATE is not a schema change"},
		{"OPTIMIZE PARTITION p0", "OPTIMIZE is not a schema change"},
		{"ADD COLUMN c INT,, DROP d", "empty clause"},
	} {
		_, err := parseAlter(c.alter)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseAlter(%q) = %v, want an error containing %q", c.alter, err, c.want)
		}
	}
}
