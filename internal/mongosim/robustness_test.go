//lint:file-ignore SA1019 these tests send the legacy OP_QUERY handshake a server must still accept.

package mongosim_test

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// These tests talk to the server over raw sockets, as a buggy or hostile
// client would, and check two things each time: the bad connection gets an
// error reply or is closed (never a hang, never a crash), and a well-behaved
// driver client on another connection is not disturbed. Helper names start
// with rb to stay clear of the other test files of the package.

// rbTimeout bounds every wait on a socket or the driver. It is far above
// what any step needs, so it only turns a hang into a failure.
const rbTimeout = 10 * time.Second

// rbClient connects the real driver and disconnects it at cleanup.
func rbClient(t *testing.T, s *mongosim.Server, appName string) *mongo.Client {
	t.Helper()
	opts := options.Client().ApplyURI(s.URI())
	if appName != "" {
		opts.SetAppName(appName)
	}
	c, err := mongo.Connect(opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), rbTimeout)
		defer cancel()
		_ = c.Disconnect(ctx)
	})
	return c
}

// rbPing fails the test unless the driver client can ping.
func rbPing(t *testing.T, c *mongo.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rbTimeout)
	defer cancel()
	require.NoError(t, c.Ping(ctx, nil), "a well-behaved client must be unaffected")
}

func rbDial(t *testing.T, s *mongosim.Server) *net.TCPConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", s.Addr(), rbTimeout)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	return nc.(*net.TCPConn)
}

func rbDoc(t *testing.T, d bson.D) []byte {
	t.Helper()
	b, err := bson.Marshal(d)
	require.NoError(t, err)
	return b
}

// rbFrame prefixes payload with a header whose length is right.
func rbFrame(reqID int32, op wiremessage.OpCode, payload []byte) []byte {
	msg := wiremessage.AppendHeader(nil, int32(16+len(payload)), reqID, 0, op)
	return append(msg, payload...)
}

// rbOpMsg frames body (a kind-0 section) and any further raw sections.
func rbOpMsg(reqID int32, flags wiremessage.MsgFlag, body []byte, more ...[]byte) []byte {
	payload := wiremessage.AppendMsgFlags(nil, flags)
	payload = append(payload, 0)
	payload = append(payload, body...)
	for _, m := range more {
		payload = append(payload, m...)
	}
	return rbFrame(reqID, wiremessage.OpMsg, payload)
}

func rbOpQuery(reqID int32, ns string, query []byte) []byte {
	payload := wiremessage.AppendQueryFlags(nil, 0)
	payload = wiremessage.AppendQueryFullCollectionName(payload, ns)
	payload = wiremessage.AppendQueryNumberToSkip(payload, 0)
	payload = wiremessage.AppendQueryNumberToReturn(payload, -1)
	payload = append(payload, query...)
	return rbFrame(reqID, wiremessage.OpQuery, payload)
}

// rbReply is what came back on a raw connection.
type rbReply struct {
	responseTo int32
	op         wiremessage.OpCode
	body       bson.Raw
}

// errRBClosed reports that the server closed the connection.
var errRBClosed = errors.New("connection closed by the server")

