package ferry

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/ferrykit/ferry/schema"
)

// GTID continuity: when may a run continue on another server?
//
// A checkpoint says what the target holds in terms of the source's transactions: Applied.GTID, the
// source's GTID set up to the applied position (every transaction whose changes the binlog writer
// committed on the target), StreamedGTID, every transaction any of whose changes the writer was
// handed (it may commit some beyond Applied: part of a transaction, or transactions applied in
// parallel past the low-water mark), and CopyGTID, the source's GTID set read right after the
// locking read of every copy batch (a superset of the transactions whose effects any copied row
// shows). When the
// source fails over, the new primary can carry the run on exactly when it has every one of these
// transactions — then the target holds nothing the new primary lacks — and its binlog still holds
// every transaction after Applied, which the resumed stream must apply. A transaction the old
// primary committed but never shipped to the replica (an errant transaction, from the new primary's
// point of view) may already be on the target; continuing would leave its effects there forever, so
// it is refused by name. docs/design.md ("Failover") gives the argument.
//
// MariaDB names a transaction domain-server-seqno and keeps, per replication domain, its
// transactions in binlog order: a GTID position (gtid_binlog_pos: the last GTID of each domain)
// stands for everything up to it. A server has the transaction d-s-n when its gtid_binlog_state
// (the last GTID of each domain and server) has, for domain d and server s, a seqno of n or more.
// Comparing seqnos per domain only would take a new primary's own 0-2-105 for the old primary's
// lost 0-1-105. MySQL's GTID sets are sets: gtid_executed must contain them, and gtid_purged must be
// contained in Applied.

// ErrErrantTransactions: the server a run would continue on lacks transactions of the old source
// whose effects the target may already hold (committed on the old primary, never replicated), so
// continuing would leave rows the new source never had; the error names the transactions.
var ErrErrantTransactions = errors.New("errant transactions")

// parseGTIDSet parses a GTID set (MySQL) or position (MariaDB) as the flavor writes it.
func (f Flavor) parseGTIDSet(s string) (gomysql.GTIDSet, error) {
	set, err := gomysql.ParseGTIDSet(f.GoMySQLFlavor(), strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("parse GTID set %q: %w", s, err)
	}
	return set, nil
}

// mergeGTID returns a position holding both a and b, read on one server: their union (MySQL), or
// per domain the later GTID (MariaDB; go-mysql's update would keep the last one given, and copy
// workers report out of order).
func (f Flavor) mergeGTID(a, b string) (string, error) {
	return f.combineGTID(a, b, func(k mariaDBGTIDSource) mariaDBGTIDSource { return mariaDBGTIDSource{Domain: k.Domain} })
}

// unionGTID is mergeGTID for sets that may come from several servers (reads on either side of a
// moved address, runs before a failover): on MariaDB the later GTID per domain and server id, so
// no server's transactions stand for another's.
func (f Flavor) unionGTID(a, b string) (string, error) {
	return f.combineGTID(a, b, func(k mariaDBGTIDSource) mariaDBGTIDSource { return k })
}

func (f Flavor) combineGTID(a, b string, key func(mariaDBGTIDSource) mariaDBGTIDSource) (string, error) {
	if a == "" || b == "" {
		return a + b, nil
	}
	if !f.MariaDB {
		set, err := f.parseGTIDSet(a)
		if err != nil {
			return "", err
		}
		if err := set.Update(b); err != nil {
			return "", fmt.Errorf("merge GTID set %q: %w", b, err)
		}
		return set.String(), nil
	}
	last := map[mariaDBGTIDSource]mariaDBGTID{}
	for _, set := range []string{a, b} {
		gtids, err := parseMariaDBGTIDs(set)
		if err != nil {
			return "", err
		}
		for k, seq := range gtids {
			if p, ok := last[key(k)]; !ok || seq > p.Seq {
				last[key(k)] = mariaDBGTID{k, seq}
			}
		}
	}
	var out []string
	for _, g := range last {
		out = append(out, g.String())
	}
	slices.Sort(out)
	return strings.Join(out, ","), nil
}

// mariaDBGTID is one MariaDB GTID: domain-server-seq.
type mariaDBGTID struct {
	mariaDBGTIDSource
	Seq uint64
}

func (g mariaDBGTID) String() string { return fmt.Sprintf("%d-%d-%d", g.Domain, g.Server, g.Seq) }

