package mongos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/wire"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// routed are the commands the router sends to the primary shard of the
// database they name, as it does for an unsharded collection.
var routed = map[string]bool{
	"insert": true, "update": true, "delete": true, "find": true, "findAndModify": true,
	"aggregate": true, "count": true, "distinct": true, "create": true, "drop": true,
	"collMod": true, "listCollections": true, "listIndexes": true, "createIndexes": true,
	"dropIndexes": true, "dropDatabase": true, "dbStats": true, "collStats": true,
}

// refused are commands a real router takes and this one does not: each
// is refused with NotImplemented, never accepted and ignored.
var refused = map[string]string{
	"shardCollection": "sharded collections (shardCollection)", "split": "chunk splits (split)",
	"moveChunk": "chunk migrations (moveChunk)", "moveRange": "chunk migrations (moveRange)",
	"movePrimary": "movePrimary", "addShard": "adding shards (addShard)", "removeShard": "removing shards (removeShard)",
	"balancerStart": "the balancer", "balancerStop": "the balancer", "balancerStatus": "the balancer",
	"reshardCollection": "resharding", "refineCollectionShardKey": "refineCollectionShardKey",
	"addShardToZone": "zones", "removeShardFromZone": "zones", "updateZoneKeyRanges": "zones",
	"configureFailPoint": "fail points on mongos (set them on a shard's members)",
	"commitTransaction":  "transactions through mongos", "abortTransaction": "transactions through mongos",
}

// handle answers one request.
func (r *Router) handle(ctx context.Context, req *wire.Request, connID int64) bsoncore.Document {
	if ts, ok := gossipedTime(req.Body); ok {
		r.sawTime(ts)
	}
	name := ""
	if e, err := req.Body.IndexErr(0); err == nil {
		name = e.Key()
	}
	if _, err := req.Body.LookupErr("startTransaction"); err == nil {
		return r.notImplemented("transactions through mongos")
	}
	switch name {
	case "hello", "isMaster", "ismaster":
		return r.hello(req, name, connID)
	case "ping":
		return r.okReply(nil)
	case "buildInfo", "buildinfo", "getParameter":
		// The router answers as the shards' version, whose build it is.
		return r.forward(ctx, 0, req)
	case "endSessions", "killSessions", "killAllSessions":
		return r.broadcast(ctx, req)
	case "listDatabases":
		return r.listDatabases(ctx, req)
	case "enableSharding":
		// Accepted without effect, as since 6.0: a database is created
		// on its primary shard at its first write.
		return r.okReply(nil)
	case "listShards":
		return r.listShards()
	case "getMore":
		return r.getMore(ctx, req)
	case "killCursors":
		return r.killCursors(ctx, req)
	}
	if what, ok := refused[name]; ok {
		return r.notImplemented(what)
	}
	if name == "aggregate" && isChangeStream(req.Body) {
		return r.openChangeStream(ctx, req)
	}
	if routed[name] && req.DB != "admin" && req.DB != "config" && req.DB != "local" {
		return r.forward(ctx, r.cat.primaryShard(req.DB), req)
	}
	if name == "" {
		return r.errorReply(codeFailedToParse, "no command")
	}
	return r.errorReply(codeCommandNotFound, fmt.Sprintf("no such command: '%s' (the simulated mongos does not implement it)", name))
}

// maxWireVersion is what the router reports, as the shards' (8.0).
const maxWireVersion = 25

// hello answers as a mongos does: writable, msg "isdbgrid", no set name
// and no hosts.
func (r *Router) hello(req *wire.Request, name string, connID int64) bsoncore.Document {
	b := bsoncore.NewDocumentBuilder()
	if name == "hello" {
		b.AppendBoolean("isWritablePrimary", true)
	} else {
		b.AppendBoolean("ismaster", true)
	}
	if _, err := req.Body.LookupErr("helloOk"); err == nil {
		b.AppendBoolean("helloOk", true)
	}
	b.AppendString("msg", "isdbgrid").
		AppendInt32("maxBsonObjectSize", wire.MaxBSONObjectSize).
		AppendInt32("maxMessageSizeBytes", wire.MaxMessageSizeBytes).
		AppendInt32("maxWriteBatchSize", wire.MaxWriteBatchSize).
		AppendDateTime("localTime", time.Now().UnixMilli()).
		AppendInt32("logicalSessionTimeoutMinutes", 30).
		AppendInt64("connectionId", connID).
		AppendInt32("minWireVersion", 0).
		AppendInt32("maxWireVersion", maxWireVersion).
		AppendBoolean("readOnly", false)
	return r.okReply(b)
}

