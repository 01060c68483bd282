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

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

func TestTokenRoundTrip(t *testing.T) {
	t.Parallel()
	cases := []resumeToken{
		hwmToken(bson.Timestamp{T: 1, I: 0}),
		hwmToken(bson.Timestamp{T: 1700000000, I: 42}),
		{ts: bson.Timestamp{T: 1700000000, I: 7}, uuid: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
		{ts: bson.Timestamp{T: 0xFFFFFFFF, I: 0xFFFFFFFF}, fromInvalidate: true, uuid: [16]byte{0xff}},
	}
	for _, tok := range cases {
		doc := tok.doc()
		v, err := doc.LookupErr("_data")
		require.NoError(t, err)
		s := v.StringValue()
		assert.Equal(t, strings.ToUpper(s), s, "the hex is upper case")
		raw, err := hex.DecodeString(s)
		require.NoError(t, err)
		assert.Equal(t, byte(0x82), raw[0])
		assert.Equal(t, tok.ts.T, uint32(raw[1])<<24|uint32(raw[2])<<16|uint32(raw[3])<<8|uint32(raw[4]))
		assert.Equal(t, tok.ts.I, uint32(raw[5])<<24|uint32(raw[6])<<16|uint32(raw[7])<<8|uint32(raw[8]))
		got, err := decodeResumeToken("resumeAfter", bsoncore.Value{Type: bsoncore.TypeEmbeddedDocument, Data: doc})
		require.NoError(t, err)
		assert.Equal(t, tok, got)
		// Lower-case hex decodes too, as a real server accepts it.
		got, err = parseTokenData(strings.ToLower(s))
		require.NoError(t, err)
		assert.Equal(t, tok, got)
	}
}

func TestTokenOrdering(t *testing.T) {
	t.Parallel()
	ts := func(t, i uint32) bson.Timestamp { return bson.Timestamp{T: t, I: i} }
	uuid := [16]byte{9, 9, 9}
	// In stream order.
	ordered := []resumeToken{
		hwmToken(ts(10, 1)),
		{ts: ts(10, 1), uuid: uuid},
		{ts: ts(10, 1), uuid: uuid, fromInvalidate: true},
		hwmToken(ts(10, 2)),
		{ts: ts(10, 2)},
		hwmToken(ts(11, 0)),
		{ts: ts(11, 0), uuid: uuid},
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
	// A real server's token: another layout.
	assert.Equal(t, codeInvalidResumeToken, codeOf(docVal(bson.D{{Key: "_data", Value: "8263F5C1D6000000022B022C0100296E5A1004"}})))

	// Random bytes and mutations of a valid token never panic.
	valid := resumeToken{ts: bson.Timestamp{T: 5, I: 6}}.bytes()
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		var b []byte
		if i%2 == 0 {
			b = make([]byte, r.IntN(40))
			for j := range b {
				b[j] = byte(r.Uint32())
			}
		} else {
			b = append([]byte(nil), valid[:]...)
			b[r.IntN(len(b))] = byte(r.Uint32())
			b = b[:r.IntN(len(b)+1)]
		}
		s := strings.ToUpper(hex.EncodeToString(b))
		if tok, err := parseTokenData(s); err == nil {
			again := tok.bytes()
			assert.True(t, bytes.Equal(again[:], b), "a token that decodes re-encodes to its bytes")
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
		id, _ := lookup(e.docKey, "_id")
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
	c, err := mongo.Connect(options.Client().ApplyURI(s.URI()))
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
		updateDesc: &updateDescription{updatedFields: bson.D{{Key: "a", Value: "y"}}, removedFields: []string{"b"}}})
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
	// Three more before the next getMore: one is lost.
	for i := 3; i < 6; i++ {
		appendTestEntry(s, insertEntry("db", "c", i))
	}
	require.False(t, cs.Next(ctx))
	var ce mongo.CommandError
	require.ErrorAs(t, cs.Err(), &ce)
	assert.Equal(t, int32(286), ce.Code)
	assert.True(t, ce.HasErrorLabel(labelNonResumableChangeStreamError))
}
