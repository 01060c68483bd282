package mongos

import (
	"slices"

	"github.com/changestream-go/changestream/internal/mongosim/wire"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// The config database, read through a router: config.shards,
// config.databases, config.collections and config.chunks, in the shape
// 8.0's config server keeps them (chunks keyed by the collection's uuid,
// as since 5.0), built from the catalog. Nothing else of config is
// there; writing to it is refused.

// configFind answers a find on config.
func (r *Router) configFind(req *wire.Request) bsoncore.Document {
	coll, _ := req.Body.Lookup("find").StringValueOK()
	var docs []bson.D
	switch coll {
	case "shards":
		docs = r.cat.shardDocs()
	case "databases":
		docs = r.cat.databaseDocs()
	case "collections":
		docs = r.cat.collectionDocs()
	case "chunks":
		docs = r.cat.chunkDocs()
	default:
		return r.notImplemented("config." + coll + " (only config.shards, config.databases, config.collections and config.chunks are readable)")
	}
	f, err := parseFind(req.Body)
	if err != nil {
		return r.errorOf(err)
	}
	out, err := f.apply(docs)
	if err != nil {
		return r.errorOf(err)
	}
	return r.openLocal("config."+coll, out, f.batchSize)
}

func (c *Catalog) shardDocs() []bson.D {
	out := make([]bson.D, 0, len(c.shards))
	for _, s := range c.shards {
		out = append(out, bson.D{{Key: "_id", Value: s.Name}, {Key: "host", Value: s.host()}, {Key: "state", Value: int32(1)},
			{Key: "topologyTime", Value: bson.Timestamp{T: 1}}})
	}
	return out
}

func (c *Catalog) databaseDocs() []bson.D {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.databases))
	for db := range c.databases {
		names = append(names, db)
	}
	slices.Sort(names)
	out := make([]bson.D, 0, len(names))
	for _, db := range names {
		out = append(out, bson.D{{Key: "_id", Value: db}, {Key: "primary", Value: c.shards[c.databases[db]].Name}})
	}
	return out
}

func (c *Catalog) collectionDocs() []bson.D {
	var out []bson.D
	for _, ns := range c.shardedNamespaces() {
		sc := c.collection(ns)
		if sc == nil {
			continue
		}
		out = append(out, bson.D{
			{Key: "_id", Value: sc.ns},
			{Key: "lastmodEpoch", Value: sc.epoch},
			{Key: "lastmod", Value: bson.NewDateTimeFromTime(now())},
			{Key: "timestamp", Value: sc.timestamp},
			{Key: "uuid", Value: bson.Binary{Subtype: 4, Data: sc.uuid[:]}},
			{Key: "key", Value: sc.key},
			{Key: "unique", Value: sc.unique},
			{Key: "noBalance", Value: false},
		})
	}
	return out
}

func (c *Catalog) chunkDocs() []bson.D {
	var out []bson.D
	for _, ns := range c.shardedNamespaces() {
		sc := c.collection(ns)
		if sc == nil {
			continue
		}
		for _, ch := range sc.chunks {
			hist := bson.A{}
			for _, h := range ch.history {
				hist = append(hist, bson.D{{Key: "validAfter", Value: h.since}, {Key: "shard", Value: c.shards[h.shard].Name}})
			}
			out = append(out, bson.D{
				{Key: "_id", Value: ch.id},
				{Key: "uuid", Value: bson.Binary{Subtype: 4, Data: sc.uuid[:]}},
				{Key: "min", Value: ch.min},
				{Key: "max", Value: ch.max},
				{Key: "shard", Value: c.shards[ch.shard].Name},
				{Key: "lastmod", Value: ch.lastmod},
				{Key: "onCurrentShardSince", Value: ch.history[0].since},
				{Key: "history", Value: hist},
			})
		}
	}
	return out
}