// forward sends req to shard i's primary and returns the reply, with any
// cursor it opened taken over by the router.
func (r *Router) forward(ctx context.Context, i int, req *wire.Request) bsoncore.Document {
	reply, host, err := r.shards[i].runOnPrimary(ctx, req.Body, req.Sequences)
	if err != nil {
		return r.shardDown(i, host, err, false)
	}
	r.saw(reply)
	id, _ := reply.Lookup("cursor", "id").AsInt64OK()
	if id == 0 {
		return reply
	}
	ns, _ := reply.Lookup("cursor", "ns").StringValueOK()
	rid := r.registerCursor(&shardCursor{shard: r.shards[i], host: host, id: id, ns: ns})
	return withCursorID(reply, rid)
}

// shardDown is the reply for a command a shard could not answer: no
// primary (FailedToSatisfyReadPreference) or a network error
// (HostUnreachable). For a change stream both are resumable, as
// error_labels.cpp labels them.
func (r *Router) shardDown(i int, host string, err error, stream bool) bsoncore.Document {
	var labels []string
	if stream {
		labels = []string{"ResumableChangeStreamError"}
	}
	if errors.Is(err, errNoPrimary) {
		s := r.shards[i].shard
		return r.errorReply(codeFailedToSatisfyReadPreference,
			fmt.Sprintf("Could not find host matching read preference { mode: \"primary\" } for set %s", s.Name), labels...)
	}
	return r.errorReply(codeHostUnreachable, remoteError(host, err), labels...)
}

// saw takes a shard reply's cluster time.
func (r *Router) saw(reply bsoncore.Document) {
	if ts, ok := gossipedTime(reply); ok {
		r.sawTime(ts)
	}
}

// broadcast sends req to every shard's primary: a session command, which
// every shard must hear.
func (r *Router) broadcast(ctx context.Context, req *wire.Request) bsoncore.Document {
	for i, s := range r.shards {
		reply, host, err := s.runOnPrimary(ctx, req.Body, req.Sequences)
		if err != nil {
			return r.shardDown(i, host, err, false)
		}
		r.saw(reply)
		if replyCode(reply) != 0 {
			return reply
		}
	}
	return r.okReply(nil)
}

// listDatabases merges every shard's list, by name.
func (r *Router) listDatabases(ctx context.Context, req *wire.Request) bsoncore.Document {
	nameOnly, _ := req.Body.Lookup("nameOnly").BooleanOK()
	seen := map[string]bool{}
	arr := bsoncore.NewArrayBuilder()
	for i, s := range r.shards {
		reply, host, err := s.runOnPrimary(ctx, req.Body, nil)
		if err != nil {
			return r.shardDown(i, host, err, false)
		}
		r.saw(reply)
		if replyCode(reply) != 0 {
			return reply
		}
		dbs, _ := reply.Lookup("databases").ArrayOK()
		vals, _ := dbs.Values()
		for _, v := range vals {
			d, _ := v.DocumentOK()
			name, _ := d.Lookup("name").StringValueOK()
			if name == "" || seen[name] || name == "local" {
				continue
			}
			seen[name] = true
			if nameOnly {
				arr.AppendDocument(bsoncore.NewDocumentBuilder().AppendString("name", name).Build())
			} else {
				arr.AppendDocument(bsoncore.NewDocumentBuilder().AppendString("name", name).AppendInt64("sizeOnDisk", 0).AppendBoolean("empty", false).Build())
			}
		}
	}
	return r.okReply(bsoncore.NewDocumentBuilder().AppendArray("databases", arr.Build()))
}

// listShards answers from the catalog: each shard's host as
// "rsName/host1,host2,...", so a test can reach its members.
func (r *Router) listShards() bsoncore.Document {
	arr := bsoncore.NewArrayBuilder()
	for _, s := range r.cat.Shards() {
		arr.AppendDocument(bsoncore.NewDocumentBuilder().AppendString("_id", s.Name).AppendString("host", s.host()).AppendInt32("state", 1).Build())
	}
	return r.okReply(bsoncore.NewDocumentBuilder().AppendArray("shards", arr.Build()))
}

// withCursorID returns reply with its cursor's id replaced.
func withCursorID(reply bsoncore.Document, id int64) bsoncore.Document {
	cur, _ := reply.Lookup("cursor").DocumentOK()
	cur = replaceElements(cur, map[string]bsoncore.Value{"id": int64Value(id)})
	return replaceElements(reply, map[string]bsoncore.Value{"cursor": {Type: bsoncore.TypeEmbeddedDocument, Data: cur}})
}

func int64Value(n int64) bsoncore.Value {
	return bsoncore.Value{Type: bsoncore.TypeInt64, Data: bsoncore.AppendInt64(nil, n)}
}

// nsParts splits "db.coll".
func nsParts(ns string) (db, coll string) {
	db, coll, _ = strings.Cut(ns, ".")
	return db, coll
}
