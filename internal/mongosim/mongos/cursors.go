package mongos

import (
	"context"
	"fmt"

	"github.com/changestream-go/changestream/internal/mongosim/wire"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// cursor is a cursor of the router's: it lives on the router that opened
// it, and on no other.
type cursor interface {
	// getMore answers a getMore of the router's cursor id.
	getMore(ctx context.Context, r *Router, req *wire.Request, id int64) bsoncore.Document
	// kill kills the shard cursors behind it.
	kill(ctx context.Context, r *Router, req *wire.Request)
}

// shardCursor is the cursor of a command routed to one shard: its
// getMores go to the member that holds it.
type shardCursor struct {
	shard *shardClient
	host  string
	id    int64
	ns    string
}

func (c *shardCursor) getMore(ctx context.Context, r *Router, req *wire.Request, id int64) bsoncore.Document {
	body := replaceElements(req.Body, map[string]bsoncore.Value{"getMore": int64Value(c.id)})
	reply, err := c.shard.run(ctx, c.host, body, nil)
	if err != nil {
		r.dropCursor(id)
		return r.errorReply(codeHostUnreachable, remoteError(c.host, err))
	}
	r.saw(reply)
	if replyCode(reply) != 0 {
		r.dropCursor(id)
		return reply
	}
	if next, _ := reply.Lookup("cursor", "id").AsInt64OK(); next == 0 {
		r.dropCursor(id)
		return reply
	}
	return withCursorID(reply, id)
}

func (c *shardCursor) kill(ctx context.Context, r *Router, req *wire.Request) {
	killShardCursor(ctx, c.shard, c.host, c.ns, c.id, req)
}

// killShardCursor kills a shard's cursor, in the session of req.
func killShardCursor(ctx context.Context, sc *shardClient, host, ns string, id int64, req *wire.Request) {
	db, coll := nsParts(ns)
	b := bsoncore.NewDocumentBuilder().AppendString("killCursors", coll).
		AppendArray("cursors", bsoncore.NewArrayBuilder().AppendInt64(id).Build()).
		AppendString("$db", db)
	if req != nil {
		if lsid, err := req.Body.LookupErr("lsid"); err == nil {
			b.AppendValue("lsid", lsid)
		}
	}
	_, _ = sc.run(ctx, host, b.Build(), nil)
}

// getMore runs a getMore of one of the router's cursors.
func (r *Router) getMore(ctx context.Context, req *wire.Request) bsoncore.Document {
	id, ok := req.Body.Lookup("getMore").Int64OK()
	if !ok {
		return r.errorReply(codeFailedToParse, "getMore's cursor id must be a long")
	}
	c, ok := r.cursor(id)
	if !ok {
		return r.errorReply(codeCursorNotFound, fmt.Sprintf("cursor id %d not found", id))
	}
	return c.getMore(ctx, r, req, id)
}

// killCursors kills the router's cursors it names.
func (r *Router) killCursors(ctx context.Context, req *wire.Request) bsoncore.Document {
	arr, ok := req.Body.Lookup("cursors").ArrayOK()
	if !ok {
		return r.errorReply(codeFailedToParse, "killCursors needs an array of cursor ids")
	}
	vals, _ := arr.Values()
	killed, notFound := bsoncore.NewArrayBuilder(), bsoncore.NewArrayBuilder()
	for _, v := range vals {
		id, ok := v.Int64OK()
		if !ok {
			return r.errorReply(codeFailedToParse, "killCursors: cursor ids must be longs")
		}
		c, found := r.cursor(id)
		if !found {
			notFound.AppendInt64(id)
			continue
		}
		r.dropCursor(id)
		c.kill(ctx, r, req)
		killed.AppendInt64(id)
	}
	return r.okReply(bsoncore.NewDocumentBuilder().
		AppendArray("cursorsKilled", killed.Build()).
		AppendArray("cursorsNotFound", notFound.Build()).
		AppendArray("cursorsAlive", bsoncore.NewArrayBuilder().Build()).
		AppendArray("cursorsUnknown", bsoncore.NewArrayBuilder().Build()))
}
