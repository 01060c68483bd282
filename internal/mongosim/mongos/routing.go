package mongos

import (
	"context"
	"fmt"
	"strings"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"github.com/changestream-go/changestream/internal/mongosim/shardkey"
	"github.com/changestream-go/changestream/internal/mongosim/wire"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Commands on a sharded collection, routed by its chunks: a write to the
// shard of its document's key, a query with the whole key in equality to
// that key's shard, any other query to every shard that holds a chunk,
// merged by the router (src/mongo/s/write_ops/, src/mongo/s/query/;
// jstests/sharding/query/ and write_commands_sharded.js). What 8.0 does
// with more machinery than this router has is refused with
// NotImplemented: a single-document write without the whole shard key
// (8.0 runs it as a two-phase "write without shard key"), a write that
// changes a document's shard key, an upsert without the whole key, and a
// distinct across shards.

// runOn sends cmd to shard i's primary and returns its reply, or the
// failure to answer with when the shard could not be reached.
func (r *Router) runOn(ctx context.Context, i int, cmd bsoncore.Document) (reply, fail bsoncore.Document) {
	reply, host, err := r.shards[i].runOnPrimary(ctx, cmd, nil)
	if err != nil {
		return nil, r.shardDown(i, host, err, false)
	}
	r.saw(reply)
	return reply, nil
}

// routeSharded runs a command on the sharded collection sc.
func (r *Router) routeSharded(ctx context.Context, req *wire.Request, name string, sc *shardedColl) bsoncore.Document {
	switch name {
	case "insert":
		return r.routeInsert(ctx, req, sc)
	case "update", "delete":
		return r.routeWrites(ctx, req, name, sc)
	case "findAndModify", "findandmodify":
		return r.routeFindAndModify(ctx, req, sc)
	case "find":
		return r.routeFind(ctx, req, sc)
	case "count":
		return r.routeCount(ctx, req, sc)
	case "aggregate":
		return r.routeAggregate(ctx, req, sc)
	case "distinct":
		filter, _ := docOf(req.Body, "query")
		if i, ok := sc.target(filter); ok {
			return r.forward(ctx, i, req)
		}
		return r.notImplemented("distinct on a sharded collection without the whole shard key in equality")
	case "drop":
		return r.dropSharded(ctx, req, sc)
	case "createIndexes", "dropIndexes":
		return r.toEveryHolder(ctx, req, sc)
	}
	return r.forward(ctx, r.cat.primaryShard(req.DB), req)
}

// docOf decodes the document field key of body (nil if absent).
func docOf(body bsoncore.Document, key string) (bson.D, error) {
	v, err := body.LookupErr(key)
	if err != nil {
		return nil, nil
	}
	raw, ok := v.DocumentOK()
	if !ok {
		return nil, fmt.Errorf("%s must be a document", key)
	}
	var d bson.D
	if err := bson.Unmarshal(raw, &d); err != nil {
		return nil, err
	}
	return d, nil
}

// target returns the shard of the chunk a filter's equality on the whole
// shard key names; false when the filter does not pin the key. A hashed
// collection is whole on one shard: every filter targets it.
func (sc *shardedColl) target(filter bson.D) (int, bool) {
	if sc.hashed() {
		return sc.chunks[0].shard, true
	}
	key, ok := sc.pinnedKey(filter)
	if !ok {
		return 0, false
	}
	return sc.chunkFor(key).shard, true
}

// pinnedKey returns the shard key a filter fixes by equality on every
// key field, at its top level.
func (sc *shardedColl) pinnedKey(filter bson.D) (bson.D, bool) {
	key := make(bson.D, 0, len(sc.key))
	for _, f := range sc.key {
		v, ok := query.Lookup(filter, f.Key)
		if !ok {
			return nil, false
		}
		if d, isDoc := v.(bson.D); isDoc && len(d) > 0 && strings.HasPrefix(d[0].Key, "$") {
			if len(d) != 1 || d[0].Key != "$eq" {
				return nil, false
			}
			v = d[0].Value
		}
		switch v.(type) {
		case bson.A, bson.Regex:
			return nil, false
		}
		key = append(key, bson.E{Key: f.Key, Value: v})
	}
	return key, true
}

// holders returns the shards a scattered command goes to.
func (sc *shardedColl) holders() []int { return sc.shardsHolding() }

// keyIsID reports a key of _id alone, which no write can change.
func (sc *shardedColl) keyIsID() bool { return len(sc.key) == 1 && sc.key[0].Key == "_id" }

// changesKey reports whether update u may change a document's shard key
// away from pinned (nil for a statement without a pinned key).
func (sc *shardedColl) changesKey(u any, pinned bson.D) bool {
	if sc.keyIsID() {
		return false
	}
	switch u := u.(type) {
	case bson.A:
		return true // a pipeline: the router cannot tell
	case bson.D:
		if len(u) == 0 || !strings.HasPrefix(u[0].Key, "$") {
			key, err := shardkey.Of(u, sc.key)
			return err != nil || pinned == nil || shardkey.Compare(key, pinned) != 0
		}
		for _, op := range u {
			fields, _ := op.Value.(bson.D)
			for _, f := range fields {
				for _, k := range sc.key {
					if f.Key == k.Key || strings.HasPrefix(f.Key, k.Key+".") || strings.HasPrefix(k.Key, f.Key+".") {
						return true
					}
				}
			}
		}
	}
	return false
}

// statements returns a write command's statements, from its body or its
// document sequence.
func statements(req *wire.Request, key string) []bsoncore.Document {
	if seq, ok := req.Sequences[key]; ok {
		return seq
	}
	arr, _ := req.Body.Lookup(key).ArrayOK()
	vals, _ := arr.Values()
	out := make([]bsoncore.Document, 0, len(vals))
	for _, v := range vals {
		d, _ := v.DocumentOK()
		out = append(out, d)
	}
	return out
}

// subCommand is req's body for a part of its statements: the same
// options, the statements in the body and, for a retryable write, their
// stmtIds, so that a retry of the part is recognised.
func subCommand(req *wire.Request, key string, stmts []bsoncore.Document, idx []int) bsoncore.Document {
	b := bsoncore.NewDocumentBuilder()
	elems, _ := req.Body.Elements()
	for _, e := range elems {
		if k := e.Key(); k != key && k != "stmtIds" && k != "$db" {
			b.AppendValue(k, e.Value())
		}
	}
	arr := bsoncore.NewArrayBuilder()
	for _, s := range stmts {
		arr.AppendDocument(s)
	}
	b.AppendArray(key, arr.Build())
	if _, err := req.Body.LookupErr("txnNumber"); err == nil {
		ids := bsoncore.NewArrayBuilder()
		for _, i := range idx {
			ids.AppendInt32(int32(i))
		}
		b.AppendArray("stmtIds", ids.Build())
	}
	return b.AppendString("$db", req.DB).Build()
}

// writeResult gathers the parts of a routed write's reply.
type writeResult struct {
	n, nModified int64
	upserted     *bsoncore.ArrayBuilder
	errors       *bsoncore.ArrayBuilder
	failed       bool
	wcError      bsoncore.Value
	hasWCError   bool
}

func newWriteResult() *writeResult {
	return &writeResult{upserted: bsoncore.NewArrayBuilder(), errors: bsoncore.NewArrayBuilder()}
}

// add takes a shard's reply to the part made of the statements idx.
func (w *writeResult) add(reply bsoncore.Document, idx []int) {
	n, _ := reply.Lookup("n").AsInt64OK()
	m, _ := reply.Lookup("nModified").AsInt64OK()
	w.n += n
	w.nModified += m
	remap := func(name string, arr *bsoncore.ArrayBuilder) bool {
		a, ok := reply.Lookup(name).ArrayOK()
		vals, _ := a.Values()
		for _, v := range vals {
			d, _ := v.DocumentOK()
			i, _ := d.Lookup("index").AsInt64OK()
			orig := int64(i)
			if int(i) < len(idx) {
				orig = int64(idx[i])
			}
			arr.AppendDocument(replaceElements(d, map[string]bsoncore.Value{"index": int64Value(orig)}))
		}
		return ok && len(vals) > 0
	}
	remap("upserted", w.upserted)
	if remap("writeErrors", w.errors) {
		w.failed = true
	}
	if v, err := reply.LookupErr("writeConcernError"); err == nil && !w.hasWCError {
		w.wcError, w.hasWCError = v, true
	}
}

func (r *Router) writeReply(w *writeResult, update bool) bsoncore.Document {
	b := bsoncore.NewDocumentBuilder().AppendInt32("n", int32(w.n))
	if update {
		b.AppendInt32("nModified", int32(w.nModified))
		if up := w.upserted.Build(); len(up) > 5 {
			b.AppendArray("upserted", up)
		}
	}
	if errs := w.errors.Build(); len(errs) > 5 {
		b.AppendArray("writeErrors", errs)
	}
	if w.hasWCError {
		b.AppendValue("writeConcernError", w.wcError)
	}
	return r.okReply(b)
}

// writeError is a statement's failure in a routed write's reply.
func writeError(i int, code int32, msg string) bsoncore.Document {
	return bsoncore.NewDocumentBuilder().AppendInt32("index", int32(i)).AppendInt32("code", code).AppendString("errmsg", msg).Build()
}

// routeInsert sends each document to the shard of its key's chunk: an
// ordered insert as runs of consecutive documents for one shard, in
// order, stopping at a run that fails; an unordered one as one part a
// shard. A document without _id gets one here, as mongos gives it.
func (r *Router) routeInsert(ctx context.Context, req *wire.Request, sc *shardedColl) bsoncore.Document {
	docs := statements(req, "documents")
	ordered := true
	if v, ok := req.Body.Lookup("ordered").BooleanOK(); ok {
		ordered = v
	}
	w := newWriteResult()
	shardOf := make([]int, len(docs))
	for i, raw := range docs {
		if _, err := raw.LookupErr("_id"); err != nil {
			docs[i] = withID(raw)
		}
		var d bson.D
		if err := bson.Unmarshal(docs[i], &d); err != nil {
			return r.errorReply(codeBadValue, "insert: "+err.Error())
		}
		shardOf[i] = -1
		if sc.hashed() {
			shardOf[i] = sc.chunks[0].shard
			continue
		}
		key, err := shardkey.Of(d, sc.key)
		if err != nil {
			w.errors.AppendDocument(writeError(i, codeShardKeyNotFound, err.Error()))
			w.failed = true
			if ordered {
				return r.writeReply(w, false)
			}
			continue
		}
		shardOf[i] = sc.chunkFor(key).shard
	}
	var parts [][]int
	if ordered {
		for i, s := range shardOf {
			if len(parts) > 0 && shardOf[parts[len(parts)-1][0]] == s {
				parts[len(parts)-1] = append(parts[len(parts)-1], i)
			} else {
				parts = append(parts, []int{i})
			}
		}
	} else {
		byShard := map[int]int{}
		for i, s := range shardOf {
			if s < 0 {
				continue
			}
			if p, ok := byShard[s]; ok {
				parts[p] = append(parts[p], i)
			} else {
				byShard[s] = len(parts)
				parts = append(parts, []int{i})
			}
		}
	}
	for _, idx := range parts {
		part := make([]bsoncore.Document, len(idx))
		for j, i := range idx {
			part[j] = docs[i]
		}
		reply, fail := r.runOn(ctx, shardOf[idx[0]], subCommand(req, "documents", part, idx))
		if fail != nil {
			return fail
		}
		if replyCode(reply) != 0 {
			return reply
		}
		w.add(reply, idx)
		if ordered && w.failed {
			break
		}
	}
	return r.writeReply(w, false)
}

// withID returns d with a new ObjectId _id first.
func withID(d bsoncore.Document) bsoncore.Document {
	b := bsoncore.NewDocumentBuilder().AppendObjectID("_id", bson.NewObjectID())
	elems, _ := d.Elements()
	for _, e := range elems {
		b.AppendValue(e.Key(), e.Value())
	}
	return b.Build()
}

// routeWrites runs an update's or a delete's statements one at a time,
// each where its filter targets it: one shard for a filter with the whole
// shard key, every shard that holds a chunk for a multi-document write.
func (r *Router) routeWrites(ctx context.Context, req *wire.Request, name string, sc *shardedColl) bsoncore.Document {
	key := "updates"
	if name == "delete" {
		key = "deletes"
	}
	stmts := statements(req, key)
	ordered := true
	if v, ok := req.Body.Lookup("ordered").BooleanOK(); ok {
		ordered = v
	}
	w := newWriteResult()
	for i, s := range stmts {
		filter, err := docOf(s, "q")
		if err != nil {
			return r.errorReply(codeFailedToParse, name+": "+err.Error())
		}
		multi, _ := s.Lookup("multi").BooleanOK()
		if name == "delete" {
			limit, _ := s.Lookup("limit").AsInt64OK()
			multi = limit == 0
		}
		upsert, _ := s.Lookup("upsert").BooleanOK()
		targets := sc.holders()
		if t, ok := sc.target(filter); ok {
			targets = []int{t}
		} else if !multi {
			return r.notImplemented(fmt.Sprintf("a single-document %s on a sharded collection without the whole shard key %s in equality (8.0 runs it as a write without shard key)", name, query.FormatDoc(sc.key)))
		}
		if upsert && len(targets) > 1 {
			return r.notImplemented("an upsert on a sharded collection without the whole shard key in equality")
		}
		if name == "update" {
			pinned, _ := sc.pinnedKey(filter)
			var u any
			if v, err := s.LookupErr("u"); err == nil {
				var wrap bson.D
				_ = bson.Unmarshal(bsoncore.NewDocumentBuilder().AppendValue("u", v).Build(), &wrap)
				u = wrap[0].Value
			}
			if sc.changesKey(u, pinned) {
				return r.notImplemented("an update that may change a document's shard key " + query.FormatDoc(sc.key))
			}
		}
		for _, t := range targets {
			reply, fail := r.runOn(ctx, t, subCommand(req, key, []bsoncore.Document{s}, []int{i}))
			if fail != nil {
				return fail
			}
			if replyCode(reply) != 0 {
				return reply
			}
			w.add(reply, []int{i})
		}
		if ordered && w.failed {
			break
		}
	}
	return r.writeReply(w, name == "update")
}

// routeFindAndModify sends a findAndModify to the shard its query's
// shard key targets.
func (r *Router) routeFindAndModify(ctx context.Context, req *wire.Request, sc *shardedColl) bsoncore.Document {
	filter, err := docOf(req.Body, "query")
	if err != nil {
		return r.errorReply(codeFailedToParse, "findAndModify: "+err.Error())
	}
	t, ok := sc.target(filter)
	if !ok {
		return r.notImplemented("findAndModify on a sharded collection without the whole shard key " + query.FormatDoc(sc.key) + " in equality (8.0 runs it as a write without shard key)")
	}
	if v, err := req.Body.LookupErr("update"); err == nil {
		var wrap bson.D
		_ = bson.Unmarshal(bsoncore.NewDocumentBuilder().AppendValue("u", v).Build(), &wrap)
		pinned, _ := sc.pinnedKey(filter)
		if sc.changesKey(wrap[0].Value, pinned) {
			return r.notImplemented("an update that may change a document's shard key " + query.FormatDoc(sc.key))
		}
	}
	return r.forward(ctx, t, req)
}

// collect reads every document of ns matching filter from shard i.
func (r *Router) collect(ctx context.Context, i int, req *wire.Request, coll string, filter bson.D) (docs []bson.D, fail bsoncore.Document) {
	raw, err := bson.Marshal(filter)
	if err != nil {
		return nil, r.errorReply(codeBadValue, err.Error())
	}
	b := bsoncore.NewDocumentBuilder().AppendString("find", coll).AppendDocument("filter", raw)
	for _, k := range []string{"readConcern", "lsid", "collation"} {
		if v, err := req.Body.LookupErr(k); err == nil {
			b.AppendValue(k, v)
		}
	}
	reply, fail := r.runOn(ctx, i, b.AppendString("$db", req.DB).Build())
	if fail != nil {
		return nil, fail
	}
	var out []bson.D
	batchName := "firstBatch"
	for {
		if replyCode(reply) != 0 {
			return nil, reply
		}
		arr, _ := reply.Lookup("cursor", batchName).ArrayOK()
		vals, _ := arr.Values()
		for _, v := range vals {
			var d bson.D
			if err := bson.Unmarshal(v.Document(), &d); err != nil {
				return nil, r.errorReply(codeBadValue, err.Error())
			}
			out = append(out, d)
		}
		id, _ := reply.Lookup("cursor", "id").AsInt64OK()
		if id == 0 {
			return out, nil
		}
		batchName = "nextBatch"
		gm := bsoncore.NewDocumentBuilder().AppendInt64("getMore", id).AppendString("collection", coll)
		if v, err := req.Body.LookupErr("lsid"); err == nil {
			gm.AppendValue("lsid", v)
		}
		if reply, fail = r.runOn(ctx, i, gm.AppendString("$db", req.DB).Build()); fail != nil {
			return nil, fail
		}
	}
}

// collectAll reads the documents matching filter from every shard that
// holds a chunk of sc.
func (r *Router) collectAll(ctx context.Context, req *wire.Request, sc *shardedColl, filter bson.D) ([]bson.D, bsoncore.Document) {
	_, coll := nsParts(sc.ns)
	var docs []bson.D
	for _, i := range sc.holders() {
		part, fail := r.collect(ctx, i, req, coll, filter)
		if fail != nil {
			return nil, fail
		}
		docs = append(docs, part...)
	}
	return docs, nil
}

// routeFind targets a find whose filter pins the shard key; otherwise it
// reads the matching documents of every shard and applies the sort,
// skip, limit and projection itself.
func (r *Router) routeFind(ctx context.Context, req *wire.Request, sc *shardedColl) bsoncore.Document {
	f, err := parseFind(req.Body)
	if err != nil {
		return r.errorOf(err)
	}
	if t, ok := sc.target(f.filter); ok {
		return r.forward(ctx, t, req)
	}
	docs, fail := r.collectAll(ctx, req, sc, f.filter)
	if fail != nil {
		return fail
	}
	out, err := f.apply(docs)
	if err != nil {
		return r.errorOf(err)
	}
	if single, _ := req.Body.Lookup("singleBatch").BooleanOK(); single {
		f.batchSize = max(len(out), 1)
	}
	return r.openLocal(sc.ns, out, f.batchSize)
}

// routeCount targets or scatters a count.
func (r *Router) routeCount(ctx context.Context, req *wire.Request, sc *shardedColl) bsoncore.Document {
	filter, err := docOf(req.Body, "query")
	if err != nil {
		return r.errorReply(codeFailedToParse, "count: "+err.Error())
	}
	if t, ok := sc.target(filter); ok {
		return r.forward(ctx, t, req)
	}
	docs, fail := r.collectAll(ctx, req, sc, filter)
	if fail != nil {
		return fail
	}
	f := findSpec{filter: filter}
	f.skip, _ = req.Body.Lookup("skip").AsInt64OK()
	f.limit, _ = req.Body.Lookup("limit").AsInt64OK()
	out, err := f.apply(docs)
	if err != nil {
		return r.errorOf(err)
	}
	return r.okReply(bsoncore.NewDocumentBuilder().AppendInt32("n", int32(len(out))))
}

// routeAggregate targets an aggregate whose leading $match pins the shard
// key; otherwise it reads the documents that $match selects from every
// shard and runs the rest of the pipeline itself.
func (r *Router) routeAggregate(ctx context.Context, req *wire.Request, sc *shardedColl) bsoncore.Document {
	arr, _ := req.Body.Lookup("pipeline").ArrayOK()
	var wrap struct {
		P []bson.D `bson:"p"`
	}
	if err := bson.Unmarshal(bsoncore.NewDocumentBuilder().AppendArray("p", arr).Build(), &wrap); err != nil {
		return r.errorReply(codeFailedToParse, "aggregate: the pipeline must be an array of documents")
	}
	var filter bson.D
	stages := wrap.P
	if len(stages) > 0 && len(stages[0]) == 1 && stages[0][0].Key == "$match" {
		filter, _ = stages[0][0].Value.(bson.D)
		stages = stages[1:]
	}
	if t, ok := sc.target(filter); ok {
		return r.forward(ctx, t, req)
	}
	for _, st := range stages {
		switch st[0].Key {
		case "$out", "$merge", "$lookup", "$graphLookup", "$unionWith", "$facet":
			return r.notImplemented(st[0].Key + " in an aggregate scattered across the shards of a sharded collection")
		}
	}
	docs, fail := r.collectAll(ctx, req, sc, filter)
	if fail != nil {
		return fail
	}
	out, err := query.RunStages(docs, stages)
	if err != nil {
		return r.errorOf(err)
	}
	n, _ := req.Body.Lookup("cursor", "batchSize").AsInt64OK()
	return r.openLocal(sc.ns, out, int(n))
}

// toEveryHolder sends an index command to every shard that holds a
// chunk, and its primary shard, answering with the primary's reply.
func (r *Router) toEveryHolder(ctx context.Context, req *wire.Request, sc *shardedColl) bsoncore.Document {
	primary := r.cat.primaryShard(req.DB)
	for _, i := range sc.holders() {
		if i == primary {
			continue
		}
		reply, fail := r.runOn(ctx, i, req.Body)
		if fail != nil {
			return fail
		}
		if replyCode(reply) != 0 {
			return reply
		}
	}
	return r.forward(ctx, primary, req)
}

// dropSharded drops a sharded collection as 8.0's drop coordinator does:
// the shards other than the primary first, fromMigrate, then the primary
// shard, whose drop is the collection's one drop event.
func (r *Router) dropSharded(ctx context.Context, req *wire.Request, sc *shardedColl) bsoncore.Document {
	if reply := r.dropParticipants(ctx, req, sc); reply != nil {
		return reply
	}
	reply := r.forward(ctx, r.cat.primaryShard(req.DB), req)
	if replyCode(reply) == 0 {
		r.cat.dropCollection(sc.ns)
	}
	return reply
}

// dropParticipants drops sc on every shard but the primary, fromMigrate.
func (r *Router) dropParticipants(ctx context.Context, req *wire.Request, sc *shardedColl) bsoncore.Document {
	db, coll := nsParts(sc.ns)
	primary := r.cat.primaryShard(db)
	for i := range r.shards {
		if i == primary {
			continue
		}
		b := bsoncore.NewDocumentBuilder().AppendString("_shardsvrDropCollectionParticipant", coll).AppendBoolean("fromMigrate", true)
		if v, err := req.Body.LookupErr("lsid"); err == nil {
			b.AppendValue("lsid", v)
		}
		reply, fail := r.runOn(ctx, i, b.AppendString("$db", db).Build())
		if fail != nil {
			return fail
		}
		if replyCode(reply) != 0 {
			return reply
		}
	}
	return nil
}
