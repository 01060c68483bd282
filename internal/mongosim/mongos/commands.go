package mongos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/failpoint"
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
	"moveRange":   "chunk migrations by moveRange (moveChunk is implemented)",
	"splitChunk":  "splitChunk (split is implemented)",
	"mergeChunks": "merging chunks (mergeChunks)",
	"movePrimary": "movePrimary", "addShard": "adding shards (addShard)", "removeShard": "removing shards (removeShard)",
	"balancerStart": "the balancer", "balancerStop": "the balancer", "balancerStatus": "the balancer",
	"reshardCollection": "resharding",
	"addShardToZone":    "zones", "removeShardFromZone": "zones", "updateZoneKeyRanges": "zones",
}

// session is one client connection's state.
type session struct {
	id      int64
	appName string // from the handshake's client.application.name
}

// errCloseConnection is handle's answer for a connection to close
// without a reply (failCommand's closeConnection).
var errCloseConnection = errors.New("mongos: close the connection")

// handle answers one request, or returns errCloseConnection.
func (r *Router) handle(ctx context.Context, req *wire.Request, sess *session) (bsoncore.Document, error) {
	if ts, ok := gossipedTime(req.Body); ok {
		r.sawTime(ts)
	}
	name := firstKey(req.Body)
	if r.clusterTime().IsZero() && !isHello(name) {
		// A new router learns the cluster's time before it answers, as
		// a mongos has it from the config server once started: its
		// operationTime is never 0 (a ping's is a valid start point).
		_, _ = r.shardsTime(ctx)
	}
	if app, ok := req.Body.Lookup("client", "application", "name").StringValueOK(); ok && isHello(name) {
		sess.appName = app
	}
	if name == "configureFailPoint" {
		return r.configureFailPoint(req), nil
	}
	if isHello(name) && !r.awaitHello(ctx, req.Body) {
		return nil, errCloseConnection
	}
	if p, ok := r.failPoints.Take(failpoint.FailCommand, func(p *failpoint.Point) bool {
		return slices.Contains(p.Commands, name) && (p.AppName == "" || p.AppName == sess.appName)
	}); ok {
		if p.Block > 0 {
			t := time.NewTimer(p.Block)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, errCloseConnection
			}
		}
		if p.CloseConn {
			return nil, errCloseConnection
		}
		if p.HasCode {
			// As a member's failCommand: only the labels configured.
			return r.errorReply(p.Code, "Failing command via 'failCommand' failpoint", p.Labels...), nil
		}
	}
	return withRetryableWriteLabel(name, req.Body, r.dispatch(ctx, req, name, sess.id)), nil
}

func isHello(name string) bool { return name == "hello" || name == "isMaster" || name == "ismaster" }

// configureFailPoint sets one of the router's own fail points: failCommand,
// which applies to the commands the router receives.
func (r *Router) configureFailPoint(req *wire.Request) bsoncore.Document {
	if req.DB != "admin" {
		return r.errorReply(13, "configureFailPoint may only be run against the admin database.")
	}
	name, _ := req.Body.Lookup("configureFailPoint").StringValueOK()
	if name != failpoint.FailCommand {
		return r.errorReply(codeBadValue, "Cannot find failpoint "+name)
	}
	mode, err := req.Body.LookupErr("mode")
	var data bsoncore.Document
	if v, derr := req.Body.LookupErr("data"); derr == nil {
		d, ok := v.DocumentOK()
		if !ok {
			return r.errorReply(14, "BSON field 'configureFailPoint.data' is the wrong type, expected type 'object'")
		}
		data = d
	}
	p, perr := failpoint.Parse(mode, err == nil, data)
	if perr != nil {
		var fe *failpoint.Error
		if errors.As(perr, &fe) {
			return r.errorReply(fe.Code, fe.Msg)
		}
		return r.errorReply(codeBadValue, perr.Error())
	}
	r.failPoints.Configure(name, p)
	return r.okReply(bsoncore.NewDocumentBuilder().AppendInt64("count", 0))
}

// dispatch runs the command name.
func (r *Router) dispatch(ctx context.Context, req *wire.Request, name string, connID int64) bsoncore.Document {
	if inTransaction(req.Body) {
		return r.txnStatement(ctx, req, name)
	}
	if name == "commitTransaction" || name == "abortTransaction" {
		return r.errorReply(codeInvalidOptions, name+" must be run within a transaction (autocommit: false)")
	}
	return r.dispatchPlain(ctx, req, name, connID)
}

