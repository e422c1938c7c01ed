package osc

import (
	"context"
	"strings"
	"testing"
)

// Conversions whose outcome hinges on a row changed during the copy (the apply path, not the copy):
// rounding, overflow, CHAR padding, a character the new charset lacks, a removed ENUM member,
// generated columns; each compared with the native ALTER on a twin (same rows, or the same error).
func TestNativeApplyConversions(t *testing.T) {
	runNativeCases(t, []nativeCase{{
		name:   "DECIMAL narrowed with rounding, changed during the copy",
		create: "CREATE TABLE %s (id INT PRIMARY KEY, d DECIMAL(6,2) NULL) ENGINE=InnoDB",
		rows:   []string{"INSERT INTO %s SELECT seq, seq + 0.05 FROM seq_1_to_30"},
		writes: []string{"UPDATE %s SET d = 12.35 WHERE id IN (2, 25)", "UPDATE %s SET d = -0.05 WHERE id = 26"},
		alter:  "MODIFY d DECIMAL(5,1) NULL",
	}, {
		name:   "DECIMAL narrowed, a value rounding out of range arrives during the copy",
		create: "CREATE TABLE %s (id INT PRIMARY KEY, d DECIMAL(6,2) NULL) ENGINE=InnoDB",
		rows:   []string{"INSERT INTO %s SELECT seq, seq + 0.05 FROM seq_1_to_30"},
		writes: []string{"UPDATE %s SET d = 9999.99 WHERE id = 25"},
		alter:  "MODIFY d DECIMAL(5,1) NULL",
	}, {
		name:   "TINYINT overflow arrives during the copy",
		create: "CREATE TABLE %s (id INT PRIMARY KEY, v INT NULL) ENGINE=InnoDB",
		rows:   []string{"INSERT INTO %s SELECT seq, seq FROM seq_1_to_30"},
		writes: []string{"UPDATE %s SET v = 300 WHERE id = 25"},
		alter:  "MODIFY v TINYINT NULL",
	}, {
		name:   "CHAR(3) from VARCHAR with trailing spaces",
		create: "CREATE TABLE %s (id INT PRIMARY KEY, c VARCHAR(10) NULL) ENGINE=InnoDB",
		rows:   []string{"INSERT INTO %s SELECT seq, CONCAT('a', seq % 10, '    ') FROM seq_1_to_30"},
		writes: []string{"UPDATE %s SET c = 'ab      ' WHERE id IN (2, 25)", "INSERT INTO %s VALUES (31, ' x ')"},
		alter:  "MODIFY c CHAR(3) NULL",
	}, {
		name:   "CONVERT TO latin1, a character latin1 lacks arrives during the copy",
		create: "CREATE TABLE %s (id INT PRIMARY KEY, c VARCHAR(10) CHARACTER SET utf8mb4 NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
		rows:   []string{"INSERT INTO %s SELECT seq, CONCAT('caf', _utf8mb4 0xC3A9, seq) FROM seq_1_to_30"},
		writes: []string{"UPDATE %s SET c = _utf8mb4 0xE282AC WHERE id = 25"},
		alter:  "CONVERT TO CHARACTER SET latin1",
	}, {
		name:   "ENUM member removed, used by a row written during the copy",
		create: "CREATE TABLE %s (id INT PRIMARY KEY, e ENUM('a','b','c') NULL) ENGINE=InnoDB",
		rows:   []string{"INSERT INTO %s SELECT seq, IF(seq % 2, 'a', 'b') FROM seq_1_to_30"},
		writes: []string{"UPDATE %s SET e = 'c' WHERE id = 25"},
		alter:  "MODIFY e ENUM('a','b') NULL",
	}, {
		name:   "generated columns added",
		create: "CREATE TABLE %s (id INT PRIMARY KEY, a INT NOT NULL, b VARCHAR(10) NULL) ENGINE=InnoDB",
		rows:   []string{"INSERT INTO %s SELECT seq, seq, CONCAT('b', seq) FROM seq_1_to_30"},
		writes: []string{"UPDATE %s SET a = a * 7, b = 'zz' WHERE id IN (2, 25)", "INSERT INTO %s VALUES (31, 5, NULL)"},
		alter:  "ADD COLUMN g INT AS (a * 2) STORED, ADD COLUMN h VARCHAR(20) AS (CONCAT(b, '!')) VIRTUAL, ADD KEY (h)",
	}})
}

