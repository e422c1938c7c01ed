package osc

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strings"
)

// Session settings and value conversions: the ghost table must end up as a plain ALTER TABLE on
// this server would leave it.
//
// sql_mode: the ghost table's DDL, the copy and the apply run under the server's sql_mode (or
// Migration.SQLMode), so that what the server refuses natively (NO_ZERO_DATE, a value too long) is
// refused here too. ferry adds STRICT_ALL_TABLES (a value the new column cannot hold fails the
// migration instead of being truncated with a warning) and NO_AUTO_VALUE_ON_ZERO (a row with id 0
// is copied as id 0, not renumbered: the apply finds rows by key).
//
// time_zone: the copy and the apply keep ferry's UTC sessions, so TIMESTAMP values move unshifted;
// where the ALTER converts between TIMESTAMP and another type, the conversion the server would do
// in its time zone (Migration.TimeZone, default @@GLOBAL.time_zone) is spelled out with
// CONVERT_TZ, in the same expression for the copy (over the original's column) and for the apply
// (over the binlog value). The ghost DDL runs in that zone (TIMESTAMP defaults are local times).
// CONVERT_TZ differs from the column's own conversion at the edges (it returns a value outside the
// TIMESTAMP range unconverted, moves a time skipped by a daylight-saving change past the gap, and
// gives NULL for a zero date), so the expression does as ALTER TABLE: the first two fail with 1292,
// the last keeps its zero.
//
// Binlog values reach the apply as Go values, not as the column's type: the apply first restores
// the source type (CAST(? AS FLOAT) for a FLOAT, DECIMAL(M,D) for a DECIMAL ...), so that the
// server converts the value to the new type exactly as the copy does; and where an INSERT ...
// SELECT converts differently from ALTER TABLE, both use the ALTER's conversion (convertExpr).

// sessionModes are added to the server's sql_mode.
var sessionModes = []string{"STRICT_ALL_TABLES", "NO_AUTO_VALUE_ON_ZERO"}

// serverSettings reads the server's sql_mode and time_zone and returns the session sql_mode and
// the conversion time zone ferry uses.
func (m *Migration) serverSettings(ctx context.Context, db *sql.DB) (mode, zone string, err error) {
	var globalMode, globalZone, systemZone string
	if err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.sql_mode, @@GLOBAL.time_zone, @@system_time_zone").Scan(&globalMode, &globalZone, &systemZone); err != nil {
		return "", "", fmt.Errorf("osc: read the server's sql_mode and time_zone: %w", err)
	}
	mode = globalMode
	if m.SQLMode != "" {
		mode = m.SQLMode
	}
	have := map[string]bool{}
	var modes []string
	for _, x := range strings.Split(mode, ",") {
		if x = strings.ToUpper(strings.TrimSpace(x)); x != "" && !have[x] {
			have[x] = true
			modes = append(modes, x)
		}
	}
	for _, x := range sessionModes {
		if !have[x] {
			modes = append(modes, x)
		}
	}
	zone = globalZone
	if m.TimeZone != "" {
		zone = m.TimeZone
	}
	if strings.EqualFold(zone, "SYSTEM") {
		// the system zone by name; UTC needs no conversion
		zone = systemZone
	}
	if isUTC(zone) {
		zone = "+00:00"
	}
	return strings.Join(modes, ","), zone, nil
}

func isUTC(zone string) bool {
	switch strings.ToUpper(zone) {
	case "+00:00", "-00:00", "UTC", "GMT", "Z", "ETC/UTC", "UNIVERSAL", "ZULU":
		return true
	}
	return false
}

// checkTimeZone makes sure the server can convert to and from the zone (a named zone needs the
// server's time zone tables) when the ALTER converts between TIMESTAMP and another type.
func (m *Migration) checkTimeZone(ctx context.Context) error {
	if m.zone == "+00:00" {
		return nil
	}
	need := false
	for _, cm := range m.plan.Columns {
		need = need || tzConversion(cm) != 0
	}
	if !need {
		return nil
	}
	var probe sql.NullString
	if err := m.db.QueryRowContext(ctx, "SELECT CONVERT_TZ('2001-01-01 00:00:00', '+00:00', ?)", m.zone).Scan(&probe); err != nil || !probe.Valid {
		return fmt.Errorf("osc: the ALTER converts between TIMESTAMP and another type, which the server does in its time zone %q, but CONVERT_TZ cannot use that zone (load the server's time zone tables, or state the zone as an offset with TimeZone / --time-zone, e.g. +05:00)", m.zone)
	}
	return nil
}

// tzConversion: +1 for TIMESTAMP → another type (UTC to local), -1 for another type → TIMESTAMP.
func tzConversion(cm ColumnMap) int {
	from, to := cm.From.DataType == "timestamp", cm.To.DataType == "timestamp"
	switch {
	case from && !to:
		return 1
	case !from && to:
		return -1
	}
	return 0
}

