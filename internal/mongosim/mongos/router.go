//lint:file-ignore SA1019 a router must still read the legacy OP_QUERY handshake that drivers send first, and answer it with OP_REPLY.

package mongos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/failpoint"
	"github.com/changestream-go/changestream/internal/mongosim/wire"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// Router is one simulated mongos: a listener of its own, its own cursors
// and cluster time, in front of the catalog's shards, which it reaches
// over the wire only.
type Router struct {
	cat    *Catalog
	shards []*shardClient
	addr   string // fixed at the first listen, kept across a restart

	timeMu sync.Mutex
	time   bson.Timestamp // the highest cluster time seen

	mu      sync.Mutex
	ln      net.Listener
	ctx     context.Context // ends when the router stops
	cancel  context.CancelFunc
	conns   map[net.Conn]struct{}
	cursors map[int64]cursor
	serving sync.WaitGroup // the accept loop and the connections

	txns       txnTable
	connIDs    atomic.Int64
	failPoints *failpoint.Set
	pid        bson.ObjectID // this run's topologyVersion.processId; under mu
}

// New starts a router for cat's shards on addr ("" for a free loopback
// port). The caller must call Close.
func New(cat *Catalog, addr string) (*Router, error) {
	if cat == nil {
		return nil, errors.New("mongos: nil catalog")
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	r := &Router{cat: cat, addr: addr, failPoints: failpoint.NewSet()}
	for _, s := range cat.Shards() {
		r.shards = append(r.shards, newShardClient(s, r.clusterTime))
	}
	if err := r.start(); err != nil {
		return nil, err
	}
	return r, nil
}

// Addr returns the router's host:port.
func (r *Router) Addr() string { return r.addr }

func (r *Router) start() error {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		return fmt.Errorf("mongos: %w", err)
	}
	r.mu.Lock()
	r.addr = ln.Addr().String()
	r.ln = ln
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.conns = map[net.Conn]struct{}{}
	r.cursors = map[int64]cursor{}
	r.pid = bson.NewObjectID()
	r.mu.Unlock()
	r.txns.mu.Lock()
	r.txns.open = nil // a restarted router knows no transaction
	r.txns.mu.Unlock()
	r.serving.Add(1)
	go r.accept(ln)
	return nil
}

// Stop stops the router as a killed mongos stops: the listener and every
// client connection close, and its cursors are gone (their shard cursors
// are left to time out, as a dead router's are). Restart brings it back.
func (r *Router) Stop() {
	r.mu.Lock()
	if r.ln == nil {
		r.mu.Unlock()
		return
	}
	_ = r.ln.Close()
	r.ln = nil
	r.cancel()
	for c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.serving.Wait()
}

// Restart starts a stopped router on the same address, with no cursors:
// a getMore of a cursor it had fails with CursorNotFound.
func (r *Router) Restart() error {
	r.mu.Lock()
	running := r.ln != nil
	r.mu.Unlock()
	if running {
		return errors.New("mongos: Restart: the router is running")
	}
	return r.start()
}

// Close stops the router for good.
func (r *Router) Close() error {
	r.Stop()
	for _, s := range r.shards {
		s.close()
	}
	return nil
}

func (r *Router) accept(ln net.Listener) {
	defer r.serving.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.ln != ln { // stopped meanwhile
			r.mu.Unlock()
			_ = nc.Close()
			return
		}
		r.conns[nc] = struct{}{}
		ctx := r.ctx
		r.serving.Add(1)
		r.mu.Unlock()
		go r.serve(ctx, nc, r.connIDs.Add(1))
	}
}

// messageTimeout bounds how long a started message may take to arrive
// whole, as a member bounds it.
const messageTimeout = 30 * time.Second

// serve answers one client connection's messages in order.
func (r *Router) serve(ctx context.Context, nc net.Conn, id int64) {
	defer r.serving.Done()
	defer func() {
		r.mu.Lock()
		delete(r.conns, nc)
		r.mu.Unlock()
		_ = nc.Close()
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	started := func() { _ = nc.SetReadDeadline(time.Now().Add(messageTimeout)) }
	sess := &session{id: id}
	var in, out []byte
	for {
		msg, err := wire.ReadMessage(nc, in, started)
		if err != nil {
			return
		}
		_ = nc.SetReadDeadline(time.Time{})
		req, err := wire.ParseRequest(msg)
		if err != nil {
			return
		}
		reply, err := r.handle(ctx, req, sess)
		if err != nil {
			return // errCloseConnection
		}
		if req.MoreToCome {
			continue
		}
		if name := firstKey(req.Body); streams(req, name, reply) {
			r.streamHello(ctx, nc, req, name, sess, reply)
			return
		}
		if req.OpCode == wiremessage.OpQuery {
			out = wire.AppendOpReply(out[:0], req.RequestID, reply)
		} else {
			out = wire.AppendOpMsgReply(out[:0], req.RequestID, reply)
		}
		if _, err := nc.Write(out); err != nil {
			return
		}
		in = msg[:0]
		if cap(out) > 1<<20 {
			out = nil
		}
		if cap(in) > 1<<20 {
			in = nil
		}
	}
}

// processID returns this run's topologyVersion.processId.
func (r *Router) processID() bson.ObjectID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pid
}

// firstKey returns the command name: the body's first key.
func firstKey(body bsoncore.Document) string {
	e, err := body.IndexErr(0)
	if err != nil {
		return ""
	}
	return e.Key()
}

// clusterTime returns the highest cluster time the router has seen.
func (r *Router) clusterTime() bson.Timestamp {
	r.timeMu.Lock()
	defer r.timeMu.Unlock()
	return r.time
}

// sawTime moves the router's clock to ts if it is later: every reply from
// a shard and every client's $clusterTime gossip it.
func (r *Router) sawTime(ts bson.Timestamp) {
	r.timeMu.Lock()
	if ts.After(r.time) {
		r.time = ts
	}
	r.timeMu.Unlock()
}

// registerCursor gives c a cursor id of this router's, never 0.
func (r *Router) registerCursor(c cursor) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		id := cursorIDs.Add(1)
		if _, taken := r.cursors[id]; !taken {
			r.cursors[id] = c
			return id
		}
	}
}

// cursorIDs numbers every router's cursors, so that a cursor id of one
// router is never another's (a real router's ids are random).
var cursorIDs atomic.Int64

func (r *Router) cursor(id int64) (cursor, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.cursors[id]
	return c, ok
}

func (r *Router) dropCursor(id int64) {
	r.mu.Lock()
	delete(r.cursors, id)
	r.mu.Unlock()
}

// KillAllCursors kills every cursor of the router, as killCursors of each
// would, with the shard cursors behind them: a client's next getMore
// fails with CursorNotFound (43), as after a real router's cursor
// timeout or a killCursors from elsewhere.
func (r *Router) KillAllCursors() {
	r.mu.Lock()
	all := r.cursors
	r.cursors = map[int64]cursor{}
	r.mu.Unlock()
	for _, c := range all {
		c.kill(context.Background(), r, nil)
	}
}

// CloseClientConnections closes every client connection to the router,
// which keeps listening and keeps its cursors, as a network fault between
// clients and a mongos does.
func (r *Router) CloseClientConnections() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		_ = c.Close()
	}
}