// An added AUTO_INCREMENT column is refused before the copy: ALTER TABLE numbers the rows in the
// table's order, the ghost in the order rows reach it, so a row inserted or updated during the
// migration would get another number than the native ALTER gives it (the cut-over went through
// with the values and the counter differing from a plain ALTER's).
func TestAddedAutoIncrementColumnRefused(t *testing.T) {
	f := newFixture(t, 50)
	before := f.rowsOf("t")
	m := f.migration("ADD COLUMN seqno INT NOT NULL AUTO_INCREMENT, ADD UNIQUE KEY (seqno)")
	m.AllowNewUniqueKey = true
	_, err := m.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "adds AUTO_INCREMENT column seqno") || !strings.Contains(err.Error(), "plain ALTER TABLE") {
		t.Fatalf("error %v, want the added AUTO_INCREMENT column refused", err)
	}
	if got := strings.Join(f.tables(), ","); got != "t,twin" {
		t.Fatalf("tables after the refusal: %s, want t and twin only", got)
	}
	after := f.rowsOf("t")
	if len(after) != len(before) {
		t.Fatalf("t has %d rows after the refusal, %d before", len(after), len(before))
	}
	for i := range before {
		if string(before[i]) != string(after[i]) {
			t.Fatalf("row %d of t changed: %q, was %q", i, after[i], before[i])
		}
	}
}

