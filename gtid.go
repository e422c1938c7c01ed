package ferry

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// GTID sets. Positions carry the source's GTID set (MariaDB: GTID position) of every transaction
// before them: the stream tracks it from the start position, and the copy reads it with every
// batch (State.CopyGTID), so a checkpoint says which of the source's transactions the target holds.

// parseGTIDSet parses a GTID set (MySQL) or position (MariaDB) as the flavor writes it.
func (f Flavor) parseGTIDSet(s string) (gomysql.GTIDSet, error) {
	set, err := gomysql.ParseGTIDSet(f.GoMySQLFlavor(), strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("parse GTID set %q: %w", s, err)
	}
	return set, nil
}

// mergeGTID returns a set holding both a and b: their union (MySQL), or per domain the later GTID
// (MariaDB; go-mysql's update would keep the last one given, and copy workers report out of order).
func (f Flavor) mergeGTID(a, b string) (string, error) {
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
	last := map[uint32]mariaDBGTID{}
	for _, set := range []string{a, b} {
		gtids, err := parseMariaDBGTIDs(set)
		if err != nil {
			return "", err
		}
		for k, seq := range gtids {
			if p, ok := last[k.Domain]; !ok || seq > p.Seq {
				last[k.Domain] = mariaDBGTID{k, seq}
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
