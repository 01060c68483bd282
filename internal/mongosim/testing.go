package mongosim

import (
	"os"
	"testing"
	"time"
)

// StartTB starts a server for a test or benchmark and closes it in
// tb.Cleanup. It fails the test at once when the server cannot start.
func StartTB(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s, err := NewServer(opts...)
	if err != nil {
		tb.Fatalf("mongosim: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// StartReplicaSetTB starts a replica set of n members for a test or
// benchmark and closes it in tb.Cleanup.
func StartReplicaSetTB(tb testing.TB, n int, serverOpts []Option, opts ...ReplicaSetOption) *ReplicaSet {
	tb.Helper()
	rs, err := NewReplicaSet(n, serverOpts, opts...)
	if err != nil {
		tb.Fatalf("mongosim: %v", err)
	}
	tb.Cleanup(func() { _ = rs.Close() })
	return rs
}

// StartShardedClusterTB starts a sharded cluster for a test or benchmark
// and closes it in tb.Cleanup.
func StartShardedClusterTB(tb testing.TB, shards, members, routers int, serverOpts []Option, opts ...ReplicaSetOption) *ShardedCluster {
	tb.Helper()
	sc, err := NewShardedCluster(shards, members, routers, serverOpts, opts...)
	if err != nil {
		tb.Fatalf("mongosim: %v", err)
	}
	tb.Cleanup(func() { _ = sc.Close() })
	return sc
}

// TopologyEnv names the environment variable that chooses what
// StartDeploymentTB starts: "sharded" for a sharded cluster, "" for a
// one-member replica set. `make test` runs the package tests both ways.
const TopologyEnv = "CHANGESTREAM_TEST_TOPOLOGY"

// Sharded reports whether TopologyEnv asks for a sharded cluster.
func Sharded() bool { return os.Getenv(TopologyEnv) == "sharded" }

// Deployment is what StartDeploymentTB started: one of Server and
// Cluster is set.
type Deployment struct {
	// URI is what a test's clients connect to.
	URI string
	// Server is the one-member replica set, nil on a sharded cluster.
	Server *Server
	// Cluster is the sharded cluster, nil on a replica set.
	Cluster *ShardedCluster
}

// StartDeploymentTB starts the deployment TopologyEnv names, closed in
// tb.Cleanup, with opts for every member. A sharded cluster has 2 shards
// of one member behind 2 mongos, its shards' no-op writer at 100 ms
// unless opts set another (an idle shard holds every event back until its
// next no-op, which at the default 10 s would outlast most tests'
// deadlines); URI names the first mongos only, as the Unified Test
// Format's useMultipleMongoses: false: a mongos keeps its own fail
// points, so one set through a client of both could miss the mongos a
// stream's commands go to.
func StartDeploymentTB(tb testing.TB, opts ...Option) Deployment {
	tb.Helper()
	if !Sharded() {
		s := StartTB(tb, opts...)
		return Deployment{URI: s.URI(), Server: s}
	}
	sc := StartShardedClusterTB(tb, 2, 1, 2, append([]Option{WithNoopInterval(100 * time.Millisecond)}, opts...))
	return Deployment{URI: "mongodb://" + sc.Router(0).Addr() + "/", Cluster: sc}
}
