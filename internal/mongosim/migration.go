package mongosim

import (
	"github.com/changestream-go/changestream/internal/mongosim/query"
	"github.com/changestream-go/changestream/internal/mongosim/shardkey"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Chunk migration, the shard's half. A real donor and recipient run the
// migration among themselves (_recvChunkStart, _migrateClone,
// _transferMods, _recvChunkCommit, then the range deleter); the
// simulated shards do not reach each other, so the router drives three
// commands of the simulator's own, each named for the step it stands in
// for. What the server guarantees is kept: every write a migration makes
// is marked fromMigrate and is never a change event, on the recipient
// and on the donor alike; the recipient's copy of the collection has the
// donor's UUID and shard key; and when the recipient had no chunk of the
// collection before, the donor logs the no-op from which a router's
// stream learns of the new shard (migrateChunkToNewShard, which the
// router swallows). (src/mongo/db/s/migration_source_manager.cpp,
// migration_destination_manager.cpp, range_deletion_util.cpp;
// jstests/sharding/change_stream_chunk_migration.js and
// change_streams_unsharded_becomes_sharded.js.)

// opNewShardDetected is the donor's no-op for a chunk that moves to a
// shard that had none of its collection: only a router's stream sees it,
// as the event type kNewShardDetected, and the router does not pass it on.
const opNewShardDetected = "kNewShardDetected"

// migrationRange reads the command's keyPattern, min and max.
func migrationRange(cc *cmdCtx) (pattern, lo, hi bson.D, err error) {
	for _, f := range []struct {
		name string
		dst  *bson.D
	}{{"keyPattern", &pattern}, {"min", &lo}, {"max", &hi}} {
		d, ok, err := cc.docFieldD(f.name)
		if err != nil {
			return nil, nil, nil, err
		}
		if !ok || len(d) == 0 {
			return nil, nil, nil, cmdErr(codeInvalidOptions, "%s needs %s", cc.name, f.name)
		}
		*f.dst = d
	}
	return pattern, lo, hi, nil
}

// rangeDocsLocked returns c's documents whose key under pattern is in
// [lo, hi).
func rangeDocsLocked(c *collection, pattern, lo, hi bson.D) []bson.D {
	var out []bson.D
	if c == nil {
		return nil
	}
	for _, d := range c.docs.all() {
		k, err := shardkey.Of(d, pattern)
		if err == nil && shardkey.InRange(k, lo, hi) {
			out = append(out, d)
		}
	}
	return out
}

// handleCloneRange returns the documents of a chunk (the recipient's
// _migrateClone of the donor).
func handleCloneRange(cc *cmdCtx) (bsoncore.Document, error) {
	if !cc.s.cfg.shardServer {
		return nil, cmdErr(codeIllegalOperation, "%s can only be run on shard servers", cc.name)
	}
	coll, err := cc.collName()
	if err != nil {
		return nil, err
	}
	pattern, lo, hi, err := migrationRange(cc)
	if err != nil {
		return nil, err
	}
	st := cc.s.store
	st.mu.Lock()
	c := st.collLocked(cc.db, coll)
	docs := rangeDocsLocked(c, pattern, lo, hi)
	var uuid [16]byte
	if c != nil {
		uuid = c.uuid
	}
	st.mu.Unlock()
	arr := bsoncore.NewArrayBuilder()
	for _, d := range docs {
		raw, err := bson.Marshal(d)
		if err != nil {
			return nil, cmdErr(codeInternalError, "mongosim: encoding a document: %v", err)
		}
		arr.AppendDocument(raw)
	}
	return bsoncore.NewDocumentBuilder().AppendArray("documents", arr.Build()).
		AppendBinary("uuid", 4, uuid[:]).Build(), nil
}

// handleReceiveChunk stores a chunk's documents on the recipient
// (_recvChunkStart and its clone): the collection is created with the
// donor's UUID and takes the shard key if it has neither, and every
// write is fromMigrate.
func handleReceiveChunk(cc *cmdCtx) (bsoncore.Document, error) {
	if !cc.s.cfg.shardServer {
		return nil, cmdErr(codeIllegalOperation, "%s can only be run on shard servers", cc.name)
	}
	coll, err := cc.collName()
	if err != nil {
		return nil, err
	}
	pattern, ok, err := cc.docFieldD("keyPattern")
	if err != nil {
		return nil, err
	}
	if !ok || len(pattern) == 0 {
		return nil, cmdErr(codeInvalidOptions, "%s needs keyPattern", cc.name)
	}
	uv, ok := cc.field("uuid")
	sub, data, isBin := uv.BinaryOK()
	if !ok || !isBin || sub != 4 || len(data) != 16 {
		return nil, cmdErr(codeInvalidOptions, "%s needs the collection's uuid", cc.name)
	}
	arr, _, err := cc.arrayArg("documents")
	if err != nil {
		return nil, err
	}
	vals, _ := arr.Values()
	docs := make([]bson.D, 0, len(vals))
	for _, v := range vals {
		raw, ok := v.DocumentOK()
		if !ok {
			return nil, cmdErr(codeTypeMismatch, "%s: documents must be documents", cc.name)
		}
		d, err := decodeDoc(raw)
		if err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
	st := cc.s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	c := st.collLocked(cc.db, coll)
	if c == nil {
		c = &collection{db: cc.db, name: coll}
		copy(c.uuid[:], data)
		st.dbLocked(cc.db, true).colls[coll] = c
		st.appendLocked(&oplogEntry{op: opCreate, db: cc.db, coll: coll, collUUID: c.uuid, fromMigrate: true,
			opDesc: createDescription(nil), nsType: namespaceType(nil)})
	}
	if c.shardKey == nil {
		c.shardKey = pattern
		st.appendLocked(&oplogEntry{op: opShardCollection, db: cc.db, coll: coll, collUUID: c.uuid, fromMigrate: true,
			opDesc: bson.D{{Key: "shardKey", Value: pattern}}})
	}
	for _, d := range docs {
		id, _ := query.Lookup(d, "_id")
		if !c.docs.insert(idKey(id), d) {
			return nil, dupKeyError(c.db, c.name, id)
		}
		st.appendLocked(&oplogEntry{op: opInsert, db: c.db, coll: c.name, collUUID: c.uuid, fromMigrate: true,
			docKey: c.documentKey(d), fullDoc: d})
	}
	return nil, nil
}

// handleDeleteRange deletes a chunk's documents from the donor once the
// chunk has moved (the range deleter), each delete fromMigrate. With
// newShard, the recipient had no chunk of the collection before: the
// donor first logs the no-op that tells a router's streams of it.
func handleDeleteRange(cc *cmdCtx) (bsoncore.Document, error) {
	if !cc.s.cfg.shardServer {
		return nil, cmdErr(codeIllegalOperation, "%s can only be run on shard servers", cc.name)
	}
	coll, err := cc.collName()
	if err != nil {
		return nil, err
	}
	pattern, lo, hi, err := migrationRange(cc)
	if err != nil {
		return nil, err
	}
	newShard, _, err := cc.boolArg("newShard")
	if err != nil {
		return nil, err
	}
	from, _, err := cc.stringArg("fromShard")
	if err != nil {
		return nil, err
	}
	to, _, err := cc.stringArg("toShard")
	if err != nil {
		return nil, err
	}
	st := cc.s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	c := st.collLocked(cc.db, coll)
	if c == nil {
		return nil, nil
	}
	if newShard {
		st.appendLocked(&oplogEntry{op: opNewShardDetected, db: cc.db, coll: coll, collUUID: c.uuid, opDesc: bson.D{
			{Key: "fromShard", Value: from}, {Key: "toShard", Value: to},
		}})
	}
	for _, d := range rangeDocsLocked(c, pattern, lo, hi) {
		id, _ := query.Lookup(d, "_id")
		c.docs.remove(idKey(id))
		st.appendLocked(&oplogEntry{op: opDelete, db: c.db, coll: c.name, collUUID: c.uuid, fromMigrate: true, docKey: c.documentKey(d)})
	}
	return nil, nil
}

// handleDropCollectionParticipant drops a sharded collection's copy on a
// shard other than its primary (_shardsvrDropCollectionParticipant, as
// 8.0's drop coordinator sends it): with fromMigrate, so that the
// collection's one drop event is the primary shard's.
// (src/mongo/db/s/drop_collection_coordinator.cpp.)
func handleDropCollectionParticipant(cc *cmdCtx) (bsoncore.Document, error) {
	if !cc.s.cfg.shardServer {
		return nil, cmdErr(codeIllegalOperation, "%s can only be run on shard servers", cc.name)
	}
	coll, err := cc.collName()
	if err != nil {
		return nil, err
	}
	fromMigrate, _, err := cc.boolArg("fromMigrate")
	if err != nil {
		return nil, err
	}
	st := cc.s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	c := st.collLocked(cc.db, coll)
	if c == nil {
		return nil, nil
	}
	delete(st.dbs[c.db].colls, c.name)
	if len(st.dbs[cc.db].colls) == 0 {
		delete(st.dbs, cc.db)
	}
	st.appendLocked(&oplogEntry{op: opDrop, db: c.db, coll: c.name, collUUID: c.uuid, fromMigrate: fromMigrate})
	return nil, nil
}
