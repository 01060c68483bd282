package mongosim

import "testing"

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
