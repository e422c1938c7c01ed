package ferry

import "testing"

// Positions read on one server merge per domain; sets that may come from several servers keep
// every server's last GTID, so a new primary's 0-2-106 never stands for the old one's 0-1-105.
func TestMariaDBGTIDMerge(t *testing.T) {
	f := Flavor{MariaDB: true}
	for _, c := range []struct {
		a, b, merge, union string
	}{
		{"0-1-5", "", "0-1-5", "0-1-5"},
		{"0-1-5,1-3-7", "0-1-9", "0-1-9,1-3-7", "0-1-9,1-3-7"},
		{"0-1-9", "0-1-5", "0-1-9", "0-1-9"}, // reported out of order
		{"0-1-105", "0-2-106", "0-2-106", "0-1-105,0-2-106"},
	} {
		m, err := f.mergeGTID(c.a, c.b)
		if err != nil || m != c.merge {
			t.Errorf("merge(%q, %q) = %q, %v; want %q", c.a, c.b, m, err, c.merge)
		}
		u, err := f.unionGTID(c.a, c.b)
		if err != nil || u != c.union {
			t.Errorf("union(%q, %q) = %q, %v; want %q", c.a, c.b, u, err, c.union)
		}
	}
}
