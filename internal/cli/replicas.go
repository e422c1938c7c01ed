package cli

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"net"
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
	fs.Int64Var(&r.maxLagMillis, "max-lag-millis", 1500, "with -throttle-control-replicas: throttle while a replica lags more than this many milliseconds (read from the replica's status, one-second resolution)")
	return r
}

// Throttler opens the replicas with like's credentials and returns a ReplicationLag throttler and
// a function closing its connections; nil without -throttle-control-replicas.
func (r *ReplicaFlags) Throttler(ctx context.Context, like ferry.ConnConfig) (*throttler.ReplicationLag, func(), error) {
	if strings.TrimSpace(r.replicas) == "" {
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
	for _, addr := range strings.Split(r.replicas, ",") {
		addr = strings.TrimSpace(addr)
		if addr == "" {
			continue
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			host, port = addr, "3306"
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("-throttle-control-replicas %q: port %q", addr, port)
		}
		c := like
		c.Host, c.Port, c.Socket, c.Timeout = host, p, "", 5*time.Second
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