var fractionDigits = regexp.MustCompile(`\((\d)\)`)

// convertExpr wraps a value of the original column (the column itself in the copy, the decoded
// binlog value in the apply) in the conversion the server's ALTER TABLE does and an INSERT ...
// SELECT does not do the same way: FLOAT/DOUBLE to a string is the value's shortest text
// (CAST(f AS CHAR): FLOAT 0.1 is '0.1'; plain assignment goes through DOUBLE and gives
// '0.10000000149011612'), and TIMESTAMP to or from another type is done in the server's time zone.
func (m *Migration) convertExpr(cm ColumnMap, value string) string {
	if (cm.From.DataType == "float" || cm.From.DataType == "double") && isChar(cm.To) {
		return "CAST(" + value + " AS CHAR)"
	}
	if m.zone == "+00:00" || m.zone == "" {
		return value
	}
	zone := "'" + strings.ReplaceAll(m.zone, "'", "''") + "'"
	switch tzConversion(cm) {
	case 1:
		fsp := "0"
		if d := fractionDigits.FindStringSubmatch(cm.From.ColumnType); d != nil {
			fsp = d[1]
		}
		// A zero TIMESTAMP has no instant: CONVERT_TZ gives NULL, ALTER TABLE keeps the zero.
		return usedOnce(cm, value, func(v string) string {
			return "CAST(COALESCE(CONVERT_TZ(" + v + ", '+00:00', " + zone + "), " + v + ") AS DATETIME(" + fsp + "))"
		})
	case -1:
		// CONVERT_TZ gives NULL for a zero date (or one with zero parts): the value is written
		// unchanged, and the TIMESTAMP column takes or refuses it as it does in any zone. Where
		// ALTER TABLE fails (1292) because the local time is no instant of the TIMESTAMP range,
		// CONVERT_TZ returns something: a value outside the range unchanged, a time skipped by a
		// daylight-saving change moved past the gap. Both do not come back to the value when
		// converted back, and are made a text the column refuses with 1292, naming the value and
		// the zone.
		return usedOnce(cm, value, func(v string) string {
			utc := "CONVERT_TZ(" + v + ", " + zone + ", '+00:00')"
			return "CASE WHEN " + utc + " IS NULL THEN " + v +
				" WHEN CONVERT_TZ(" + utc + ", '+00:00', " + zone + ") <> " + v +
				" THEN CAST(CONCAT(" + v + ", ' is no TIMESTAMP in time zone ', " + zone + ") AS DATETIME)" +
				" ELSE " + utc + " END"
		})
	}
	return value
}

// usedOnce builds an expression that uses value several times (expr(v)). A value bound to a
// placeholder (the apply's "?", bound once per row) is selected once in a derived table.
// A binlog DATETIME or TIMESTAMP arrives as text, and text that is a zero date is refused (1292)
// by CONVERT_TZ in a strict statement where the column's zero value is not: it is read as the
// column's type first.
func usedOnce(cm ColumnMap, value string, expr func(v string) string) string {
	if !strings.Contains(value, "?") {
		return expr(value)
	}
	if value == "?" {
		switch cm.From.DataType {
		case "datetime", "timestamp":
			fsp := "0"
			if d := fractionDigits.FindStringSubmatch(cm.From.ColumnType); d != nil {
				fsp = d[1]
			}
			value = "CAST(? AS DATETIME(" + fsp + "))"
		case "date":
			value = "CAST(? AS DATE)"
		}
	}
	return "(SELECT " + expr("ferry_value.v") + " FROM (SELECT " + value + " AS v) AS ferry_value)"
}

// sourceTypeExpr restores a binlog value's source type where the new column's type differs, so the
// server converts it as it converts a value read from the original column.
func sourceTypeExpr(cm ColumnMap) string {
	if cm.From.ColumnType == cm.To.ColumnType {
		return "?"
	}
	switch cm.From.DataType {
	case "float":
		return "CAST(? AS FLOAT)"
	case "double":
		return "CAST(? AS DOUBLE)"
	case "decimal":
		t := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(strings.ReplaceAll(cm.From.ColumnType, "zerofill", "")), "unsigned"))
		return "CAST(? AS " + strings.ToUpper(t) + ")"
	}
	return "?"
}

// inZone runs f on a session with the server's time zone and ferry's sql_mode (for the ghost
// table's DDL: TIMESTAMP defaults are read in the session's zone, and the sql_mode decides which
// definitions are accepted).
func (m *Migration) inZone(ctx context.Context, f func(*sql.Conn) error) error {
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer discard(conn)
	if m.zone != "+00:00" && m.zone != "" {
		if _, err := conn.ExecContext(ctx, "SET SESSION time_zone = ?", m.zone); err != nil {
			return fmt.Errorf("osc: set time_zone %q for the ghost table's DDL: %w", m.zone, err)
		}
	}
	return f(conn)
}
