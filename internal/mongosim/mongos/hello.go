package mongos

import (
	"context"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/wire"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// A router's topology version: a processId new at each start (a restart
// is a new process), and a counter that never moves, since nothing a
// mongos reports in hello changes while it runs. An awaitable hello from
// a client that has the current version waits maxAwaitTimeMS before it
// answers, and with exhaustAllowed the answers stream, each with
// moreToCome, until the connection ends, as a mongos serves the
// streaming protocol of server monitoring (src/mongo/s/commands/
// cluster_hello_cmd.cpp; the SDAM monitoring spec).

// awaitable reads an awaitable hello's topologyVersion and
// maxAwaitTimeMS; ok is false for a plain hello.
func awaitable(body bsoncore.Document) (pid bson.ObjectID, counter int64, wait time.Duration, ok bool) {
	tv, okTV := body.Lookup("topologyVersion").DocumentOK()
	ms, okMS := body.Lookup("maxAwaitTimeMS").AsInt64OK()
	if !okTV || !okMS || ms < 0 {
		return pid, 0, 0, false
	}
	pid, _ = tv.Lookup("processId").ObjectIDOK()
	counter, _ = tv.Lookup("counter").AsInt64OK()
	return pid, counter, time.Duration(ms) * time.Millisecond, true
}

// awaitHello waits as an awaitable hello does: maxAwaitTimeMS when the
// client's version is the router's, not at all otherwise. It reports
// false when the router stopped meanwhile.
func (r *Router) awaitHello(ctx context.Context, body bsoncore.Document) bool {
	pid, counter, wait, ok := awaitable(body)
	if !ok || pid != r.processID() || counter != 0 {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// streamHello answers an awaitable hello that allows exhaust: reply with
// moreToCome, then another after each maxAwaitTimeMS, until the
// connection or the router ends. No request arrives meanwhile.
func (r *Router) streamHello(ctx context.Context, nc interface{ Write([]byte) (int, error) }, req *wire.Request, name string, sess *session, reply bsoncore.Document) {
	_, _, wait, _ := awaitable(req.Body)
	prev := req.RequestID
	var out []byte
	for {
		id := wiremessage.NextRequestID()
		out = wire.AppendOpMsg(out[:0], id, prev, wire.MsgMoreToCome, reply)
		if _, err := nc.Write(out); err != nil {
			return
		}
		prev = id
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		reply = r.hello(req, name, sess.id)
	}
}

// streams reports whether req's reply starts a stream of hello answers.
func streams(req *wire.Request, name string, reply bsoncore.Document) bool {
	if !req.ExhaustAllowed || req.OpCode != wiremessage.OpMsg || !isHello(name) || replyCode(reply) != 0 {
		return false
	}
	_, _, _, ok := awaitable(req.Body)
	return ok
}
