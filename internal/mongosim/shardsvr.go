package mongosim

import (
	"github.com/changestream-go/changestream/internal/mongosim/query"
	"github.com/changestream-go/changestream/internal/mongosim/shardkey"
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

// handleShardsvrRefineCollectionShardKey is what a router sends the
// primary shard of a database for refineCollectionShardKey, as 8.0's
// mongos does (_shardsvrRefineCollectionShardKey; the coordinator is
// refine_collection_shard_key_coordinator.cpp): the collection's key
// becomes newShardKey, which must extend the current key with more
// fields and be the prefix of an index's key (shardkey_util.cpp,
// validateShardKeyIndexExistsOrCreateIfPossible, which refine calls
// without creating one), and the shard writes the no-op from which
// change streams with showExpandedEvents report a
// refineCollectionShardKey event, {shardKey, oldShardKey}
// (notifyChangeStreamsOnRefineCollectionShardKeyComplete). From then on
// its writes' documentKeys carry the new fields.
func handleShardsvrRefineCollectionShardKey(cc *cmdCtx) (bsoncore.Document, error) {
	return refineShardKey(cc, true)
}

// handleRefreshShardKey tells a shard other than the primary of a
// refined collection's new key, as a real shard learns it when it
// refreshes the collection's metadata: its copy, if it has one, takes the
// key without an event (the entry is fromMigrate, for its secondaries).
func handleRefreshShardKey(cc *cmdCtx) (bsoncore.Document, error) {
	return refineShardKey(cc, false)
}

func refineShardKey(cc *cmdCtx, primary bool) (bsoncore.Document, error) {
	if !cc.s.cfg.shardServer {
		return nil, cmdErr(codeIllegalOperation, "%s can only be run on shard servers", cc.name)
	}
	coll, err := cc.collName()
	if err != nil {
		return nil, err
	}
	rawKey, ok, err := cc.docArg("newShardKey")
	if err != nil {
		return nil, err
	}
	var key bson.D
	if !ok || bson.Unmarshal(rawKey, &key) != nil || len(key) == 0 {
		return nil, cmdErr(codeInvalidOptions, "%s needs a newShardKey document", cc.name)
	}
	st := cc.s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	c := st.collLocked(cc.db, coll)
	if c == nil || c.shardKey == nil {
		if !primary {
			return nil, nil // this shard never had the collection
		}
		return nil, cmdErr(codeNamespaceNotSharded, "refineCollectionShardKey namespace %s.%s is not sharded", cc.db, coll)
	}
	old := c.shardKey
	if shardkey.SamePattern(old, key) {
		return nil, nil // a retry
	}
	if primary {
		if !c.hasIndexPrefixedBy(key) {
			return nil, cmdErr(codeInvalidOptions, "Please create an index that starts with the proposed shard key %s before refining the shard key of %s.%s", query.FormatDoc(key), cc.db, coll)
		}
	}
	c.shardKey = key
	st.appendLocked(&oplogEntry{op: opRefineShardKey, db: cc.db, coll: coll, collUUID: c.uuid, fromMigrate: !primary,
		opDesc: bson.D{{Key: "shardKey", Value: key}, {Key: "oldShardKey", Value: old}}})
	return nil, nil
}

// hasIndexPrefixedBy reports an index whose key starts with the fields
// of key, in order and with the same values, as a shard key needs one.
func (c *collection) hasIndexPrefixedBy(key bson.D) bool {
	for _, ix := range append([]bson.D{idIndexSpec}, c.indexes...) {
		v, _ := query.Lookup(ix, "key")
		ixKey, _ := v.(bson.D)
		if len(ixKey) >= len(key) && shardkey.SamePattern(ixKey[:len(key)], key) {
			return true
		}
	}
	return false
}
