package ferry

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// checkSourceSettings refuses a source whose binlog ferry cannot follow faithfully.
func checkSourceSettings(ctx context.Context, db *sql.DB) error {
	return checkBinlogSettings(ctx, db, "source")
}

// checkBinlogSettings refuses a server (who names it) whose binlog ferry cannot follow faithfully.
func checkBinlogSettings(ctx context.Context, db *sql.DB, who string) error {
	vars := map[string]string{}
	rows, err := db.QueryContext(ctx, "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('log_bin','binlog_format','binlog_row_image')")
	if err != nil {
		return fmt.Errorf("check %s settings: %w", who, err)
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return err
		}
		vars[strings.ToLower(k)] = strings.ToUpper(v)
	}
	rows.Close()
	if vars["log_bin"] != "ON" && vars["log_bin"] != "1" {
		return fmt.Errorf("%s: the binary log is off (log_bin=%s); restart the server with --log-bin, binlog_format=ROW and binlog_row_image=FULL", who, vars["log_bin"])
	}
	if vars["binlog_format"] != "ROW" {
		return fmt.Errorf("%s: binlog_format is %s; ferry needs ROW: SET GLOBAL binlog_format='ROW' (and in my.cnf), then reconnect the applications so their sessions pick it up", who, vars["binlog_format"])
	}
	if vars["binlog_row_image"] != "FULL" {
		return fmt.Errorf("%s: binlog_row_image is %s; ferry needs FULL: SET GLOBAL binlog_row_image='FULL' (and in my.cnf)", who, vars["binlog_row_image"])
	}
	return nil
}

var grantRe = regexp.MustCompile("(?i)^GRANT (.+?) ON (\\S+) TO ")

// grants reads the current user's privileges: scope ("*.*" or "db") → set of privileges.
func grants(ctx context.Context, db *sql.DB) (map[string]map[string]bool, error) {
	rows, err := db.QueryContext(ctx, "SHOW GRANTS")
	if err != nil {
		return nil, fmt.Errorf("show grants: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]bool{}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return nil, err
		}
		m := grantRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		scope := strings.ReplaceAll(m[2], "`", "")
		scope = strings.TrimSuffix(scope, ".*")
		if out[scope] == nil {
			out[scope] = map[string]bool{}
		}
		for _, p := range strings.Split(m[1], ",") {
			p = strings.ToUpper(strings.TrimSpace(p))
			if i := strings.IndexByte(p, '('); i > 0 { // column-level grants
				p = strings.TrimSpace(p[:i])
			}
			out[scope][p] = true
		}
	}
	return out, rows.Err()
}

func hasPrivilege(g map[string]map[string]bool, database, priv string) bool {
	for _, scope := range []string{"*", database} {
		if g[scope]["ALL PRIVILEGES"] || g[scope]["ALL"] || g[scope][priv] {
			return true
		}
	}
	return false
}

