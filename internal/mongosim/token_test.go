package mongosim

import (
	"bytes"
	"context"
	"encoding/hex"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"github.com/changestream-go/changestream/internal/testclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// testEventToken builds an event token the way buildEventToken does.
func testEventToken(t *testing.T, ts bson.Timestamp, uuid [16]byte, eventID bson.D, fromInvalidate bool, txnOpIndex int32) resumeToken {
	t.Helper()
	raw, err := bson.Marshal(eventID)
	require.NoError(t, err)
	tok, err := tokenSpec{ts: ts, uuid: uuid, hasUUID: true, eventID: raw, fromInvalidate: fromInvalidate, txnOpIndex: txnOpIndex}.build()
	require.NoError(t, err)
	return tok
}

func crudID(op string, id any) bson.D {
	return bson.D{{Key: "operationType", Value: op}, {Key: "documentKey", Value: bson.D{{Key: "_id", Value: id}}}}
}

// TestTokenRoundTrip pins the byte layout of version-2 tokens against the
// example the MongoDB manual gives for an insert ("Resume Tokens from
// Change Events": 82635019A0000000012B042C0100296E5A1004AB11...0004) and
// checks that every token decodes to what it was built from.
func TestTokenRoundTrip(t *testing.T) {
	t.Parallel()
	uuid := [16]byte{0xAB, 0x11, 0x54, 0xAC, 0xAC, 0xD8, 0x49, 0xA4, 0x8C, 0x61, 0x75, 0x6D, 0x70, 0xD3, 0xB2, 0x1F}
	oid, err := bson.ObjectIDFromHex("635019A078BE67426D7CF4D2")
	require.NoError(t, err)
	manual := testEventToken(t, bson.Timestamp{T: 0x635019A0, I: 1}, uuid, crudID("insert", oid), false, 0)
	assert.Equal(t, "82635019A0000000012B042C0100296E5A1004AB1154ACACD849A48C61756D70D3B21F"+
		"463C6F7065726174696F6E54797065003C696E736572740046646F63756D656E744B65790046645F69640064635019A078BE67426D7CF4D2000004",
		manual.data())
	assert.Empty(t, manual.typeBits, "an ObjectId key needs no type bits")

	cases := []resumeToken{
		hwmToken(bson.Timestamp{T: 1, I: 0}),
		hwmToken(bson.Timestamp{T: 1700000000, I: 42}),
		manual,
		manual.withFragment(1),
		manual.withFragment(3),
		testEventToken(t, bson.Timestamp{T: 1700000000, I: 7}, uuid, crudID("update", int32(-5)), false, 3),
		testEventToken(t, bson.Timestamp{T: 1700000000, I: 7}, uuid, crudID("delete", int64(1)<<40), false, 0),
		testEventToken(t, bson.Timestamp{T: 1700000000, I: 7}, uuid, crudID("replace", 2.0), false, 0),
		testEventToken(t, bson.Timestamp{T: 0xFFFFFFFF, I: 0xFFFFFFFF}, uuid, bson.D{{Key: "operationType", Value: "drop"}}, true, 0),
	}
	for _, tok := range cases {
		doc := tok.doc()
		v, err := doc.LookupErr("_data")
		require.NoError(t, err)
		s := v.StringValue()
		assert.Equal(t, strings.ToUpper(s), s, "the hex is upper case")
		got, err := decodeResumeToken("resumeAfter", bsoncore.Value{Type: bsoncore.TypeEmbeddedDocument, Data: doc})
		require.NoError(t, err)
		assert.Equal(t, tok, got)
		// Lower-case hex decodes too, as a real server accepts it.
		got, err = parseTokenData(strings.ToLower(s), []byte(tok.typeBits))
		require.NoError(t, err)
		assert.Equal(t, tok, got)
	}
}

// TestTokenTypeBits pins when _typeBits appear: only when a number of the
// key is not an int32 (key_string.h packs two bits per number, one per
// string, low bit first, and omits them when all are zero).
func TestTokenTypeBits(t *testing.T) {
	t.Parallel()
	uuid := [16]byte{1}
	ts := bson.Timestamp{T: 10, I: 1}
	for _, tc := range []struct {
		id   any
		bits []byte
	}{
		{int32(7), nil},
		{"seven", nil},
		// version, tokenType, txnOpIndex (6 bits), "insert" (1), then
		// the number: a long is 1 then 0, bits 7 and 8; the zero bit
		// still opens a second byte: 0x82 (two bytes follow) 0x80 0x00.
		{int64(7), []byte{0x82, 0x80, 0x00}},
		// A double is 01: bit 8 set, in a second byte.
		{7.0, []byte{0x82, 0x00, 0x01}},
	} {
		tok := testEventToken(t, ts, uuid, crudID("insert", tc.id), false, 0)
		assert.Equal(t, string(tc.bits), tok.typeBits, "%T", tc.id)
		doc := tok.doc()
		if tc.bits == nil {
			_, err := doc.LookupErr("_typeBits")
			assert.Error(t, err, "no _typeBits field for %T", tc.id)
		} else {
			sub, data, ok := doc.Lookup("_typeBits").BinaryOK()
			require.True(t, ok)
			assert.Equal(t, byte(0), sub)
			assert.Equal(t, tc.bits, data)
		}
	}
	// 1, int64(1) and 1.0 are one key: a resume compares KeyStrings.
	a := testEventToken(t, ts, uuid, crudID("insert", int32(1)), false, 0)
	b := testEventToken(t, ts, uuid, crudID("insert", 1.0), false, 0)
	assert.Zero(t, a.compare(b))
}

func TestTokenOrdering(t *testing.T) {
	t.Parallel()
	ts := func(t, i uint32) bson.Timestamp { return bson.Timestamp{T: t, I: i} }
	uuid := [16]byte{9, 9, 9}
	ev := func(tm bson.Timestamp, op int32, inv bool) resumeToken {
		return testEventToken(t, tm, uuid, crudID("insert", int32(1)), inv, op)
	}
	// In stream order.
	ordered := []resumeToken{
		hwmToken(ts(10, 1)),
		ev(ts(10, 1), 0, false),
		ev(ts(10, 1), 0, false).withFragment(1),
		ev(ts(10, 1), 0, false).withFragment(2),
		ev(ts(10, 1), 0, true),
		hwmToken(ts(10, 2)),
		ev(ts(10, 2), 0, false),
		ev(ts(10, 2), 1, false),
		ev(ts(10, 2), 200, false),
		ev(ts(10, 2), 70000, false),
		hwmToken(ts(11, 0)),
		ev(ts(11, 0), 0, false),
		hwmToken(ts(1<<31, 1)),
	}
	for i := 1; i < len(ordered); i++ {
		a, b := ordered[i-1], ordered[i]
		assert.Negative(t, a.compare(b), "%d", i)
		assert.Less(t, a.data(), b.data(), "hex order is byte order (%d)", i)
	}
	shuffled := append([]resumeToken(nil), ordered...)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	sort.Slice(shuffled, func(i, j int) bool { return shuffled[i].data() < shuffled[j].data() })
	assert.Equal(t, ordered, shuffled)
}

func TestTokenDecodeGarbage(t *testing.T) {
	t.Parallel()
	codeOf := func(v bsoncore.Value) int32 {
		_, err := decodeResumeToken("resumeAfter", v)
		require.Error(t, err)
		var ce *CommandError
		require.ErrorAs(t, err, &ce)
		return ce.Code
	}
	docVal := func(d bson.D) bsoncore.Value {
		b, err := bson.Marshal(d)
		require.NoError(t, err)
		return bsoncore.Value{Type: bsoncore.TypeEmbeddedDocument, Data: b}
	}
	assert.Equal(t, codeTypeMismatch, codeOf(bsoncore.Value{Type: bsoncore.TypeInt32, Data: bsoncore.AppendInt32(nil, 1)}))
	assert.Equal(t, int32(40647), codeOf(docVal(bson.D{})))
	assert.Equal(t, int32(40647), codeOf(docVal(bson.D{{Key: "_data", Value: 1}})))
	assert.Equal(t, codeFailedToParse, codeOf(docVal(bson.D{{Key: "_data", Value: "nonsense"}})))
	assert.Equal(t, codeFailedToParse, codeOf(docVal(bson.D{{Key: "_data", Value: "ABC"}})))
	assert.Equal(t, int32(40649), codeOf(docVal(bson.D{{Key: "_data", Value: ""}})))
	// A version-1 token of a 6.0 server: refused, naming the simulator.
	assert.Equal(t, codeInvalidResumeToken, codeOf(docVal(bson.D{{Key: "_data", Value: "8263F5C1D6000000022B022C0100296E5A1004"}})))

	// Random bytes and mutations of a valid token never panic.
	valid := []byte(testEventToken(t, bson.Timestamp{T: 5, I: 6}, [16]byte{3}, crudID("insert", "k"), false, 0).key)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		var b []byte
		if i%2 == 0 {
			b = make([]byte, r.IntN(40))
			for j := range b {
				b[j] = byte(r.Uint32())
			}
		} else {
			b = append([]byte(nil), valid...)
			b[r.IntN(len(b))] = byte(r.Uint32())
			b = b[:r.IntN(len(b)+1)]
		}
		s := strings.ToUpper(hex.EncodeToString(b))
		if tok, err := parseTokenData(s, nil); err == nil {
			assert.True(t, bytes.Equal([]byte(tok.key), b), "a token that decodes keeps its bytes")
		}
		// Arbitrary bytes as the whole value.
		_, _ = decodeResumeToken("startAfter", bsoncore.Value{Type: bsoncore.TypeEmbeddedDocument, Data: b})
	}
}

