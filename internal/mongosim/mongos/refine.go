package mongos

import (
	"context"
	"fmt"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"github.com/changestream-go/changestream/internal/mongosim/shardkey"
	"github.com/changestream-go/changestream/internal/mongosim/wire"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// refineCollectionShardKey refines a range-sharded collection's key with
// more fields, as 8.0's mongos does (cluster_refine_collection_shard_key_cmd.cpp,
// then refine_collection_shard_key_coordinator.cpp on the primary shard):
// the key must extend the current one (InvalidOptions otherwise, as
// jstests/sharding/refine_collection_shard_key_basic.js asserts) and an
// index must start with it. The primary shard takes the key and writes
// the event's no-op; the other shards learn it without an event; the
// catalog appends the new fields to every chunk bound, MinKey (MaxKey at
// the top of the key space), so that every document stays in its chunk.
// Routed commands on the collection wait meanwhile, as the server's
// critical section holds them, so that every write's documentKey is of
// one key or the other. A hashed field, old or new, is refused.
func (r *Router) refineCollectionShardKey(ctx context.Context, req *wire.Request) bsoncore.Document {
	if req.DB != "admin" {
		return r.errorReply(13, "refineCollectionShardKey may only be run against the admin database.")
	}
	ns, _ := req.Body.Lookup("refineCollectionShardKey").StringValueOK()
	db, coll := nsParts(ns)
	if db == "" || coll == "" {
		return r.errorReply(codeInvalidNamespace, fmt.Sprintf("Invalid namespace specified '%s'", ns))
	}
	rawKey, ok := req.Body.Lookup("key").DocumentOK()
	var key bson.D
	if !ok || bson.Unmarshal(rawKey, &key) != nil || len(key) == 0 {
		return r.errorReply(codeInvalidOptions, "refineCollectionShardKey needs a key document")
	}
	l := r.cat.placementLock(ns)
	l.Lock()
	defer l.Unlock()
	sc := r.cat.collection(ns)
	if sc == nil {
		return r.errorReply(codeNamespaceNotSharded, fmt.Sprintf("refineCollectionShardKey namespace %s is not sharded", ns))
	}
	if err := checkKeyPattern(key); err != nil || sc.hashed() {
		if err == errCompoundHashed || sc.hashed() {
			return r.notImplemented("refineCollectionShardKey with a hashed field (the simulator does not compute the hashes that place documents)")
		}
		return r.errorReply(codeBadValue, "Unsupported shard key pattern "+query.FormatDoc(key)+". Pattern must either be a single hashed field, or a list of ascending fields.")
	}
	if !shardkey.Extends(key, sc.key) {
		return r.errorReply(codeInvalidOptions, fmt.Sprintf("refineCollectionShardKey: the proposed shard key %s does not extend the current shard key %s",
			query.FormatDoc(key), query.FormatDoc(sc.key)))
	}
	cmd := func(name string) bsoncore.Document {
		return bsoncore.NewDocumentBuilder().AppendString(name, coll).AppendDocument("newShardKey", rawKey).
			AppendString("$db", db).Build()
	}
	primary := r.cat.primaryShard(db)
	reply, fail := r.runOn(ctx, primary, cmd("_shardsvrRefineCollectionShardKey"))
	if fail != nil {
		return fail
	}
	if replyCode(reply) != 0 {
		return reply
	}
	for i := range r.cat.Shards() {
		if i == primary {
			continue
		}
		reply, fail := r.runOn(ctx, i, cmd("_mongosimRefreshShardKey"))
		if fail != nil {
			return fail
		}
		if replyCode(reply) != 0 {
			return reply
		}
	}
	r.cat.refine(ns, key, r.clusterTime())
	return r.okReply(nil)
}

// refine gives ns the refined key pattern key: each chunk bound gains the
// new fields, MinKey, except the top of the key space, which gains
// MaxKey; the collection takes a new epoch and timestamp, as a refined
// collection's placement does.
func (c *Catalog) refine(ns string, key bson.D, at bson.Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sc := c.colls[ns]
	if sc == nil {
		return
	}
	extra := key[len(sc.key):]
	extend := func(bound bson.D, v any) bson.D {
		out := append(bson.D(nil), bound...)
		for _, f := range extra {
			out = append(out, bson.E{Key: f.Key, Value: v})
		}
		return out
	}
	for i, ch := range sc.chunks {
		ch.min = extend(ch.min, bson.MinKey{})
		if i == len(sc.chunks)-1 {
			ch.max = extend(ch.max, bson.MaxKey{})
		} else {
			ch.max = extend(ch.max, bson.MinKey{})
		}
	}
	sc.key = key
	sc.epoch, sc.timestamp = bson.NewObjectID(), at
}
