package ferry

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	_ "github.com/pingcap/tidb/pkg/parser/test_driver" // value expressions of the AST (the parser needs a driver)
)

// Statement classification: which tables a statement found in the binlog (a query event) may change.
//
// In a row-format binlog every row change arrives as a row image, so a query event is either
// transaction control (BEGIN, COMMIT, XA, SAVEPOINT), DDL, or statement-format DML from a session that
// overrode binlog_format. ferry must stop when such a statement changes a copied table's schema or
// rows (it cannot apply it faithfully), and must NOT stop for statements that merely mention the
// table's name: DROP EVENT t, CREATE VIEW v AS SELECT … FROM t, CREATE TRIGGER … ON t (its effects
// arrive as row images), a comment or string holding the name, another schema's t. Names are
// therefore taken from a real SQL parser's syntax tree, never from the statement's text; a
// statement the parser cannot read is refused when its text names a copied table or database, and
// ignored only when its leading keywords prove it creates or drops an object that cannot change a
// table's rows or schema (events, triggers, routines, views, users, servers).

// tableName is a table a statement may change; Database is resolved against the statement's default
// database.
type tableName struct{ Database, Name string }

// statementEffect is what a statement may change.
type statementEffect struct {
	// Kind is "DDL" or "statement-format DML"; empty when the statement changes no table.
	Kind string
	// Tables the statement may change (create, drop, rename from or to, alter, truncate, write).
	Tables []tableName
	// Databases the statement drops as a whole.
	Databases []string
	// Unparsed is set when the parser could not read a statement that may be DDL or DML: the caller
	// must decide by the statement's text, conservatively.
	Unparsed error
}

// touches reports whether the effect may change database.table.
func (e statementEffect) touches(database, table string) bool {
	for _, d := range e.Databases {
		if strings.EqualFold(d, database) {
			return true
		}
	}
	for _, t := range e.Tables {
		// Case-insensitive: with lower_case_table_names=0 names are case-sensitive, so this may stop
		// a run for a statement about a differently-cased twin; it never misses the copied table.
		if strings.EqualFold(t.Database, database) && strings.EqualFold(t.Name, table) {
			return true
		}
	}
	return false
}

// mariadbOnly rewrites MariaDB syntax the parser does not know into an equivalent form for the
// purpose of naming tables: CREATE OR REPLACE TABLE replaces (so changes) the table just like
// CREATE TABLE names it; ALTER ONLINE/IGNORE TABLE alters it like ALTER TABLE.
var mariadbOnly = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`(?is)^\s*CREATE\s+OR\s+REPLACE\s+((?:TEMPORARY\s+)?TABLE)\b`), "CREATE $1"},
	{regexp.MustCompile(`(?is)^\s*ALTER\s+(?:ONLINE\s+)?(?:IGNORE\s+)?TABLE\b`), "ALTER TABLE"},
}

// harmlessObject matches the leading keywords of DDL on objects that cannot change a table's rows or
// schema; used only for statements the parser cannot read.
var harmlessObject = regexp.MustCompile(`(?is)^(CREATE|DROP|ALTER)\s+(OR\s+REPLACE\s+)?(DEFINER\s*=\s*(` + "`[^`]*`|'[^']*'|[^\\s@]+)(@(`[^`]*`|'[^']*'|\\S+))?" + `\s+)?(SQL\s+SECURITY\s+\w+\s+)?(AGGREGATE\s+)?(EVENT|TRIGGER|PROCEDURE|FUNCTION|PACKAGE|VIEW|USER|ROLE|SERVER)\b`)

// executableComment is /*!NNNNN … */ or /*M!NNNNNN … */: text the server executes (dump files wrap
// DDL in them), so it is part of the statement, not a comment.
var executableComment = regexp.MustCompile(`(?s)/\*M?!\d*(.*?)\*/`)

func unwrapExecutableComments(q string) string {
	return executableComment.ReplaceAllString(q, " $1 ")
}

