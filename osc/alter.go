package osc

import (
	"fmt"
	"strings"
)

// alterInfo is what Validate learns from the ALTER clause itself (the rest comes from comparing the
// original table with the altered, still empty, ghost table).
type alterInfo struct {
	// renames maps old column name (lower case) to new name, from CHANGE old new and RENAME COLUMN.
	renames map[string]string
	// renameOrder keeps the renames in clause order, for messages.
	renameOrder [][2]string
	// dropped and added are the columns (lower case) the ALTER drops and adds by name. A column
	// in both is a new column that reuses an old name: ALTER TABLE gives it its default, so its
	// old values are not copied.
	dropped, added map[string]bool
}

// readded reports whether the ALTER drops the column and adds a new one under the same name.
func (a *alterInfo) readded(name string) bool {
	n := strings.ToLower(name)
	return a.dropped[n] && a.added[n]
}

type token struct {
	text  string // identifier (unquoted), keyword, literal or punctuation
	ident bool   // a backquoted identifier (never a keyword)
}

// tokenize splits SQL into words, backquoted identifiers, string literals and single punctuation
// characters, dropping comments.
func tokenize(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#' || (c == '-' && strings.HasPrefix(s[i:], "-- ")):
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '/' && strings.HasPrefix(s[i:], "/*"):
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return nil, fmt.Errorf("unterminated comment in ALTER")
			}
			i += j + 4
		case c == '`':
			var b strings.Builder
			j := i + 1
			for ; j < len(s); j++ {
				if s[j] == '`' {
					if j+1 < len(s) && s[j+1] == '`' {
						b.WriteByte('`')
						j++
						continue
					}
					break
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated identifier in ALTER")
			}
			out = append(out, token{text: b.String(), ident: true})
			i = j + 1
		case c == '\'' || c == '"':
			j := i + 1
			for ; j < len(s); j++ {
				if s[j] == '\\' {
					j++
					continue
				}
				if s[j] == c {
					if j+1 < len(s) && s[j+1] == c {
						j++
						continue
					}
					break
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string in ALTER")
			}
			out = append(out, token{text: s[i : j+1]})
			i = j + 1
		case isWordByte(c):
			j := i
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			out = append(out, token{text: s[i:j]})
			i = j
		default:
			out = append(out, token{text: string(c)})
			i++
		}
	}
	return out, nil
}

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// clauses splits tokens at top-level commas.
func clauses(toks []token) [][]token {
	var out [][]token
	depth := 0
	start := 0
	for i, t := range toks {
		if t.ident {
			continue
		}
		switch t.text {
		case "(":
			depth++
		case ")":
			depth--
		case ",":
			if depth == 0 {
				out = append(out, toks[start:i])
				start = i + 1
			}
		}
	}
	return append(out, toks[start:])
}

func (t token) is(words ...string) bool {
	if t.ident {
		return false
	}
	for _, w := range words {
		if strings.EqualFold(t.text, w) {
			return true
		}
	}
	return false
}

