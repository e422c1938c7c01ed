package osc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/schema"
)

// Running on a replica (MigrateOnReplica, TestOnReplica).
//
// The migration then runs on a server whose table is also written by the replication applier (the
// SQL thread and its parallel workers). Three things keep it exact:
//
//   - The applier's changes reach the ghost table through the replica's own binlog, so the replica
//     must log them (log_slave_updates); otherwise the ghost would miss every replicated change.
//     Refused before any write.
//   - The applier is a writer like any other at the cut-over: LOCK TABLES t WRITE makes it wait
//     for the table's metadata lock (it has no privilege that passes a table lock, unlike
//     read_only), so every change it committed before the lock precedes the cut-over marker in
//     the binlog and is applied to the ghost; the queued RENAME runs before its queued change,
//     which then lands in the new table (MigrateOnReplica: replication goes on into it).
//   - TestOnReplica stops replication before the cut-over lock (STOP ALL SLAVES / STOP REPLICA,
//     which return once the applier stopped at a transaction boundary): every change it made is
//     then in the binlog before the marker, so nothing is lost, and nothing writes the original
//     any more, so the swap back leaves it exactly as replication left it, at the position
//     reported.

// ReplicaTest is what a TestOnReplica run leaves: replication stopped at a position, the original
// table as replication left it there, and the migrated table beside it.
type ReplicaTest struct {
	// Server is the replica (host:port).
	Server string
	// StoppedAt is, per replication connection (channel), the primary's binlog position up to
	// which the replica had applied when replication was stopped.
	StoppedAt []string
	// GTIDPosition is the replica's applied GTID position then (gtid_slave_pos on MariaDB,
	// Executed_Gtid_Set on MySQL).
	GTIDPosition string
	// Original and Migrated are the qualified names of the original table (as replication left it)
	// and of the migrated one.
	Original, Migrated string
	// Compare are the statements that check the migrated table against the server's own ALTER
	// TABLE of the original: they build a native twin (kept out of the binlog) and checksum both.
	Compare []string
	// Cleanup drops the tables of the test; Resume starts replication again.
	Cleanup []string
	Resume  string
}

// String is the report the osc command prints.
func (r *ReplicaTest) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "test on replica %s: replication is stopped at %s", r.Server, strings.Join(r.StoppedAt, ", "))
	if r.GTIDPosition != "" {
		fmt.Fprintf(&b, " (GTID %s)", r.GTIDPosition)
	}
	fmt.Fprintf(&b, ".\n%s is the original table as replication left it there; %s is the migrated table.\n", r.Original, r.Migrated)
	b.WriteString("Compare the migrated table with the server's own ALTER TABLE of the original (needs the privilege to SET sql_log_bin, which keeps the twin out of the replica's binlog); the two checksums must be equal:\n")
	for _, s := range r.Compare {
		b.WriteString("  " + s + ";\n")
	}
	b.WriteString("Then drop the test tables and resume replication:\n")
	for _, s := range r.Cleanup {
		b.WriteString("  " + s + ";\n")
	}
	b.WriteString("  " + r.Resume + ";\n")
	return b.String()
}

func (m *Migration) onReplica() bool { return m.MigrateOnReplica || m.TestOnReplica }

// replicaOption names the replica option in effect, with its flag.
func (m *Migration) replicaOption() string {
	if m.TestOnReplica {
		return "TestOnReplica (-test-on-replica)"
	}
	return "MigrateOnReplica (-migrate-on-replica)"
}

func (m *Migration) server() string { return fmt.Sprintf("%s:%d", m.Conn.Host, m.Conn.Port) }

