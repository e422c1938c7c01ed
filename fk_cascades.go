package ferry

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/ferrykit/ferry/internal/apply"
	"github.com/ferrykit/ferry/schema"
)

// A cascading foreign key (ON DELETE/ON UPDATE CASCADE or SET NULL) is carried out inside the
// source's storage engine: the binlog shows the parent's change and nothing for the children.
// Initialize refuses the child tables of such constraints unless Config says how to handle them:
//
//   - ApplyForeignKeyCascades: ferry carries out the cascade itself on the target, in binlog order,
//     right after applying the parent's change. This is exact (docs/design.md, "Foreign-key
//     cascades") for the shapes it accepts; the others are refused by name.
//   - AllowForeignKeyCascades: copy anyway, accepting that the target diverges if a cascade acts.

// fkConstraint is one cascading foreign key whose child table is selected.
type fkConstraint struct {
	name                   string // db.child.constraint
	childDB, child         string
	parentDB, parent       string
	childCols, parentCols  []string
	onDelete, onUpdate     string // CASCADE, SET NULL, SET DEFAULT, or "" for no action
	childCopy, parentCopy  *TableCopy
	childFKCols, parentRef []*schema.Column
}

func (c *fkConstraint) describe() string {
	var actions []string
	if c.onDelete != "" {
		actions = append(actions, "ON DELETE "+c.onDelete)
	}
	if c.onUpdate != "" {
		actions = append(actions, "ON UPDATE "+c.onUpdate)
	}
	note := ""
	if c.parentCopy == nil {
		note = ", not selected"
	}
	return fmt.Sprintf("%s (%s from %s.%s%s)", c.name, strings.Join(actions, " "), c.parentDB, c.parent, note)
}

// cascadeRule is a cascading foreign key ferry applies on the target: kept on the parent's
// TableCopy, run when a row of the parent is deleted or its referenced columns change.
type cascadeRule struct {
	name       string
	child      *TableCopy
	childCols  []*schema.Column // the child's foreign-key columns
	parentCols []*schema.Column // the parent's referenced columns, pairwise
	onDelete   string
	onUpdate   string
	// refs compares the parent's referenced columns between two row images, byte for byte (as
	// InnoDB decides whether an update cascades).
	refs *apply.Mapping
}

// readCascades lists the cascading foreign keys whose child is among tables.
func (f *Ferry) readCascades(ctx context.Context, tables []*TableCopy) ([]*fkConstraint, error) {
	byName := map[string]*TableCopy{}
	for _, t := range tables {
		byName[t.Source.String()] = t
	}
	rows, err := f.Source.QueryContext(ctx, `SELECT rc.CONSTRAINT_SCHEMA, rc.TABLE_NAME, rc.CONSTRAINT_NAME, rc.UNIQUE_CONSTRAINT_SCHEMA,
		rc.REFERENCED_TABLE_NAME, rc.UPDATE_RULE, rc.DELETE_RULE, k.COLUMN_NAME, k.REFERENCED_COLUMN_NAME
		FROM information_schema.REFERENTIAL_CONSTRAINTS rc JOIN information_schema.KEY_COLUMN_USAGE k
			ON k.CONSTRAINT_SCHEMA = rc.CONSTRAINT_SCHEMA AND k.TABLE_NAME = rc.TABLE_NAME AND k.CONSTRAINT_NAME = rc.CONSTRAINT_NAME
			AND k.REFERENCED_TABLE_NAME IS NOT NULL
		WHERE rc.UPDATE_RULE IN ('CASCADE', 'SET NULL', 'SET DEFAULT') OR rc.DELETE_RULE IN ('CASCADE', 'SET NULL', 'SET DEFAULT')
		ORDER BY rc.CONSTRAINT_SCHEMA, rc.TABLE_NAME, rc.CONSTRAINT_NAME, k.ORDINAL_POSITION`)
	if err != nil {
		return nil, fmt.Errorf("source: read foreign keys: %w", err)
	}
	defer rows.Close()
	var out []*fkConstraint
	for rows.Next() {
		var db, table, name, parentDB, parent, onUpdate, onDelete, col, refCol string
		if err := rows.Scan(&db, &table, &name, &parentDB, &parent, &onUpdate, &onDelete, &col, &refCol); err != nil {
			return nil, fmt.Errorf("source: read foreign keys: %w", err)
		}
		child := byName[db+"."+table]
		if child == nil {
			continue
		}
		full := db + "." + table + "." + name
		if len(out) == 0 || out[len(out)-1].name != full {
			c := &fkConstraint{name: full, childDB: db, child: table, parentDB: parentDB, parent: parent,
				childCopy: child, parentCopy: byName[parentDB+"."+parent]}
			for _, r := range []struct {
				rule string
				to   *string
			}{{onDelete, &c.onDelete}, {onUpdate, &c.onUpdate}} {
				if r.rule == "CASCADE" || r.rule == "SET NULL" || r.rule == "SET DEFAULT" {
					*r.to = r.rule
				}
			}
			out = append(out, c)
		}
		c := out[len(out)-1]
		c.childCols, c.parentCols = append(c.childCols, col), append(c.parentCols, refCol)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("source: read foreign keys: %w", err)
	}
	return out, nil
}

