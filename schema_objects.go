package ferry

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"

	"github.com/ferrykit/ferry/schema"
)

// Kinds of schema objects Config.CreateSchemaObjects can ask for.
const (
	ObjectViews    = "views"
	ObjectRoutines = "routines" // stored procedures and functions
	ObjectEvents   = "events"
	ObjectTriggers = "triggers"
)

// SchemaObject is a view, stored routine, event or trigger of a source database that holds a
// selected table, and what ferry did with it on the target. Initialize lists every such object;
// Ferry.SchemaObjects returns the list, so a host can report what was not created.
//
// Views and routines are created by Initialize, after the tables and before any row is copied
// (neither runs on its own). Triggers and events are created only once every change is applied
// with the source's writes stopped, right before Swap (Cutover.Run), so a trigger never fires on a
// copied or applied row and an event never changes the target while it is being filled; if Swap
// fails they are dropped again, so the Ferry keeps streaming into a target without them.
type SchemaObject struct {
	// Kind is "view", "procedure", "function", "event" or "trigger".
	Kind string `json:"kind"`
	// Name is database.name on the source; for a trigger database.table.trigger.
	Name string `json:"name"`
	// Created says whether ferry created the object on the target.
	Created bool `json:"created"`
	// Note says why the object was not created, or when it will be.
	Note string `json:"note,omitempty"`

	database, name, targetDatabase string
	pending                        bool // requested, not yet created
}

var objectKinds = map[string]string{"view": ObjectViews, "procedure": ObjectRoutines, "function": ObjectRoutines, "event": ObjectEvents, "trigger": ObjectTriggers}

func validateObjectKinds(kinds []string) error {
	for _, k := range kinds {
		switch k {
		case ObjectViews, ObjectRoutines, ObjectEvents, ObjectTriggers:
		default:
			return fmt.Errorf("config: CreateSchemaObjects: unknown kind %q; want %s, %s, %s or %s", k, ObjectViews, ObjectRoutines, ObjectEvents, ObjectTriggers)
		}
	}
	return nil
}

// SchemaObjects lists the views, routines, events and triggers of the source databases that hold
// selected tables, and whether each was created on the target.
func (f *Ferry) SchemaObjects() []SchemaObject {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]SchemaObject, len(f.objects))
	for i, o := range f.objects {
		out[i] = *o
	}
	return out
}

// planSchemaObjects lists the schema objects of the source databases that hold selected tables and
// decides, for each, whether it is created (and when) or why not.
func (f *Ferry) planSchemaObjects(ctx context.Context, tables []*TableCopy) error {
	want := map[string]bool{}
	for _, k := range f.Config.CreateSchemaObjects {
		want[k] = true
	}
	dbs := map[string]string{}         // source database → target database
	renamed := map[string]bool{}       // source databases with a renamed database or table
	selectedTable := map[string]bool{} // source db.table
	for _, t := range tables {
		dbs[t.Source.Database] = t.TargetDatabase
		selectedTable[t.Source.String()] = true
		if t.TargetDatabase != t.Source.Database || t.TargetTable != t.Source.Name {
			renamed[t.Source.Database] = true
		}
	}
	var objs []*SchemaObject
	for db, tdb := range dbs {
		rows, err := f.Source.QueryContext(ctx, `
			SELECT 'view', TABLE_NAME, '' FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ?
			UNION ALL SELECT LOWER(ROUTINE_TYPE), ROUTINE_NAME, '' FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?
			UNION ALL SELECT 'event', EVENT_NAME, '' FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?
			UNION ALL SELECT 'trigger', TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?`, db, db, db, db)
		if err != nil {
			return fmt.Errorf("source: list the schema objects of %s: %w", db, err)
		}
		for rows.Next() {
			var kind, name, table string
			if err := rows.Scan(&kind, &name, &table); err != nil {
				rows.Close()
				return fmt.Errorf("source: list the schema objects of %s: %w", db, err)
			}
			o := &SchemaObject{Kind: kind, Name: db + "." + name, database: db, name: name, targetDatabase: tdb}
			if kind == "trigger" {
				o.Name = db + "." + table + "." + name
			}
			switch {
			case kind == "trigger" && !selectedTable[db+"."+table]:
				o.Note = "its table is not selected"
			case kind == "view" && !f.Config.Tables.Selects(db, name):
				o.Note = "not selected by the table filter"
			case !want[objectKinds[kind]]:
				o.Note = "not requested (" + objectKinds[kind] + ")"
			case renamed[db]:
				o.Note = "its database or a table of it is renamed on the target, and the definition names the source's objects"
			default:
				o.pending = true
			}
			objs = append(objs, o)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("source: list the schema objects of %s: %w", db, err)
		}
	}
	// An object of the same name already on the target is left as it is.
	for _, o := range objs {
		if !o.pending {
			continue
		}
		var q string
		switch o.Kind {
		case "view":
			q = "SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?"
		case "procedure", "function":
			q = "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? AND ROUTINE_NAME = ? AND ROUTINE_TYPE = '" + strings.ToUpper(o.Kind) + "'"
		case "event":
			q = "SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? AND EVENT_NAME = ?"
		case "trigger":
			q = "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? AND TRIGGER_NAME = ?"
		}
		var n int
		if err := f.Target.QueryRowContext(ctx, q, o.targetDatabase, o.name).Scan(&n); err != nil {
			return fmt.Errorf("target: look for %s %s: %w", o.Kind, o.Name, err)
		}
		if n > 0 {
			o.pending, o.Note = false, "already exists on the target (left as it is)"
		} else if o.Kind == "trigger" || o.Kind == "event" {
			o.Note = "created at cut-over, before Swap"
		}
	}
	f.mu.Lock()
	f.objects = objs
	f.mu.Unlock()
	return nil
}