// checkReplica refuses, before any write, a replica option the server cannot serve exactly: a
// server that is not a replica, a replica whose binlog lacks replication's changes, one whose
// read_only would refuse ferry's writes, one where ferry's writes would break replication.
func (m *Migration) checkReplica(ctx context.Context) error {
	if !m.onReplica() {
		return nil
	}
	if m.MigrateOnReplica && m.TestOnReplica {
		return errors.New("osc: MigrateOnReplica (-migrate-on-replica) and TestOnReplica (-test-on-replica) exclude each other: choose one")
	}
	opt := m.replicaOption()
	if m.TestOnReplica && m.IncludeTriggers {
		return fmt.Errorf("osc: %s with IncludeTriggers (-include-triggers): the swap back would leave the original table without its triggers; test without -include-triggers", opt)
	}
	conns, err := m.replicationStatus(ctx)
	if err != nil {
		return fmt.Errorf("osc: %s: %w", opt, err)
	}
	if len(conns) == 0 {
		return fmt.Errorf("osc: %s: %s is not a replica (%s shows no replication); point the migration at a replica, or run without %s to migrate this server's table",
			opt, m.server(), m.flavor.ReplicationStatusQuery(), opt)
	}
	vars, err := ferry.GlobalVariables(ctx, m.db, "log_bin", "log_slave_updates", "log_replica_updates", "read_only", "super_read_only",
		"innodb_read_only", "gtid_strict_mode", "gtid_domain_id", "gtid_slave_pos",
		"slave_parallel_workers", "replica_parallel_workers", "slave_preserve_commit_order", "replica_preserve_commit_order")
	if err != nil {
		return fmt.Errorf("osc: %s: read the replica's settings: %w", opt, err)
	}
	if !ferry.IsOn(vars["log_bin"]) {
		return fmt.Errorf("osc: %s: the replica %s has no binary log (log_bin is OFF); ferry reads the table's changes from it: restart the replica with log_bin and log_slave_updates", opt, m.server())
	}
	if !ferry.IsOn(vars["log_slave_updates"]) && !ferry.IsOn(vars["log_replica_updates"]) {
		return fmt.Errorf("osc: %s: the replica %s does not write replication's changes to its binary log (log_slave_updates is OFF), so ferry would miss every change replication makes to %s during the migration: restart the replica with log_slave_updates=ON",
			opt, m.server(), m.qualified(m.Table))
	}
	if ferry.IsOn(vars["innodb_read_only"]) || ferry.IsOn(vars["super_read_only"]) {
		return fmt.Errorf("osc: %s: the replica %s refuses every write (innodb_read_only or super_read_only is ON), and ferry writes the ghost and changelog tables there: turn super_read_only off on the replica for the migration",
			opt, m.server())
	}
	if ferry.IsOn(vars["read_only"]) {
		blocked, err := m.readOnlyBlocksWrites(ctx)
		if err != nil {
			return fmt.Errorf("osc: %s: %w", opt, err)
		}
		if blocked {
			user := m.Conn.User
			return fmt.Errorf("osc: %s: the replica %s is read_only and user %s may not write past it, and ferry writes the ghost and changelog tables there: grant %s the privilege that passes read_only (%s), or SET GLOBAL read_only = 0 on the replica for the migration",
				opt, m.server(), user, user, m.readOnlyPrivilege())
		}
	}
	if m.flavor.MariaDB && ferry.IsOn(vars["gtid_strict_mode"]) {
		// ferry's own writes get GTIDs of the replica's gtid_domain_id; if replication uses that
		// domain too, the primary's next transaction has a sequence number the replica's binlog
		// already used, which strict mode refuses: replication would stop.
		domain := strings.TrimSpace(vars["gtid_domain_id"])
		for _, g := range strings.Split(vars["gtid_slave_pos"], ",") {
			if d, _, ok := strings.Cut(strings.TrimSpace(g), "-"); ok && d == domain {
				return fmt.Errorf("osc: %s: the replica %s has gtid_strict_mode=ON and its own writes (ferry's ghost and changelog tables) would take GTIDs in domain %s, which replication uses: the primary's next transaction would then be refused as out of order and replication would stop; give the replica's local writes a domain of their own (SET GLOBAL gtid_domain_id = N on the replica, N unused by the primary) or turn gtid_strict_mode off for the migration",
					opt, m.server(), domain)
			}
		}
	}
	if m.TestOnReplica && !m.flavor.MariaDB {
		workers, _ := strconv.Atoi(firstOf(vars, "replica_parallel_workers", "slave_parallel_workers"))
		if workers > 1 && !ferry.IsOn(firstOf(vars, "replica_preserve_commit_order", "slave_preserve_commit_order")) {
			return fmt.Errorf("osc: %s: the replica %s applies with %d parallel workers without replica_preserve_commit_order, so stopping it may leave gaps: the original table would match no single position of the primary; set replica_preserve_commit_order=ON (or replica_parallel_workers=1) for the test",
				opt, m.server(), workers)
		}
	}
	running := 0
	for _, c := range conns {
		if strings.EqualFold(c.sqlRunning, "yes") {
			running++
		}
	}
	if running == 0 {
		m.log.Warnf("osc: %s: replication on %s is not running: the table does not receive the primary's changes", opt, m.server())
	}
	return nil
}

