package ferry

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strings"
)

// checkSourceSettings refuses a source whose binlog ferry cannot follow faithfully.
func checkSourceSettings(ctx context.Context, db *sql.DB) error {
	vars := map[string]string{}
	rows, err := db.QueryContext(ctx, "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('log_bin','binlog_format','binlog_row_image')")
	if err != nil {
		return fmt.Errorf("check source settings: %w", err)
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
		return fmt.Errorf("source: the binary log is off (log_bin=%s); restart the source with --log-bin, binlog_format=ROW and binlog_row_image=FULL", vars["log_bin"])
	}
	if vars["binlog_format"] != "ROW" {
		return fmt.Errorf("source: binlog_format is %s; ferry needs ROW: SET GLOBAL binlog_format='ROW' (and in my.cnf), then reconnect the applications so their sessions pick it up", vars["binlog_format"])
	}
	if vars["binlog_row_image"] != "FULL" {
		return fmt.Errorf("source: binlog_row_image is %s; ferry needs FULL: SET GLOBAL binlog_row_image='FULL' (and in my.cnf)", vars["binlog_row_image"])
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
