package ferry

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/ferrykit/ferry/schema"
)

// Reading the binlog from a replica (Config.BinlogSource).
//
// Rows are read from the source and the cut-over happens there; only the binlog stream comes from
// a replica of the source that logs what it replicates (log_slave_updates). Positions in the
// replica's binlog are not positions in the source's, so ferry keeps two kinds apart: the stream's
// positions (the start position, what the writer applied, checkpoints) are the replica's, and
// anything read on the source is mapped to the replica's stream by GTID before it is waited for.
//
//   - Start: the replica's binlog position P, read before the copy reads its first row, is a safe
//     start. A replica is never ahead of its source: every transaction in the replica's binlog
//     before P was committed on the source before P was read, so before the copy read any row, and
//     the copy sees its effect. A change the copy may miss commits on the source after the copy
//     read its row, so after P was read, so it was not yet in the replica's binlog: it reaches the
//     stream after P. Transactions the replica logs after P that the copy already saw are applied
//     again, which the writer's idempotent apply makes harmless (as with a stream from the source).
//   - Order: a change of a row that the copy holds share-locked on the source commits on the source
//     after the copied row is committed on the target, and reaches the replica's binlog later still,
//     so the writer applies it after the copied row (the copy's argument holds unchanged). The
//     replica commits the transactions of one replication domain in the source's order, so two
//     changes of one row arrive in the source's order.
//   - Flush and cut-over: the source's GTID position G is read (under the host's lock at the
//     cut-over); ferry waits until the replica's binlog holds every transaction up to G
//     (ReplicaPosition), then reads the replica's binlog position R and applies everything up to R.
//     Every transaction the source committed before G was read is before R in the replica's
//     binlog, so with the source's writes stopped the target then equals the source. A replica
//     that lags (its SQL thread stopped) makes the flush wait; at the cut-over that wait is bounded
//     by Cutover.Timeout, after which the cut-over is aborted, the source unlocked and the stream
//     kept running: ferry never swaps with a position it could not map.

// binlogDB is the pool of the server the binlog is read from: the source unless Config.BinlogSource.
func (f *Ferry) binlogDB() *sql.DB {
	if f.binlog != nil {
		return f.binlog
	}
	return f.Source
}

// binlogName names the server the binlog is read from, for messages.
func (f *Ferry) binlogName() string {
	if f.Config.BinlogSource != nil {
		return "binlog source " + f.Config.BinlogSource.String()
	}
	return "source"
}

// BinlogSourceError is the refusal of a binlog source (Config.BinlogSource, osc's BinlogConn) by
// CheckBinlogReplica: a command-line tool names its flag for it.
type BinlogSourceError struct{ Err error }

func (e *BinlogSourceError) Error() string { return e.Err.Error() }
func (e *BinlogSourceError) Unwrap() error { return e.Err }

// openBinlogSource opens and checks the server of Config.BinlogSource. Nothing is written.
func (f *Ferry) openBinlogSource(ctx context.Context) error {
	bs := f.Config.BinlogSource
	var err error
	if f.binlog, err = bs.Open(ctx); err != nil {
		return fmt.Errorf("binlog source: %w", err)
	}
	if f.binlogID, err = CheckBinlogReplica(ctx, f.Source, f.binlog, f.SourceFlavor, f.Config.Source.String(), bs.String()); err != nil {
		return &BinlogSourceError{err}
	}
	f.log.WithField("binlog_source", bs.String()).Info("ferry: reading the binlog from a replica of the source")
	return nil
}