// rbRead reads one reply. It returns errRBClosed when the server closed the
// connection (EOF or reset) and fails the test when nothing arrives in
// rbTimeout or the reply is not well formed.
func rbRead(t *testing.T, nc net.Conn) (rbReply, error) {
	t.Helper()
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(rbTimeout)))
	var hdr [16]byte
	if _, err := io.ReadFull(nc, hdr[:]); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the server neither replied nor closed the connection within %v", rbTimeout)
		}
		return rbReply{}, errRBClosed
	}
	length, _, responseTo, op, _, ok := wiremessage.ReadHeader(hdr[:])
	require.True(t, ok)
	require.GreaterOrEqual(t, length, int32(16))
	msg := make([]byte, length)
	copy(msg, hdr[:])
	_, err := io.ReadFull(nc, msg[16:])
	require.NoError(t, err, "reply cut short")
	rem := msg[16:]
	var doc bsoncore.Document
	switch op {
	case wiremessage.OpMsg:
		var flags wiremessage.MsgFlag
		flags, rem, ok = wiremessage.ReadMsgFlags(rem)
		require.True(t, ok)
		if flags&wiremessage.ChecksumPresent != 0 {
			sum := binary.LittleEndian.Uint32(msg[len(msg)-4:])
			require.Equal(t, crc32.Checksum(msg[:len(msg)-4], crc32.MakeTable(crc32.Castagnoli)), sum)
			rem = rem[:len(rem)-4]
		}
		var st wiremessage.SectionType
		st, rem, ok = wiremessage.ReadMsgSectionType(rem)
		require.True(t, ok)
		require.Equal(t, wiremessage.SingleDocument, st)
		doc, rem, ok = wiremessage.ReadMsgSectionSingleDocument(rem)
		require.True(t, ok)
		require.Empty(t, rem, "a reply is one body section")
	case wiremessage.OpReply:
		_, rem, ok = wiremessage.ReadReplyFlags(rem)
		require.True(t, ok)
		_, rem, ok = wiremessage.ReadReplyCursorID(rem)
		require.True(t, ok)
		_, rem, ok = wiremessage.ReadReplyStartingFrom(rem)
		require.True(t, ok)
		var n int32
		n, rem, ok = wiremessage.ReadReplyNumberReturned(rem)
		require.True(t, ok)
		require.Equal(t, int32(1), n)
		doc, rem, ok = wiremessage.ReadReplyDocument(rem)
		require.True(t, ok)
		require.Empty(t, rem)
	default:
		t.Fatalf("reply with opcode %v", op)
	}
	require.NoError(t, doc.Validate())
	return rbReply{responseTo: responseTo, op: op, body: bson.Raw(doc)}, nil
}

// rbRoundTrip sends msg and reads the reply.
func rbRoundTrip(t *testing.T, nc net.Conn, msg []byte) (rbReply, error) {
	t.Helper()
	require.NoError(t, nc.SetWriteDeadline(time.Now().Add(rbTimeout)))
	if _, err := nc.Write(msg); err != nil {
		return rbReply{}, errRBClosed
	}
	return rbRead(t, nc)
}

// rbServerError is the error part of a reply.
type rbServerError struct {
	OK       float64  `bson:"ok"`
	Code     int32    `bson:"code"`
	CodeName string   `bson:"codeName"`
	ErrMsg   string   `bson:"errmsg"`
	Labels   []string `bson:"errorLabels"`
}

func rbDecodeError(t *testing.T, body bson.Raw) rbServerError {
	t.Helper()
	var e rbServerError
	require.NoError(t, bson.Unmarshal(body, &e))
	return e
}

// rbRequireFailed checks that body is a well-formed error reply with the
// fields every server error carries.
func rbRequireFailed(t *testing.T, body bson.Raw) rbServerError {
	t.Helper()
	e := rbDecodeError(t, body)
	assert.Equal(t, 0.0, e.OK, "reply: %v", body)
	assert.NotZero(t, e.Code, "reply: %v", body)
	assert.NotEmpty(t, e.CodeName, "reply: %v", body)
	assert.NotEmpty(t, e.ErrMsg, "reply: %v", body)
	_, err := body.LookupErr("operationTime")
	assert.NoError(t, err, "replies carry operationTime, errors too")
	return e
}

