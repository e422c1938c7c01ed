package ferry

import (
	"context"
	"testing"
)

// A replica's MariaDB binlog holds the source's position when, for each domain and server id of
// the position, it has that sequence number or a later one.
func TestMariaDBBinlogHolds(t *testing.T) {
	f := Flavor{MariaDB: true}
	for _, c := range []struct {
		state, pos string
		want       bool
	}{
		{"0-1-100", "0-1-100", true},
		{"0-1-101", "0-1-100", true},
		{"0-1-99", "0-1-100", false},
		{"0-1-100,1-1-5", "0-1-100,1-1-6", false}, // one domain behind
		{"0-2-500", "0-1-100", false},             // a later transaction of another server is not the source's
		{"0-2-500,0-1-100", "0-1-100", true},      // the replica's own writes besides the source's
		{"0-1-100", "", true},                     // the source has logged nothing
		{"", "0-1-1", false},
	} {
		got, err := f.binlogHolds(context.Background(), nil, c.state, c.pos)
		if err != nil || got != c.want {
			t.Errorf("binlogHolds(state %q, pos %q) = %v, %v; want %v", c.state, c.pos, got, err, c.want)
		}
	}
	if _, err := f.binlogHolds(context.Background(), nil, "0-1", "0-1-1"); err == nil {
		t.Error("a malformed GTID state was accepted")
	}
}

// A server is taken for a replica of the source when its binlog holds transactions of the source's
// writers and none the source lacks.
func TestMariaDBReplicatesFrom(t *testing.T) {
	f := Flavor{MariaDB: true}
	for _, c := range []struct {
		replica, source string
		ok              bool
	}{
		{"0-1-90", "0-1-100", true},
		{"0-1-100,0-7-3", "0-1-100", true}, // writes of its own besides
		{"0-7-3", "0-1-100", false},        // another server's history only
		{"0-1-101", "0-1-100", false},      // ahead of the source: another history
		{"", "", true},
	} {
		why, err := f.replicatesFrom(context.Background(), nil, c.replica, c.source, "")
		if err != nil || (why == "") != c.ok {
			t.Errorf("replicatesFrom(replica %q, source %q) = %q, %v; want ok=%v", c.replica, c.source, why, err, c.ok)
		}
	}
}