// CheckBinlogReplica checks that the binlog of replica can stand in for the source's: a distinct
// server of the same family, binlog on with ROW events and FULL row images, log_slave_updates on
// (so its binlog holds what it replicates), the user's REPLICATION SLAVE and binlog monitor
// privileges, a replica (its replication status is not empty) whose binlog holds transactions of
// the source and none the source lacks (GTIDs; MySQL also needs gtid_mode=ON). sourceName and
// replicaName name the servers in errors. It returns the replica's identity and writes nothing;
// callers wrap its refusal in a BinlogSourceError.
func CheckBinlogReplica(ctx context.Context, source, replica *sql.DB, sourceFlavor Flavor, sourceName, replicaName string) (ServerIdentity, error) {
	who := "binlog source " + replicaName
	flavor, err := DetectFlavor(ctx, replica)
	if err != nil {
		return ServerIdentity{}, fmt.Errorf("%s: %w", who, err)
	}
	if flavor.MariaDB != sourceFlavor.MariaDB {
		return ServerIdentity{}, fmt.Errorf("%s is %s but the source is %s: a replica of the source runs the same server family", who, flavor.Version, sourceFlavor.Version)
	}
	if err := checkDistinctServers(ctx, source, replica, sourceName, who); err != nil {
		return ServerIdentity{}, fmt.Errorf("%w; name a replica of the source, or read the binlog from the source itself", err)
	}
	if err := checkBinlogSettings(ctx, replica, who); err != nil {
		return ServerIdentity{}, err
	}
	vars, err := globalVariables(ctx, replica, "log_slave_updates", "log_replica_updates", "gtid_mode")
	if err != nil {
		return ServerIdentity{}, fmt.Errorf("%s: read log_slave_updates: %w", who, err)
	}
	if !isOn(vars["log_slave_updates"]) && !isOn(vars["log_replica_updates"]) {
		return ServerIdentity{}, fmt.Errorf("%s: log_slave_updates is OFF, so its binlog does not hold what it replicates from the source; restart the replica with --log-slave-updates (log_replica_updates on MySQL 8), or read the binlog from the source", who)
	}
	if !sourceFlavor.MariaDB && !strings.EqualFold(vars["gtid_mode"], "ON") {
		return ServerIdentity{}, fmt.Errorf("%s: gtid_mode is %q; reading the binlog from a replica maps positions by GTID, so the source and the replica need gtid_mode=ON", who, vars["gtid_mode"])
	}
	if err := checkPrivileges(ctx, replica, who, nil, nil,
		[][]string{{"REPLICATION SLAVE"}, sourceFlavor.binlogMonitorPrivileges()}); err != nil {
		return ServerIdentity{}, err
	}
	status, err := replicaStatus(ctx, replica, flavor)
	if err != nil {
		return ServerIdentity{}, fmt.Errorf("%s: %w", who, err)
	}
	if len(status) == 0 {
		return ServerIdentity{}, fmt.Errorf("%s is not a replica (%s is empty); name a replica of the source %s, or read the binlog from the source", who, flavor.ReplicationStatusQuery(), sourceName)
	}
	var replicaState, sourceState string
	if err := replica.QueryRowContext(ctx, flavor.binlogGTIDStateQuery()).Scan(&replicaState); err != nil {
		return ServerIdentity{}, fmt.Errorf("%s: read its binlog's GTID state: %w", who, err)
	}
	if err := source.QueryRowContext(ctx, sourceFlavor.binlogGTIDStateQuery()).Scan(&sourceState); err != nil {
		return ServerIdentity{}, fmt.Errorf("source: read its binlog's GTID state: %w", err)
	}
	uuid, _ := globalVariables(ctx, source, "server_uuid")
	why, err := sourceFlavor.replicatesFrom(ctx, source, replicaState, sourceState, uuid["server_uuid"])
	if err != nil {
		return ServerIdentity{}, fmt.Errorf("%s: %w", who, err)
	}
	if why != "" {
		return ServerIdentity{}, fmt.Errorf("%s does not replicate from the source %s: %s; name a replica of the source, or read the binlog from the source", who, sourceName, why)
	}
	id, err := serverIdentity(ctx, replica)
	if err != nil {
		return ServerIdentity{}, fmt.Errorf("%s: %w", who, err)
	}
	return id, nil
}

// replicaStatus returns SHOW SLAVE STATUS by column name (nil when the server is not a replica).
func replicaStatus(ctx context.Context, db *sql.DB, f Flavor) (map[string]sql.NullString, error) {
	st, err := schema.RowByName(ctx, db, f.ReplicationStatusQuery())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.ReplicationStatusQuery(), err)
	}
	return st, nil
}

