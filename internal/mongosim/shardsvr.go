package mongosim

import (
	"github.com/changestream-go/changestream/internal/mongosim/query"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// asShardServer makes a member a shard server, as NewShardedCluster starts
// its shards' members (--shardsvr).
func asShardServer(c *config) { c.shardServer = true }

// handleShardsvrCreateCollection is the command a router sends the
// primary shard of a database for shardCollection, as 8.0's mongos does
// (_shardsvrCreateCollection): it creates the collection if need be,
// records its shard key and writes the no-op from which change streams
// with showExpandedEvents report a shardCollection event, whose
// operationDescription is {shardKey, unique, numInitialChunks,
// presplitHashedZones} (create_collection_coordinator.cpp,
// notifyChangeStreamsOnShardCollection). Sharding a collection again on
// the same key does nothing; on another key it fails, as the server's
// does. Only a shard server takes it.
func handleShardsvrCreateCollection(cc *cmdCtx) (bsoncore.Document, error) {
	if !cc.s.cfg.shardServer {
		return nil, cmdErr(codeIllegalOperation, "_shardsvrCreateCollection can only be run on shard servers")
	}
	coll, err := cc.collName()
	if err != nil {
		return nil, err
	}
	rawKey, ok, err := cc.docArg("shardKey")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, cmdErr(codeInvalidOptions, "_shardsvrCreateCollection needs a shardKey")
	}
	var key bson.D
	if err := bson.Unmarshal(rawKey, &key); err != nil || len(key) == 0 {
		return nil, cmdErr(codeInvalidOptions, "the shard key must be a nonempty document")
	}
	unique, _, err := cc.boolArg("unique")
	if err != nil {
		return nil, err
	}
	chunks, _, err := cc.int64Arg("numInitialChunks")
	if err != nil {
		return nil, err
	}
	presplit, _, err := cc.boolArg("presplitHashedZones")
	if err != nil {
		return nil, err
	}
	st := cc.s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	c := st.collLocked(cc.db, coll)
	if c == nil {
		c = st.createCollLocked(cc.db, coll, nil)
	}
	if c.shardKey != nil {
		if query.Identical(c.shardKey, key) {
			return nil, nil
		}
		return nil, cmdErr(codeAlreadyInitialized, "collection %s.%s is already sharded with a different key: %s", cc.db, coll, query.FormatDoc(c.shardKey))
	}
	c.shardKey = key
	st.appendLocked(&oplogEntry{op: opShardCollection, db: cc.db, coll: coll, collUUID: c.uuid, opDesc: bson.D{
		{Key: "shardKey", Value: key},
		{Key: "unique", Value: unique},
		{Key: "numInitialChunks", Value: chunks},
		{Key: "presplitHashedZones", Value: presplit},
	}})
	return nil, nil
}