// TestMalformedMessagesCloseTheConnection sends what cannot be parsed. A
// real server closes such a connection without replying; an error reply
// would be acceptable too. Either way the driver client carries on.
func TestMalformedMessagesCloseTheConnection(t *testing.T) {
	t.Parallel()
	s := mongosim.StartTB(t)
	c := rbClient(t, s, "")
	rbPing(t, c)

	ping := rbDoc(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
	lengthOnly := func(n uint32) []byte { return binary.LittleEndian.AppendUint32(nil, n) }
	invalid := []byte{0, 0, 0, 0, 0x02, 'a', 0, 0xff, 0, 0, 0, 'x', 0, 0}
	binary.LittleEndian.PutUint32(invalid, uint32(len(invalid)))
	badSum := rbOpMsg(1, wiremessage.ChecksumPresent, ping)
	badSum = binary.LittleEndian.AppendUint32(badSum, 0xdeadbeef)
	binary.LittleEndian.PutUint32(badSum, uint32(len(badSum)))
	seq := func(id string, doc []byte) []byte {
		out := []byte{1}
		out = binary.LittleEndian.AppendUint32(out, uint32(4+len(id)+1+len(doc)))
		out = append(out, id...)
		out = append(out, 0)
		return append(out, doc...)
	}
	insert := rbDoc(t, bson.D{{Key: "insert", Value: "c"}, {Key: "$db", Value: "test"}})
	one := rbDoc(t, bson.D{{Key: "_id", Value: 1}})

	for _, tc := range []struct {
		name string
		msg  []byte
		// halfClose shuts the client's sending side after msg, so that a
		// message cut short ends in EOF rather than a wait for more.
		halfClose bool
	}{
		{name: "truncated message", msg: rbOpMsg(1, 0, ping)[:25], halfClose: true},
		{name: "truncated header", msg: rbOpMsg(1, 0, ping)[:6], halfClose: true},
		{name: "length over 48,000,000", msg: append(lengthOnly(48_000_001), make([]byte, 64)...)},
		{name: "length of 2 GiB", msg: lengthOnly(1<<31 - 1)},
		{name: "negative length", msg: lengthOnly(0xffffffff)},
		{name: "length below the header size", msg: append(lengthOnly(8), 1, 2, 3, 4)},
		{name: "unknown opcode", msg: rbFrame(1, wiremessage.OpCode(4242), ping)},
		{name: "OP_COMPRESSED, never offered", msg: rbFrame(1, wiremessage.OpCompressed, append([]byte{0xdd, 7, 0, 0, 0, 1, 0, 0, 0}, ping...))},
		{name: "invalid BSON body", msg: rbOpMsg(1, 0, invalid)},
		{name: "invalid BSON nested in the body", msg: rbOpMsg(1, 0, func() []byte {
			idx, d := bsoncore.AppendDocumentStart(nil)
			d = bsoncore.AppendInt32Element(d, "ping", 1)
			d = bsoncore.AppendDocumentElement(d, "x", invalid)
			d = bsoncore.AppendStringElement(d, "$db", "admin")
			d, _ = bsoncore.AppendDocumentEnd(d, idx)
			return d
		}())},
		{name: "body without $db", msg: rbOpMsg(1, 0, rbDoc(t, bson.D{{Key: "ping", Value: 1}}))},
		{name: "bad checksum", msg: badSum},
		{name: "unknown required flag bit", msg: rbOpMsg(1, 1<<4, ping)},
		{name: "duplicate document sequences", msg: rbOpMsg(1, 0, insert, seq("documents", one), seq("documents", one))},
		{name: "OP_QUERY on a collection", msg: rbOpQuery(1, "test.coll", rbDoc(t, bson.D{{Key: "isMaster", Value: 1}}))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc := rbDial(t, s)
			require.NoError(t, nc.SetWriteDeadline(time.Now().Add(rbTimeout)))
			_, _ = nc.Write(tc.msg) // the server may already have hung up
			if tc.halfClose {
				require.NoError(t, nc.CloseWrite())
			}
			reply, err := rbRead(t, nc)
			if err == nil {
				rbRequireFailed(t, reply.body)
			} else {
				assert.ErrorIs(t, err, errRBClosed)
			}
			rbPing(t, c)
		})
	}
}

