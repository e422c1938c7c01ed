package ferry

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/ferrykit/ferry/schema"
)

// Every difference between MariaDB and MySQL that ferry depends on lives in this file.

// Flavor identifies the server family and version.
type Flavor struct {
	MariaDB bool
	Version string // as SELECT VERSION() prints it
	Major   int
	Minor   int
}

// DetectFlavor asks the server what it is.
func DetectFlavor(ctx context.Context, db *sql.DB) (Flavor, error) {
	var v string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&v); err != nil {
		return Flavor{}, fmt.Errorf("detect server version: %w", err)
	}
	f := Flavor{Version: v, MariaDB: strings.Contains(strings.ToLower(v), "mariadb")}
	parts := strings.SplitN(v, ".", 3)
	if len(parts) >= 2 {
		f.Major, _ = strconv.Atoi(parts[0])
		f.Minor, _ = strconv.Atoi(parts[1])
	}
	return f, nil
}

// GoMySQLFlavor is the flavor name go-mysql's binlog syncer expects.
func (f Flavor) GoMySQLFlavor() string {
	if f.MariaDB {
		return gomysql.MariaDBFlavor
	}
	return gomysql.MySQLFlavor
}

// binlogStatusQuery is the statement that returns the current binlog file and position: MySQL 8.4
// removed SHOW MASTER STATUS, MariaDB never had SHOW BINARY LOG STATUS.
func (f Flavor) binlogStatusQuery() string {
	if !f.MariaDB && (f.Major > 8 || f.Major == 8 && f.Minor >= 4) {
		return "SHOW BINARY LOG STATUS"
	}
	return "SHOW MASTER STATUS"
}

// binlogMonitorPrivileges are the privileges of which one lets a user read the binlog position.
func (f Flavor) binlogMonitorPrivileges() []string {
	if f.MariaDB {
		return []string{"BINLOG MONITOR", "REPLICATION CLIENT", "SUPER"}
	}
	return []string{"REPLICATION CLIENT", "SUPER"}
}

// gtidPositionQuery returns the server's current GTID position.
func (f Flavor) gtidPositionQuery() string {
	if f.MariaDB {
		return "SELECT @@GLOBAL.gtid_binlog_pos"
	}
	return "SELECT @@GLOBAL.gtid_executed"
}

// jsonIsText reports that JSON columns are LONGTEXT on this server (MariaDB): their binlog values
// are the exact text; on MySQL they are binary JSON rendered back to MySQL's own text.
func (f Flavor) jsonIsText() bool { return f.MariaDB }

// replicaKeywords reports whether the server speaks of REPLICA where older ones say SLAVE
// (MySQL 8.0.22+; 8.4 removed the SLAVE forms). MariaDB keeps the SLAVE forms, which alone have the
// ALL SLAVES variants for every connection of a multi-source replica.
func (f Flavor) replicaKeywords() bool {
	return !f.MariaDB && (f.Major > 8 || f.Major == 8 && (f.Minor > 0 || f.patch() >= 22))
}

