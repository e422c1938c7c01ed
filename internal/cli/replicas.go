package cli

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/throttler"
)

// ReplicaFlags are gh-ost's -throttle-control-replicas and -max-lag-millis: pause the work while
// any listed replica lags more than the limit.
type ReplicaFlags struct {
	replicas     string
	maxLagMillis int64
}

// AddReplicaFlags registers -throttle-control-replicas and -max-lag-millis on fs.
func AddReplicaFlags(fs *flag.FlagSet) *ReplicaFlags {
	r := &ReplicaFlags{}
	fs.StringVar(&r.replicas, "throttle-control-replicas", "", "comma-separated replicas (host:port) whose replication lag throttles the work; reached with the source's user, password and TLS, needing REPLICATION CLIENT (SLAVE MONITOR)")
	fs.Int64Var(&r.maxLagMillis, "max-lag-millis", 1500, "with -throttle-control-replicas or -binlog-from: throttle while a replica lags more than this many milliseconds (read from the replica's status, one-second resolution)")
	return r
}

// Throttler opens the replicas with like's credentials and returns a ReplicationLag throttler and
// a function closing its connections; nil without -throttle-control-replicas or also. also are
// replicas watched besides those listed (the -binlog-from replica: while it lags, the target falls
// behind the source and the cut-over waits for it).
func (r *ReplicaFlags) Throttler(ctx context.Context, like ferry.ConnConfig, also ...string) (*throttler.ReplicationLag, func(), error) {
	addrs := strings.Split(r.replicas, ",")
	for _, a := range also {
		if a != "" && !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	if strings.TrimSpace(strings.Join(addrs, "")) == "" {
		return nil, func() {}, nil
	}
	if r.maxLagMillis <= 0 {
		return nil, nil, fmt.Errorf("-max-lag-millis %d: want > 0", r.maxLagMillis)
	}
	var dbs []*sql.DB
	closeAll := func() {
		for _, db := range dbs {
			db.Close()
		}
	}
	var replicas []throttler.Replica
	for _, addr := range addrs {
		addr = strings.TrimSpace(addr)
		if addr == "" {
			continue
		}
		c, err := ReplicaOf(like, addr)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("-throttle-control-replicas: %w", err)
		}
		c.Timeout = 5 * time.Second
		db, err := c.Open(ctx)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("-throttle-control-replicas: %w", err)
		}
		dbs = append(dbs, db)
		replicas = append(replicas, throttler.Replica{Name: addr, DB: db})
	}
	t, err := throttler.NewReplicationLag(throttler.ReplicationLagConfig{Replicas: replicas, MaxLag: time.Duration(r.maxLagMillis) * time.Millisecond})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return t, closeAll, nil
}

// ReplicaOf is the connection to a replica at addr (host:port, port 3306 when left out) with the
// user, password and TLS settings of like, its source. A certificate is checked against the
// replica's own host name, not the source's.
func ReplicaOf(like ferry.ConnConfig, addr string) (ferry.ConnConfig, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, "3306"
	}
	p, err := strconv.Atoi(port)
	if err != nil || host == "" {
		return ferry.ConnConfig{}, fmt.Errorf("replica %q: want host:port", addr)
	}
	c := like
	c.Host, c.Port, c.Socket = host, p, ""
	if c.TLS != nil && c.TLS.ServerName != "" {
		c.TLS = c.TLS.Clone()
		c.TLS.ServerName = host
	}
	return c, nil
}

// BinlogFromFlag is -binlog-from: read the binlog from a replica of the source instead of the
// source itself.
type BinlogFromFlag struct {
	addr string
}

// AddBinlogFrom registers -binlog-from on fs; source names the server it is a replica of in the
// help text ("source", "server").
func AddBinlogFrom(fs *flag.FlagSet, source string) *BinlogFromFlag {
	b := &BinlogFromFlag{}
	fs.StringVar(&b.addr, "binlog-from", "", "read the binlog from this replica (host:port) of the "+source+", reached with the "+source+
		"'s user, password and TLS, instead of from the "+source+" itself (rows are still read, and the cut-over still happens, on the "+source+
		"); it needs log_slave_updates, binlog_format=ROW and binlog_row_image=FULL; a lagging replica delays the cut-over")
	return b
}

// Addr is the replica's address as given ("" without -binlog-from).
func (b *BinlogFromFlag) Addr() string { return strings.TrimSpace(b.addr) }

// Config is the replica's connection, like source's, or nil without -binlog-from.
func (b *BinlogFromFlag) Config(source ferry.ConnConfig) (*ferry.ConnConfig, error) {
	if b.Addr() == "" {
		return nil, nil
	}
	c, err := ReplicaOf(source, b.Addr())
	if err != nil {
		return nil, fmt.Errorf("-binlog-from: %w", err)
	}
	return &c, nil
}