// TestBadCommandsGetErrorReplies sends well-framed commands the server must
// refuse: each gets {ok: 0, errmsg, code, codeName}, the connection stays
// usable, and the driver client is undisturbed.
func TestBadCommandsGetErrorReplies(t *testing.T) {
	t.Parallel()
	s := mongosim.StartTB(t)
	c := rbClient(t, s, "")
	rbPing(t, c)
	nc := rbDial(t, s)
	var reqID int32

	for _, tc := range []struct {
		name     string
		cmd      bson.D
		db       string
		wantCode int32 // 0: any non-zero code
	}{
		{name: "unknown command", cmd: bson.D{{Key: "frobnicate", Value: 1}}, wantCode: 59},
		{name: "command names are case-sensitive", cmd: bson.D{{Key: "PING", Value: 1}}, wantCode: 59},
		{name: "only $db", cmd: bson.D{}, wantCode: 0},
		{name: "getMore with a string id", cmd: bson.D{{Key: "getMore", Value: "x"}, {Key: "collection", Value: 1}}, wantCode: 14},
		{name: "getMore with an int collection", cmd: bson.D{{Key: "getMore", Value: int64(1)}, {Key: "collection", Value: 1}}, wantCode: 14},
		{name: "getMore without collection", cmd: bson.D{{Key: "getMore", Value: int64(1)}}, wantCode: 0},
		{name: "getMore of an unknown cursor", cmd: bson.D{{Key: "getMore", Value: int64(424242)}, {Key: "collection", Value: "c"}}, wantCode: 43},
		{name: "getMore with a string batchSize", cmd: bson.D{{Key: "getMore", Value: int64(1)}, {Key: "collection", Value: "c"}, {Key: "batchSize", Value: "many"}}, wantCode: 14},
		{name: "killCursors with a string list", cmd: bson.D{{Key: "killCursors", Value: "c"}, {Key: "cursors", Value: "x"}}, wantCode: 14},
		{name: "killCursors with an int collection", cmd: bson.D{{Key: "killCursors", Value: 1}, {Key: "cursors", Value: bson.A{}}}, wantCode: 14},
		{name: "find with an int collection", cmd: bson.D{{Key: "find", Value: 1}}},
		{name: "find with a string filter", cmd: bson.D{{Key: "find", Value: "c"}, {Key: "filter", Value: "x"}}},
		{name: "insert with a string documents", cmd: bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: "x"}}},
		{name: "insert with a document per element of wrong type", cmd: bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{1, "two"}}}},
		{name: "update with a string updates", cmd: bson.D{{Key: "update", Value: "c"}, {Key: "updates", Value: "x"}}},
		{name: "delete with an int deletes", cmd: bson.D{{Key: "delete", Value: "c"}, {Key: "deletes", Value: 3}}},
		{name: "aggregate with a document pipeline", cmd: bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.D{}}, {Key: "cursor", Value: bson.D{}}}},
		{name: "aggregate with a string stage", cmd: bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{"$changeStream"}}, {Key: "cursor", Value: bson.D{}}}},
		{name: "aggregate with a string $changeStream", cmd: bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$changeStream", Value: "x"}}}}, {Key: "cursor", Value: bson.D{}}}},
		{name: "aggregate with a bad resume token", cmd: bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$changeStream", Value: bson.D{{Key: "resumeAfter", Value: bson.D{{Key: "_data", Value: "zz"}}}}}}}}, {Key: "cursor", Value: bson.D{}}}},
		{name: "aggregate with a string batchSize", cmd: bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{}}, {Key: "cursor", Value: bson.D{{Key: "batchSize", Value: "x"}}}}},
		{name: "configureFailPoint with an int name", cmd: bson.D{{Key: "configureFailPoint", Value: 1}, {Key: "mode", Value: "off"}}, wantCode: 14},
		{name: "configureFailPoint with an int mode", cmd: bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: 5}}, wantCode: 14},
		{name: "configureFailPoint with a bad times", cmd: bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: bson.D{{Key: "times", Value: "x"}}}}, wantCode: 2},
		{name: "configureFailPoint with string failCommands", cmd: bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: "alwaysOn"}, {Key: "data", Value: bson.D{{Key: "failCommands", Value: "ping"}}}}, wantCode: 14},
		{name: "configureFailPoint of an unknown fail point", cmd: bson.D{{Key: "configureFailPoint", Value: "noSuchFailPoint"}, {Key: "mode", Value: "off"}}, wantCode: 2},
		{name: "configureFailPoint outside admin", db: "test", cmd: bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: "off"}}, wantCode: 13},
		{name: "create with an int name", cmd: bson.D{{Key: "create", Value: 1}}},
		{name: "drop with a document name", cmd: bson.D{{Key: "drop", Value: bson.D{}}}},
		{name: "renameCollection with an int target", cmd: bson.D{{Key: "renameCollection", Value: "test.a"}, {Key: "to", Value: 1}}},
		{name: "listCollections with a string filter", cmd: bson.D{{Key: "listCollections", Value: 1}, {Key: "filter", Value: "x"}}},
		{name: "findAndModify with a string query", cmd: bson.D{{Key: "findAndModify", Value: "c"}, {Key: "query", Value: "x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := tc.db
			switch {
			case db != "":
			case len(tc.cmd) > 0 && tc.cmd[0].Key == "configureFailPoint":
				db = "admin"
			default:
				db = "test"
			}
			reqID++
			cmd := append(tc.cmd, bson.E{Key: "$db", Value: db})
			reply, err := rbRoundTrip(t, nc, rbOpMsg(reqID, 0, rbDoc(t, cmd)))
			require.NoError(t, err, "a bad command must get a reply, not a closed connection")
			assert.Equal(t, reqID, reply.responseTo)
			assert.Equal(t, wiremessage.OpMsg, reply.op)
			e := rbRequireFailed(t, reply.body)
			if tc.wantCode != 0 {
				assert.Equal(t, tc.wantCode, e.Code, "reply: %v", reply.body)
			}
			if e.Code == 59 {
				assert.Equal(t, "CommandNotFound", e.CodeName)
			}
			if e.Code == 14 {
				assert.Equal(t, "TypeMismatch", e.CodeName)
			}
			t.Logf("%d %s: %s", e.Code, e.CodeName, e.ErrMsg)

			// The same connection goes on serving.
			reqID++
			reply, err = rbRoundTrip(t, nc, rbOpMsg(reqID, 0, rbDoc(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})))
			require.NoError(t, err)
			assert.Equal(t, 1.0, reply.body.Lookup("ok").Double())
			rbPing(t, c)
		})
	}
}