// checkForeignKeyCascades refuses selected tables that a cascading foreign key changes, unless
// Config accepts them; with ApplyForeignKeyCascades it sets up the rules the binlog writer applies,
// after refusing the shapes it cannot apply exactly.
func (f *Ferry) checkForeignKeyCascades(ctx context.Context, tables []*TableCopy) error {
	found, err := f.readCascades(ctx, tables)
	if err != nil || len(found) == 0 {
		return err
	}
	var names []string
	for _, c := range found {
		names = append(names, c.describe())
	}
	if f.Config.ApplyForeignKeyCascades {
		return f.setUpCascades(found)
	}
	if f.Config.AllowForeignKeyCascades {
		f.log.WithField("constraints", strings.Join(names, ", ")).Warn("ferry: cascading foreign keys change copied tables without a binlog event; the target diverges if a parent row is deleted or its key changed while ferry runs")
		return nil
	}
	return &OptionError{
		What: fmt.Sprintf("source: foreign keys change selected tables by cascade, which the binlog never shows, so the target would keep rows the source changed or deleted: %s; "+
			"or stop the application from deleting or re-keying these parent rows during the copy", strings.Join(names, ", ")),
		Option:    "ApplyForeignKeyCascades",
		Effect:    "to have ferry carry out these cascades on the target itself (exact)",
		Alt:       "AllowForeignKeyCascades",
		AltEffect: "to copy anyway, accepting that the target diverges if a parent row is deleted or its key changed while ferry runs",
	}
}

// setUpCascades checks that every cascading constraint can be applied exactly and attaches the
// rules to the parents' TableCopy. Accepted: ON DELETE CASCADE and SET NULL through any depth of
// ON DELETE CASCADE; ON UPDATE CASCADE and SET NULL one level deep. Refused, by name: a parent not
// selected (its changes are not streamed), SET DEFAULT, cycles, an ON UPDATE CASCADE whose
// columns are part of a unique key of the child (a cascaded key change could meet a row already
// copied at the new key), an update-type action under a copy filter (it can move rows in or out of
// the filter), and an action that changes child columns another cascading key references.
func (f *Ferry) setUpCascades(found []*fkConstraint) error {
	byParent := map[*TableCopy][]*fkConstraint{}
	var refused []string
	for _, c := range found {
		why := ""
		switch {
		case c.parentCopy == nil:
			why = "its parent table is not selected, so the parent's changes are not streamed"
		case c.onDelete == "SET DEFAULT" || c.onUpdate == "SET DEFAULT":
			why = "SET DEFAULT is not supported"
		case c.onUpdate != "" && f.Config.Filter != nil:
			why = "an ON UPDATE action under a copy filter can move rows in or out of the filter"
		}
		if why == "" {
			for i, name := range c.childCols {
				cc, pc := c.childCopy.Source.Column(name), c.parentCopy.Source.Column(c.parentCols[i])
				if cc == nil || pc == nil {
					why = "its columns are not in the loaded schemas"
					break
				}
				c.childFKCols, c.parentRef = append(c.childFKCols, cc), append(c.parentRef, pc)
			}
		}
		if why == "" && c.onUpdate == "CASCADE" {
			for key, cols := range c.childCopy.Source.UniqueKeys {
				if overlaps(cols, c.childCols) {
					why = fmt.Sprintf("ON UPDATE CASCADE changes columns of the child's unique key %s", key)
					break
				}
			}
		}
		if why != "" {
			refused = append(refused, c.describe()+": "+why)
			continue
		}
		byParent[c.parentCopy] = append(byParent[c.parentCopy], c)
	}
	// An action that changes child columns (SET NULL, ON UPDATE CASCADE) must not feed another
	// cascade, and ON DELETE CASCADE chains must not loop.
	for _, cs := range byParent {
		for _, c := range cs {
			changes := c.onDelete == "SET NULL" || c.onUpdate != ""
			for _, next := range byParent[c.childCopy] {
				if changes && overlaps(next.parentCols, c.childCols) {
					refused = append(refused, c.describe()+": the child columns it changes are referenced by "+next.name)
				}
			}
		}
	}
	var cycle func(t *TableCopy, path map[*TableCopy]bool) string
	cycle = func(t *TableCopy, path map[*TableCopy]bool) string {
		if path[t] {
			return t.Source.String()
		}
		path[t] = true
		defer delete(path, t)
		for _, c := range byParent[t] {
			if c.onDelete == "CASCADE" {
				if s := cycle(c.childCopy, path); s != "" {
					return s
				}
			}
		}
		return ""
	}
	for t := range byParent {
		if s := cycle(t, map[*TableCopy]bool{}); s != "" {
			refused = append(refused, "ON DELETE CASCADE chains loop through "+s)
			break
		}
	}
	if len(refused) > 0 {
		sort.Strings(refused)
		return &OptionError{
			What:   "source: ferry cannot carry out these cascading foreign keys on the target exactly: " + strings.Join(refused, "; "),
			Option: "AllowForeignKeyCascades",
			Effect: "instead to copy anyway, accepting that the target diverges if one of these cascades acts while ferry runs",
		}
	}
	// A cascade two or more levels deep finds the grandchildren through the child's rows on the
	// target; those must be there, so the child is copied completely before the grandchild.
	for _, cs := range byParent {
		for _, c := range cs {
			if c.onDelete != "CASCADE" {
				continue
			}
			for _, next := range byParent[c.childCopy] {
				if next.onDelete != "" && !containsTable(next.childCopy.copyAfter, c.childCopy) {
					next.childCopy.copyAfter = append(next.childCopy.copyAfter, c.childCopy)
				}
			}
		}
	}
	var names []string
	for parent, cs := range byParent {
		parent.cascades = nil
		for _, c := range cs {
			refs := &apply.Mapping{}
			for _, pc := range c.parentRef {
				refs.Key = append(refs.Key, apply.Column{Name: pc.Name, Source: pc.Ordinal})
			}
			parent.cascades = append(parent.cascades, &cascadeRule{name: c.name, child: c.childCopy, childCols: c.childFKCols,
				parentCols: c.parentRef, onDelete: c.onDelete, onUpdate: c.onUpdate, refs: refs})
			names = append(names, c.describe())
		}
	}
	sort.Strings(names)
	f.log.WithField("constraints", strings.Join(names, ", ")).Info("ferry: cascading foreign keys are carried out on the target by ferry")
	return nil
}