// createEarlySchemaObjects creates the requested views and routines on the target. Views are
// created in rounds, so a view over another view waits for it.
func (f *Ferry) createEarlySchemaObjects(ctx context.Context) error {
	var todo []*SchemaObject
	for _, o := range f.objects {
		if o.pending && o.Kind != "trigger" && o.Kind != "event" {
			todo = append(todo, o)
		}
	}
	for len(todo) > 0 {
		var retry []*SchemaObject
		var lastErr error
		for _, o := range todo {
			if err := f.createSchemaObject(ctx, o); err != nil {
				if o.Kind != "view" {
					return err
				}
				retry, lastErr = append(retry, o), err
			}
		}
		if len(retry) == len(todo) {
			return fmt.Errorf("%w; a view can only be created when every table and view it reads is on the target: copy those too, or do not ask for %s", lastErr, ObjectViews)
		}
		todo = retry
	}
	return nil
}

// CreateDeferredSchemaObjects creates the requested triggers and events that are not created yet.
// Cutover.Run calls it with the source's writes stopped and every change applied, right before
// Swap. A host that cuts over without Cutover (or sets Cutover.SkipSchemaObjects because its Lock
// does not stop writes) calls it once ferry has stopped writing to the target: after Run returned.
func (f *Ferry) CreateDeferredSchemaObjects(ctx context.Context) error {
	for _, o := range f.objects {
		if o.pending {
			if err := f.createSchemaObject(ctx, o); err != nil {
				return err
			}
		}
	}
	return nil
}