// TestOpQuery checks the legacy handshake path: hello and isMaster are
// answered with OP_REPLY, anything else is refused with 352 as 8.0 does.
func TestOpQuery(t *testing.T) {
	t.Parallel()
	s := mongosim.StartTB(t)
	c := rbClient(t, s, "")
	nc := rbDial(t, s)

	reply, err := rbRoundTrip(t, nc, rbOpQuery(1, "admin.$cmd", rbDoc(t, bson.D{{Key: "isMaster", Value: 1}})))
	require.NoError(t, err)
	assert.Equal(t, wiremessage.OpReply, reply.op)
	assert.Equal(t, int32(1), reply.responseTo)
	assert.Equal(t, 1.0, reply.body.Lookup("ok").Double())
	assert.True(t, reply.body.Lookup("ismaster").Boolean())

	for i, name := range []string{"ping", "find", "buildInfo", "noSuchCommand"} {
		reqID := int32(10 + i)
		reply, err := rbRoundTrip(t, nc, rbOpQuery(reqID, "admin.$cmd", rbDoc(t, bson.D{{Key: name, Value: 1}})))
		require.NoError(t, err)
		assert.Equal(t, wiremessage.OpReply, reply.op, "an OP_QUERY is answered with OP_REPLY")
		assert.Equal(t, reqID, reply.responseTo)
		e := rbRequireFailed(t, reply.body)
		if name == "noSuchCommand" {
			// A real server looks the command up before it checks the opcode.
			assert.Contains(t, []int32{59, 352}, e.Code)
			continue
		}
		assert.Equal(t, int32(352), e.Code, name)
		assert.Equal(t, "UnsupportedOpQueryCommand", e.CodeName)
	}

	// After the handshake the same connection speaks OP_MSG.
	reply, err = rbRoundTrip(t, nc, rbOpMsg(20, 0, rbDoc(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})))
	require.NoError(t, err)
	assert.Equal(t, wiremessage.OpMsg, reply.op)
	assert.Equal(t, 1.0, reply.body.Lookup("ok").Double())
	rbPing(t, c)
}

// TestMoreToComeGetsNoReply checks that a fire-and-forget message is run
// without an answer and does not shift the replies that follow.
func TestMoreToComeGetsNoReply(t *testing.T) {
	t.Parallel()
	s := mongosim.StartTB(t)
	nc := rbDial(t, s)
	ping := rbDoc(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
	require.NoError(t, nc.SetWriteDeadline(time.Now().Add(rbTimeout)))
	_, err := nc.Write(rbOpMsg(1, wiremessage.MoreToCome, ping))
	require.NoError(t, err)
	reply, err := rbRoundTrip(t, nc, rbOpMsg(2, 0, ping))
	require.NoError(t, err)
	assert.Equal(t, int32(2), reply.responseTo, "the moreToCome message must not be answered")
}

// TestManyConnectionsDying opens connections that each stop in a different
// place, all at once, while a driver client keeps pinging.
func TestManyConnectionsDying(t *testing.T) {
	t.Parallel()
	s := mongosim.StartTB(t)
	c := rbClient(t, s, "")
	ping := rbOpMsg(1, 0, rbDoc(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}}))
	var wg sync.WaitGroup
	for i := range 40 {
		nc := rbDial(t, s)
		wg.Go(func() {
			// Cut the message at a different byte each time, or send it whole
			// and leave without reading the reply.
			cut := min(i, len(ping))
			_, _ = nc.Write(ping[:cut])
			_ = nc.Close()
		})
	}
	wg.Wait()
	rbPing(t, c)
}

