package mongosim

import (
	"errors"
	"fmt"
	"strings"

	"github.com/changestream-go/changestream/internal/mongosim/mongos"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// ShardedCluster is a simulated sharded cluster: shards that are each a
// ReplicaSet of this package, behind routers (package mongos) that reach
// them over the wire only, reading one Catalog as real routers read the
// config server.
type ShardedCluster struct {
	shards  []*ReplicaSet
	routers []*mongos.Router
	catalog *mongos.Catalog
	config  *ReplicaSet
}

// NewShardedCluster starts shards shards of members members each (1, 3 or
// 5), named shard0, shard1, ..., behind routers mongos routers. Server
// options apply to every shard member, as for NewReplicaSet (a no-op
// interval applies to every shard). The caller must call Close.
func NewShardedCluster(shards, members, routers int, serverOpts []Option, opts ...ReplicaSetOption) (*ShardedCluster, error) {
	if shards < 1 || routers < 1 {
		return nil, fmt.Errorf("mongosim: a sharded cluster needs at least one shard and one mongos (asked %d and %d)", shards, routers)
	}
	sc := &ShardedCluster{}
	var specs []mongos.Shard
	for i := range shards {
		name := fmt.Sprintf("shard%d", i)
		rs, err := NewReplicaSet(members, append(append([]Option(nil), serverOpts...), WithReplSetName(name), asShardServer), opts...)
		if err != nil {
			_ = sc.Close()
			return nil, err
		}
		sc.shards = append(sc.shards, rs)
		spec := mongos.Shard{Name: name}
		for _, m := range rs.Members() {
			spec.Hosts = append(spec.Hosts, m.Addr())
		}
		specs = append(specs, spec)
	}
	cfg, err := NewReplicaSet(1, append(append([]Option(nil), serverOpts...), WithReplSetName(configReplSetName), asConfigServer), opts...)
	if err != nil {
		_ = sc.Close()
		return nil, err
	}
	sc.config = cfg
	cat, err := mongos.NewCatalog(specs)
	if err != nil {
		_ = sc.Close()
		return nil, err
	}
	cat.SetConfigServer(mongos.Shard{Name: configReplSetName, Hosts: []string{cfg.Member(0).Addr()}})
	sc.catalog = cat
	for range routers {
		r, err := mongos.New(cat, "")
		if err != nil {
			_ = sc.Close()
			return nil, err
		}
		sc.routers = append(sc.routers, r)
	}
	return sc, nil
}

// URI returns a connection string listing every mongos, without a
// replicaSet: the driver's topology is Sharded.
func (sc *ShardedCluster) URI() string {
	hosts := make([]string, len(sc.routers))
	for i, r := range sc.routers {
		hosts[i] = r.Addr()
	}
	return "mongodb://" + strings.Join(hosts, ",") + "/"
}

// Shards returns the shards, in the order of their names.
func (sc *ShardedCluster) Shards() []*ReplicaSet { return append([]*ReplicaSet(nil), sc.shards...) }

// Shard returns shard i.
func (sc *ShardedCluster) Shard(i int) *ReplicaSet { return sc.shards[i] }

// Routers returns every mongos, in the order of the URI.
func (sc *ShardedCluster) Routers() []*mongos.Router {
	return append([]*mongos.Router(nil), sc.routers...)
}

// Router returns mongos i, to stop and restart it.
func (sc *ShardedCluster) Router(i int) *mongos.Router { return sc.routers[i] }

// configReplSetName is the config server's set name, as a real cluster's
// is by convention.
const configReplSetName = "configRepl"

// ConfigServer returns the config server, a one-member replica set that
// getShardMap names. It holds none of the cluster's metadata (the
// Catalog does, read through mongos); it is there for what clients use a
// config server for directly, such as appendOplogNote.
func (sc *ShardedCluster) ConfigServer() *ReplicaSet { return sc.config }

// Catalog returns the cluster's sharding metadata, to choose a
// database's primary shard before its first use.
func (sc *ShardedCluster) Catalog() *mongos.Catalog { return sc.catalog }

// Close stops the routers, then the shards and the config server.
func (sc *ShardedCluster) Close() error {
	var errs []error
	for _, r := range sc.routers {
		errs = append(errs, r.Close())
	}
	for _, rs := range sc.shards {
		errs = append(errs, rs.Close())
	}
	if sc.config != nil {
		errs = append(errs, sc.config.Close())
	}
	return errors.Join(errs...)
}

// LoseHistory makes shard i's primary lose its oplog history up to now,
// as an oplog overtaking an idle consumer does: it logs a no-op past
// every cluster time any shard has reached, then drops every entry before
// it. A stream through mongos from any position handed out so far then
// fails with ChangeStreamHistoryLost (286) from that shard. (A plain
// TruncateOplog of an idle shard could keep an entry older than a
// position another shard's writes made, and so lose nothing that
// position needs.)
func (sc *ShardedCluster) LoseHistory(i int) error {
	p := sc.shards[i].Primary()
	if p == nil {
		return fmt.Errorf("mongosim: shard%d has no primary", i)
	}
	var latest bson.Timestamp
	for _, rs := range sc.shards {
		for _, m := range rs.Members() {
			if ct := m.store.clusterTime(); latest.Before(ct) {
				latest = ct
			}
		}
	}
	if err := p.store.advanceClock(latest); err != nil {
		return err
	}
	p.store.mu.Lock()
	p.store.appendNoopLocked()
	p.store.oplog.truncate()
	p.store.mu.Unlock()
	return nil
}
