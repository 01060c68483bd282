package mongos

import (
	"context"
	"fmt"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"github.com/changestream-go/changestream/internal/mongosim/shardkey"
	"github.com/changestream-go/changestream/internal/mongosim/wire"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// The sharding commands: shardCollection, split and moveChunk, as 8.0's
// mongos takes them (src/mongo/s/commands/cluster_shard_collection_cmd.cpp,
// cluster_split_cmd.cpp, cluster_move_chunk_cmd.cpp).

// shardCollection shards a collection with _shardsvrCreateCollection on
// its database's primary shard, as 8.0's mongos does: the shard records
// the key and writes the no-op behind the shardCollection event, and the
// catalog records one chunk, MinKey to MaxKey, on that shard. A range key
// may be split and its chunks moved; a hashed key places documents by a
// hash the simulator does not compute, so a hashed collection stays in
// its one chunk (split and moveChunk refuse it).
func (r *Router) shardCollection(ctx context.Context, req *wire.Request) bsoncore.Document {
	if req.DB != "admin" {
		return r.errorReply(13, "shardCollection may only be run against the admin database.")
	}
	ns, ok := req.Body.Lookup("shardCollection").StringValueOK()
	db, coll := nsParts(ns)
	if !ok || db == "" || coll == "" {
		return r.errorReply(codeInvalidNamespace, fmt.Sprintf("Invalid namespace specified '%s'", ns))
	}
	rawKey, ok := req.Body.Lookup("key").DocumentOK()
	if !ok {
		return r.errorReply(codeInvalidOptions, "shardCollection needs a key document")
	}
	var key bson.D
	if err := bson.Unmarshal(rawKey, &key); err != nil || len(key) == 0 {
		return r.errorReply(codeBadValue, "Unsupported shard key pattern "+rawKey.String()+". Pattern must either be a single hashed field, or a list of ascending fields.")
	}
	if err := checkKeyPattern(key); err != nil {
		if err == errCompoundHashed {
			return r.notImplemented("a compound hashed shard key")
		}
		return r.errorReply(codeBadValue, "Unsupported shard key pattern "+query.FormatDoc(key)+". Pattern must either be a single hashed field, or a list of ascending fields.")
	}
	unique, _ := req.Body.Lookup("unique").BooleanOK()
	chunks, _ := req.Body.Lookup("numInitialChunks").AsInt64OK()
	presplit, _ := req.Body.Lookup("presplitHashedZones").BooleanOK()
	b := bsoncore.NewDocumentBuilder().AppendString("_shardsvrCreateCollection", coll).AppendDocument("shardKey", rawKey).
		AppendBoolean("unique", unique).AppendInt64("numInitialChunks", chunks).AppendBoolean("presplitHashedZones", presplit).
		AppendString("$db", db)
	if lsid, err := req.Body.LookupErr("lsid"); err == nil {
		b.AppendValue("lsid", lsid)
	}
	i := r.cat.primaryShard(db)
	reply, fail := r.runOn(ctx, i, b.Build())
	if fail != nil {
		return fail
	}
	if replyCode(reply) != 0 {
		return reply
	}
	uuid, fail := r.collectionUUID(ctx, i, db, coll)
	if fail != nil {
		return fail
	}
	r.cat.addCollection(ns, key, unique, uuid, i, r.clusterTime())
	return r.okReply(bsoncore.NewDocumentBuilder().AppendString("collectionsharded", ns))
}

// errCompoundHashed marks a hashed field among others.
var errCompoundHashed = fmt.Errorf("compound hashed shard key")

// checkKeyPattern takes ascending fields (1) or one hashed field.
func checkKeyPattern(key bson.D) error {
	for _, f := range key {
		if s, ok := f.Value.(string); ok && s == "hashed" {
			if len(key) > 1 {
				return errCompoundHashed
			}
			continue
		}
		if !query.IsNumber(f.Value) || query.NumberFloat(f.Value) != 1 {
			return fmt.Errorf("bad key field %s", f.Key)
		}
	}
	return nil
}

// collectionUUID asks shard i for the collection's UUID (listCollections),
// which every shard's copy shares.
func (r *Router) collectionUUID(ctx context.Context, i int, db, coll string) ([16]byte, bsoncore.Document) {
	var uuid [16]byte
	cmd := bsoncore.NewDocumentBuilder().AppendInt32("listCollections", 1).
		AppendDocument("filter", bsoncore.NewDocumentBuilder().AppendString("name", coll).Build()).AppendString("$db", db).Build()
	reply, fail := r.runOn(ctx, i, cmd)
	if fail != nil {
		return uuid, fail
	}
	if replyCode(reply) != 0 {
		return uuid, reply
	}
	first, _ := reply.Lookup("cursor", "firstBatch").ArrayOK()
	v, err2 := first.IndexErr(0)
	if err2 != nil {
		return uuid, r.errorReply(codeNamespaceNotFound, "the collection vanished while it was sharded: "+db+"."+coll)
	}
	_, data, _ := v.Document().Lookup("info", "uuid").BinaryOK()
	copy(uuid[:], data)
	return uuid, nil
}

// shardedTarget reads the namespace a split or moveChunk names and its
// collection, refusing one the simulator cannot move.
func (r *Router) shardedTarget(req *wire.Request, cmd string) (*shardedColl, bsoncore.Document) {
	if req.DB != "admin" {
		return nil, r.errorReply(13, cmd+" may only be run against the admin database.")
	}
	ns, _ := req.Body.Lookup(cmd).StringValueOK()
	sc := r.cat.collection(ns)
	if sc == nil {
		return nil, r.errorReply(codeNamespaceNotSharded, fmt.Sprintf("ns %s is not sharded", ns))
	}
	if sc.hashed() {
		return nil, r.notImplemented(cmd + " of a hashed collection (the simulator does not compute the hashes that place its documents)")
	}
	return sc, nil
}

// keyArg reads a key document of the collection's pattern.
func (r *Router) keyArg(req *wire.Request, cmd, field string, sc *shardedColl) (bson.D, bsoncore.Document) {
	raw, ok := req.Body.Lookup(field).DocumentOK()
	if !ok {
		return nil, nil
	}
	var d bson.D
	if err := bson.Unmarshal(raw, &d); err != nil || shardkey.Check(d, sc.key) != nil {
		return nil, r.errorReply(codeBadValue, fmt.Sprintf("%s: %s %s is not a key of the shard key pattern %s", cmd, field, raw.String(), query.FormatDoc(sc.key)))
	}
	return d, nil
}

// split splits the chunk that holds middle there (split with middle);
// find and bounds, which ask the router to choose the point, are
// refused.
func (r *Router) split(_ context.Context, req *wire.Request) bsoncore.Document {
	sc, fail := r.shardedTarget(req, "split")
	if fail != nil {
		return fail
	}
	middle, fail := r.keyArg(req, "split", "middle", sc)
	if fail != nil {
		return fail
	}
	if middle == nil {
		return r.notImplemented("split without middle (find and bounds let the router choose the split point)")
	}
	if err := r.cat.split(sc.ns, middle); err != nil {
		return r.errorReply(codeBadValue, err.Error())
	}
	return r.okReply(nil)
}

// moveChunk moves the chunk that find's key falls in, or whose bounds are
// bounds, to the shard to: the documents are cloned to it and deleted
// from the donor, each write fromMigrate and so never an event; the
// catalog then places the chunk there. When to had no chunk of the
// collection, the donor logs the no-op a router's stream learns of a new
// shard from (migrateChunkToNewShard). The delete is always done before
// the reply, as _waitForDelete asks.
func (r *Router) moveChunk(ctx context.Context, req *wire.Request) bsoncore.Document {
	began := time.Now()
	sc, fail := r.shardedTarget(req, "moveChunk")
	if fail != nil {
		return fail
	}
	l := r.cat.placementLock(sc.ns)
	l.Lock()
	defer l.Unlock()
	if sc = r.cat.collection(sc.ns); sc == nil {
		return r.errorReply(codeNamespaceNotSharded, "the collection was dropped during moveChunk")
	}
	to, _ := req.Body.Lookup("to").StringValueOK()
	dest := -1
	for i, s := range r.cat.Shards() {
		if s.Name == to {
			dest = i
		}
	}
	if dest < 0 {
		return r.errorReply(codeShardNotFound, fmt.Sprintf("Could not find shard %s", to))
	}
	var ch *chunk
	if find, fail := r.keyArg(req, "moveChunk", "find", sc); fail != nil {
		return fail
	} else if find != nil {
		ch = sc.chunkFor(find)
	}
	if arr, ok := req.Body.Lookup("bounds").ArrayOK(); ok {
		vals, _ := arr.Values()
		var lo, hi bson.D
		if len(vals) == 2 {
			_ = bson.Unmarshal(vals[0].Document(), &lo)
			_ = bson.Unmarshal(vals[1].Document(), &hi)
		}
		for _, c := range sc.chunks {
			if shardkey.Compare(c.min, lo) == 0 && shardkey.Compare(c.max, hi) == 0 {
				ch = c
			}
		}
		if ch == nil {
			return r.errorReply(codeBadValue, "moveChunk: no chunk has the bounds "+arr.String())
		}
	}
	if ch == nil {
		return r.errorReply(codeInvalidOptions, "moveChunk needs find or bounds")
	}
	if ch.shard == dest {
		return r.okReply(nil) // already there
	}
	db, coll := nsParts(sc.ns)
	rangeCmd := func(name string, extra func(*bsoncore.DocumentBuilder)) bsoncore.Document {
		lo, _ := bson.Marshal(ch.min)
		hi, _ := bson.Marshal(ch.max)
		pat, _ := bson.Marshal(sc.key)
		b := bsoncore.NewDocumentBuilder().AppendString(name, coll).AppendDocument("keyPattern", pat).
			AppendDocument("min", lo).AppendDocument("max", hi)
		if extra != nil {
			extra(b)
		}
		return b.AppendString("$db", db).Build()
	}
	cloned, fail := r.runOn(ctx, ch.shard, rangeCmd("_mongosimCloneRange", nil))
	if fail != nil {
		return fail
	}
	if replyCode(cloned) != 0 {
		return cloned
	}
	docs, _ := cloned.Lookup("documents").ArrayOK()
	pat, _ := bson.Marshal(sc.key)
	recv := bsoncore.NewDocumentBuilder().AppendString("_mongosimReceiveChunk", coll).AppendDocument("keyPattern", pat).
		AppendBinary("uuid", 4, sc.uuid[:]).AppendArray("documents", docs).AppendString("$db", db).Build()
	reply, fail := r.runOn(ctx, dest, recv)
	if fail != nil {
		return fail
	}
	if replyCode(reply) != 0 {
		return reply
	}
	newShard := !sc.hasChunkOn(dest)
	from := r.cat.Shards()[ch.shard].Name
	r.cat.move(sc.ns, ch.min, dest, r.clusterTime())
	reply, fail = r.runOn(ctx, ch.shard, rangeCmd("_mongosimDeleteRange", func(b *bsoncore.DocumentBuilder) {
		b.AppendBoolean("newShard", newShard).AppendString("fromShard", from).AppendString("toShard", to)
	}))
	if fail != nil {
		return fail
	}
	if replyCode(reply) != 0 {
		return reply
	}
	return r.okReply(bsoncore.NewDocumentBuilder().AppendInt64("millis", time.Since(began).Milliseconds()))
}

// dropDatabase drops the sharded collections' copies on the shards other
// than the primary (fromMigrate), then the database on its primary
// shard, whose events are the database's drop events.
func (r *Router) dropDatabase(ctx context.Context, req *wire.Request) bsoncore.Document {
	for _, ns := range r.cat.shardedNamespaces() {
		if db, _ := nsParts(ns); db != req.DB {
			continue
		}
		if sc := r.cat.collection(ns); sc != nil {
			if reply := r.dropParticipants(ctx, req, sc); reply != nil {
				return reply
			}
		}
	}
	reply := r.forward(ctx, r.cat.primaryShard(req.DB), req)
	if replyCode(reply) == 0 {
		r.cat.dropDatabase(req.DB)
	}
	return reply
}