// TestCloseClientConnectionsDriverRecovers checks the fault injection
// helper: the driver sees a network error on the command it had in flight
// and then recovers by itself.
func TestCloseClientConnectionsDriverRecovers(t *testing.T) {
	t.Parallel()
	s := mongosim.StartTB(t)
	victim := rbClient(t, s, "victim")
	bystander := rbClient(t, s, "bystander")
	rbPing(t, victim)
	rbPing(t, bystander)

	// Hold one command on the server so the close lands mid-command.
	ctx, cancel := context.WithTimeout(context.Background(), 3*rbTimeout)
	defer cancel()
	require.NoError(t, bystander.Database("admin").RunCommand(ctx, bson.D{
		{Key: "configureFailPoint", Value: "failCommand"},
		{Key: "mode", Value: bson.D{{Key: "times", Value: 1}}},
		{Key: "data", Value: bson.D{
			{Key: "failCommands", Value: bson.A{"ping"}},
			{Key: "blockConnection", Value: true},
			{Key: "blockTimeMS", Value: 60_000},
			{Key: "appName", Value: "victim"},
		}},
	}).Err())
	s.ResetCommands() // forget the earlier pings: wait for the blocked one
	inFlight := make(chan error, 1)
	go func() { inFlight <- victim.Ping(ctx, nil) }()
	rbWaitForCommand(t, s, "ping", "victim")

	s.CloseClientConnections()
	select {
	case err := <-inFlight:
		require.Error(t, err)
		assert.True(t, mongo.IsNetworkError(err), "want a network error, got %v", err)
	case <-time.After(3 * rbTimeout):
		t.Fatal("the in-flight command did not fail after its connection was closed")
	}

	// Both clients recover on their own: the first command on a pooled,
	// closed connection may fail with a network error; later ones succeed.
	for _, c := range []*mongo.Client{victim, bystander} {
		var err error
		for range 20 {
			start := time.Now()
			err = c.Ping(ctx, nil)
			t.Logf("ping: %v after %v", err, time.Since(start))
			if err == nil {
				break
			}
			require.True(t, mongo.IsNetworkError(err), "only network errors are expected while recovering, got %v", err)
		}
		require.NoError(t, err, "the driver did not recover")
	}
}

// rbWaitForCommand waits until the server has logged command name from a
// connection with appName. Callers reset the log first so that an earlier
// command of the same name does not count.
func rbWaitForCommand(t *testing.T, s *mongosim.Server, name, appName string) {
	t.Helper()
	deadline := time.Now().Add(3 * rbTimeout)
	for time.Now().Before(deadline) {
		for _, cmd := range s.Commands() {
			if cmd.Name == name && cmd.AppName == appName {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the server never received %s from %q", name, appName)
}

// The leak tests below are not parallel on purpose: goleak inspects every
// goroutine of the process, so it needs the other tests to be idle. Go runs
// all serial tests before it releases the parallel ones, and goleak ignores
// parallel tests parked in t.Parallel.

// rbCloseAndVerify closes s and the clients and requires that no goroutine
// is left behind: neither the server's nor the driver's.
func rbCloseAndVerify(t *testing.T, s *mongosim.Server, clients ...*mongo.Client) {
	t.Helper()
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(3 * rbTimeout):
		t.Fatal("Server.Close did not return")
	}
	ctx, cancel := context.WithTimeout(context.Background(), rbTimeout)
	defer cancel()
	for _, c := range clients {
		require.NoError(t, c.Disconnect(ctx))
	}
	require.NoError(t, waitForNoLeaks(leakWait))
}

func TestNoGoroutineOutlivesClose(t *testing.T) {
	require.NoError(t, waitForNoLeaks(leakWait), "goroutines were left over before this test")
	s := mongosim.StartTB(t)
	c := rbClient(t, s, "")
	rbPing(t, c)
	// Connections stopped in various states: idle, mid-header, mid-body.
	idle := rbDial(t, s)
	_, err := rbRoundTrip(t, idle, rbOpMsg(1, 0, rbDoc(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})))
	require.NoError(t, err)
	midHeader := rbDial(t, s)
	_, _ = midHeader.Write([]byte{0x40, 0, 0})
	midBody := rbDial(t, s)
	_, _ = midBody.Write(rbOpMsg(2, 0, rbDoc(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}}))[:30])

	rbCloseAndVerify(t, s, c)
	for _, nc := range []net.Conn{idle, midHeader, midBody} {
		_, err := rbRead(t, nc)
		assert.ErrorIs(t, err, errRBClosed, "Close must close every client connection")
	}
}

