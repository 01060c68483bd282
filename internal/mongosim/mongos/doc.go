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
//   - shardCollection on a range key (ascending fields) or one hashed
//     field: _shardsvrCreateCollection on the primary shard, as 8.0's
//     mongos sends it, which records the key and writes the no-op behind
//     the shardCollection event; one chunk, MinKey to MaxKey, on that
//     shard; again on the same key it does nothing, on another it fails
//     (23). split (middle) and moveChunk (find or bounds, to) on a range
//     key: the migration's writes on both shards are fromMigrate and
//     never events; when the recipient had no chunk, the donor's
//     migrateChunkToNewShard note reaches the router's streams, which
//     swallow it. refineCollectionShardKey on a range key (the new key
//     extends the current one, an index starts with it): the primary
//     shard writes the no-op behind the refineCollectionShardKey event
//     ({shardKey, oldShardKey}), every shard's later documentKeys carry
//     the new fields, the chunk bounds gain them as MinKey (MaxKey at
//     the top). config.shards, config.databases, config.collections
//     and config.chunks are readable with find.
//   - CRUD on a sharded collection: an insert to the shard of its key's
//     chunk (runs of one shard, in order, for an ordered insert; stmtIds
//     kept for a retryable write), a query or a write whose filter has
//     the whole shard key in equality to that shard, a multi-document
//     write and any other query to every shard holding a chunk (the
//     router merges, sorts, skips, limits and projects a find, and runs
//     an aggregate's stages after its leading $match itself);
//     documentKey is the shard key's fields, then _id, as of the write;
//     a drop goes to the other shards first, fromMigrate, so that the
//     primary shard's is the one drop event.
//   - Transactions on one shard: every statement, commitTransaction and
//     abortTransaction sent to the shard the first statement targeted,
//     which runs it as a replica set does; a write's reply carries the
//     recoveryToken with which another router (or this one, restarted)
//     has that shard decide the commit (txn.go).
//   - updateLookup done by the router, routed by the event's documentKey
//     to the shard that owns the document now, with the client's stages
//     after $changeStream run after it on the router.
//   - Fail points of its own (configureFailPoint on mongos): failCommand,
//     applied to the commands the router receives, matched by name and
//     by the client's appName, as a member applies it; a shard's members
//     keep theirs.
//   - A shard failing over: the router waits for its new primary (up to
//     15 s while members answer, as a router's findHost waits) and finds
//     it again after a "not primary" answer or a network error; a
//     retryable write's retryable error is labelled RetryableWriteError,
//     the shard's or the router's own, as error_labels.cpp labels it.
//   - A shard down: a stream's getMore fails with HostUnreachable ("Error
//     on remote shard host:port"), a new stream with
//     FailedToSatisfyReadPreference (133), both labelled
//     ResumableChangeStreamError.
//
// What it refuses with NotImplemented (238), naming it: a compound
// hashed key; split and moveChunk of a hashed collection (its documents
// are placed by a hash the simulator does not compute, so it stays in
// one chunk on its primary shard); split by find or bounds; moveRange,
// mergeChunks, refineCollectionShardKey with a hashed field,
// reshardCollection, zones, the
// balancer, addShard, removeShard, movePrimary; a single-document
// update, delete or findAndModify without the whole shard key (8.0's
// write without shard key), an update that may change a document's
// shard key, an upsert without the whole key, distinct across shards,
// $out, $merge, $lookup, $graphLookup, $unionWith and $facet in an
// aggregate across shards, $changeStreamSplitLargeEvent with
// updateLookup; a transaction across shards, or on a sharded collection
// whose chunks are on several; renaming a collection into
// a database of another primary shard, renaming a sharded collection;
// anything but find on config. A
// command it does not know fails with CommandNotFound (59); a fail point
// other than failCommand, as on a server, with BadValue. buildInfo and
// getParameter answer as the first shard's primary does. The router's
// hello carries a topologyVersion (a new processId at each start) and
// answers the awaitable and streaming hello of server monitoring. Every
// shard is targeted by a change stream, as for an unsharded collection;
// the shard key's index is not created.
package mongos
