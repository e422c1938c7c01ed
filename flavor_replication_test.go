package ferry

import "testing"

// The statements that read, stop and start replication, per server: MariaDB's ALL SLAVES forms
// (every connection of a multi-source replica), MySQL's REPLICA forms from 8.0.22 (8.4 has no
// others), the SLAVE forms before.
func TestReplicationStatementsPerFlavor(t *testing.T) {
	for _, c := range []struct {
		f                   Flavor
		status, stop, start string
	}{
		{Flavor{MariaDB: true, Version: "10.11.6-MariaDB", Major: 10, Minor: 11}, "SHOW ALL SLAVES STATUS", "STOP ALL SLAVES", "START ALL SLAVES"},
		{Flavor{MariaDB: true, Version: "11.4.2-MariaDB-log", Major: 11, Minor: 4}, "SHOW ALL SLAVES STATUS", "STOP ALL SLAVES", "START ALL SLAVES"},
		{Flavor{Version: "5.7.44-log", Major: 5, Minor: 7}, "SHOW SLAVE STATUS", "STOP SLAVE", "START SLAVE"},
		{Flavor{Version: "8.0.21", Major: 8}, "SHOW SLAVE STATUS", "STOP SLAVE", "START SLAVE"},
		{Flavor{Version: "8.0.3-rc", Major: 8}, "SHOW SLAVE STATUS", "STOP SLAVE", "START SLAVE"},
		{Flavor{Version: "8.0.22", Major: 8}, "SHOW REPLICA STATUS", "STOP REPLICA", "START REPLICA"},
		{Flavor{Version: "8.0.36-log", Major: 8}, "SHOW REPLICA STATUS", "STOP REPLICA", "START REPLICA"},
		{Flavor{Version: "8.4.0", Major: 8, Minor: 4}, "SHOW REPLICA STATUS", "STOP REPLICA", "START REPLICA"},
		{Flavor{Version: "9.1.0", Major: 9, Minor: 1}, "SHOW REPLICA STATUS", "STOP REPLICA", "START REPLICA"},
	} {
		got := [3]string{c.f.ReplicationStatusQuery(), c.f.StopReplicationStatement(), c.f.StartReplicationStatement()}
		if want := [3]string{c.status, c.stop, c.start}; got != want {
			t.Errorf("%s: %q, want %q", c.f.Version, got, want)
		}
	}
}