// parseAlter reads the ALTER clause (what follows "ALTER TABLE t"). It refuses clauses an online
// schema change cannot do through a ghost table.
func parseAlter(alter string) (*alterInfo, error) {
	a := strings.TrimSpace(alter)
	a = strings.TrimSuffix(a, ";")
	if a == "" {
		return nil, fmt.Errorf("empty ALTER clause")
	}
	toks, err := tokenize(a)
	if err != nil {
		return nil, err
	}
	if len(toks) >= 2 && toks[0].is("ALTER") && toks[1].is("TABLE") {
		return nil, fmt.Errorf("give only the ALTER clause (e.g. %q), not the whole ALTER TABLE statement", "ADD COLUMN c INT")
	}
	info := &alterInfo{renames: map[string]string{}, dropped: map[string]bool{}, added: map[string]bool{}}
	for _, cl := range clauses(toks) {
		if len(cl) == 0 {
			return nil, fmt.Errorf("empty clause in ALTER %q", alter)
		}
		i := 0
		next := func() token {
			if i < len(cl) {
				i++
				return cl[i-1]
			}
			return token{}
		}
		first := next()
		switch {
		case first.is("CHANGE"):
			if i < len(cl) && cl[i].is("COLUMN") {
				i++
			}
			if i+1 < len(cl) && cl[i].is("IF") && cl[i+1].is("EXISTS") {
				i += 2
			}
			oldName, newName := next(), next()
			if oldName.text == "" || newName.text == "" {
				return nil, fmt.Errorf("cannot read CHANGE clause in ALTER %q", alter)
			}
			if !strings.EqualFold(oldName.text, newName.text) {
				info.addRename(oldName.text, newName.text)
			}
		case first.is("RENAME"):
			kw := next()
			switch {
			case kw.is("COLUMN"):
				if i+1 < len(cl) && cl[i].is("IF") && cl[i+1].is("EXISTS") {
					i += 2
				}
				oldName := next()
				if !next().is("TO") {
					return nil, fmt.Errorf("cannot read RENAME COLUMN clause in ALTER %q", alter)
				}
				newName := next()
				if !strings.EqualFold(oldName.text, newName.text) {
					info.addRename(oldName.text, newName.text)
				}
			case kw.is("INDEX", "KEY"):
			default:
				return nil, fmt.Errorf("ALTER %q renames the table; an online schema change keeps the table's name (rename it separately with RENAME TABLE)", alter)
			}
		case first.is("DROP"):
			if i < len(cl) && cl[i].is("COLUMN") {
				i++
			} else if i < len(cl) && cl[i].is("INDEX", "KEY", "PRIMARY", "FOREIGN", "CONSTRAINT", "CHECK", "PARTITION", "PERIOD", "SYSTEM") {
				continue
			}
			if i+1 < len(cl) && cl[i].is("IF") && cl[i+1].is("EXISTS") {
				i += 2
			}
			if name := next(); name.text != "" {
				info.dropped[strings.ToLower(name.text)] = true
			}
		case first.is("ADD"):
			if i < len(cl) && cl[i].is("COLUMN") {
				i++
			} else if i < len(cl) && cl[i].is("INDEX", "KEY", "UNIQUE", "PRIMARY", "FULLTEXT", "SPATIAL", "FOREIGN", "CONSTRAINT", "CHECK", "PARTITION", "PERIOD", "SYSTEM", "VECTOR") {
				continue
			}
			if i+2 < len(cl) && cl[i].is("IF") && cl[i+1].is("NOT") && cl[i+2].is("EXISTS") {
				i += 3
			}
			if i < len(cl) && cl[i].text == "(" && !cl[i].ident {
				// ADD COLUMN (a INT, b INT): the first word after "(" and after each top-level ","
				depth := 0
				expectName := true
				for _, t := range cl[i:] {
					switch {
					case !t.ident && t.text == "(":
						depth++
						if depth == 1 {
							expectName = true
							continue
						}
					case !t.ident && t.text == ")":
						depth--
					case !t.ident && t.text == "," && depth == 1:
						expectName = true
						continue
					}
					if expectName && depth == 1 {
						info.added[strings.ToLower(t.text)] = true
					}
					expectName = false
				}
				continue
			}
			if name := next(); name.text != "" {
				info.added[strings.ToLower(name.text)] = true
			}
		case first.is("ALGORITHM", "LOCK"):
			return nil, fmt.Errorf("ALTER %q has an %s clause; leave it out: the ALTER runs on the empty ghost table, the original table is never altered in place", alter, strings.ToUpper(first.text))
		case first.is("DISCARD", "IMPORT", "PARTITION", "REMOVE", "COALESCE", "REORGANIZE", "EXCHANGE", "TRUNCATE", "ANALYZE", "CHECK", "OPTIMIZE", "REBUILD", "REPAIR"):
			return nil, fmt.Errorf("ALTER %q: %s is not a schema change ferry can do through a ghost table", alter, strings.ToUpper(first.text))
		}
	}
	return info, nil
}

func (a *alterInfo) addRename(oldName, newName string) {
	a.renames[strings.ToLower(oldName)] = newName
	a.renameOrder = append(a.renameOrder, [2]string{oldName, newName})
}
