package osc

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"

	"github.com/ferrykit/ferry/schema"
)

// ColumnMap is one copied column: its value in the original table goes to To in the ghost table.
type ColumnMap struct {
	From *schema.Column // original table column
	To   *schema.Column // ghost table column
}

// Plan is what validation found: how rows move from the original to the ghost table. Dry runs
// stop after computing it.
type Plan struct {
	// Columns are the copied columns, in ghost table order.
	Columns []ColumnMap
	// Renamed maps original → new names of renamed columns (approved).
	Renamed map[string]string
	// Dropped are original columns whose values are not copied (dropped by the ALTER, or turned into
	// generated columns).
	Dropped []string
	// Added are ghost columns that get their default (or generated value).
	Added []string
	// Key is the unique key shared by both tables that the copy pages by (original column names).
	Key []*schema.Column
	// KeyName is its index name in the original table.
	KeyName string
	// GhostKeyName is the index name of the shared key in the ghost table.
	GhostKeyName string
	// KeyWidened: the ghost's key has more columns than Key, which it starts with (e.g. a primary
	// key (id) widened to (id, i)); Key still identifies each row, and every update is applied as
	// a delete by the old key and an insert, since a changed i would otherwise leave a second row.
	KeyWidened bool
	// NewUniqueKeys are unique keys of the ghost table that the original does not have.
	NewUniqueKeys []string
	// ChangedUniqueKeys are unique keys kept on the same columns whose type or collation changes
	// (narrowed, another collation): values distinct before may collide after.
	ChangedUniqueKeys []string
	// CharsetChanged lists copied character columns whose character set changes.
	CharsetChanged []string
	// InstantPossible says the server accepted the ALTER with ALGORITHM=INSTANT on the (empty) ghost
	// table: the same ALTER on the original would likely be instant too.
	InstantPossible bool

	original, ghost *schema.Table
}

// String summarises the plan in one paragraph, for logs and dry runs.
func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "copy %d columns paging by %s (%s)", len(p.Columns), p.KeyName, colNames(p.Key))
	if p.KeyWidened {
		fmt.Fprintf(&b, ", widened to %s in the new table", p.GhostKeyName)
	}
	if len(p.Renamed) > 0 {
		var r []string
		for o, n := range p.Renamed {
			r = append(r, o+"→"+n)
		}
		sort.Strings(r)
		fmt.Fprintf(&b, "; renamed: %s", strings.Join(r, ", "))
	}
	if len(p.Dropped) > 0 {
		fmt.Fprintf(&b, "; dropped (values discarded): %s", strings.Join(p.Dropped, ", "))
	}
	if len(p.Added) > 0 {
		fmt.Fprintf(&b, "; added (defaults): %s", strings.Join(p.Added, ", "))
	}
	if len(p.CharsetChanged) > 0 {
		fmt.Fprintf(&b, "; character set converted: %s", strings.Join(p.CharsetChanged, ", "))
	}
	if len(p.NewUniqueKeys) > 0 {
		fmt.Fprintf(&b, "; new unique keys: %s", strings.Join(p.NewUniqueKeys, ", "))
	}
	if len(p.ChangedUniqueKeys) > 0 {
		fmt.Fprintf(&b, "; unique keys with changed types: %s", strings.Join(p.ChangedUniqueKeys, ", "))
	}
	if p.InstantPossible {
		b.WriteString("; the server can do this ALTER with ALGORITHM=INSTANT")
	}
	return b.String()
}

// column is the mapping of a ghost column (nil if it is not copied).
func (p *Plan) column(ghostName string) *ColumnMap {
	for i := range p.Columns {
		if strings.EqualFold(p.Columns[i].To.Name, ghostName) {
			return &p.Columns[i]
		}
	}
	return nil
}

// uniqueKeysAtRisk are the ghost's unique keys on which rows distinct in the original may collide.
func (p *Plan) uniqueKeysAtRisk() []string {
	return append(append([]string{}, p.NewUniqueKeys...), p.ChangedUniqueKeys...)
}

// atRisk reports whether the ghost's unique key name is new or changed (see uniqueKeysAtRisk).
func (p *Plan) atRisk(name string) bool {
	for _, k := range p.uniqueKeysAtRisk() {
		if strings.HasPrefix(k, name+" (") {
			return true
		}
	}
	return false
}

// newName is the ghost table's name of a copied original column ("" if it is not copied).
func (p *Plan) newName(c *schema.Column) string {
	for _, cm := range p.Columns {
		if cm.From == c {
			return cm.To.Name
		}
	}
	return ""
}

func colNames(cols []*schema.Column) string {
	n := make([]string, len(cols))
	for i, c := range cols {
		n[i] = c.Name
	}
	return strings.Join(n, ", ")
}