// checkPrivileges reports the privileges a user lacks, as one clear error.
func checkPrivileges(ctx context.Context, db *sql.DB, who string, databases []string, need []string, global [][]string) error {
	g, err := grants(ctx, db)
	if err != nil {
		return err
	}
	var missing []string
	for _, alternatives := range global {
		ok := false
		for _, p := range alternatives {
			if hasPrivilege(g, "*", p) {
				ok = true
			}
		}
		if !ok {
			missing = append(missing, strings.Join(alternatives, " or ")+" ON *.*")
		}
	}
	for _, d := range databases {
		for _, p := range need {
			if !hasPrivilege(g, d, p) {
				missing = append(missing, p+" ON "+d+".*")
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: the user lacks privileges: %s; grant them (GRANT ... TO the user) and retry", who, strings.Join(missing, ", "))
	}
	return nil
}

// checkHostPool refuses a connection pool the host handed in (Ferry.Source or Ferry.Target) whose
// sessions lack a setting ferry's byte-exactness depends on: TIMESTAMP values read and written in
// UTC, results in each column's own character set, temporal values as text (not parsed by the
// driver), a sql_mode that neither pads CHAR values nor turns ” into NULL nor a key of 0 into a new
// AUTO_INCREMENT value, and on the target foreign_key_checks=0 (so applying a row image never
// cascades to or is refused by other rows). It checks one connection: the settings must come from
// the pool's DSN, so that every connection has them.
func checkHostPool(ctx context.Context, db *sql.DB, field string, target bool) error {
	var tz, results, mode sql.NullString
	var fkChecks int
	var datetime any
	err := db.QueryRowContext(ctx, "SELECT @@SESSION.time_zone, @@SESSION.character_set_results, @@SESSION.sql_mode, @@SESSION.foreign_key_checks, CAST('2001-02-03 04:05:06' AS DATETIME)").
		Scan(&tz, &results, &mode, &fkChecks, &datetime)
	if err != nil {
		return fmt.Errorf("Ferry.%s: check the pool's session settings: %w", field, err)
	}
	var bad []string
	if tz.String != "+00:00" && !strings.EqualFold(tz.String, "UTC") {
		bad = append(bad, fmt.Sprintf("time_zone is %q, want '+00:00' (TIMESTAMP values would be shifted)", tz.String))
	}
	if results.Valid && !strings.EqualFold(results.String, "binary") {
		bad = append(bad, fmt.Sprintf("character_set_results is %s, want binary (values would be converted between character sets)", results.String))
	}
	modes := map[string]bool{}
	for _, m := range strings.Split(strings.ToUpper(mode.String), ",") {
		modes[m] = true
	}
	for _, m := range []string{"STRICT_ALL_TABLES", "NO_AUTO_VALUE_ON_ZERO"} {
		if !modes[m] {
			bad = append(bad, fmt.Sprintf("sql_mode %q lacks %s", mode.String, m))
		}
	}
	for _, m := range []string{"PAD_CHAR_TO_FULL_LENGTH", "EMPTY_STRING_IS_NULL", "TIME_TRUNCATE_FRACTIONAL", "ORACLE"} {
		if modes[m] {
			bad = append(bad, fmt.Sprintf("sql_mode %q has %s", mode.String, m))
		}
	}
	if target && fkChecks != 0 {
		bad = append(bad, "foreign_key_checks is 1, want 0 (applying a row image would cascade to or be refused by other rows)")
	}
	if _, ok := datetime.([]byte); !ok && datetime != nil {
		bad = append(bad, fmt.Sprintf("the driver returns DATETIME values as %T, want text (remove parseTime=true from the DSN)", datetime))
	}
	if len(bad) > 0 {
		return fmt.Errorf("Ferry.%s: the connection pool's sessions are not set up for ferry: %s; open the pool with ferry's session settings in its DSN (ferry.SessionParams(), e.g. mysql.Config.Params), or leave Ferry.%s nil so ferry opens it from Config.%s",
			field, strings.Join(bad, "; "), field, field)
	}
	return nil
}

// checkTargetTriggers refuses target tables that have triggers: they would fire on every copied and
// applied row (a BEFORE INSERT trigger that rewrites a column rewrites every copied row).
func (f *Ferry) checkTargetTriggers(ctx context.Context, tables []*TableCopy) error {
	selected := map[string]bool{}
	for _, t := range tables {
		selected[t.TargetDatabase+"."+t.TargetTable] = true
	}
	rows, err := f.Target.QueryContext(ctx, `SELECT TRIGGER_SCHEMA, EVENT_OBJECT_TABLE, TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION
		FROM information_schema.TRIGGERS ORDER BY TRIGGER_SCHEMA, EVENT_OBJECT_TABLE, TRIGGER_NAME`)
	if err != nil {
		return fmt.Errorf("target: read triggers: %w", err)
	}
	defer rows.Close()
	var found []string
	for rows.Next() {
		var db, table, name, timing, event string
		if err := rows.Scan(&db, &table, &name, &timing, &event); err != nil {
			return fmt.Errorf("target: read triggers: %w", err)
		}
		if selected[db+"."+table] {
			found = append(found, fmt.Sprintf("%s.%s.%s (%s %s)", db, table, name, timing, event))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("target: read triggers: %w", err)
	}
	if len(found) == 0 {
		return nil
	}
	if f.Config.AllowTargetTriggers {
		f.log.WithField("triggers", strings.Join(found, ", ")).Warn("ferry: target tables have triggers; they fire on every copied and applied row")
		return nil
	}
	return &OptionError{
		What: fmt.Sprintf("target: tables have triggers that would fire on every copied and applied row: %s; "+
			"drop them on the target and create them after the cut-over", strings.Join(found, ", ")),
		Option: "AllowTargetTriggers",
		Effect: "to copy anyway, accepting what the triggers do to the copied rows",
	}
}

// globalVariables reads the named global variables; a variable the server does not have is absent
// from the result (MariaDB has no super_read_only or server_uuid).
func globalVariables(ctx context.Context, db *sql.DB, names ...string) (map[string]string, error) {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = "'" + n + "'"
	}
	rows, err := db.QueryContext(ctx, "SHOW GLOBAL VARIABLES WHERE Variable_name IN ("+strings.Join(quoted, ",")+")")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	vars := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		vars[strings.ToLower(k)] = v
	}
	return vars, rows.Err()
}

func isOn(v string) bool { return v == "1" || strings.EqualFold(v, "ON") }

// GlobalVariables reads the named global variables of a server; a variable the server does not
// have (another flavor's or version's name) is absent from the result.
func GlobalVariables(ctx context.Context, db *sql.DB, names ...string) (map[string]string, error) {
	return globalVariables(ctx, db, names...)
}

// IsOn reports whether a boolean server variable's value is on ("1" or "ON").
func IsOn(v string) bool { return isOn(v) }

// checkTargetWritable refuses a target that does not take writes: an ordinary user would fail on
// every batch, and a user with SUPER or READ_ONLY ADMIN would write into a server someone made
// read-only on purpose.
func checkTargetWritable(ctx context.Context, db *sql.DB, who string) error {
	vars, err := globalVariables(ctx, db, "read_only", "super_read_only", "innodb_read_only")
	if err != nil {
		return fmt.Errorf("%s: read the read-only settings: %w", who, err)
	}
	if isOn(vars["innodb_read_only"]) {
		return fmt.Errorf("%s: the server is %w: innodb_read_only is ON, so no InnoDB table can be written; restart the target without --innodb-read-only", who, ErrTargetReadOnly)
	}
	if isOn(vars["super_read_only"]) {
		return fmt.Errorf("%s: the server is %w (super_read_only is ON); run SET GLOBAL super_read_only = 0, SET GLOBAL read_only = 0 on the target (and remove them from its configuration) if it is meant to receive the copy", who, ErrTargetReadOnly)
	}
	if isOn(vars["read_only"]) {
		return fmt.Errorf("%s: the server is %w (read_only is ON); run SET GLOBAL read_only = 0 on the target (and remove it from its configuration) if it is meant to receive the copy", who, ErrTargetReadOnly)
	}
	return nil
}

// ServerIdentity says which server a checkpoint was taken against, so a resume against another one
// is refused as such (and not, say, as a purged binlog). MySQL names a server by @@server_uuid;
// MariaDB has none, and is named by the host it runs on, its port and its data directory.
type ServerIdentity struct {
	UUID     string `json:"uuid,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	Port     string `json:"port,omitempty"`
	Datadir  string `json:"datadir,omitempty"`
}

func (s ServerIdentity) String() string {
	if s.UUID != "" {
		return "server_uuid " + s.UUID
	}
	return fmt.Sprintf("%s port %s datadir %s", s.Hostname, s.Port, s.Datadir)
}

// IsZero reports an identity that was not recorded.
func (s ServerIdentity) IsZero() bool { return s == ServerIdentity{} }

// Same reports whether two identities name the same server.
func (s ServerIdentity) Same(o ServerIdentity) bool {
	if s.UUID != "" || o.UUID != "" {
		return s.UUID == o.UUID
	}
	return s == o
}

// ReadServerIdentity reads the identity of the server db is connected to (recorded in states and
// snapshot manifests, so they are only resumed or caught up against the same server).
func ReadServerIdentity(ctx context.Context, db *sql.DB) (ServerIdentity, error) {
	return serverIdentity(ctx, db)
}

func serverIdentity(ctx context.Context, db *sql.DB) (ServerIdentity, error) {
	vars, err := globalVariables(ctx, db, "server_uuid", "hostname", "port", "datadir")
	if err != nil {
		return ServerIdentity{}, fmt.Errorf("read the server's identity: %w", err)
	}
	return ServerIdentity{UUID: vars["server_uuid"], Hostname: vars["hostname"], Port: vars["port"], Datadir: vars["datadir"]}, nil
}

// checkDistinctServers refuses a target that is the source itself, reached by the same address, an
// alias (localhost, another interface) or a proxy. Comparing host names and ports cannot tell, and
// MariaDB has no server_uuid; a named lock can: locks are per server, so a lock taken on the source
// is seen as used on the target exactly when they are one server. Nothing is written.
func checkDistinctServers(ctx context.Context, src, dst *sql.DB, srcName, dstName string) error {
	var b [8]byte
	rand.Read(b[:])
	name := "ferry-identity-" + hex.EncodeToString(b[:])
	conn, err := src.Conn(ctx)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer conn.Close()
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", name).Scan(&got); err != nil {
		return fmt.Errorf("source: take a named lock to tell the servers apart: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "DO RELEASE_LOCK(?)", name)
	if got.Int64 != 1 {
		return fmt.Errorf("source: could not take the named lock %s to tell the servers apart", name)
	}
	var holder sql.NullInt64
	if err := dst.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?)", name).Scan(&holder); err != nil {
		return fmt.Errorf("target: read a named lock to tell the servers apart: %w", err)
	}
	if holder.Valid {
		return fmt.Errorf("the source %s and the target %s are the %w (a lock taken through the source connection is held on the target); ferry would copy the tables onto themselves (and a read-only cut-over would leave the only server read-only); point the target at another server", srcName, dstName, ErrSameServer)
	}
	return nil
}