func TestNoGoroutineOutlivesCloseDuringBlockConnection(t *testing.T) {
	require.NoError(t, waitForNoLeaks(leakWait), "goroutines were left over before this test")
	s := mongosim.StartTB(t)
	c := rbClient(t, s, "blocked")
	ctx, cancel := context.WithTimeout(context.Background(), 3*rbTimeout)
	defer cancel()
	require.NoError(t, c.Database("admin").RunCommand(ctx, bson.D{
		{Key: "configureFailPoint", Value: "failCommand"},
		{Key: "mode", Value: "alwaysOn"},
		{Key: "data", Value: bson.D{
			{Key: "failCommands", Value: bson.A{"ping"}},
			{Key: "blockConnection", Value: true},
			{Key: "blockTimeMS", Value: 600_000},
		}},
	}).Err())
	s.ResetCommands()
	done := make(chan error, 1)
	go func() { done <- c.Ping(ctx, nil) }()
	rbWaitForCommand(t, s, "ping", "blocked")

	rbCloseAndVerifyWith(t, s, done, c)
}

// rbCloseAndVerifyWith is rbCloseAndVerify for a test with one driver call
// in flight: the call must fail once the server is gone, before the client
// disconnects.
func rbCloseAndVerifyWith(t *testing.T, s *mongosim.Server, inFlight <-chan error, c *mongo.Client) {
	t.Helper()
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(3 * rbTimeout):
		t.Fatal("Server.Close did not return while a command was in progress")
	}
	select {
	case err := <-inFlight:
		assert.Error(t, err, "the command in flight must fail when the server closes")
	case <-time.After(3 * rbTimeout):
		t.Fatal("the command in flight did not end after Close")
	}
	rbCloseAndVerify(t, s, c)
}

func TestNoGoroutineOutlivesCloseDuringGetMore(t *testing.T) {
	require.NoError(t, waitForNoLeaks(leakWait), "goroutines were left over before this test")
	s := mongosim.StartTB(t)
	// Once the server is gone the driver's stream tries to resume; a short
	// server selection timeout makes that attempt give up quickly. Not
	// too short: under -race on a loaded machine the first discovery of
	// the server has taken longer than a second.
	c, err := mongo.Connect(options.Client().ApplyURI(s.URI()).SetAppName("waiter").SetServerSelectionTimeout(5 * time.Second))
	require.NoError(t, err)
	// Should the test fail before rbCloseAndVerifyWith disconnects it, the
	// client must not outlive it and fail the leak checks of the next tests.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), rbTimeout)
		defer cancel()
		_ = c.Disconnect(ctx)
	})
	// No deadline: the driver refuses to wait on a getMore whose
	// maxAwaitTime does not fit in the context's remaining time.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs, err := c.Database("test").Collection("c").Watch(ctx, mongo.Pipeline{},
		options.ChangeStream().SetMaxAwaitTime(10*time.Minute))
	require.NoError(t, err)
	s.ResetCommands()
	done := make(chan error, 1)
	go func() {
		if cs.Next(ctx) {
			done <- errors.New("unexpected event")
			return
		}
		done <- cs.Err()
	}()
	rbWaitForCommand(t, s, "getMore", "waiter")

	rbCloseAndVerifyWith(t, s, done, c)
	_ = cs.Close(context.Background())
}