// classifyStatement says which tables a statement from the binlog may change. defaultDB is the
// database the statement ran in (the query event's schema).
func classifyStatement(defaultDB, query string) statementEffect {
	q := leadingComment.ReplaceAllString(unwrapExecutableComments(query), "")
	verb := strings.ToUpper(firstWord(q))
	switch verb {
	case "ALTER", "DROP", "RENAME", "TRUNCATE", "CREATE",
		"INSERT", "UPDATE", "DELETE", "REPLACE", "LOAD":
	default:
		return statementEffect{} // transaction control, GRANT, SET, FLUSH, ANALYZE, …
	}
	for _, m := range mariadbOnly {
		q = m.re.ReplaceAllString(q, m.with)
	}
	stmts, _, err := parser.New().Parse(q, "", "")
	if err != nil {
		if harmlessObject.MatchString(q) {
			return statementEffect{}
		}
		kind := "DDL"
		switch verb {
		case "INSERT", "UPDATE", "DELETE", "REPLACE", "LOAD":
			kind = "statement-format DML"
		}
		return statementEffect{Kind: kind, Unparsed: err}
	}
	var eff statementEffect
	add := func(kind string, names ...*ast.TableName) {
		for _, n := range names {
			if n == nil {
				continue
			}
			db := n.Schema.O
			if db == "" {
				db = defaultDB
			}
			eff.Kind = kind
			eff.Tables = append(eff.Tables, tableName{db, n.Name.O})
		}
	}
	for _, st := range stmts {
		switch s := st.(type) {
		case *ast.DropDatabaseStmt:
			eff.Kind = "DDL"
			eff.Databases = append(eff.Databases, s.Name.O)
		case *ast.CreateTableStmt:
			// CREATE TABLE IF NOT EXISTS of a table being copied is a no-op (it exists: had it been
			// dropped, the DROP already stopped the run). Temporary tables shadow, never change, it.
			if !s.IfNotExists && s.TemporaryKeyword == ast.TemporaryNone {
				add("DDL", s.Table)
			}
		case *ast.DropTableStmt:
			if !s.IsView && s.TemporaryKeyword == ast.TemporaryNone {
				add("DDL", s.Tables...)
			}
		case *ast.RenameTableStmt:
			for _, tt := range s.TableToTables {
				add("DDL", tt.OldTable, tt.NewTable)
			}
		case *ast.AlterTableStmt:
			add("DDL", s.Table)
			for _, spec := range s.Specs {
				add("DDL", spec.NewTable) // RENAME TO, EXCHANGE PARTITION WITH TABLE
			}
		case *ast.TruncateTableStmt:
			add("DDL", s.Table)
		case *ast.CreateIndexStmt:
			add("DDL", s.Table)
		case *ast.DropIndexStmt:
			add("DDL", s.Table)
		case *ast.InsertStmt:
			add("statement-format DML", tableNames(s.Table)...)
		case *ast.UpdateStmt:
			add("statement-format DML", tableNames(s.TableRefs)...)
		case *ast.DeleteStmt:
			if s.IsMultiTable && s.Tables != nil {
				add("statement-format DML", tableNames(s.Tables)...)
			} else {
				add("statement-format DML", tableNames(s.TableRefs)...)
			}
		case *ast.LoadDataStmt:
			add("statement-format DML", s.Table)
		}
	}
	return eff
}

// tableNames collects every table named under a node (a FROM clause, a multi-table DELETE's list).
func tableNames(n ast.Node) []*ast.TableName {
	if n == nil {
		return nil
	}
	v := &tableNameCollector{}
	n.Accept(v)
	return v.names
}

type tableNameCollector struct{ names []*ast.TableName }

func (c *tableNameCollector) Enter(n ast.Node) (ast.Node, bool) {
	if t, ok := n.(*ast.TableName); ok {
		c.names = append(c.names, t)
	}
	return n, false
}

func (c *tableNameCollector) Leave(n ast.Node) (ast.Node, bool) { return n, true }

func firstWord(q string) string {
	if i := strings.IndexAny(q, " \t\r\n(/`"); i > 0 {
		return q[:i]
	}
	return q
}

// DDLError is the streamer's refusal of DDL on a copied table: it stops at the statement, after
// handing over every row change before it. (The online schema change expects one at its own
// RENAME and checks that it is that statement.)
type DDLError struct {
	Table string // the copied table
	Query string // the statement
}

// Is makes a DDLError an ErrSchemaChanged for errors.Is.
func (e *DDLError) Is(target error) bool { return target == ErrSchemaChanged }

func (e *DDLError) Error() string {
	return fmt.Sprintf("DDL on copied table %s during the copy (%q): ferry stopped so no row is written under the wrong schema; after the schema change, %s", e.Table, abbreviateSQL(e.Query), startOver)
}

// checkStatement refuses statement-format DML and DDL that may change a copied table: ferry could
// not apply them faithfully, and ignoring them would silently corrupt the copy.
func (s *SourceBinlogStreamer) checkStatement(defaultDB, q string) error {
	eff := classifyStatement(defaultDB, q)
	if eff.Kind == "" {
		return nil
	}
	lower := strings.ToLower(leadingComment.ReplaceAllString(unwrapExecutableComments(q), ""))
	for _, t := range s.Tables {
		db, name := t.Source.Database, t.Source.Name
		if eff.Unparsed != nil {
			if mentionsTable(lower, strings.ToLower(defaultDB), strings.ToLower(db), strings.ToLower(name)) ||
				mentionsTable(lower, "", "", strings.ToLower(db)) {
				return fmt.Errorf("%s that ferry cannot parse (%v) names copied table %s (%q): ferry stopped because it cannot prove the statement leaves the table alone; after the change, %s: %w", eff.Kind, eff.Unparsed, t.Source, abbreviateSQL(q), startOver, ErrSchemaChanged)
			}
			continue
		}
		if !eff.touches(db, name) {
			continue
		}
		if eff.Kind == "DDL" {
			return &DDLError{Table: t.Source.String(), Query: leadingComment.ReplaceAllString(q, "")}
		}
		// Not resumable: the checkpoint is before this event, so a resume would stop here again.
		return fmt.Errorf("%w on copied table %s (%q): its rows cannot be applied faithfully; make every session write with binlog_format=ROW (SET GLOBAL binlog_format = 'ROW', and reconnect sessions that set it themselves), then %s", ErrStatementFormat, t.Source, abbreviateSQL(q), startOver)
	}
	return nil
}