// The tests below drive change streams through the real driver with oplog
// entries appended directly, so that they do not depend on the CRUD
// commands.

// appendTestEntry logs e as the CRUD and DDL commands would.
func appendTestEntry(s *Server, e *oplogEntry) bson.Timestamp {
	st := s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	switch e.op {
	case opInsert, opUpdate, opReplace, opDelete:
		c := st.implicitCollLocked(e.db, e.coll)
		e.collUUID = c.uuid
		id, _ := query.Lookup(e.docKey, "_id")
		switch e.op {
		case opInsert:
			c.docs.insert(idKey(id), e.fullDoc)
		case opReplace:
			c.docs.replace(idKey(id), e.fullDoc)
		case opUpdate:
			if e.postImage != nil {
				c.docs.replace(idKey(id), e.postImage)
			}
		case opDelete:
			c.docs.remove(idKey(id))
		}
	case opDrop:
		if c := st.collLocked(e.db, e.coll); c != nil {
			e.collUUID = c.uuid
			delete(st.dbs[e.db].colls, e.coll)
		}
	}
	st.appendLocked(e)
	return e.ts
}

func internalClient(t *testing.T, s *Server) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(testclient.Options(s.URI()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

func insertEntry(db, coll string, id any, fields ...bson.E) *oplogEntry {
	doc := append(bson.D{{Key: "_id", Value: id}}, fields...)
	return &oplogEntry{op: opInsert, db: db, coll: coll, docKey: bson.D{{Key: "_id", Value: id}}, fullDoc: doc}
}

func TestInternalStreamEvents(t *testing.T) {
	t.Parallel()
	s := StartTB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := internalClient(t, s)
	coll := c.Database("db").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(5*time.Second))
	require.NoError(t, err)
	defer cs.Close(ctx)

	ts1 := appendTestEntry(s, insertEntry("db", "c", 1, bson.E{Key: "a", Value: "x"}))
	appendTestEntry(s, insertEntry("db", "other", 1))
	ts2 := appendTestEntry(s, &oplogEntry{op: opUpdate, db: "db", coll: "c", docKey: bson.D{{Key: "_id", Value: 1}},
		updateDesc: &query.UpdateDescription{UpdatedFields: bson.D{{Key: "a", Value: "y"}}, RemovedFields: []string{"b"}}})
	ts3 := appendTestEntry(s, &oplogEntry{op: opDrop, db: "db", coll: "c"})

	var got []bson.Raw
	for len(got) < 4 && cs.Next(ctx) {
		got = append(got, append(bson.Raw(nil), cs.Current...))
	}
	require.NoError(t, cs.Err())
	require.Len(t, got, 4)
	keys := func(r bson.Raw) []string {
		els, _ := r.Elements()
		var k []string
		for _, e := range els {
			k = append(k, e.Key())
		}
		return k
	}
	assert.Equal(t, []string{"_id", "operationType", "clusterTime", "wallTime", "fullDocument", "ns", "documentKey"}, keys(got[0]))
	assert.Equal(t, []string{"_id", "operationType", "clusterTime", "wallTime", "ns", "documentKey", "updateDescription"}, keys(got[1]))
	assert.Equal(t, []string{"_id", "operationType", "clusterTime", "wallTime", "ns"}, keys(got[2]))
	assert.Equal(t, []string{"_id", "operationType", "clusterTime", "wallTime"}, keys(got[3]))
	for i, want := range []bson.Timestamp{ts1, ts2, ts3, ts3} {
		tt, ii := got[i].Lookup("clusterTime").Timestamp()
		assert.Equal(t, want, bson.Timestamp{T: tt, I: ii})
	}
	assert.Equal(t, "invalidate", got[3].Lookup("operationType").StringValue())
	assert.False(t, cs.Next(ctx), "the stream ends after invalidate")
	assert.Equal(t, int64(0), cs.ID())
}

func TestInternalHistoryLostDuringStream(t *testing.T) {
	t.Parallel()
	s := StartTB(t, WithOplogMax(2))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := internalClient(t, s)
	coll := c.Database("db").Collection("c")
	appendTestEntry(s, insertEntry("db", "c", 0))
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(time.Second))
	require.NoError(t, err)
	defer cs.Close(ctx)
	// Two entries: the one the stream started at is dropped, but nothing
	// it has not seen.
	appendTestEntry(s, insertEntry("db", "c", 1))
	appendTestEntry(s, insertEntry("db", "c", 2))
	require.True(t, cs.Next(ctx))
	require.True(t, cs.Next(ctx))
	// Three more before the next getMore: one is lost. The open stream's
	// scan loses its place: CappedPositionLost (136), with no label, as
	// in the server's change_streams_oplog_rollover.js; only a new
	// aggregate from there gets ChangeStreamHistoryLost (286).
	for i := 3; i < 6; i++ {
		appendTestEntry(s, insertEntry("db", "c", i))
	}
	require.False(t, cs.Next(ctx))
	var ce mongo.CommandError
	require.ErrorAs(t, cs.Err(), &ce)
	assert.Equal(t, int32(136), ce.Code)
	assert.Empty(t, ce.Labels)
	assert.Contains(t, ce.Message, "Executor error during getMore :: caused by :: CollectionScan died due to position in capped collection being deleted")

	_, err = coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(cs.ResumeToken()))
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, int32(286), ce.Code)
	assert.True(t, ce.HasErrorLabel(labelNonResumableChangeStreamError))
}