// ReplicaPosition waits until the binlog of replica, a server replicating from the source, holds
// every transaction up to the source's GTID position gtid (as Position.GTID holds it when read by
// CurrentPosition), and returns the replica's binlog position then: every transaction the source
// had committed when gtid was read is before it in the replica's binlog. It polls until ctx ends; its
// error then says how far the replica is and whether its replication threads run.
func ReplicaPosition(ctx context.Context, replica *sql.DB, f Flavor, gtid string) (Position, error) {
	if !f.MariaDB && gtid == "" {
		return Position{}, fmt.Errorf("the source's position has no GTID (gtid_mode is not ON): it cannot be found in the replica's binlog")
	}
	poll := time.Millisecond
	var state string
	for {
		err := replica.QueryRowContext(ctx, f.binlogGTIDStateQuery()).Scan(&state)
		if err == nil {
			var held bool
			if held, err = f.binlogHolds(ctx, replica, state, gtid); err == nil && held {
				return CurrentPosition(ctx, replica, f)
			}
		}
		if err != nil && ctx.Err() == nil {
			return Position{}, fmt.Errorf("read the replica's binlog GTID state: %w", err)
		}
		select {
		case <-ctx.Done():
			return Position{}, fmt.Errorf("the replica's binlog has not reached the source's GTID position %s (it holds %s)%s: %w",
				gtid, state, describeReplication(context.WithoutCancel(ctx), replica, f), ctx.Err())
		case <-time.After(poll):
		}
		poll = min(poll*2, 20*time.Millisecond)
	}
}

// describeReplication says, for an error, whether a replica's replication threads run and how far
// behind it says it is.
func describeReplication(ctx context.Context, db *sql.DB, f Flavor) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := replicaStatus(ctx, db, f)
	if err != nil || len(st) == 0 {
		return ""
	}
	field := func(names ...string) string {
		for _, n := range names {
			if v, ok := st[n]; ok {
				if !v.Valid || v.String == "" {
					return "unknown"
				}
				return v.String
			}
		}
		return "unknown"
	}
	s := fmt.Sprintf("; replication IO thread running: %s, SQL thread running: %s, seconds behind: %s",
		field("Slave_IO_Running", "Replica_IO_Running"), field("Slave_SQL_Running", "Replica_SQL_Running"),
		field("Seconds_Behind_Master", "Seconds_Behind_Source"))
	if e := field("Last_SQL_Error", "Last_Error"); e != "unknown" {
		s += ", last error: " + e
	}
	return s
}

// streamPosition maps a position read on the source to the binlog stream's: the same position
// when the binlog is the source's, else the replica's position once its binlog holds everything
// up to it (ReplicaPosition).
func (f *Ferry) streamPosition(ctx context.Context, source Position) (Position, error) {
	if f.binlog == nil {
		return source, nil
	}
	pos, err := ReplicaPosition(ctx, f.binlog, f.parts().flavor, source.GTID)
	if err != nil {
		return Position{}, fmt.Errorf("%s: %w", f.binlogName(), err)
	}
	return pos, nil
}

// replicaLagPoll is how often watchReplicaLag samples the source's position.
const replicaLagPoll = 250 * time.Millisecond

// watchReplicaLag measures, until stop is closed or ctx ends, how far the binlog source replica is
// behind the source, into f.replicaLag: the age of the oldest sample of the source's GTID position
// the replica's binlog does not hold yet (0 when it holds the last one), to within replicaLagPoll.
// It is measured by GTIDs, not by the replica's Seconds_Behind_Master, which is NULL while its SQL
// thread is stopped and 0 while its IO thread is.
func (f *Ferry) watchReplicaLag(ctx context.Context, stop <-chan struct{}) {
	defer f.replicaLag.Store(0)
	var pending string // a source position the replica did not hold when last checked
	var since time.Time
	tick := time.NewTicker(replicaLagPoll)
	defer tick.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if pending == "" {
			var gtid string
			if err := f.Source.QueryRowContext(qctx, f.SourceFlavor.gtidPositionQuery()).Scan(&gtid); err == nil {
				pending, since = gtid, time.Now()
			}
		}
		if pending != "" {
			var state string
			if err := f.binlog.QueryRowContext(qctx, f.SourceFlavor.binlogGTIDStateQuery()).Scan(&state); err == nil {
				if held, err := f.SourceFlavor.binlogHolds(qctx, f.binlog, state, pending); err == nil && held {
					pending = ""
				}
			}
		}
		cancel()
		if pending == "" {
			f.replicaLag.Store(0)
		} else {
			f.replicaLag.Store(int64(time.Since(since)))
		}
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-tick.C:
		}
	}
}