// mapColumns compares the original and the altered ghost table and builds the plan.
func (m *Migration) mapColumns(ctx context.Context, orig, ghost *schema.Table, info *alterInfo) (*Plan, error) {
	p := &Plan{Renamed: map[string]string{}, original: orig, ghost: ghost}
	// renamed: new name (lower) → original column
	fromNew := map[string]*schema.Column{}
	for oldLower, newName := range info.renames {
		oc := orig.Column(oldLower)
		if oc == nil {
			return nil, fmt.Errorf("ALTER renames column %s, which %s does not have", oldLower, orig)
		}
		fromNew[strings.ToLower(newName)] = oc
		p.Renamed[oc.Name] = newName
	}
	used := map[int]bool{}
	for i := range ghost.Columns {
		gc := &ghost.Columns[i]
		src := fromNew[strings.ToLower(gc.Name)]
		if src == nil && !info.readded(gc.Name) {
			if oc := orig.Column(gc.Name); oc != nil {
				if _, renamedAway := info.renames[strings.ToLower(oc.Name)]; !renamedAway {
					src = oc
				}
			}
		}
		if src == nil || src.Generated {
			if src == nil {
				p.Added = append(p.Added, gc.Name)
				if !gc.Generated {
					if err := m.checkAddedColumn(ctx, gc); err != nil {
						return nil, err
					}
				}
			}
			if src != nil {
				used[src.Ordinal] = true
			}
			continue
		}
		used[src.Ordinal] = true
		if gc.Generated {
			continue // the server computes it; the original's value is dropped
		}
		p.Columns = append(p.Columns, ColumnMap{From: src, To: gc})
		if isChar(src) && isChar(gc) && !strings.EqualFold(src.Charset, gc.Charset) {
			p.CharsetChanged = append(p.CharsetChanged, fmt.Sprintf("%s (%s→%s)", gc.Name, src.Charset, gc.Charset))
		}
	}
	for i := range orig.Columns {
		oc := &orig.Columns[i]
		if !used[oc.Ordinal] {
			p.Dropped = append(p.Dropped, oc.Name)
		} else if !oc.Generated {
			// copied into a generated column: its value is not copied either
			found := false
			for _, cm := range p.Columns {
				if cm.From == oc {
					found = true
				}
			}
			if !found {
				p.Dropped = append(p.Dropped, oc.Name)
			}
		}
	}
	if len(p.Columns) == 0 {
		return nil, fmt.Errorf("the ALTER leaves no column of %s to copy", orig)
	}

	// The shared key: a unique key of the original, all NOT NULL, whose columns are all copied
	// unchanged in name mapping, and which is a unique key of the ghost with the same columns.
	newName := func(c *schema.Column) string {
		for _, cm := range p.Columns {
			if cm.From == c {
				return cm.To.Name
			}
		}
		return ""
	}
	ghostUnique := map[string]string{} // column list (lower) → index name
	for name, cols := range ghost.UniqueKeys {
		ghostUnique[strings.ToLower(strings.Join(cols, ","))] = name
	}
	origUnique := map[string]bool{}
	candidates := []string{}
	if orig.KeyName != "" {
		candidates = append(candidates, orig.KeyName)
	}
	var names []string
	for n := range orig.UniqueKeys {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		var mapped []string
		for _, cn := range orig.UniqueKeys[n] {
			if c := orig.Column(cn); c != nil {
				mapped = append(mapped, newName(c))
			}
		}
		origUnique[strings.ToLower(strings.Join(mapped, ","))] = true
		if n != orig.KeyName {
			candidates = append(candidates, n)
		}
	}
	// unchanged reports whether a copied column keeps its type, collation and NOT NULL.
	unchanged := func(c *schema.Column) bool {
		for _, cm := range p.Columns {
			if cm.From == c {
				return cm.From.ColumnType == cm.To.ColumnType && cm.From.Collation == cm.To.Collation && !cm.To.Nullable
			}
		}
		return false
	}
	// ghostKeyFor finds the ghost's unique key on exactly these columns, or (widened) one that
	// starts with them: the original's key still identifies each row (every ghost row is a row of
	// the original) and the ghost's index serves lookups by it.
	ghostKeyFor := func(mapped []string, widened bool) (string, bool) {
		want := strings.ToLower(strings.Join(mapped, ","))
		if !widened {
			name, ok := ghostUnique[want]
			return name, ok
		}
		var found []string
		for cols, name := range ghostUnique {
			if strings.HasPrefix(cols, want+",") {
				found = append(found, name)
			}
		}
		sort.Strings(found)
		if len(found) == 0 {
			return "", false
		}
		return found[0], true
	}
	var unusableTypes []string
	for _, widened := range []bool{false, true} {
		for _, n := range candidates {
			var key []*schema.Column
			var mapped []string
			ok := true
			for _, cn := range orig.UniqueKeys[n] {
				c := orig.Column(cn)
				if c == nil || c.Nullable || c.Generated || newName(c) == "" {
					ok = false
					break
				}
				switch c.DataType {
				case "set", "float", "double", "bit", "json", "geometry":
					if !widened {
						unusableTypes = append(unusableTypes, fmt.Sprintf("%s (%s %s)", n, c.Name, c.DataType))
					}
					ok = false
				}
				if !ok {
					break
				}
				key = append(key, c)
				mapped = append(mapped, newName(c))
			}
			if !ok {
				continue
			}
			ghostKey, shared := ghostKeyFor(mapped, widened)
			if !shared {
				continue
			}
			// the key's values must compare the same in both tables
			same := true
			for _, c := range key {
				same = same && unchanged(c)
			}
			if !same {
				continue
			}
			p.Key, p.KeyName, p.GhostKeyName, p.KeyWidened = key, n, ghostKey, widened
			break
		}
		if p.Key != nil {
			break
		}
	}
	if p.Key == nil {
		why := ""
		if len(unusableTypes) > 0 {
			why = fmt.Sprintf("; the unique key(s) %s of %s cannot be used whatever the ALTER: the server orders SET, FLOAT, DOUBLE, BIT and JSON values differently from their values, so ferry cannot page by them: give the table a primary key on other columns first", strings.Join(unusableTypes, ", "), orig)
		}
		return nil, fmt.Errorf("%s and its altered form share no usable unique key: ferry pages the copy and applies changes by a PRIMARY or UNIQUE key of the original on NOT NULL columns that the new table keeps with the same types, as a unique key of its own or as the leading columns of one (a widened key such as (id) → (id, i))%s; otherwise keep that key in this ALTER and change it in a separate migration", orig, why)
	}
	// impliedByOriginal: a ghost unique key that contains all the columns of a unique key of the
	// original, unchanged, is unique whenever the original is (no row can collide on it).
	impliedByOriginal := func(cols []string) bool {
		have := map[string]bool{}
		for _, c := range cols {
			have[strings.ToLower(c)] = true
		}
		for _, n := range names {
			all := true
			for _, cn := range orig.UniqueKeys[n] {
				c := orig.Column(cn)
				all = all && c != nil && newName(c) != "" && unchanged(c) && have[strings.ToLower(newName(c))]
			}
			if all {
				return true
			}
		}
		return false
	}
	var gnames []string
	for n := range ghost.UniqueKeys {
		gnames = append(gnames, n)
	}
	sort.Strings(gnames)
	for _, n := range gnames {
		desc := n + " (" + strings.Join(ghost.UniqueKeys[n], ", ") + ")"
		if !origUnique[strings.ToLower(strings.Join(ghost.UniqueKeys[n], ","))] {
			if !impliedByOriginal(ghost.UniqueKeys[n]) {
				p.NewUniqueKeys = append(p.NewUniqueKeys, desc)
			}
			continue
		}
		for _, cn := range ghost.UniqueKeys[n] {
			if cm := p.column(cn); cm != nil && (cm.From.ColumnType != cm.To.ColumnType || cm.From.Collation != cm.To.Collation) {
				p.ChangedUniqueKeys = append(p.ChangedUniqueKeys, desc)
				break
			}
		}
	}
	return p, nil
}