// sortedMariaDBGTIDs lists a parsed GTID list in a stable order, for messages.
func sortedMariaDBGTIDs(m map[mariaDBGTIDSource]uint64) []mariaDBGTID {
	out := make([]mariaDBGTID, 0, len(m))
	for k, seq := range m {
		out = append(out, mariaDBGTID{k, seq})
	}
	slices.SortFunc(out, func(a, b mariaDBGTID) int {
		if a.Domain != b.Domain {
			return cmp.Compare(a.Domain, b.Domain)
		}
		return cmp.Compare(a.Server, b.Server)
	})
	return out
}

// gtidAt returns the source's GTID set at a binlog position: every transaction before it. MariaDB
// computes it from the binlog (BINLOG_GTID_POS); MySQL has no such function, so it is "" there
// unless the caller read it with the position (CurrentPosition does).
func (f Flavor) gtidAt(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, p Position) (string, error) {
	if !f.MariaDB || p.File == "" {
		return p.GTID, nil
	}
	var gtid sql.NullString
	if err := q.QueryRowContext(ctx, "SELECT BINLOG_GTID_POS(?, ?)", p.File, p.Pos).Scan(&gtid); err != nil {
		return "", fmt.Errorf("read the GTID position at %s: %w", p, err)
	}
	return gtid.String, nil
}

// checkGTIDContinuity checks that the server db is connected to can carry on from the checkpoint
// st: it has every transaction of st's applied, streamed and copied GTID sets, and its binlog every
// transaction after the applied set. It returns nil, or an error naming what is missing.
func (f Flavor) checkGTIDContinuity(ctx context.Context, db *sql.DB, server string, st *State) error {
	applied := st.Applied.GTID
	held := []struct{ what, set string }{{"applied from the binlog", applied}, {"read by the row copy", st.CopyGTID}, {"handed to the binlog writer", st.StreamedGTID}}
	if strings.TrimSpace(applied) == "" {
		return fmt.Errorf("%w: the checkpoint records no GTID set (the old source had no GTIDs, or the state was written by an older ferry), so ferry cannot tell whether %s has every transaction the target holds; resume against the server the checkpoint was taken from, or %s", ErrResumeMismatch, server, startOver)
	}
	if f.MariaDB {
		return f.checkMariaDBContinuity(ctx, db, server, applied, held)
	}
	return f.checkMySQLContinuity(ctx, db, server, applied, held)
}

func (f Flavor) checkMariaDBContinuity(ctx context.Context, db *sql.DB, server, applied string, held []struct{ what, set string }) error {
	var state sql.NullString
	if err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_state").Scan(&state); err != nil {
		return fmt.Errorf("%s: read gtid_binlog_state: %w", server, err)
	}
	have, err := parseMariaDBGTIDs(state.String)
	if err != nil {
		return fmt.Errorf("%s: gtid_binlog_state: %w", server, err)
	}
	// has reports whether the server's binlog has the transaction g, and otherwise what it has of
	// g's domain and server.
	has := func(g mariaDBGTID) (bool, string) {
		if seq, ok := have[g.mariaDBGTIDSource]; ok {
			if seq >= g.Seq {
				return true, ""
			}
			return false, fmt.Sprintf("from server %d only up to %s", g.Server, mariaDBGTID{g.mariaDBGTIDSource, seq})
		}
		var same []string
		for _, h := range sortedMariaDBGTIDs(have) {
			if h.Domain == g.Domain {
				same = append(same, h.String())
			}
		}
		if len(same) == 0 {
			return false, fmt.Sprintf("nothing of domain %d", g.Domain)
		}
		return false, fmt.Sprintf("nothing from server %d in domain %d (it has %s)", g.Server, g.Domain, strings.Join(same, ","))
	}
	var missing []string
	for _, which := range held {
		gtids, err := parseMariaDBGTIDs(which.set)
		if err != nil {
			return fmt.Errorf("checkpoint GTID set: %w", err)
		}
		for _, g := range sortedMariaDBGTIDs(gtids) {
			if ok, why := has(g); !ok {
				missing = append(missing, fmt.Sprintf("%s (%s; %s has %s)", g, which.what, server, why))
			}
		}
	}
	if len(missing) > 0 {
		return errantError(server, missing, state.String)
	}
	// The binlog must still hold every transaction after applied: the first binlog file starts with
	// the GTID list of everything before it.
	files, err := BinlogFiles(ctx, db)
	if err != nil {
		return fmt.Errorf("%s: %w", server, err)
	}
	if len(files) == 0 {
		return fmt.Errorf("%s has no binary log: start it with log_bin (and log_slave_updates) to continue on it", server)
	}
	before, err := mariaDBGTIDListAtStart(ctx, db, files[0])
	if err != nil {
		return fmt.Errorf("%s: %w", server, err)
	}
	upTo := map[uint32]uint64{}
	appliedGTIDs, _ := parseMariaDBGTIDs(applied)
	for k, seq := range appliedGTIDs {
		upTo[k.Domain] = max(upTo[k.Domain], seq)
	}
	var purged []string
	for _, g := range sortedMariaDBGTIDs(before) {
		if g.Seq > upTo[g.Domain] { // a domain ferry never saw has nothing applied
			purged = append(purged, g.String())
		}
	}
	if len(purged) > 0 {
		return fmt.Errorf("%w: %s no longer has, in its binary logs (the oldest is %s, which starts after %s), transactions after the checkpoint's applied GTID position %s: ferry cannot apply them (%w); %s, and keep binlogs longer than the copy takes (binlog_expire_logs_seconds)",
			ErrResumeMismatch, server, files[0], strings.Join(purged, ","), applied, ErrBinlogPurged, startOver)
	}
	return nil
}