func overlaps(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if strings.EqualFold(x, y) {
				return true
			}
		}
	}
	return false
}

// cascadeOps are the statements that carry out on the target what the source's storage engine did
// to the children of t for the change before → after (nil after: a delete).
func cascadeOps(t *TableCopy, before, after []any) []rowOp {
	if before == nil || len(t.cascades) == 0 {
		return nil
	}
	var out []rowOp
	for _, r := range t.cascades {
		vals := r.refs.KeyOf(before)
		changed := after != nil && !r.refs.SameKey(before, after)
		cond, args := columnsEqual(r.childCols, vals)
		switch {
		case after == nil && r.onDelete != "":
			out = append(out, cascadeDelete(r, cond, args, 0)...)
		case after != nil && changed && r.onUpdate != "":
			var sets []string
			var setArgs []any
			for i, c := range r.childCols {
				if r.onUpdate == "SET NULL" {
					sets = append(sets, schema.QuoteIdent(c.Name)+" = NULL")
				} else {
					sets = append(sets, schema.QuoteIdent(c.Name)+" = "+schema.KeyPlaceholder(c))
					setArgs = append(setArgs, after[r.parentCols[i].Ordinal])
				}
			}
			out = append(out, rowOp{table: r.child, raw: &apply.Statement{Query: "UPDATE " + r.child.TargetName() + " SET " + strings.Join(sets, ", ") + " WHERE " + cond, Args: append(setArgs, args...)}})
		}
	}
	return out
}

// cascadeDelete carries out r's ON DELETE action on the child rows matching cond, after the
// actions of the child's own ON DELETE cascades on its children (whose rows are found through the
// child rows, so they go first).
func cascadeDelete(r *cascadeRule, cond string, args []any, depth int) []rowOp {
	if r.onDelete == "SET NULL" {
		var sets []string
		for _, c := range r.childCols {
			sets = append(sets, schema.QuoteIdent(c.Name)+" = NULL")
		}
		return []rowOp{{table: r.child, raw: &apply.Statement{Query: "UPDATE " + r.child.TargetName() + " SET " + strings.Join(sets, ", ") + " WHERE " + cond, Args: args}}}
	}
	var out []rowOp
	for _, next := range r.child.cascades {
		if next.onDelete == "" || depth > 15 {
			continue
		}
		sub := "(" + columnList(next.childCols) + ") IN (SELECT " + columnList(next.parentCols) + " FROM " + r.child.TargetName() + " WHERE " + cond + ")"
		out = append(out, cascadeDelete(next, sub, args, depth+1)...)
	}
	return append(out, rowOp{table: r.child, raw: &apply.Statement{Query: "DELETE FROM " + r.child.TargetName() + " WHERE " + cond, Args: args}})
}

func columnList(cols []*schema.Column) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = schema.QuoteIdent(c.Name)
	}
	return strings.Join(names, ", ")
}

func containsTable(ts []*TableCopy, t *TableCopy) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// columnsEqual is "cols = vals", each value compared in its column's collation (as InnoDB looks up
// a foreign key's rows).
func columnsEqual(cols []*schema.Column, vals []any) (string, []any) {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = schema.QuoteIdent(c.Name) + " = " + schema.KeyPlaceholder(c)
	}
	return "(" + strings.Join(parts, " AND ") + ")", vals
}