// dispatchPlain runs a command outside a transaction (and a transaction's
// getMore and killCursors, which go where their cursor lives).
func (r *Router) dispatchPlain(ctx context.Context, req *wire.Request, name string, connID int64) bsoncore.Document {
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
	case "getShardMap":
		return r.getShardMap()
	case "serverStatus":
		// A router's own status: it has no oplog, so a section asked for
		// that it does not have ({oplog: 1}) is left out, as mongos does.
		return r.okReply(bsoncore.NewDocumentBuilder().AppendString("host", r.addr).
			AppendString("version", wire.ServerVersion).AppendString("process", "mongos"))
	case "getMore":
		return r.getMore(ctx, req)
	case "killCursors":
		return r.killCursors(ctx, req)
	case "renameCollection":
		return r.renameCollection(ctx, req)
	case "shardCollection":
		return r.shardCollection(ctx, req)
	case "split":
		return r.split(ctx, req)
	case "moveChunk":
		return r.moveChunk(ctx, req)
	case "refineCollectionShardKey":
		return r.refineCollectionShardKey(ctx, req)
	}
	if what, ok := refused[name]; ok {
		return r.notImplemented(what)
	}
	if name == "aggregate" && isChangeStream(req.Body) {
		return r.openChangeStream(ctx, req)
	}
	if routed[name] && req.DB == "config" {
		if name == "find" {
			return r.configFind(req)
		}
		return r.notImplemented(name + " on the config database (only find on config.shards, config.databases, config.collections and config.chunks)")
	}
	if routed[name] && req.DB != "admin" && req.DB != "local" {
		if coll, ok := req.Body.Lookup(name).StringValueOK(); ok {
			ns := req.DB + "." + coll
			l := r.cat.placementLock(ns)
			l.RLock()
			sc := r.cat.collection(ns)
			if sc != nil {
				defer l.RUnlock()
				return r.routeSharded(ctx, req, name, sc)
			}
			l.RUnlock()
		}
		if name == "dropDatabase" {
			return r.dropDatabase(ctx, req)
		}
		return r.forward(ctx, r.cat.primaryShard(req.DB), req)
	}
	if name == "" {
		return r.errorReply(codeFailedToParse, "no command")
	}
	return r.errorReply(codeCommandNotFound, fmt.Sprintf("no such command: '%s' (the simulated mongos does not implement it)", name))
}

// renameCollection runs on the shard of both namespaces' databases: an
// unsharded collection moves within its primary shard.
func (r *Router) renameCollection(ctx context.Context, req *wire.Request) bsoncore.Document {
	from, _ := req.Body.Lookup("renameCollection").StringValueOK()
	to, _ := req.Body.Lookup("to").StringValueOK()
	fromDB, _ := nsParts(from)
	toDB, _ := nsParts(to)
	if fromDB == "" || toDB == "" {
		return r.errorReply(codeBadValue, "renameCollection needs the namespaces renameCollection and to")
	}
	if r.cat.collection(from) != nil {
		return r.notImplemented("renaming a sharded collection")
	}
	i := r.cat.primaryShard(fromDB)
	if r.cat.primaryShard(toDB) != i {
		return r.notImplemented("renaming a collection into a database of another primary shard")
	}
	return r.forward(ctx, i, req)
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
		AppendBoolean("readOnly", false).
		AppendDocument("topologyVersion", bsoncore.NewDocumentBuilder().AppendObjectID("processId", r.processID()).AppendInt64("counter", 0).Build())
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

// getShardMap names every shard's and the config server's connection
// string (map: name to "rsName/hosts"; hosts: host to name; connStrings:
// connection string to name), as cluster_get_shard_map_cmd.cpp answers.
func (r *Router) getShardMap() bsoncore.Document {
	m, hosts, conns := bsoncore.NewDocumentBuilder(), bsoncore.NewDocumentBuilder(), bsoncore.NewDocumentBuilder()
	all := r.cat.Shards()
	if cfg := r.cat.configServer(); cfg.Name != "" {
		all = append(all[:len(all):len(all)], Shard{Name: "config", Hosts: cfg.Hosts, set: cfg.Name})
	}
	for _, s := range all {
		cs := s.host()
		m.AppendString(s.Name, cs)
		for _, h := range s.Hosts {
			hosts.AppendString(h, s.Name)
		}
		conns.AppendString(cs, s.Name)
	}
	return r.okReply(bsoncore.NewDocumentBuilder().AppendDocument("map", m.Build()).
		AppendDocument("hosts", hosts.Build()).AppendDocument("connStrings", conns.Build()))
}
