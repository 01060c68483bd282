package checkpoint

import (
	"go.mongodb.org/mongo-driver/v2/bson"
)

// documentIdentity is what orders a document's events among the workers:
// its namespace and its _id. Not the whole documentKey: a collection
// sharded (or its key refined) while it is consumed changes the shape of
// its documents' keys from {_id} to {<shard key fields>, _id}, and a key
// compared whole would let the new events of a document run beside its
// older ones still queued. nil for an event without a documentKey; the
// documentKey itself when it has no _id.
func documentIdentity(db, coll string, documentKey bson.Raw) bson.Raw {
	if documentKey == nil {
		return nil
	}
	id, err := documentKey.LookupErr("_id")
	if err != nil {
		return documentKey
	}
	out := make([]byte, 0, len(db)+len(coll)+3+len(id.Value))
	out = append(out, db...)
	out = append(out, 0)
	out = append(out, coll...)
	out = append(out, 0, byte(id.Type))
	return append(out, id.Value...)
}