// readOnlyPrivilege names the privilege that lets a session write on a read_only server.
func (m *Migration) readOnlyPrivilege() string {
	if m.flavor.MariaDB {
		return "READ_ONLY ADMIN"
	}
	return "CONNECTION_ADMIN or SUPER"
}

// readOnlyBlocksWrites reports whether read_only refuses this session's writes. The server checks
// read_only before it opens the tables a statement writes, so a DELETE from a table that does not
// exist fails with 1290 (read_only) for a session read_only stops and with 1146 (no such table)
// for one it lets through: the answer of the server itself, whatever grants or roles give the
// privilege, and nothing is written either way.
func (m *Migration) readOnlyBlocksWrites(ctx context.Context) (bool, error) {
	probe := "_ferry_read_only_probe_" + randomToken()
	if exists, _, err := tableExists(ctx, m.db, m.Database, probe); err != nil || exists {
		return false, fmt.Errorf("check whether read_only stops ferry's writes: table %s exists (%v)", m.qualified(probe), err)
	}
	_, err := m.db.ExecContext(ctx, "DELETE FROM "+m.qualified(probe)+" WHERE FALSE")
	var me *mysql.MySQLError
	switch {
	case errors.As(err, &me) && me.Number == 1290:
		return true, nil
	case errors.As(err, &me) && me.Number == 1146:
		return false, nil
	}
	return false, fmt.Errorf("check whether read_only stops ferry's writes (DELETE from the missing table %s): unexpected answer %v", m.qualified(probe), err)
}

// replicationConn is one replication connection (channel) of the server, from its status.
type replicationConn struct {
	name       string
	sqlRunning string
	position   string // the primary's binlog file:position applied up to
	gtid       string // MySQL: Executed_Gtid_Set
}

// replicationStatus reads the server's replication connections (none: not a replica).
func (m *Migration) replicationStatus(ctx context.Context) ([]replicationConn, error) {
	q := m.flavor.ReplicationStatusQuery()
	rows, err := m.db.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("read the replication status (%s): %w", q, err)
	}
	defer rows.Close()
	var out []replicationConn
	for rows.Next() {
		vals, err := schema.ScanRaw(rows)
		if err != nil {
			return nil, err
		}
		cols, _ := rows.Columns()
		row := map[string]string{}
		for i, c := range cols {
			row[strings.ToLower(c)] = string(vals[i])
		}
		out = append(out, replicationConn{
			name:       firstOf(row, "connection_name", "channel_name"),
			sqlRunning: firstOf(row, "slave_sql_running", "replica_sql_running"),
			position:   firstOf(row, "relay_master_log_file", "relay_source_log_file") + ":" + firstOf(row, "exec_master_log_pos", "exec_source_log_pos"),
			gtid:       firstOf(row, "executed_gtid_set"),
		})
	}
	return out, rows.Err()
}

// firstOf returns the first of the names that m has (the same column or variable under the names
// of different versions).
func firstOf(m map[string]string, names ...string) string {
	for _, n := range names {
		if v, ok := m[n]; ok {
			return v
		}
	}
	return ""
}

// stopReplication stops every replication connection of the replica before a TestOnReplica
// cut-over and reports where; restart undoes it (for a cut-over that did not happen) when
// replication was running before.
func (m *Migration) stopReplication(ctx context.Context) (restart func(), err error) {
	before, err := m.replicationStatus(ctx)
	if err != nil {
		return nil, err
	}
	wasRunning := false
	for _, c := range before {
		wasRunning = wasRunning || strings.EqualFold(c.sqlRunning, "yes")
	}
	stop := m.flavor.StopReplicationStatement()
	if _, err := m.db.ExecContext(ctx, stop); err != nil {
		return nil, fmt.Errorf("stop replication (%s): %w", stop, err)
	}
	restart = func() {
		if !wasRunning {
			return
		}
		start := m.flavor.StartReplicationStatement()
		if _, err := m.db.ExecContext(context.WithoutCancel(ctx), start); err != nil {
			m.log.WithError(err).Errorf("osc: could not restart replication; run %s on %s", start, m.server())
		}
	}
	after, err := m.replicationStatus(ctx)
	if err != nil {
		restart()
		return nil, err
	}
	t := &ReplicaTest{Server: m.server(), Original: m.qualified(m.Table), Migrated: m.qualified(m.ghostName()),
		Resume: m.flavor.StartReplicationStatement()}
	for _, c := range after {
		if strings.EqualFold(c.sqlRunning, "yes") {
			restart()
			return nil, fmt.Errorf("stop replication (%s): replication connection %q still runs", stop, c.name)
		}
		at := c.position
		if c.name != "" {
			at = "'" + c.name + "' " + at
		}
		t.StoppedAt = append(t.StoppedAt, at)
		t.GTIDPosition = c.gtid
	}
	if m.flavor.MariaDB {
		if err := m.db.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_slave_pos").Scan(&t.GTIDPosition); err != nil {
			restart()
			return nil, fmt.Errorf("read gtid_slave_pos: %w", err)
		}
	}
	m.replicaTest = t
	m.log.WithField("stopped_at", strings.Join(t.StoppedAt, ", ")).WithField("gtid", t.GTIDPosition).Info("osc: test on replica: replication stopped for the cut-over")
	return restart, nil
}

