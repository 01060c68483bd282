//lint:file-ignore SA1019 a server must still read the legacy OP_QUERY handshake that drivers send first, and answer it with OP_REPLY.

package mongosim

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/wire"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// conn serves one client connection. Commands on a connection run one at a
// time, in order, as on a real server.
type conn struct {
	s      *Server
	nc     net.Conn
	id     int64
	ctx    context.Context // done when the connection or the server closes
	cancel context.CancelFunc

	mu      sync.Mutex
	appName string // from the handshake's client.application.name
}

func newConn(s *Server, nc net.Conn, id int64) *conn {
	ctx, cancel := context.WithCancel(s.ctx)
	return &conn{s: s, nc: nc, id: id, ctx: ctx, cancel: cancel}
}

// close closes the socket and wakes any command waiting on this connection.
func (c *conn) close() {
	c.cancel()
	_ = c.nc.Close()
}

func (c *conn) setAppName(name string) {
	c.mu.Lock()
	c.appName = name
	c.mu.Unlock()
}

func (c *conn) getAppName() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.appName
}

// serve reads and answers messages until the client goes away, the server
// closes, or a message is malformed (then the connection is closed, as a
// real server closes on a protocol error).
func (c *conn) serve() {
	defer c.close()
	r := bufio.NewReaderSize(c.nc, 64<<10)
	var in, out []byte
	// A connection may idle between messages as long as it likes (drivers
	// pool them), but once a message has started it must arrive whole
	// within the message timeout: a client that sends half a message, or
	// a byte a second, is dropped instead of pinning a goroutine and a
	// buffer for ever.
	timeout := c.s.cfg.messageTimeout
	started := func() { _ = c.nc.SetReadDeadline(time.Now().Add(timeout)) }
	for {
		msg, err := wire.ReadMessage(r, in, started)
		if err != nil {
			return
		}
		_ = c.nc.SetReadDeadline(time.Time{})
		in = msg[:0]
		req, err := wire.ParseRequest(msg)
		if err != nil {
			return
		}
		reply, err := c.s.handle(c, req)
		if errors.Is(err, errCloseConnection) {
			return
		}
		if req.MoreToCome {
			continue
		}
		if req.ExhaustAllowed && c.streamable(req, reply) {
			c.streamHello(req, reply)
			return
		}
		if req.OpCode == wiremessage.OpQuery {
			out = wire.AppendOpReply(out[:0], req.RequestID, reply)
		} else {
			out = wire.AppendOpMsgReply(out[:0], req.RequestID, reply)
		}
		if _, err := c.nc.Write(out); err != nil {
			return
		}
		if cap(out) > 1<<20 {
			out = nil // do not pin a huge buffer for the connection's lifetime
		}
		if cap(in) > 1<<20 {
			in = nil
		}
	}
}

// streamable reports whether a request's reply starts a stream of hello
// answers: an awaitable hello that succeeded, from a client that allows
// exhaust.
func (c *conn) streamable(req *wire.Request, reply bsoncore.Document) bool {
	if req.OpCode != wiremessage.OpMsg || !isHelloName(firstKey(req.Body)) {
		return false
	}
	if _, err := req.Body.LookupErr("topologyVersion"); err != nil {
		return false
	}
	return replyOK(reply)
}

// replyOK reports whether a reply says ok: 1.
func replyOK(reply bsoncore.Document) bool {
	v, err := reply.LookupErr("ok")
	if err != nil {
		return false
	}
	f, ok := v.DoubleOK()
	return ok && f == 1
}

// streamHello sends reply with moreToCome and then keeps answering the
// hello, each answer waiting until the topologyVersion moves past the one
// the previous answer reported or maxAwaitTimeMS passes, until the
// connection ends. No request arrives meanwhile: the client reads the
// stream.
func (c *conn) streamHello(req *wire.Request, reply bsoncore.Document) {
	cc := &cmdCtx{s: c.s, conn: c, ctx: c.ctx, db: req.DB, name: firstKey(req.Body), cmd: req.Body}
	// The first answer succeeded, so both parse.
	_, maxAwait, _, _ := awaitArgs(cc)
	seen, _ := parseTopologyVersion(reply.Lookup("topologyVersion").Document())
	prev := req.RequestID
	var out []byte
	for {
		id := wiremessage.NextRequestID()
		out = wire.AppendOpMsg(out[:0], id, prev, wire.MsgMoreToCome, reply)
		if _, err := c.nc.Write(out); err != nil {
			return
		}
		prev = id
		var body bsoncore.Document
		body, seen = c.s.answerHello(cc, &seen, maxAwait)
		if body == nil {
			return
		}
		reply = c.s.finishReply(body, nil)
	}
}