func isChar(c *schema.Column) bool { return c.Charset != "" && c.Charset != "binary" }

// checkAddedColumn refuses an added NOT NULL column without a default: the copy would fail on its
// first row (or, outside strict mode, silently fill in 0 / ”). It refuses an added AUTO_INCREMENT
// column too: ALTER TABLE numbers the existing rows at once in the table's order, but the ghost
// numbers them in the order they reach it (a row inserted during the copy gets a number below rows
// copied after it, and a row updated during the migration is written again by the apply and gets a
// new number), so the values would differ from the native ALTER's.
func (m *Migration) checkAddedColumn(ctx context.Context, gc *schema.Column) error {
	var def sql.NullString
	var extra string
	err := m.db.QueryRowContext(ctx, `SELECT COLUMN_DEFAULT, IFNULL(EXTRA,'') FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?`,
		m.Database, m.ghostName(), gc.Name).Scan(&def, &extra)
	if err != nil {
		return fmt.Errorf("read default of added column %s: %w", gc.Name, err)
	}
	if strings.Contains(strings.ToLower(extra), "auto_increment") {
		return fmt.Errorf("the ALTER adds AUTO_INCREMENT column %s: ALTER TABLE numbers the existing rows in the table's order, an online copy in the order rows reach the new table (rows changed during the migration would be renumbered), so it cannot be done online exactly; run it as a plain ALTER TABLE, or add the column without AUTO_INCREMENT, fill it, and make it AUTO_INCREMENT in a second migration", gc.Name)
	}
	if gc.Nullable {
		return nil
	}
	// MariaDB reports "NULL" (text) for no default on a NOT NULL column.
	if !def.Valid || strings.EqualFold(def.String, "NULL") {
		return fmt.Errorf("the ALTER adds column %s NOT NULL without a DEFAULT: existing rows would have no value for it; add a DEFAULT (e.g. ADD COLUMN %s %s NOT NULL DEFAULT ...) or make it NULL", gc.Name, q(gc.Name), gc.ColumnType)
	}
	return nil
}