// patch is the third number of the version (22 of 8.0.22-log).
func (f Flavor) patch() int {
	parts := strings.SplitN(f.Version, ".", 3)
	if len(parts) < 3 {
		return 0
	}
	end := 0
	for end < len(parts[2]) && parts[2][end] >= '0' && parts[2][end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(parts[2][:end])
	return n
}

// ReplicationStatusQuery shows every replication connection (channel) of the server, one row each;
// no row means the server is not a replica.
func (f Flavor) ReplicationStatusQuery() string {
	switch {
	case f.MariaDB:
		return "SHOW ALL SLAVES STATUS"
	case f.replicaKeywords():
		return "SHOW REPLICA STATUS"
	}
	return "SHOW SLAVE STATUS"
}

// StopReplicationStatement stops every replication connection (channel) of the server, both
// threads; it returns once the applier has stopped at a transaction boundary.
func (f Flavor) StopReplicationStatement() string {
	switch {
	case f.MariaDB:
		return "STOP ALL SLAVES"
	case f.replicaKeywords():
		return "STOP REPLICA"
	}
	return "STOP SLAVE"
}

// StartReplicationStatement starts every replication connection (channel) of the server.
func (f Flavor) StartReplicationStatement() string {
	switch {
	case f.MariaDB:
		return "START ALL SLAVES"
	case f.replicaKeywords():
		return "START REPLICA"
	}
	return "START SLAVE"
}

// Position is a place in the source's binary log: a file and offset, and the source's GTID set
// (MariaDB: GTID position) of every transaction before it when known. A position taken on another
// server (a failover) has only the GTID set: its file and offset mean nothing on this one, so the
// stream starts there by GTID.
type Position struct {
	File string `json:"file"`
	Pos  uint32 `json:"pos"`
	GTID string `json:"gtid,omitempty"`
}

func (p Position) String() string {
	if p.File == "" && p.GTID != "" {
		return "GTID " + p.GTID
	}
	return fmt.Sprintf("%s:%d", p.File, p.Pos)
}

// IsZero reports an unset position.
func (p Position) IsZero() bool { return p.File == "" && p.GTID == "" }

// Compare orders positions: binlog files are numbered base.000001, base.000002, ...
func (p Position) Compare(o Position) int {
	if p.File != o.File {
		pf, of := fileSeq(p.File), fileSeq(o.File)
		if pf != of {
			if pf < of {
				return -1
			}
			return 1
		}
		return strings.Compare(p.File, o.File)
	}
	switch {
	case p.Pos < o.Pos:
		return -1
	case p.Pos > o.Pos:
		return 1
	}
	return 0
}

func fileSeq(name string) int64 {
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return 0
	}
	n, _ := strconv.ParseInt(name[i+1:], 10, 64)
	return n
}

// Consistent snapshots (package snapshot). A snapshot of several tables read on several connections
// is consistent only if every connection's transaction sees the same set of committed transactions,
// and that set is exactly the binlog up to one position.

// SnapshotPositionAvailable reports that the server tells, inside a transaction opened WITH
// CONSISTENT SNAPSHOT, the binlog position that snapshot corresponds to (MariaDB's
// binlog_snapshot_file/binlog_snapshot_position status, maintained under the binlog's commit-order
// lock, so no lock is needed). MySQL has no such status: a snapshot position there needs a global
// lock around opening the snapshots and reading SHOW MASTER STATUS.
func (f Flavor) SnapshotPositionAvailable() bool { return f.MariaDB }

