package cli

import (
	"maps"
	"testing"
)

func TestPairs(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want map[string]string
		err  bool
	}{
		{in: []string{""}, want: map[string]string{}},
		{in: []string{"a=b, c=d"}, want: map[string]string{"a": "b", "c": "d"}},
		{in: []string{"a=b", "c=d,e=f"}, want: map[string]string{"a": "b", "c": "d", "e": "f"}}, // a repeated flag
		{in: []string{"a=b", "a=b"}, want: map[string]string{"a": "b"}},
		{in: []string{"a=b", "a=c"}, err: true},
		{in: []string{"a"}, err: true},
		{in: []string{"=b"}, err: true},
		{in: []string{"a="}, err: true},
	} {
		got, err := Pairs(c.in...)
		if (err != nil) != c.err || (err == nil && !maps.Equal(got, c.want)) {
			t.Errorf("Pairs(%q) = %v, %v; want %v (error: %v)", c.in, got, err, c.want, c.err)
		}
	}
}
