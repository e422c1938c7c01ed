package cli

import (
	"fmt"
	"strings"
)

// Pairs parses comma-separated from=to pairs (e.g. -rewrite-databases shop=shop_copy,crm=crm2).
// Several values (a repeated flag) are joined. An empty name, a pair without "=" and a name given
// twice are errors.
func Pairs(values ...string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			k, val, ok := strings.Cut(p, "=")
			k, val = strings.TrimSpace(k), strings.TrimSpace(val)
			if !ok || k == "" || val == "" {
				return nil, fmt.Errorf("%q: want from=to", p)
			}
			if prev, dup := out[k]; dup && prev != val {
				return nil, fmt.Errorf("%s is given twice (%s, %s)", k, prev, val)
			}
			out[k] = val
		}
	}
	return out, nil
}