// TIMESTAMP conversions at the edges, in a server time zone other than UTC: a DATETIME outside the
// TIMESTAMP range once read in the server's zone, or skipped by a daylight-saving change, fails like
// ALTER TABLE (1292; CONVERT_TZ returned it unconverted or moved past the gap, and it was stored
// with exit 0), in the copy and in the apply; zero values keep their zero as ALTER TABLE does
// (CONVERT_TZ made them NULL silently, or failed the apply).
func TestNativeTimestampEdges(t *testing.T) {
	// A zone with daylight-saving time, written into the server's time zone tables (any loaded
	// zone would do; this one needs no zoneinfo files): +01:00, +02:00 from 2024-03-31 01:00 UTC
	// (local 02:00-03:00 does not exist), +01:00 again from 2024-10-27 01:00 UTC (local
	// 02:00-03:00 happens twice).
	must(t, srv.Exec(context.Background(),
		"REPLACE INTO mysql.time_zone (Time_zone_id, Use_leap_seconds) VALUES (9001, 'N')",
		"REPLACE INTO mysql.time_zone_name (Name, Time_zone_id) VALUES ('Ferry/DST', 9001)",
		"REPLACE INTO mysql.time_zone_transition_type (Time_zone_id, Transition_type_id, `Offset`, Is_DST, Abbreviation) VALUES (9001, 0, 3600, 0, 'FST'), (9001, 1, 7200, 1, 'FDT')",
		"REPLACE INTO mysql.time_zone_transition (Time_zone_id, Transition_time, Transition_type_id) VALUES (9001, 1711846800, 1), (9001, 1729990800, 0)"))
	runNativeCases(t, []nativeCase{{
		name:    "DATETIME to TIMESTAMP across daylight-saving changes, a skipped time during the copy",
		globals: []string{"time_zone = 'Ferry/DST'"},
		create:  "CREATE TABLE %s (id INT PRIMARY KEY, dt DATETIME NULL) ENGINE=InnoDB",
		rows:    []string{"INSERT INTO %s SELECT seq, '2024-10-27 01:30:00' + INTERVAL seq * 5 MINUTE FROM seq_1_to_30"},
		writes:  []string{"UPDATE %s SET dt = '2024-03-31 02:30:00' WHERE id = 25"},
		alter:   "MODIFY dt TIMESTAMP NULL",
	}, {
		name:    "DATETIME to TIMESTAMP across daylight-saving changes, a skipped time copied",
		globals: []string{"time_zone = 'Ferry/DST'"},
		create:  "CREATE TABLE %s (id INT PRIMARY KEY, dt DATETIME NULL) ENGINE=InnoDB",
		rows:    []string{"INSERT INTO %s SELECT seq, '2024-03-31 01:00:00' + INTERVAL seq * 5 MINUTE FROM seq_1_to_30"},
		alter:   "MODIFY dt TIMESTAMP NULL",
	}, {
		name:    "DATETIME(6) to TIMESTAMP(3) in a +05:00 server, fractions during the copy",
		globals: []string{"time_zone = '+05:00'"},
		create:  "CREATE TABLE %s (id INT PRIMARY KEY, dt DATETIME(6) NULL) ENGINE=InnoDB",
		rows:    []string{"INSERT INTO %s SELECT seq, '2020-01-01 10:00:00.123456' + INTERVAL seq * 1111 MICROSECOND FROM seq_1_to_30"},
		writes:  []string{"UPDATE %s SET dt = '2021-02-03 04:05:06.999999' WHERE id = 25", "INSERT INTO %s VALUES (31, '1999-12-31 23:59:59.9995')"},
		alter:   "MODIFY dt TIMESTAMP(3) NULL",
	}, {
		name:    "TIMESTAMP to DATETIME across daylight-saving changes",
		globals: []string{"time_zone = 'Ferry/DST'"},
		create:  "CREATE TABLE %s (id INT PRIMARY KEY, ts TIMESTAMP NULL) ENGINE=InnoDB",
		rows:    []string{"SET time_zone = '+00:00'; INSERT INTO %s SELECT seq, '2024-10-27 00:00:00' + INTERVAL seq * 5 MINUTE FROM seq_1_to_40"},
		writes:  []string{"SET time_zone = '+00:00'; UPDATE %s SET ts = '2024-10-27 01:10:00' WHERE id = 25"},
		alter:   "MODIFY ts DATETIME NULL",
	}, {
		name:    "DATETIME to TIMESTAMP in a +05:00 server, a value below the TIMESTAMP range in UTC",
		globals: []string{"time_zone = '+05:00'"},
		create:  "CREATE TABLE %s (id INT PRIMARY KEY, dt DATETIME NULL) ENGINE=InnoDB",
		rows:    []string{"INSERT INTO %s SELECT seq, '2020-01-01 10:00:00' + INTERVAL seq DAY FROM seq_1_to_30", "UPDATE %s SET dt = '1970-01-01 03:00:00' WHERE id = 7"},
		alter:   "MODIFY dt TIMESTAMP NULL",
	}, {
		name:    "DATETIME to TIMESTAMP in a -05:00 server, a value above the range arrives during the copy",
		globals: []string{"time_zone = '-05:00'"},
		create:  "CREATE TABLE %s (id INT PRIMARY KEY, dt DATETIME NULL) ENGINE=InnoDB",
		rows:    []string{"INSERT INTO %s SELECT seq, '2020-01-01 10:00:00' + INTERVAL seq DAY FROM seq_1_to_30"},
		writes:  []string{"UPDATE %s SET dt = '2038-01-19 01:00:00' WHERE id = 25"},
		alter:   "MODIFY dt TIMESTAMP NULL",
	}, {
		name:    "zero TIMESTAMP to DATETIME in a +05:00 server",
		globals: []string{"time_zone = '+05:00'", "sql_mode = 'STRICT_TRANS_TABLES'"},
		create:  "CREATE TABLE %s (id INT PRIMARY KEY, ts TIMESTAMP NULL, ts2 TIMESTAMP NOT NULL DEFAULT '2000-01-01') ENGINE=InnoDB",
		rows:    []string{"INSERT INTO %s SELECT seq, IF(seq = 3, '0000-00-00 00:00:00', '2020-01-01'), IF(seq = 4, '0000-00-00 00:00:00', '2020-01-01') FROM seq_1_to_30"},
		writes:  []string{"UPDATE %s SET ts = '0000-00-00 00:00:00', ts2 = '0000-00-00' WHERE id = 25"},
		alter:   "MODIFY ts DATETIME NULL, MODIFY ts2 DATETIME NOT NULL",
	}, {
		name:    "zero DATETIME to TIMESTAMP in a +05:00 server",
		globals: []string{"time_zone = '+05:00'", "sql_mode = 'STRICT_TRANS_TABLES'"},
		create:  "CREATE TABLE %s (id INT PRIMARY KEY, dt DATETIME NULL) ENGINE=InnoDB",
		rows:    []string{"INSERT INTO %s SELECT seq, IF(seq = 3, '0000-00-00 00:00:00', '2020-01-01') FROM seq_1_to_30"},
		writes:  []string{"UPDATE %s SET dt = '0000-00-00 00:00:00' WHERE id = 25"},
		alter:   "MODIFY dt TIMESTAMP NULL",
	}})
}
