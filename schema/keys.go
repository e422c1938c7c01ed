package schema

import (
	"fmt"
	"strconv"
	"strings"
)

// Key values are compared only by the server (hazard: Go's byte order is not a collation's order).
// These helpers build the comparisons so the server compares in the key column's own order and can
// use the index.

// KeyPlaceholder is the SQL expression a key value takes in a comparison with column c. Character
// keys are declared in the column's character set and collation (a _binary literal would make the
// server compare bytes, skip the index and page in a different order than ORDER BY); decimals are
// cast to DECIMAL (a string compared with a decimal is compared as a double).
func KeyPlaceholder(c *Column) string {
	if c.DataType == "enum" {
		return "?" // compared by member number, the order the server sorts ENUM keys in
	}
	if c.Charset != "" && c.Charset != "binary" {
		return "CONVERT(? USING " + c.Charset + ") COLLATE " + c.Collation
	}
	if c.DataType == "decimal" {
		return "CAST(? AS DECIMAL(65,30))"
	}
	return "?"
}

// KeyArg turns a key value read as text from the server into the argument to compare it with:
// integers are sent as numbers (a string compared with an integer column is compared as a double,
// which loses precision above 2^53); an ENUM key is read as its member number (column+0) and sent
// as that number, since the server orders ENUM keys by it. Other values pass through.
func KeyArg(c *Column, v any) (any, error) {
	b, ok := v.([]byte)
	if !ok {
		return v, nil
	}
	switch c.DataType {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year", "enum":
		if c.Unsigned {
			n, err := strconv.ParseUint(string(b), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("key column %s: %q is not an unsigned integer", c.Name, b)
			}
			return n, nil
		}
		n, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("key column %s: %q is not an integer", c.Name, b)
		}
		return n, nil
	}
	return b, nil
}

// KeyArgs turns a key read as text from the server (one value per key column) into the arguments
// to compare it with (see KeyArg).
func KeyArgs(cols []*Column, vals [][]byte) ([]any, error) {
	if len(vals) != len(cols) {
		return nil, fmt.Errorf("key has %d values, the table's key has %d columns", len(vals), len(cols))
	}
	out := make([]any, len(vals))
	for i, c := range cols {
		v, err := KeyArg(c, vals[i])
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// KeyRange builds the conditions of a half-open key range (after, upTo]: "key > after" and
// "key <= upTo", each left out when its bound is nil. Bounds are key values read as text.
func KeyRange(cols []*Column, after, upTo [][]byte) (conds []string, args []any, err error) {
	for _, b := range []struct {
		vals      [][]byte
		op        string
		inclusive bool
	}{{after, ">", false}, {upTo, "<", true}} {
		if b.vals == nil {
			continue
		}
		vals, err := KeyArgs(cols, b.vals)
		if err != nil {
			return nil, nil, err
		}
		c, a := KeyCompare(cols, vals, b.op, b.inclusive)
		conds, args = append(conds, c), append(args, a...)
	}
	return conds, args, nil
}

// KeyCompare builds "key op vals" over the key columns, expanded so every server's range optimizer
// uses the index: (a > ?) OR (a = ? AND b > ?) ...; inclusive makes the last comparison op=.
func KeyCompare(cols []*Column, vals []any, op string, inclusive bool) (string, []any) {
	var ors []string
	var args []any
	for i := range cols {
		var ands []string
		for j := 0; j < i; j++ {
			ands = append(ands, QuoteIdent(cols[j].Name)+" = "+KeyPlaceholder(cols[j]))
			args = append(args, vals[j])
		}
		o := op
		if inclusive && i == len(cols)-1 {
			o += "="
		}
		ands = append(ands, QuoteIdent(cols[i].Name)+" "+o+" "+KeyPlaceholder(cols[i]))
		args = append(args, vals[i])
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	return "(" + strings.Join(ors, " OR ") + ")", args
}
