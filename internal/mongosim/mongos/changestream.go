package mongos

import (
	"context"
	"encoding/hex"
	"sync"
	"time"

	"github.com/changestream-go/changestream/internal/keystring"
	"github.com/changestream-go/changestream/internal/mongosim/wire"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// A change stream on mongos targets every shard, even for an unsharded
// collection, and merges their events by resume token (_id._data, whose
// KeyString orders by cluster time first). Each shard's
// postBatchResumeToken is its promise that nothing earlier will come
// from it: an event is released only once every shard has promised past
// it, so an idle shard holds back a busy one until its no-op writer moves
// its oplog. When nothing is ready, the smallest promise is the stream's
// postBatchResumeToken. (src/mongo/s/query/exec/async_results_merger.cpp,
// src/mongo/db/pipeline/document_source_change_stream*.cpp; jstests/
// sharding/change_stream_*.js.)

// isChangeStream reports an aggregate whose first stage is $changeStream.
func isChangeStream(cmd bsoncore.Document) bool {
	_, ok := changeStreamStage(cmd)
	return ok
}

func changeStreamStage(cmd bsoncore.Document) (bsoncore.Document, bool) {
	arr, ok := cmd.Lookup("pipeline").ArrayOK()
	if !ok {
		return nil, false
	}
	first, err := arr.IndexErr(0)
	if err != nil {
		return nil, false
	}
	stage, ok := first.DocumentOK()
	if !ok {
		return nil, false
	}
	spec, ok := stage.Lookup("$changeStream").DocumentOK()
	return spec, ok
}

// newShardDetected is the event type of a shard's note that a chunk
// moved to a shard that had none of the collection: the router's to act
// on, never passed to the client (migrateChunkToNewShard).
const newShardDetected = "kNewShardDetected"

// shardAwait caps the await of each getMore the router sends a shard:
// mongos honours the client's maxTimeMS itself.
const shardAwait = time.Second

// shardStream is one shard's part of a merged stream.
type shardStream struct {
	shard *shardClient
	host  string
	id    int64
	buf   []bsoncore.Document // events not returned yet, in the shard's order
	pbrt  bsoncore.Document   // the shard's promise: its postBatchResumeToken
	done  bool                // the shard closed its cursor
}

// streamCursor is a merged change stream of the router's.
type streamCursor struct {
	mu       sync.Mutex // one getMore at a time
	ns       string
	shards   []*shardStream
	returned bsoncore.Document // the postBatchResumeToken last returned
	// verify is the event token the stream resumed after, until the
	// merged stream meets it: the shard that has it returns it, and the
	// router swallows it; an event past it means no shard had it.
	verify bsoncore.Document
	// merger is the work the router does on the merged events itself
	// (updateLookup and the stages after it); nil for none.
	merger *mergerStages
}

// openChangeStream opens the stream on every shard and answers with an
// empty first batch, as mongos always does.
func (r *Router) openChangeStream(ctx context.Context, req *wire.Request) bsoncore.Document {
	spec, _ := changeStreamStage(req.Body)
	pipeline, _ := req.Body.Lookup("pipeline").ArrayOK()
	started := false
	c := &streamCursor{}
	for _, k := range []string{"resumeAfter", "startAfter", "startAtOperationTime"} {
		v, err := spec.LookupErr(k)
		if err != nil {
			continue
		}
		started = true
		// A fragment's token is the shards' to check: the one with the
		// event splits it again and returns the fragments after it, and
		// after the last one nothing at all, which the router cannot
		// tell from a shard that never had the event.
		if tok, ok := v.DocumentOK(); ok && isEventToken(tok) && !isFragmentToken(tok) {
			// A copy: the request aliases the connection's read buffer.
			c.verify = append(bsoncore.Document(nil), tok...)
		}
	}
	if !started {
		// Every shard starts at one time, just past the latest any of
		// them has reached, so that none reports events the others
		// started after.
		at, reply := r.shardsTime(ctx)
		if reply != nil {
			return reply
		}
		at.I++
		spec = replaceElements(spec, map[string]bsoncore.Value{"startAtOperationTime": {Type: bsoncore.TypeTimestamp, Data: bsoncore.AppendTimestamp(nil, at.T, at.I)}})
		stages, _ := pipeline.Values()
		b := bsoncore.NewArrayBuilder().AppendDocument(bsoncore.NewDocumentBuilder().AppendDocument("$changeStream", spec).Build())
		for _, st := range stages[1:] {
			b.AppendValue(st)
		}
		pipeline = b.Build()
	}
	pipeline, merger, fail := r.splitForLookup(spec, pipeline)
	if fail != nil {
		return fail
	}
	c.merger = merger
	body := replaceElements(req.Body, map[string]bsoncore.Value{
		"pipeline":   {Type: bsoncore.TypeArray, Data: pipeline},
		"cursor":     {Type: bsoncore.TypeEmbeddedDocument, Data: bsoncore.NewDocumentBuilder().AppendInt32("batchSize", 0).Build()},
		"fromMongos": {Type: bsoncore.TypeBoolean, Data: bsoncore.AppendBoolean(nil, true)},
		"needsMerge": {Type: bsoncore.TypeBoolean, Data: bsoncore.AppendBoolean(nil, true)},
	})
	for i, sc := range r.shards {
		reply, host, err := sc.readOnPrimary(ctx, body)
		if err == nil && replyCode(reply) != 0 {
			c.killLocked(ctx, req) // not registered yet: nobody else has it
			return reply
		}
		if err != nil {
			c.killLocked(ctx, req)
			return r.shardDown(i, host, err, true)
		}
		r.saw(reply)
		ss := &shardStream{shard: sc, host: host}
		ss.id, _ = reply.Lookup("cursor", "id").AsInt64OK()
		ss.done = ss.id == 0
		ss.absorb(reply, "firstBatch")
		if c.ns == "" {
			c.ns, _ = reply.Lookup("cursor", "ns").StringValueOK()
		}
		c.shards = append(c.shards, ss)
	}
	id := r.registerCursor(c)
	_, promise := c.promise()
	if c.verify != nil {
		promise = c.verify
	}
	c.returned = promise
	return r.cursorReply("firstBatch", nil, promise, id, c.ns)
}

// shardsTime returns the latest cluster time any shard's primary has
// reached, asking each with ping.
func (r *Router) shardsTime(ctx context.Context) (bson.Timestamp, bsoncore.Document) {
	ping := bsoncore.NewDocumentBuilder().AppendInt32("ping", 1).AppendString("$db", "admin").Build()
	var latest bson.Timestamp
	for i, sc := range r.shards {
		reply, host, err := sc.readOnPrimary(ctx, ping)
		if err != nil {
			return latest, r.shardDown(i, host, err, true)
		}
		r.saw(reply)
		if t, i, ok := reply.Lookup("operationTime").TimestampOK(); ok && (bson.Timestamp{T: t, I: i}).After(latest) {
			latest = bson.Timestamp{T: t, I: i}
		}
	}
	return latest, nil
}

// absorb takes a shard reply's batch and promise.
func (ss *shardStream) absorb(reply bsoncore.Document, batch string) {
	arr, _ := reply.Lookup("cursor", batch).ArrayOK()
	vals, _ := arr.Values()
	for _, v := range vals {
		d, ok := v.DocumentOK()
		if !ok {
			continue
		}
		if op, _ := d.Lookup("operationType").StringValueOK(); op == newShardDetected {
			// The router's own: the stream already reads every shard.
			continue
		}
		ss.buf = append(ss.buf, d)
	}
	if p, ok := reply.Lookup("cursor", "postBatchResumeToken").DocumentOK(); ok {
		ss.pbrt = p
	}
}

// point is where a token puts the stream, in the members' order: by
// cluster time, then by the token's KeyString; a high-water mark at T
// comes after every event at T, since a member emits one only once every
// event at or before T is out, and resumes from it after T.
type point struct {
	ts   uint64 // the cluster time, T<<32 | I
	hwm  bool
	data string
}

func pointOf(token bsoncore.Document) point {
	d := tokenData(token)
	p := point{data: d}
	raw, err := hex.DecodeString(d)
	if err != nil {
		return p
	}
	r := keystring.NewReader(raw)
	t, i, err := r.Timestamp()
	if err != nil {
		return p
	}
	p.ts = uint64(t)<<32 | uint64(i)
	p.hwm = !isEventToken(token)
	return p
}

// before reports whether a comes before b.
func (a point) before(b point) bool {
	switch {
	case a.ts != b.ts:
		return a.ts < b.ts
	case a.hwm != b.hwm:
		return b.hwm
	}
	return a.data < b.data
}

// tokenData is a token's _data string, by which tokens order.
func tokenData(token bsoncore.Document) string {
	s, _ := token.Lookup("_data").StringValueOK()
	return s
}

func eventPoint(ev bsoncore.Document) point {
	tok, _ := ev.Lookup("_id").DocumentOK()
	return pointOf(tok)
}

// promise returns the smallest promise of the shards still open, as a
// point and a token; the token is nil while one has promised nothing yet
// (or none is open).
func (c *streamCursor) promise() (bound point, token bsoncore.Document) {
	first := true
	for _, ss := range c.shards {
		if ss.done {
			continue
		}
		if ss.pbrt == nil {
			return point{}, nil
		}
		if p := pointOf(ss.pbrt); first || p.before(bound) {
			bound, token, first = p, ss.pbrt, false
		}
	}
	return bound, token
}

// maxBatchBytes bounds a batch's events, as a reply must fit in 16 MiB.
const maxBatchBytes = wire.MaxBSONObjectSize - 64<<10

// release takes the ready events, in merged order: those at or before
// every open shard's promise. more reports ready events left behind by
// the batch size; notFound, that the first event came after the token
// the stream resumed from, which no shard had.
func (c *streamCursor) release(limit int) (batch []bsoncore.Document, more, notFound bool) {
	bound, token := c.promise()
	allDone := token == nil && c.allDone()
	size := 0
	for {
		var next *shardStream
		for _, ss := range c.shards {
			if len(ss.buf) == 0 {
				continue
			}
			p := eventPoint(ss.buf[0])
			if !allDone && (token == nil || bound.before(p)) {
				continue
			}
			if next == nil || p.before(eventPoint(next.buf[0])) {
				next = ss
			}
		}
		if next == nil {
			return batch, false, false
		}
		if c.verify != nil {
			switch p := eventPoint(next.buf[0]); {
			case p.data == tokenData(c.verify):
				next.buf = next.buf[1:] // returned before the resume
				c.verify = nil
				continue
			case pointOf(c.verify).before(p):
				return nil, false, true
			}
		}
		if (limit > 0 && len(batch) == limit) || (len(batch) > 0 && size+len(next.buf[0]) > maxBatchBytes) {
			return batch, true, false
		}
		ev := next.buf[0]
		next.buf = next.buf[1:]
		batch = append(batch, ev)
		size += len(ev)
		if op, _ := ev.Lookup("operationType").StringValueOK(); op == "invalidate" {
			return batch, false, false
		}
	}
}

func (c *streamCursor) allDone() bool {
	for _, ss := range c.shards {
		if !ss.done {
			return false
		}
	}
	return true
}

func (c *streamCursor) getMore(ctx context.Context, r *Router, req *wire.Request, id int64) bsoncore.Document {
	c.mu.Lock()
	defer c.mu.Unlock()
	limit := 0
	if n, ok := req.Body.Lookup("batchSize").AsInt64OK(); ok && n > 0 {
		limit = int(n)
	}
	wait := shardAwait
	if ms, ok := req.Body.Lookup("maxTimeMS").AsInt64OK(); ok && ms > 0 {
		wait = time.Duration(ms) * time.Millisecond
	}
	deadline := time.Now().Add(wait)
	for {
		batch, more, notFound := c.release(limit)
		if notFound {
			r.dropCursor(id)
			c.killLocked(ctx, req)
			return r.errorReply(codeChangeStreamFatalError, "cannot resume stream; the resume token was not found. "+bson.Raw(c.verify).String(),
				"NonResumableChangeStreamError")
		}
		if c.merger != nil && len(batch) > 0 {
			var fail bsoncore.Document
			if batch, fail = c.merger.apply(ctx, r, req, batch); fail != nil {
				r.dropCursor(id)
				c.killLocked(ctx, req)
				return fail
			}
		}
		remaining := time.Until(deadline)
		if len(batch) > 0 || remaining <= 0 || c.allDone() || ctx.Err() != nil {
			return c.reply(ctx, r, req, id, batch, more)
		}
		if reply := c.fetch(ctx, r, req, min(remaining, shardAwait)); reply != nil {
			r.dropCursor(id)
			c.killLocked(ctx, req)
			return reply
		}
	}
}

// fetch sends a getMore to every open shard that has nothing buffered,
// at once, and takes their batches; it returns the reply of a failure.
func (c *streamCursor) fetch(ctx context.Context, r *Router, req *wire.Request, await time.Duration) bsoncore.Document {
	db, coll := nsParts(c.ns)
	lsid, lsidErr := req.Body.LookupErr("lsid")
	var wg sync.WaitGroup
	failures := make([]bsoncore.Document, len(c.shards))
	for i, ss := range c.shards {
		if ss.done || len(ss.buf) > 0 {
			continue
		}
		b := bsoncore.NewDocumentBuilder().AppendInt64("getMore", ss.id).AppendString("collection", coll).
			AppendInt64("maxTimeMS", max(await.Milliseconds(), 1)).AppendString("$db", db)
		if lsidErr == nil {
			b.AppendValue("lsid", lsid)
		}
		body := b.Build()
		wg.Add(1)
		go func() {
			defer wg.Done()
			reply, err := ss.shard.run(ctx, ss.host, body, nil)
			switch {
			case err != nil:
				failures[i] = r.errorReply(codeHostUnreachable, remoteError(ss.host, err), "ResumableChangeStreamError")
			case replyCode(reply) != 0:
				failures[i] = reply
			default:
				r.saw(reply)
				ss.absorb(reply, "nextBatch")
				if next, _ := reply.Lookup("cursor", "id").AsInt64OK(); next == 0 {
					ss.done = true
				}
			}
		}()
	}
	wg.Wait()
	for i, f := range failures {
		if f != nil {
			c.shards[i].done = true // its cursor is gone with the error
			return f
		}
	}
	return nil
}

// reply answers a getMore with batch, whose postBatchResumeToken is the
// last event's token or, once every ready event is out, the smallest
// promise if it is later; never one before the last returned. After an
// invalidate the cursor is closed.
func (c *streamCursor) reply(ctx context.Context, r *Router, req *wire.Request, id int64, batch []bsoncore.Document, more bool) bsoncore.Document {
	pbrt := c.returned
	if n := len(batch); n > 0 {
		if tok, ok := batch[n-1].Lookup("_id").DocumentOK(); ok {
			pbrt = tok
		}
	}
	if bound, promise := c.promise(); !more && promise != nil && c.verify == nil && (pbrt == nil || pointOf(pbrt).before(bound)) {
		pbrt = promise
	}
	if pbrt != nil && c.returned != nil && pointOf(pbrt).before(pointOf(c.returned)) {
		pbrt = c.returned
	}
	c.returned = pbrt
	next := id
	if n := len(batch); n > 0 {
		if op, _ := batch[n-1].Lookup("operationType").StringValueOK(); op == "invalidate" {
			next = 0
		}
	}
	if c.allDone() && !c.buffered() {
		next = 0
	}
	if next == 0 {
		r.dropCursor(id)
		c.killLocked(ctx, req)
	}
	return r.cursorReply("nextBatch", batch, pbrt, next, c.ns)
}

func (c *streamCursor) buffered() bool {
	for _, ss := range c.shards {
		if len(ss.buf) > 0 {
			return true
		}
	}
	return false
}

// kill is a client's killCursors: it waits for a getMore in progress,
// whose fetches use the shard cursors.
func (c *streamCursor) kill(ctx context.Context, _ *Router, req *wire.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.killLocked(ctx, req)
}

// killLocked kills the shard cursors still open; c.mu is held, or c is
// not registered yet.
func (c *streamCursor) killLocked(ctx context.Context, req *wire.Request) {
	for _, ss := range c.shards {
		if !ss.done {
			killShardCursor(ctx, ss.shard, ss.host, c.ns, ss.id, req)
			ss.done = true
		}
	}
}

// cursorReply is {cursor: {<batchKey>: batch, postBatchResumeToken, id,
// ns}, ok: 1}.
func (r *Router) cursorReply(batchKey string, batch []bsoncore.Document, pbrt bsoncore.Document, id int64, ns string) bsoncore.Document {
	arr := bsoncore.NewArrayBuilder()
	for _, ev := range batch {
		arr.AppendDocument(ev)
	}
	cur := bsoncore.NewDocumentBuilder().AppendArray(batchKey, arr.Build())
	if pbrt != nil {
		cur.AppendDocument("postBatchResumeToken", pbrt)
	}
	cur.AppendInt64("id", id).AppendString("ns", ns)
	return r.okReply(bsoncore.NewDocumentBuilder().AppendDocument("cursor", cur.Build()))
}

// isFragmentToken reports a token of a fragment of a split event: after
// the event's identity ({operationType, documentKey} or
// {operationType, operationDescription}) its KeyString holds a
// fragmentNum.
func isFragmentToken(token bsoncore.Document) bool {
	raw, err := hex.DecodeString(tokenData(token))
	if err != nil {
		return false
	}
	r := keystring.NewReader(raw)
	if _, _, err := r.Timestamp(); err != nil {
		return false
	}
	for range 3 { // version, token type, txnOpIndex
		if _, err := r.Integer(); err != nil {
			return false
		}
	}
	if _, err := r.Bool(); err != nil { // fromInvalidate
		return false
	}
	if r.IsBinary() {
		if _, _, err := r.Binary(); err != nil {
			return false
		}
		if r.IsObject() {
			if _, err := r.Skip(); err != nil {
				return false
			}
		}
	}
	return r.IsNumber()
}

// isEventToken reports whether token names an event rather than a
// high-water mark: its KeyString holds the cluster time, the token
// version and, from version 1, the token type (128 for an event).
func isEventToken(token bsoncore.Document) bool {
	raw, err := hex.DecodeString(tokenData(token))
	if err != nil {
		return false
	}
	r := keystring.NewReader(raw)
	if _, _, err := r.Timestamp(); err != nil {
		return false
	}
	version, err := r.Integer()
	if err != nil || version < 1 {
		return err == nil // a version 0 token names an event
	}
	typ, err := r.Integer()
	return err == nil && typ == 128
}
