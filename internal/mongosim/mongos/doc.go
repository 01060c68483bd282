// Package mongos is the simulator's router: a simulated mongos in front
// of shards that are replica sets of package mongosim, for the tests of
// code that must work on a sharded cluster. mongosim.NewShardedCluster
// and cmd/mongosim -shards start one.
//
// The layers stay apart: a member (package mongosim) knows nothing of
// routers; a router reaches its shards only over the wire, with the
// commands a real router sends them (package wire frames them), and reads
// the cluster's metadata from a Catalog, which stands in for the config
// server and is shared by every router of a cluster.
//
// What it models, after the server (src/mongo/s/, src/mongo/db/pipeline/
// and jstests/sharding/):
//
//   - hello as a mongos answers it (msg "isdbgrid", no setName, no
//     hosts), so the driver's topology is Sharded; listShards, with each
//     shard's host as "rsName/host1,host2"; enableSharding, accepted
//     without effect as since 6.0.
//   - Unsharded collections on their database's primary shard (the shard
//     primary of the fewest databases when first used, or the one
//     Catalog.SetPrimaryShard names): CRUD, DDL and their cursors routed
//     there, the client's session, transaction number and gossip
//     forwarded as they came.
//   - Cursors that belong to their router: a getMore on another router,
//     or after Stop and Restart, fails with CursorNotFound (43).
//   - Cluster time: the router keeps the latest it has seen and gossips
//     it to the shards, whose members advance their clocks to it, so
//     that writes through a router are ordered across shards.
//   - Change streams, collection, database and cluster-wide: opened on
//     every shard (marked fromMongos and needsMerge, batch size 0), all
//     shards starting at one time just past the latest any has reached;
//     an empty first batch; events merged in resume-token order and
//     released only once every open shard has promised past them (its
//     postBatchResumeToken), so an idle shard holds a busy one back until
//     its no-op writer moves it; the smallest promise as the
//     postBatchResumeToken when nothing is ready, never going backwards;
//     per-shard getMore awaits capped at 1 s, the client's maxTimeMS
//     honoured by the router; the resume event checked and swallowed by
//     the router (ChangeStreamFatalError 280 if no shard has it); the
//     cursor closed after an invalidate.
//   - shardCollection on _id (range or hashed): the collection stays
//     whole on its primary shard, which records the key and writes the
//     no-op behind the shardCollection event that streams with
//     showExpandedEvents report (_shardsvrCreateCollection, as 8.0's
//     mongos sends it); again on the same key it does nothing, on another
//     it fails (23).
//   - Fail points of its own (configureFailPoint on mongos): failCommand,
//     applied to the commands the router receives, matched by name and
//     by the client's appName, as a member applies it; a shard's members
//     keep theirs.
//   - A shard down: a stream's getMore fails with HostUnreachable ("Error
//     on remote shard host:port"), a new stream with
//     FailedToSatisfyReadPreference (133), both labelled
//     ResumableChangeStreamError.
//
// What it refuses with NotImplemented (238), naming it: a shard key other
// than _id (a sharded collection's documentKey carries the key's fields,
// which the members do not render yet), and what moves or reshapes data
// (split, moveChunk, moveRange, refineCollectionShardKey,
// reshardCollection, zones, the balancer), addShard, removeShard, movePrimary, transactions
// through mongos, renaming a collection into a database of another
// primary shard. A command it does not know fails with CommandNotFound
// (59); a fail point other than failCommand, as on a server, with BadValue.
// buildInfo and getParameter answer as the first shard's primary does.
// The router's hello carries a topologyVersion (a new processId at each
// start) and answers the awaitable and streaming hello of server
// monitoring. Not modelled yet: config.* collections, and the
// shards' part of a change stream on the collection's shards only: every
// shard is targeted, as for an unsharded collection.
package mongos