// dropDeferredSchemaObjects drops the triggers and events created for a cut-over that then failed.
func (f *Ferry) dropDeferredSchemaObjects(ctx context.Context) error {
	var errs []error
	for _, o := range f.objects {
		if o.Created && (o.Kind == "trigger" || o.Kind == "event") {
			stmt := fmt.Sprintf("DROP %s IF EXISTS %s.%s", strings.ToUpper(o.Kind), schema.QuoteIdent(o.targetDatabase), schema.QuoteIdent(o.name))
			if _, err := f.Target.ExecContext(ctx, stmt); err != nil {
				errs = append(errs, fmt.Errorf("target: drop %s %s after the failed cut-over: %w", o.Kind, o.Name, err))
				continue
			}
			f.mu.Lock()
			o.Created, o.pending, o.Note = false, true, "created at cut-over, before Swap"
			f.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// createSchemaObject creates o on the target from the source's SHOW CREATE (CreateSchemaObject).
func (f *Ferry) createSchemaObject(ctx context.Context, o *SchemaObject) error {
	def, err := ReadSchemaObject(ctx, f.Source, o.Kind, o.database, o.name)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if err := CreateSchemaObject(ctx, f.Target, o.targetDatabase, def); err != nil {
		return err
	}
	f.mu.Lock()
	o.Created, o.pending, o.Note = true, false, ""
	f.mu.Unlock()
	f.log.WithField(o.Kind, o.Name).Info("ferry: created on the target")
	return nil
}

// SchemaObjectDefinition is a view's, routine's, event's or trigger's definition as SHOW CREATE
// gives it, with the session settings it was defined under (which CreateSchemaObject restores, as
// mysqldump does: a routine's body is parsed under its own sql_mode and character set).
type SchemaObjectDefinition struct {
	// Kind is "view", "procedure", "function", "event" or "trigger".
	Kind                string `json:"kind"`
	Database            string `json:"database"`
	Name                string `json:"name"`
	Create              string `json:"create"`
	SQLMode             string `json:"sql_mode,omitempty"`
	CharacterSetClient  string `json:"character_set_client,omitempty"`
	CollationConnection string `json:"collation_connection,omitempty"`
	TimeZone            string `json:"time_zone,omitempty"`
}

// CreateSchemaObject creates def in database on the target, in a session with the sql_mode,
// character set, collation (and for events time zone) the object was defined under. The session is
// discarded afterwards, so no pooled connection keeps them.
func CreateSchemaObject(ctx context.Context, target *sql.DB, database string, def *SchemaObjectDefinition) error {
	name := def.Database + "." + def.Name
	conn, err := target.Conn(ctx)
	if err != nil {
		return fmt.Errorf("target: create %s %s: %w", def.Kind, name, err)
	}
	defer func() {
		conn.Raw(func(any) error { return driver.ErrBadConn })
		conn.Close()
	}()
	stmts := []string{"USE " + schema.QuoteIdent(database)}
	for _, v := range []struct{ name, value string }{{"sql_mode", def.SQLMode}, {"character_set_client", def.CharacterSetClient},
		{"collation_connection", def.CollationConnection}, {"time_zone", def.TimeZone}} {
		if v.value != "" {
			stmts = append(stmts, "SET SESSION "+v.name+" = "+schema.QuoteString(v.value))
		}
	}
	stmts = append(stmts, def.Create)
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("target: create %s %s: %w", def.Kind, name, err)
		}
	}
	return nil
}

// ReadSchemaObject reads an object's definition and the session settings it was defined under.
func ReadSchemaObject(ctx context.Context, db *sql.DB, kind, database, name string) (*SchemaObjectDefinition, error) {
	what := kind + " " + database + "." + name
	rows, err := db.QueryContext(ctx, fmt.Sprintf("SHOW CREATE %s %s.%s", strings.ToUpper(kind), schema.QuoteIdent(database), schema.QuoteIdent(name)))
	if err != nil {
		return nil, fmt.Errorf("read the definition of %s: %w", what, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read the definition of %s: %w", what, err)
		}
		return nil, fmt.Errorf("read the definition of %s: it no longer exists", what)
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, fmt.Errorf("read the definition of %s: %w", what, err)
	}
	def := &SchemaObjectDefinition{Kind: kind, Database: database, Name: name}
	for i, c := range cols {
		switch lc := strings.ToLower(c); {
		case strings.HasPrefix(lc, "create ") || lc == "sql original statement":
			def.Create = vals[i].String
		case lc == "sql_mode":
			def.SQLMode = vals[i].String
		case lc == "character_set_client":
			def.CharacterSetClient = vals[i].String
		case lc == "collation_connection":
			def.CollationConnection = vals[i].String
		case lc == "time_zone":
			def.TimeZone = vals[i].String
		}
	}
	if def.Create == "" {
		return nil, fmt.Errorf("read the definition of %s: the server shows no definition (does the user lack SHOW VIEW, or the routine's privileges?)", what)
	}
	return def, nil
}

// notCreated describes the schema objects not created on the target, for a log line.
func notCreated(objs []*SchemaObject) string {
	var b []string
	for _, o := range objs {
		if !o.Created && !o.pending {
			b = append(b, fmt.Sprintf("%s %s (%s)", o.Kind, o.Name, o.Note))
		}
	}
	return strings.Join(b, "; ")
}
