package mongos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/wire"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// shardClient sends commands to one shard over the wire, as a router's
// connection pool to a shard does: to the primary, found with hello and
// found again after a network error or a "not primary" answer, or to a
// given member (a cursor's getMore goes where the cursor lives).
type shardClient struct {
	shard Shard
	// clock is the router's cluster time, gossiped to the shard with
	// every command, as mongos sends its own $clusterTime.
	clock func() bson.Timestamp

	mu      sync.Mutex
	primary string                // "" until found
	idle    map[string][]net.Conn // pooled connections by host
	closed  bool
}

func newShardClient(s Shard, clock func() bson.Timestamp) *shardClient {
	return &shardClient{shard: s, clock: clock, idle: map[string][]net.Conn{}}
}

// gossip returns cmd carrying the router's cluster time if it is later
// than the one cmd carries.
func (sc *shardClient) gossip(cmd bsoncore.Document) bsoncore.Document {
	ts := sc.clock()
	if t, i, ok := cmd.Lookup("$clusterTime", "clusterTime").TimestampOK(); ts.IsZero() || (ok && !ts.After(bson.Timestamp{T: t, I: i})) {
		return cmd
	}
	return replaceElements(cmd, map[string]bsoncore.Value{"$clusterTime": {Type: bsoncore.TypeEmbeddedDocument, Data: clusterTimeDoc(ts)}})
}

// maxIdle is how many idle connections a router keeps to each member.
const maxIdle = 8

// errNoPrimary is what a command to a shard without a primary fails with.
var errNoPrimary = errors.New("no primary")

// runOnPrimary sends cmd (with its $db) to the shard's primary and returns
// the reply and the primary's address.
func (sc *shardClient) runOnPrimary(ctx context.Context, cmd bsoncore.Document, seqs map[string][]bsoncore.Document) (bsoncore.Document, string, error) {
	host, err := sc.findPrimary(ctx)
	if err != nil {
		return nil, "", err
	}
	reply, err := sc.run(ctx, host, cmd, seqs)
	if err != nil || notPrimary(reply) {
		sc.forgetPrimary(host)
	}
	return reply, host, err
}

// readOnPrimary is runOnPrimary for a command that may run twice (a
// ping, a read, opening a stream): after a network error it forgets the
// primary and tries once more, finding the primary again, as a router's
// replica-set monitor would have marked the host down. A write is never
// sent twice: it may have been applied.
func (sc *shardClient) readOnPrimary(ctx context.Context, cmd bsoncore.Document) (bsoncore.Document, string, error) {
	reply, host, err := sc.runOnPrimary(ctx, cmd, nil)
	if err != nil && ctx.Err() == nil && !errors.Is(err, errNoPrimary) {
		reply, host, err = sc.runOnPrimary(ctx, cmd, nil)
	}
	return reply, host, err
}

// notPrimary reports a reply that says the member is no longer primary.
func notPrimary(reply bsoncore.Document) bool {
	code, ok := reply.Lookup("code").AsInt64OK()
	if !ok {
		return false
	}
	switch code {
	case 10107, 13435, 11602, 189, 91: // NotWritablePrimary, NotPrimaryNoSecondaryOk, InterruptedDueToReplStateChange, PrimarySteppedDown, ShutdownInProgress
		return true
	}
	return false
}

func (sc *shardClient) forgetPrimary(host string) {
	sc.mu.Lock()
	if sc.primary == host {
		sc.primary = ""
	}
	sc.mu.Unlock()
}

// findPrimaryWait is how long a router waits for a shard to have a
// primary, as its replica-set monitor's findHost waits (15 s in the
// server, bounded by the operation's deadline).
const findPrimaryWait = 15 * time.Second

// findPrimary returns the primary's address, asking each member with
// hello when it is not known. While members answer without one being
// primary (an election), it keeps asking, up to findPrimaryWait; when no
// member answers at all (the whole shard is down) it fails at once,
// where a real router would wait out findPrimaryWait for the same
// answer.
func (sc *shardClient) findPrimary(ctx context.Context) (string, error) {
	sc.mu.Lock()
	p := sc.primary
	sc.mu.Unlock()
	if p != "" {
		return p, nil
	}
	hello := bsoncore.NewDocumentBuilder().AppendInt32("hello", 1).AppendString("$db", "admin").Build()
	deadline := time.Now().Add(findPrimaryWait)
	for {
		answered := false
		for _, h := range sc.shard.Hosts {
			hctx, cancel := context.WithTimeout(ctx, time.Second)
			reply, err := sc.run(hctx, h, hello, nil)
			cancel()
			if err != nil {
				continue
			}
			answered = true
			if primary, _ := reply.Lookup("isWritablePrimary").BooleanOK(); primary {
				sc.mu.Lock()
				sc.primary = h
				sc.mu.Unlock()
				return h, nil
			}
		}
		if !answered || !time.Now().Before(deadline) {
			return "", errNoPrimary
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", errNoPrimary
		case <-t.C:
		}
	}
}

// run sends cmd to host and returns its reply. A network error closes
// the connection; a cancelled ctx too, since the reply may still come.
func (sc *shardClient) run(ctx context.Context, host string, cmd bsoncore.Document, seqs map[string][]bsoncore.Document) (bsoncore.Document, error) {
	c, err := sc.get(ctx, host)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	id := wiremessage.NextRequestID()
	_, err = c.Write(wire.AppendCommand(nil, id, sc.gossip(cmd), seqs))
	var reply bsoncore.Document
	if err == nil {
		var msg []byte
		if msg, err = wire.ReadMessage(c, nil); err == nil {
			reply, err = wire.ParseReply(msg, id)
		}
	}
	if !stop() || err != nil {
		_ = c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	sc.put(host, c)
	return reply, nil
}

func (sc *shardClient) get(ctx context.Context, host string) (net.Conn, error) {
	sc.mu.Lock()
	if sc.closed {
		sc.mu.Unlock()
		return nil, errors.New("mongos: closed")
	}
	if conns := sc.idle[host]; len(conns) > 0 {
		c := conns[len(conns)-1]
		sc.idle[host] = conns[:len(conns)-1]
		sc.mu.Unlock()
		return c, nil
	}
	sc.mu.Unlock()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (sc *shardClient) put(host string, c net.Conn) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.closed || len(sc.idle[host]) >= maxIdle {
		_ = c.Close()
		return
	}
	sc.idle[host] = append(sc.idle[host], c)
}

// close closes the idle connections; those in use close as they return.
func (sc *shardClient) close() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.closed = true
	for _, conns := range sc.idle {
		for _, c := range conns {
			_ = c.Close()
		}
	}
	sc.idle = nil
}

// remoteError is the message a router gives for a shard it could not
// talk to, as mongos words it.
func remoteError(host string, err error) string {
	return fmt.Sprintf("Error on remote shard %s :: caused by :: %v", host, err)
}
