package mongosim

import (
	"strings"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// documentKey is the documentKey a write of d logs: {_id} for an
// unsharded collection; for a sharded one, the shard key's fields in the
// key pattern's order, then _id unless the key has it, taken from the
// document as the write found it (an update's and a delete's pre-image,
// an insert's document), as the server's op observer logs it
// (src/mongo/s/shard_key_pattern.cpp, extractShardKeyFromDoc;
// src/mongo/db/op_observer/op_observer_impl.cpp). A key field the
// document lacks is left out; a hashed field carries the value, not its
// hash.
func (c *collection) documentKey(d bson.D) bson.D {
	id, _ := query.Lookup(d, "_id")
	if len(c.shardKey) == 0 {
		return bson.D{{Key: "_id", Value: id}}
	}
	key := make(bson.D, 0, len(c.shardKey)+1)
	hasID := false
	for _, f := range c.shardKey {
		if f.Key == "_id" {
			hasID = true
		}
		if v, ok := query.DocPathValue(d, strings.Split(f.Key, ".")); ok {
			key = append(key, bson.E{Key: f.Key, Value: v})
		}
	}
	if !hasID {
		key = append(key, bson.E{Key: "_id", Value: id})
	}
	return key
}
