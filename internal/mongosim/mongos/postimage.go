package mongos

import (
	"bytes"
	"context"
	"fmt"

	"github.com/changestream-go/changestream/internal/mongosim/mongoerr"
	"github.com/changestream-go/changestream/internal/mongosim/query"
	"github.com/changestream-go/changestream/internal/mongosim/wire"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// fullDocument: "updateLookup" on mongos: the lookup is the merging half's
// work (document_source_change_stream_add_post_image.cpp runs after the
// split point, on the router), a find of the event's documentKey routed
// as any query, so that it finds the document on the shard that owns it
// now, after a migration too; null when it is gone. The stages a client
// put after $changeStream run after the lookup, so the router runs them
// itself: the shards get neither the lookup nor the stages.

// mergerStages is a stream's work on the router.
type mergerStages struct {
	stages []query.EventStage
}

// splitForLookup returns the $changeStream spec and pipeline to send the
// shards of a stream with updateLookup, and the stages the router runs;
// nil stages and an unchanged pipeline for any other stream.
func (r *Router) splitForLookup(spec bsoncore.Document, pipeline bsoncore.Array) (bsoncore.Array, *mergerStages, bsoncore.Document) {
	if fd, _ := spec.Lookup("fullDocument").StringValueOK(); fd != "updateLookup" {
		return pipeline, nil, nil
	}
	m := &mergerStages{}
	vals, _ := pipeline.Values()
	for _, v := range vals[1:] {
		st, ok := v.DocumentOK()
		if !ok {
			return nil, nil, r.errorReply(14, "Each element of the 'pipeline' array must be an object")
		}
		elems, _ := st.Elements()
		if len(elems) != 1 {
			return nil, nil, r.errorReply(40323, "A pipeline stage specification object must contain exactly one field.")
		}
		name := elems[0].Key()
		switch {
		case name == query.SplitStageName:
			return nil, nil, r.notImplemented("$changeStreamSplitLargeEvent with fullDocument: \"updateLookup\" through mongos")
		case !query.AllowedStreamStages[name] && query.KnownStages[name]:
			return nil, nil, r.errorReply(20, name+" is not permitted in a $changeStream pipeline")
		case !query.AllowedStreamStages[name]:
			return nil, nil, r.errorReply(40324, fmt.Sprintf("Unrecognized pipeline stage name: '%s'", name))
		}
		compiled, err := query.CompileEventStage(name, elems[0].Value())
		if err != nil {
			return nil, nil, r.errorOf(err)
		}
		if compiled != nil {
			m.stages = append(m.stages, compiled)
		}
	}
	shardSpec := replaceElements(spec, map[string]bsoncore.Value{"fullDocument": stringValue("default")})
	out := bsoncore.NewArrayBuilder().AppendDocument(bsoncore.NewDocumentBuilder().AppendDocument("$changeStream", shardSpec).Build()).Build()
	return out, m, nil
}

func stringValue(s string) bsoncore.Value {
	return bsoncore.Value{Type: bsoncore.TypeString, Data: bsoncore.AppendString(nil, s)}
}

// apply looks up the post-images of batch's updates and runs the client's
// stages; it returns the events that remain, or the reply of a failure.
func (m *mergerStages) apply(ctx context.Context, r *Router, req *wire.Request, batch []bsoncore.Document) ([]bsoncore.Document, bsoncore.Document) {
	out := batch[:0:0]
	for _, ev := range batch {
		if op, _ := ev.Lookup("operationType").StringValueOK(); op == "update" {
			post, fail := r.lookupPostImage(ctx, req, ev)
			if fail != nil {
				return nil, fail
			}
			ev = appendField(ev, "fullDocument", post)
		}
		if len(m.stages) == 0 {
			out = append(out, ev)
			continue
		}
		var d bson.D
		if err := bson.Unmarshal(ev, &d); err != nil {
			return nil, r.errorReply(1, "mongos: decoding an event: "+err.Error())
		}
		keep := true
		for _, st := range m.stages {
			var err error
			if d, keep, err = st(d); err != nil {
				return nil, r.errorOf(err)
			}
			if !keep {
				break
			}
		}
		if !keep {
			continue
		}
		b, err := bson.Marshal(d)
		if err != nil {
			return nil, r.errorReply(1, "mongos: encoding an event: "+err.Error())
		}
		before, _ := ev.Lookup("_id").DocumentOK()
		after, ok := bsoncore.Document(b).Lookup("_id").DocumentOK()
		if !ok || !bytes.Equal(before, after) {
			me := &mongoerr.Error{Code: codeChangeStreamFatalError, Labels: []string{"NonResumableChangeStreamError"},
				Message: "Encountered an event whose _id field, which contains the resume token, was modified by the pipeline. " +
					"Modifying the _id field of an event makes it impossible to resume the stream from that point. " +
					"Only transformations that retain the unmodified _id field are allowed."}
			return nil, r.errorOf(me)
		}
		out = append(out, b)
	}
	return out, nil
}

// appendField returns doc with a last field key of value v (null if v is
// nil).
func appendField(doc bsoncore.Document, key string, v bsoncore.Document) bsoncore.Document {
	b := bsoncore.NewDocumentBuilder()
	elems, _ := doc.Elements()
	for _, e := range elems {
		b.AppendValue(e.Key(), e.Value())
	}
	if v == nil {
		b.AppendNull(key)
	} else {
		b.AppendDocument(key, v)
	}
	return b.Build()
}

// lookupPostImage finds the current document of an update event by its
// documentKey, where the catalog places it now.
func (r *Router) lookupPostImage(ctx context.Context, req *wire.Request, ev bsoncore.Document) (bsoncore.Document, bsoncore.Document) {
	db, _ := ev.Lookup("ns", "db").StringValueOK()
	coll, _ := ev.Lookup("ns", "coll").StringValueOK()
	key, ok := ev.Lookup("documentKey").DocumentOK()
	if !ok || db == "" || coll == "" {
		return nil, nil
	}
	shard := r.cat.primaryShard(db)
	if sc := r.cat.collection(db + "." + coll); sc != nil {
		var filter bson.D
		_ = bson.Unmarshal(key, &filter)
		if t, ok := sc.target(filter); ok {
			shard = t
		}
	}
	b := bsoncore.NewDocumentBuilder().AppendString("find", coll).AppendDocument("filter", key).
		AppendInt64("limit", 1).AppendBoolean("singleBatch", true)
	if v, err := req.Body.LookupErr("lsid"); err == nil {
		b.AppendValue("lsid", v)
	}
	reply, fail := r.runOn(ctx, shard, b.AppendString("$db", db).Build())
	if fail != nil {
		return nil, fail
	}
	if replyCode(reply) != 0 {
		return nil, reply
	}
	first, _ := reply.Lookup("cursor", "firstBatch").ArrayOK()
	v, ierr := first.IndexErr(0)
	if ierr != nil {
		return nil, nil
	}
	return v.Document(), nil
}
