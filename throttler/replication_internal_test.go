package throttler

import (
	"database/sql"
	"strings"
	"testing"
	"time"
)

// MySQL 8.0.22+ names the columns of SHOW REPLICA STATUS with Source/Replica; MariaDB and older
// MySQL with Master/Slave. The sandbox only runs MariaDB, so both spellings are checked here.
func TestLagFromStatusColumnNames(t *testing.T) {
	v := func(s string) sql.NullString { return sql.NullString{String: s, Valid: true} }
	for name, c := range map[string]struct {
		st      map[string]sql.NullString
		want    time.Duration
		wantErr string
	}{
		"MySQL 8.4": {st: map[string]sql.NullString{"Seconds_Behind_Source": v("7"), "Replica_IO_Running": v("Yes")}, want: 7 * time.Second},
		"MariaDB":   {st: map[string]sql.NullString{"Seconds_Behind_Master": v("0")}, want: 0},
		"stopped, MySQL": {st: map[string]sql.NullString{"Seconds_Behind_Source": {}, "Replica_IO_Running": v("Yes"),
			"Replica_SQL_Running": v("No"), "Last_SQL_Error": v("Duplicate entry")},
			wantErr: "replication not running (IO thread Yes, SQL thread No); Last_SQL_Error: Duplicate entry"},
		"stopped, MariaDB": {st: map[string]sql.NullString{"Seconds_Behind_Master": {}, "Slave_IO_Running": v("No"), "Slave_SQL_Running": v("Yes")},
			wantErr: "replication not running (IO thread No, SQL thread Yes)"},
		"garbage": {st: map[string]sql.NullString{"Seconds_Behind_Master": v("soon")}, wantErr: "not a number"},
	} {
		got, err := lagFromStatus(c.st)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: error %v, want %q", name, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %v, %v; want %v", name, got, err, c.want)
		}
	}
}