// SnapshotPosition reads, on conn, inside a transaction started WITH CONSISTENT SNAPSHOT, the binlog
// position the snapshot corresponds to, with the GTID position there (MariaDB only; see
// SnapshotPositionAvailable).
func (f Flavor) SnapshotPosition(ctx context.Context, conn *sql.Conn) (Position, error) {
	if !f.SnapshotPositionAvailable() {
		return Position{}, fmt.Errorf("snapshot position: %s has no binlog_snapshot status; take the snapshot under SnapshotLock", f.Version)
	}
	rows, err := conn.QueryContext(ctx, "SHOW SESSION STATUS WHERE Variable_name IN ('binlog_snapshot_file', 'binlog_snapshot_position')")
	if err != nil {
		return Position{}, fmt.Errorf("snapshot position: %w", err)
	}
	var p Position
	for rows.Next() {
		var name, val string
		if err := rows.Scan(&name, &val); err != nil {
			rows.Close()
			return Position{}, err
		}
		if strings.EqualFold(name, "binlog_snapshot_file") {
			p.File = val
		} else if n, err := strconv.ParseUint(val, 10, 32); err == nil {
			p.Pos = uint32(n)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Position{}, err
	}
	if p.File == "" {
		return Position{}, fmt.Errorf("snapshot position: binlog_snapshot_file is empty: the binary log is off; start the source with log_bin")
	}
	if gtid, err := f.gtidAt(ctx, conn, p); err == nil {
		p.GTID = gtid
	}
	return p, nil
}

// SnapshotLock returns the statements that stop commits for the moment several connections open
// consistent snapshots, and the statement that releases them. MariaDB 10.4.1+ has BACKUP STAGE
// BLOCK_COMMIT, which lets running statements continue (only their commit waits) and needs no
// table flush; elsewhere FLUSH TABLES WITH READ LOCK (it waits for running queries to finish, so
// a long query on the source makes it wait; the caller bounds that with a lock wait timeout).
func (f Flavor) SnapshotLock() (lock []string, unlock string) {
	if f.MariaDB && (f.Major > 10 || f.Major == 10 && f.Minor >= 5) {
		return []string{"BACKUP STAGE START", "BACKUP STAGE BLOCK_COMMIT"}, "BACKUP STAGE END"
	}
	return []string{"FLUSH TABLES WITH READ LOCK"}, "UNLOCK TABLES"
}

// CurrentPosition reads the server's binlog position now, with its GTID position.
func CurrentPosition(ctx context.Context, db *sql.DB, f Flavor) (Position, error) {
	rows, err := db.QueryContext(ctx, f.binlogStatusQuery())
	if err != nil {
		return Position{}, fmt.Errorf("read binlog position (%s): %w", f.binlogStatusQuery(), err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Position{}, err
		}
		return Position{}, fmt.Errorf("read binlog position: %s returned no row: the binary log is off; start the source with log_bin (e.g. --log-bin=binlog)", f.binlogStatusQuery())
	}
	vals, err := schema.ScanRaw(rows)
	if err != nil {
		return Position{}, err
	}
	pos, err := strconv.ParseUint(string(vals[1]), 10, 32)
	if err != nil {
		return Position{}, fmt.Errorf("read binlog position: bad position %q", vals[1])
	}
	p := Position{File: string(vals[0]), Pos: uint32(pos)}
	if !f.MariaDB && len(vals) >= 5 {
		// MySQL's Executed_Gtid_Set, read with the position (the separate query below is not).
		p.GTID = strings.Join(strings.Fields(string(vals[4])), "")
		rows.Close()
		return p, nil
	}
	rows.Close()
	var gtid sql.NullString
	if err := db.QueryRowContext(ctx, f.gtidPositionQuery()).Scan(&gtid); err == nil {
		p.GTID = gtid.String
	}
	return p, nil
}

// BinlogFiles lists the binary logs the server still has, oldest first.
func BinlogFiles(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return nil, fmt.Errorf("list binary logs: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := schema.ScanRaw(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, string(vals[0]))
	}
	return out, rows.Err()
}

// Reading the binlog from a replica of the source (Config.BinlogSource). The source's position is
// mapped to the replica's stream by GTID: the replica's binlog holds a transaction of the source
// exactly when its GTID state does.

// binlogGTIDStateQuery returns every GTID a server's binlog holds: MariaDB's gtid_binlog_state (the
// last sequence number per domain and server id), MySQL's gtid_executed (a set).
func (f Flavor) binlogGTIDStateQuery() string {
	if f.MariaDB {
		return "SELECT @@GLOBAL.gtid_binlog_state"
	}
	return "SELECT @@GLOBAL.gtid_executed"
}

// binlogHolds reports whether a server whose binlog GTID state is state (binlogGTIDStateQuery)
// holds every transaction up to the source's GTID position pos (gtidPositionQuery on the source).
// On MariaDB a position names, per replication domain, the last transaction (domain-server-seq);
// the replica holds it when its binlog has a transaction of that domain and server with that
// sequence number or a later one (a replica commits the transactions of one domain in the source's
// order). On MySQL pos is a GTID set, held when it is a subset of state; db computes that.
func (f Flavor) binlogHolds(ctx context.Context, db *sql.DB, state, pos string) (bool, error) {
	if !f.MariaDB {
		var subset sql.NullBool
		if err := db.QueryRowContext(ctx, "SELECT GTID_SUBSET(?, ?)", pos, state).Scan(&subset); err != nil {
			return false, fmt.Errorf("compare GTID sets: %w", err)
		}
		return subset.Bool, nil
	}
	have, err := parseMariaDBGTIDs(state)
	if err != nil {
		return false, err
	}
	want, err := parseMariaDBGTIDs(pos)
	if err != nil {
		return false, err
	}
	for k, seq := range want {
		if have[k] < seq {
			return false, nil
		}
	}
	return true, nil
}

// mariaDBGTIDSource is a replication domain and the server id that wrote a transaction in it.
type mariaDBGTIDSource struct {
	Domain, Server uint32
}

// parseMariaDBGTIDs parses a MariaDB GTID list ("0-1-100,1-2-5") into the highest sequence number
// per domain and server id.
func parseMariaDBGTIDs(s string) (map[mariaDBGTIDSource]uint64, error) {
	out := map[mariaDBGTIDSource]uint64{}
	for _, g := range strings.Split(s, ",") {
		g = strings.TrimSpace(g)
		if g == "" {
			continue
		}
		parts := strings.Split(g, "-")
		if len(parts) != 3 {
			return nil, fmt.Errorf("GTID %q: want domain-server-sequence", g)
		}
		d, err1 := strconv.ParseUint(parts[0], 10, 32)
		srv, err2 := strconv.ParseUint(parts[1], 10, 32)
		seq, err3 := strconv.ParseUint(parts[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("GTID %q: want domain-server-sequence", g)
		}
		k := mariaDBGTIDSource{uint32(d), uint32(srv)}
		out[k] = max(out[k], seq)
	}
	return out, nil
}

// replicatesFrom says why a server whose binlog GTID state is replicaState cannot be a replica of
// the source whose binlog GTID state is sourceState (read after the replica's), or "" when its
// binlog is consistent with being one: it holds transactions of the source's last writers and none
// the source does not have. sourceUUID is the source's server_uuid (MySQL).
func (f Flavor) replicatesFrom(ctx context.Context, db *sql.DB, replicaState, sourceState, sourceUUID string) (string, error) {
	if !f.MariaDB {
		if sourceState == "" {
			return "", nil
		}
		var extra sql.NullString
		if err := db.QueryRowContext(ctx, "SELECT GTID_SUBTRACT(?, ?)", replicaState, sourceState).Scan(&extra); err != nil {
			return "", fmt.Errorf("compare GTID sets: %w", err)
		}
		if sourceUUID != "" && !strings.Contains(strings.ToLower(replicaState), strings.ToLower(sourceUUID)) {
			return fmt.Sprintf("its binlog (gtid_executed %s) holds no transaction of the source (server_uuid %s)", replicaState, sourceUUID), nil
		}
		if strings.Contains(strings.ToLower(extra.String), strings.ToLower(sourceUUID)) {
			return fmt.Sprintf("its binlog holds transactions of the source the source does not have (%s)", extra.String), nil
		}
		return "", nil
	}
	have, err := parseMariaDBGTIDs(replicaState)
	if err != nil {
		return "", err
	}
	src, err := parseMariaDBGTIDs(sourceState)
	if err != nil {
		return "", err
	}
	for k, seq := range have {
		if s, ok := src[k]; ok && seq > s {
			return fmt.Sprintf("its binlog holds transaction %d-%d-%d, which the source's binlog (gtid_binlog_state %s) does not", k.Domain, k.Server, seq, sourceState), nil
		}
	}
	for k := range src {
		if _, ok := have[k]; ok {
			return "", nil
		}
	}
	if len(src) == 0 {
		return "", nil // the source has logged nothing yet: nothing to tell them apart by
	}
	return fmt.Sprintf("its binlog (gtid_binlog_state %q) holds no transaction of the source's (gtid_binlog_state %q)", replicaState, sourceState), nil
}