// swapBack ends a TestOnReplica cut-over: the migrated table goes back to the ghost's name and the
// original, which nothing wrote since replication stopped (ferry writes only its own tables), back
// to its own, in one atomic RENAME. Then it fills in the report.
func (m *Migration) swapBack(ctx context.Context) error {
	if _, err := m.db.ExecContext(context.WithoutCancel(ctx), "RENAME TABLE "+m.qualified(m.Table)+" TO "+m.qualified(m.ghostName())+", "+
		m.qualified(m.oldName())+" TO "+m.qualified(m.Table)); err != nil {
		return errNoRetry{fmt.Errorf("test on replica: swap the tables back: %w; %s is the migrated table and %s the original: run RENAME TABLE %s TO %s, %s TO %s",
			err, m.qualified(m.Table), m.qualified(m.oldName()), m.qualified(m.Table), m.qualified(m.ghostName()), m.qualified(m.oldName()), m.qualified(m.Table))}
	}
	t := m.replicaTest
	twin := m.qualified("_" + m.Table + "_cmp")
	cols := make([]string, 0, len(m.plan.Columns))
	for _, c := range m.origTable.WritableColumns() {
		cols = append(cols, q(c.Name))
	}
	list := strings.Join(cols, ", ")
	// The twin is made under the migration's sql_mode (the server's, strict, and
	// NO_AUTO_VALUE_ON_ZERO, without which the INSERT would renumber a row with id 0) and time zone.
	settings := fmt.Sprintf("SET SESSION sql_mode = '%s'", m.sqlMode)
	if m.TimeZone != "" {
		settings += fmt.Sprintf(", time_zone = '%s'", m.zone)
	}
	t.Compare = []string{
		"SET SESSION sql_log_bin = 0",
		settings,
		"CREATE TABLE " + twin + " LIKE " + t.Original,
		"INSERT INTO " + twin + " (" + list + ") SELECT " + list + " FROM " + t.Original,
		"ALTER TABLE " + twin + " " + m.Alter,
		"CHECKSUM TABLE " + twin + ", " + t.Migrated + " EXTENDED",
	}
	t.Cleanup = []string{"DROP TABLE " + twin + ", " + t.Migrated}
	m.log.Info("osc: test on replica: the tables are swapped back; replication stays stopped")
	return nil
}

// checkReplicatedColumns refuses, for MigrateOnReplica, an ALTER after which replication would
// write the primary's changes into the wrong columns. After the cut-over the replication applier
// writes the primary's row events, which carry the old table's columns, into the new table, and
// matches them by position: the new table may have more columns or fewer, but only at the end
// (the server fills an extra replica column with its default and skips an extra primary column);
// a column dropped, added or moved before the end would put every later value into the wrong
// column. (A type changed in place is left to the server: it converts as slave_type_conversions
// allows, or stops replication with an error.)
func (m *Migration) checkReplicatedColumns(orig, ghost *schema.Table, p *Plan) error {
	if !m.MigrateOnReplica {
		return nil
	}
	from := map[int]int{} // ghost ordinal → original ordinal of its values
	for _, cm := range p.Columns {
		from[cm.To.Ordinal] = cm.From.Ordinal
	}
	for i := 0; i < min(len(orig.Columns), len(ghost.Columns)); i++ {
		if o, ok := from[i]; !ok || o != i {
			return fmt.Errorf("osc: %s: after the cut-over, replication writes the primary's rows of %s into the new table by column position, and the ALTER makes column %d %s instead of %s: every later value would land in the wrong column; add columns only at the end and drop only the last ones, or migrate the primary",
				m.replicaOption(), m.qualified(m.Table), i+1, q(ghost.Columns[i].Name), q(orig.Columns[i].Name))
		}
	}
	return nil
}