// mariaDBGTIDListAtStart reads the Gtid_list event at the start of a binlog file: the last GTID of
// every domain and server written before the file.
func mariaDBGTIDListAtStart(ctx context.Context, db *sql.DB, file string) (map[mariaDBGTIDSource]uint64, error) {
	rows, err := db.QueryContext(ctx, "SHOW BINLOG EVENTS IN '"+strings.ReplaceAll(file, "'", "''")+"' LIMIT 4")
	if err != nil {
		return nil, fmt.Errorf("read the GTID list of binlog %s: %w", file, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		vals, err := schema.ScanRaw(rows)
		if err != nil {
			return nil, err
		}
		var typ, info string
		for i, c := range cols {
			switch strings.ToLower(c) {
			case "event_type":
				typ = string(vals[i])
			case "info":
				info = string(vals[i])
			}
		}
		if strings.EqualFold(typ, "Gtid_list") {
			return parseMariaDBGTIDs(strings.Trim(info, "[]"))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("binlog %s has no Gtid_list event at its start", file)
}

func (f Flavor) checkMySQLContinuity(ctx context.Context, db *sql.DB, server, applied string, held []struct{ what, set string }) error {
	var executed, purged sql.NullString
	if err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_executed, @@GLOBAL.gtid_purged").Scan(&executed, &purged); err != nil {
		return fmt.Errorf("%s: read gtid_executed: %w", server, err)
	}
	have, err := f.parseGTIDSet(executed.String)
	if err != nil {
		return fmt.Errorf("%s: gtid_executed: %w", server, err)
	}
	var missing []string
	for _, which := range held {
		if strings.TrimSpace(which.set) == "" {
			continue
		}
		want, err := f.parseGTIDSet(which.set)
		if err != nil {
			return fmt.Errorf("checkpoint GTID set: %w", err)
		}
		if !have.Contain(want) {
			missing = append(missing, fmt.Sprintf("some of %s (%s)", which.set, which.what))
		}
	}
	if len(missing) > 0 {
		return errantError(server, missing, executed.String)
	}
	gone, err := f.parseGTIDSet(purged.String)
	if err != nil {
		return fmt.Errorf("%s: gtid_purged: %w", server, err)
	}
	want, err := f.parseGTIDSet(applied)
	if err != nil {
		return fmt.Errorf("checkpoint GTID set: %w", err)
	}
	if !want.Contain(gone) {
		return fmt.Errorf("%w: %s has purged (gtid_purged %s) transactions that are not in the checkpoint's applied GTID set %s: ferry cannot apply them (%w); %s, and keep binlogs longer than the copy takes (binlog_expire_logs_seconds)",
			ErrResumeMismatch, server, purged.String, applied, ErrBinlogPurged, startOver)
	}
	return nil
}

func errantError(server string, missing []string, has string) error {
	return fmt.Errorf("%w: %s lacks transactions of the old source whose changes the target may already hold (%w): %s; they were committed on the old primary but never reached %s (its GTID state is %s), so continuing would leave their rows on the target although the new source never had them; %s",
		ErrResumeMismatch, server, ErrErrantTransactions, strings.Join(missing, "; "), server, has, startOver)
}
