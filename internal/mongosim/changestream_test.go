package mongosim_test

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func csSetup(t *testing.T, opts ...mongosim.Option) (*mongosim.Server, *mongo.Client, context.Context) {
	t.Helper()
	s := mongosim.StartTB(t, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	c, err := mongo.Connect(testclient.Options(s.URI()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return s, c, ctx
}

// sessCtx returns ctx carrying a new explicit session, so that raw
// aggregate and getMore commands share one lsid as the driver's cursors do.
func sessCtx(t *testing.T, ctx context.Context, c *mongo.Client) context.Context {
	t.Helper()
	sess, err := c.StartSession()
	require.NoError(t, err)
	t.Cleanup(func() { sess.EndSession(context.Background()) })
	return mongo.NewSessionContext(ctx, sess)
}

func keysOf(r bson.Raw) []string {
	els, _ := r.Elements()
	out := make([]string, 0, len(els))
	for _, e := range els {
		out = append(out, e.Key())
	}
	return out
}

// tokenTime reads the cluster time from bytes 1..8 of a token, as tools do.
func tokenTime(t *testing.T, tok bson.Raw) bson.Timestamp {
	t.Helper()
	data := tok.Lookup("_data").StringValue()
	b, err := hex.DecodeString(data)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(b), 9)
	require.Equal(t, byte(0x82), b[0])
	return bson.Timestamp{T: binary.BigEndian.Uint32(b[1:5]), I: binary.BigEndian.Uint32(b[5:9])}
}

// hwmTokenHex writes a high-water-mark token by hand, in the server's
// version-2 KeyString layout: Timestamp (0x82 + 8 bytes), version 2 (2B04),
// tokenType 0 (29), txnOpIndex 0 (29), fromInvalidate false (6E), end (04).
func hwmTokenHex(ts bson.Timestamp) string {
	return fmt.Sprintf("82%08X%08X2B0429296E04", ts.T, ts.I)
}

// eventTokenHex writes an insert event's token by hand: tokenType 128
// (2C0100), the UUID as binData subtype 4 (5A1004...), and an
// eventIdentifier {operationType: "insert"} without a documentKey, so it
// names no real event.
func eventTokenHex(ts bson.Timestamp, uuid [16]byte) string {
	return fmt.Sprintf("82%08X%08X2B042C0100296E5A1004%X463C%X003C%X000004",
		ts.T, ts.I, uuid[:], "operationType", "insert")
}

func clusterTimeOf(r bson.Raw) bson.Timestamp {
	tt, ii := r.Lookup("clusterTime").Timestamp()
	return bson.Timestamp{T: tt, I: ii}
}

func nextN(t *testing.T, ctx context.Context, cs *mongo.ChangeStream, n int) []bson.Raw {
	t.Helper()
	var out []bson.Raw
	for len(out) < n && cs.Next(ctx) {
		out = append(out, append(bson.Raw(nil), cs.Current...))
	}
	require.NoError(t, cs.Err())
	require.Len(t, out, n)
	return out
}

func cmdErrOf(t *testing.T, err error) mongo.CommandError {
	t.Helper()
	require.Error(t, err)
	var ce mongo.CommandError
	require.ErrorAs(t, err, &ce, "%v", err)
	return ce
}

func TestChangeStreamEventShapes(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	coll := c.Database("db").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(5*time.Second))
	require.NoError(t, err)
	defer cs.Close(ctx)

	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}})
	require.NoError(t, err)
	_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 2}}}})
	require.NoError(t, err)
	_, err = coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "b", Value: 3}})
	require.NoError(t, err)
	_, err = coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)

	evs := nextN(t, ctx, cs, 4)
	want := []struct {
		op   string
		keys []string
	}{
		{"insert", []string{"_id", "operationType", "clusterTime", "wallTime", "fullDocument", "ns", "documentKey"}},
		{"update", []string{"_id", "operationType", "clusterTime", "wallTime", "ns", "documentKey", "updateDescription"}},
		{"replace", []string{"_id", "operationType", "clusterTime", "wallTime", "fullDocument", "ns", "documentKey"}},
		{"delete", []string{"_id", "operationType", "clusterTime", "wallTime", "ns", "documentKey"}},
	}
	var prev string
	for i, ev := range evs {
		assert.Equal(t, want[i].op, ev.Lookup("operationType").StringValue())
		assert.Equal(t, want[i].keys, keysOf(ev))
		assert.Equal(t, bson.TypeDateTime, ev.Lookup("wallTime").Type)
		assert.Equal(t, "db", ev.Lookup("ns", "db").StringValue())
		assert.Equal(t, "c", ev.Lookup("ns", "coll").StringValue())
		id := ev.Lookup("_id").Document()
		assert.Equal(t, clusterTimeOf(ev), tokenTime(t, id), "token bytes 1..8 are the clusterTime")
		data := id.Lookup("_data").StringValue()
		assert.Greater(t, data, prev, "tokens increase")
		prev = data
	}
	ud := evs[1].Lookup("updateDescription").Document()
	assert.Equal(t, []string{"updatedFields", "removedFields", "truncatedArrays"}, keysOf(ud))
	assert.Equal(t, int32(2), ud.Lookup("updatedFields", "a").Int32())
	assert.Equal(t, int32(3), evs[2].Lookup("fullDocument", "b").Int32())
}

func TestChangeStreamUpdateLookup(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	coll := c.Database("db").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetFullDocument(options.UpdateLookup).SetMaxAwaitTime(5*time.Second))
	require.NoError(t, err)
	defer cs.Close(ctx)
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}})
	require.NoError(t, err)
	_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 2}}}})
	require.NoError(t, err)
	evs := nextN(t, ctx, cs, 2)
	assert.Equal(t, []string{"_id", "operationType", "clusterTime", "wallTime", "ns", "documentKey", "updateDescription", "fullDocument"}, keysOf(evs[1]))
	assert.Equal(t, int32(2), evs[1].Lookup("fullDocument", "a").Int32())
}

func TestChangeStreamPostBatchResumeToken(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	db := c.Database("db")
	sctx := sessCtx(t, ctx, c)
	var agg bson.Raw
	agg, err := db.RunCommand(sctx, bson.D{
		{Key: "aggregate", Value: "c"},
		{Key: "pipeline", Value: bson.A{
			bson.D{{Key: "$changeStream", Value: bson.D{}}},
			bson.D{{Key: "$match", Value: bson.D{{Key: "operationType", Value: "delete"}}}},
		}},
		{Key: "cursor", Value: bson.D{}},
	}).Raw()
	require.NoError(t, err)
	cur := agg.Lookup("cursor").Document()
	assert.Equal(t, []string{"firstBatch", "postBatchResumeToken", "id", "ns"}, keysOf(cur))
	assert.Equal(t, "db.c", cur.Lookup("ns").StringValue())
	id := cur.Lookup("id").Int64()
	require.NotZero(t, id)
	pbrt0 := cur.Lookup("postBatchResumeToken").Document()
	opTime := agg.Lookup("operationTime")
	ot, oi := opTime.Timestamp()
	assert.Equal(t, bson.Timestamp{T: ot, I: oi}, tokenTime(t, pbrt0))

	// An insert the $match filters out still moves the PBRT past it.
	_, err = db.Collection("c").InsertOne(ctx, bson.D{{Key: "x", Value: 1}})
	require.NoError(t, err)
	gm, err := db.RunCommand(sctx, bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}, {Key: "maxTimeMS", Value: 100}}).Raw()
	require.NoError(t, err)
	cur = gm.Lookup("cursor").Document()
	vals, _ := cur.Lookup("nextBatch").Array().Values()
	assert.Empty(t, vals, "no events")
	pbrt1 := cur.Lookup("postBatchResumeToken").Document()
	assert.Greater(t, pbrt1.Lookup("_data").StringValue(), pbrt0.Lookup("_data").StringValue())
	assert.Equal(t, id, cur.Lookup("id").Int64())

	// batchSize 0: an empty first batch and an open cursor.
	agg, err = db.RunCommand(sctx, bson.D{
		{Key: "aggregate", Value: "c"},
		{Key: "pipeline", Value: bson.A{bson.D{{Key: "$changeStream", Value: bson.D{{Key: "startAtOperationTime", Value: bson.Timestamp{T: ot, I: oi}}}}}}},
		{Key: "cursor", Value: bson.D{{Key: "batchSize", Value: 0}}},
	}).Raw()
	require.NoError(t, err)
	cur = agg.Lookup("cursor").Document()
	vals, _ = cur.Lookup("firstBatch").Array().Values()
	assert.Empty(t, vals)
	assert.NotZero(t, cur.Lookup("id").Int64())
	assert.Equal(t, bson.TypeEmbeddedDocument, cur.Lookup("postBatchResumeToken").Type)
}

func TestChangeStreamGetMoreWakesOnInsert(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	coll := c.Database("db").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(10*time.Second))
	require.NoError(t, err)
	defer cs.Close(ctx)
	go func() {
		time.Sleep(100 * time.Millisecond)
		_, _ = coll.InsertOne(context.Background(), bson.D{{Key: "x", Value: 1}})
	}()
	start := time.Now()
	require.True(t, cs.Next(ctx), "%v", cs.Err())
	elapsed := time.Since(start)
	assert.Less(t, elapsed, 500*time.Millisecond, "a waiting getMore wakes on an insert")
	t.Logf("woke after %v", elapsed)
}

func TestChangeStreamInvalidateCollection(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	db := c.Database("db")
	coll := db.Collection("c")
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 0}})
	require.NoError(t, err)
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(5*time.Second))
	require.NoError(t, err)
	defer cs.Close(ctx)
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)
	require.NoError(t, coll.Drop(ctx))
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}})
	require.NoError(t, err)

	evs := nextN(t, ctx, cs, 3)
	assert.Equal(t, "insert", evs[0].Lookup("operationType").StringValue())
	assert.Equal(t, "drop", evs[1].Lookup("operationType").StringValue())
	assert.Equal(t, []string{"_id", "operationType", "clusterTime", "wallTime", "ns"}, keysOf(evs[1]))
	assert.Equal(t, "invalidate", evs[2].Lookup("operationType").StringValue())
	assert.Equal(t, []string{"_id", "operationType", "clusterTime", "wallTime"}, keysOf(evs[2]))
	assert.Equal(t, clusterTimeOf(evs[1]), clusterTimeOf(evs[2]))
	assert.Greater(t, evs[2].Lookup("_id", "_data").StringValue(), evs[1].Lookup("_id", "_data").StringValue())
	assert.False(t, cs.Next(ctx), "nothing after invalidate")
	assert.Equal(t, int64(0), cs.ID())

	invalidate := evs[2].Lookup("_id").Document()
	// resumeAfter an invalidate token is refused.
	_, err = coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(invalidate))
	ce := cmdErrOf(t, err)
	assert.Equal(t, int32(260), ce.Code)
	// startAfter it starts after the drop: the re-insert comes first.
	cs2, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetStartAfter(invalidate).SetMaxAwaitTime(5*time.Second))
	require.NoError(t, err)
	defer cs2.Close(ctx)
	evs = nextN(t, ctx, cs2, 1)
	assert.Equal(t, "insert", evs[0].Lookup("operationType").StringValue())
	assert.Equal(t, int32(2), evs[0].Lookup("documentKey", "_id").Int32())
}

func TestChangeStreamInvalidateRename(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	db := c.Database("db")
	coll := db.Collection("c")
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 0}})
	require.NoError(t, err)
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(5*time.Second))
	require.NoError(t, err)
	defer cs.Close(ctx)
	require.NoError(t, c.Database("admin").RunCommand(ctx, bson.D{
		{Key: "renameCollection", Value: "db.c"}, {Key: "to", Value: "db.d"},
	}).Err())
	evs := nextN(t, ctx, cs, 2)
	assert.Equal(t, "rename", evs[0].Lookup("operationType").StringValue())
	assert.Equal(t, []string{"_id", "operationType", "clusterTime", "wallTime", "ns", "to"}, keysOf(evs[0]))
	assert.Equal(t, "d", evs[0].Lookup("to", "coll").StringValue())
	assert.Equal(t, "invalidate", evs[1].Lookup("operationType").StringValue())

	// Resuming after the rename returns the invalidate.
	cs2, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(evs[0].Lookup("_id").Document()).SetMaxAwaitTime(time.Second))
	require.NoError(t, err)
	defer cs2.Close(ctx)
	got := nextN(t, ctx, cs2, 1)
	assert.Equal(t, "invalidate", got[0].Lookup("operationType").StringValue())
}

func TestChangeStreamInvalidateDatabase(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	db := c.Database("db")
	_, err := db.Collection("a").InsertOne(ctx, bson.D{{Key: "_id", Value: 0}})
	require.NoError(t, err)
	cs, err := db.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(5*time.Second))
	require.NoError(t, err)
	defer cs.Close(ctx)
	cluster, err := c.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(5*time.Second))
	require.NoError(t, err)
	defer cluster.Close(ctx)

	_, err = db.Collection("a").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)
	require.NoError(t, db.Drop(ctx))
	_, err = c.Database("other").Collection("x").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)

	evs := nextN(t, ctx, cs, 4)
	ops := []string{}
	for _, ev := range evs {
		ops = append(ops, ev.Lookup("operationType").StringValue())
	}
	assert.Equal(t, []string{"insert", "drop", "dropDatabase", "invalidate"}, ops)
	assert.Equal(t, []string{"db"}, keysOf(evs[2].Lookup("ns").Document()))
	assert.False(t, cs.Next(ctx))
	assert.Equal(t, int64(0), cs.ID())

	// The cluster stream sees everything and is not invalidated.
	evs = nextN(t, ctx, cluster, 4)
	ops = ops[:0]
	for _, ev := range evs {
		ops = append(ops, ev.Lookup("operationType").StringValue())
	}
	assert.Equal(t, []string{"insert", "drop", "dropDatabase", "insert"}, ops)
	assert.NotZero(t, cluster.ID())
}

func TestChangeStreamHistoryLost(t *testing.T) {
	t.Parallel()
	s, c, ctx := csSetup(t, mongosim.WithOplogMax(3))
	coll := c.Database("db").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(5*time.Second))
	require.NoError(t, err)
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)
	first := nextN(t, ctx, cs, 1)[0]
	require.NoError(t, cs.Close(ctx))
	for i := 2; i < 8; i++ {
		_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}})
		require.NoError(t, err)
	}
	_, err = coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(first.Lookup("_id").Document()))
	ce := cmdErrOf(t, err)
	assert.Equal(t, int32(286), ce.Code)
	assert.True(t, ce.HasErrorLabel("NonResumableChangeStreamError"))
	_, err = coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetStartAtOperationTime(&bson.Timestamp{T: 1, I: 1}))
	assert.Equal(t, int32(286), cmdErrOf(t, err).Code)

	// TruncateOplog: even a recent token is lost.
	cs, err = coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(5*time.Second))
	require.NoError(t, err)
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 100}})
	require.NoError(t, err)
	tok := nextN(t, ctx, cs, 1)[0].Lookup("_id").Document()
	require.NoError(t, cs.Close(ctx))
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 101}})
	require.NoError(t, err)
	s.TruncateOplog()
	_, err = coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(tok))
	assert.Equal(t, int32(286), cmdErrOf(t, err).Code)
}

func TestChangeStreamIDModified(t *testing.T) {
	t.Parallel()
	for name, stage := range map[string]bson.D{
		"unset":   {{Key: "$unset", Value: "_id"}},
		"project": {{Key: "$project", Value: bson.D{{Key: "_id", Value: 0}}}},
		"set":     {{Key: "$set", Value: bson.D{{Key: "_id", Value: "x"}}}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, c, ctx := csSetup(t)
			coll := c.Database("db").Collection("c")
			cs, err := coll.Watch(ctx, mongo.Pipeline{stage}, options.ChangeStream().SetMaxAwaitTime(5*time.Second))
			require.NoError(t, err)
			defer cs.Close(ctx)
			_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
			require.NoError(t, err)
			assert.False(t, cs.Next(ctx))
			ce := cmdErrOf(t, cs.Err())
			assert.Equal(t, int32(280), ce.Code)
			assert.True(t, ce.HasErrorLabel("NonResumableChangeStreamError"))
			assert.Contains(t, ce.Message, "Encountered an event whose _id field, which contains the resume token, was modified by the pipeline.")
		})
	}
}

func TestChangeStreamGetMoreOtherSession(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	db := c.Database("db")
	s1, s2 := sessCtx(t, ctx, c), sessCtx(t, ctx, c)
	agg, err := db.RunCommand(s1, bson.D{
		{Key: "aggregate", Value: "c"},
		{Key: "pipeline", Value: bson.A{bson.D{{Key: "$changeStream", Value: bson.D{}}}}},
		{Key: "cursor", Value: bson.D{}},
	}).Raw()
	require.NoError(t, err)
	id := agg.Lookup("cursor", "id").Int64()
	err = db.RunCommand(s2, bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}, {Key: "maxTimeMS", Value: 10}}).Err()
	assert.Equal(t, int32(50738), cmdErrOf(t, err).Code)
	// The owner can still use it.
	require.NoError(t, db.RunCommand(s1, bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}, {Key: "maxTimeMS", Value: 10}}).Err())
}

func TestChangeStreamDatabaseAndClusterNamespaces(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	sctx := sessCtx(t, ctx, c)
	agg, err := c.Database("db").RunCommand(sctx, bson.D{
		{Key: "aggregate", Value: 1},
		{Key: "pipeline", Value: bson.A{bson.D{{Key: "$changeStream", Value: bson.D{}}}}},
		{Key: "cursor", Value: bson.D{}},
	}).Raw()
	require.NoError(t, err)
	assert.Equal(t, "db.$cmd.aggregate", agg.Lookup("cursor", "ns").StringValue())
	id := agg.Lookup("cursor", "id").Int64()
	require.NoError(t, c.Database("db").RunCommand(sctx, bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "$cmd.aggregate"}, {Key: "maxTimeMS", Value: 10}}).Err())

	agg, err = c.Database("admin").RunCommand(sctx, bson.D{
		{Key: "aggregate", Value: 1},
		{Key: "pipeline", Value: bson.A{bson.D{{Key: "$changeStream", Value: bson.D{{Key: "allChangesForCluster", Value: true}}}}}},
		{Key: "cursor", Value: bson.D{}},
	}).Raw()
	require.NoError(t, err)
	assert.Equal(t, "admin.$cmd.aggregate", agg.Lookup("cursor", "ns").StringValue())
}

func TestChangeStreamAggregateErrors(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	cs := func(spec bson.D, more ...bson.D) bson.A {
		a := bson.A{bson.D{{Key: "$changeStream", Value: spec}}}
		for _, m := range more {
			a = append(a, m)
		}
		return a
	}
	tok := bson.D{{Key: "_data", Value: hwmTokenHex(bson.Timestamp{T: 1, I: 1})}}
	cases := []struct {
		name     string
		db       string
		target   any
		pipeline bson.A
		noCursor bool
		code     int32
		msg      string
	}{
		{"no cursor", "db", "c", cs(bson.D{}), true, 9, "The 'cursor' option is required, except for aggregate with the explain argument"},
		{"unknown field", "db", "c", cs(bson.D{{Key: "x", Value: 1}}), false, 40415, "BSON field '$changeStream.x' is an unknown field."},
		{"bad fullDocument", "db", "c", cs(bson.D{{Key: "fullDocument", Value: "nope"}}), false, 2, "Enumeration value 'nope' for field '$changeStream.fullDocument' is not a valid value."},
		{"bad fullDocumentBeforeChange", "db", "c", cs(bson.D{{Key: "fullDocumentBeforeChange", Value: "updateLookup"}}), false, 2, ""},
		{"resumeAfter and startAfter", "db", "c", cs(bson.D{{Key: "resumeAfter", Value: tok}, {Key: "startAfter", Value: tok}}), false, 50865, "Do not specify both 'resumeAfter' and 'startAfter' in a $changeStream stage"},
		{"token and time", "db", "c", cs(bson.D{{Key: "resumeAfter", Value: tok}, {Key: "startAtOperationTime", Value: bson.Timestamp{T: 1, I: 1}}}), false, 40674, "Only one type of resume option is allowed, but multiple were found"},
		{"bad hex", "db", "c", cs(bson.D{{Key: "resumeAfter", Value: bson.D{{Key: "_data", Value: "zz"}}}}), false, 9, "resume token string was not a valid hex string"},
		{"not first", "db", "c", bson.A{bson.D{{Key: "$match", Value: bson.D{}}}, bson.D{{Key: "$changeStream", Value: bson.D{}}}}, false, 40602, ""},
		{"group", "db", "c", cs(bson.D{}, bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: nil}}}}), false, 20, "$group is not permitted in a $changeStream pipeline"},
		{"unknown stage", "db", "c", cs(bson.D{}, bson.D{{Key: "$nope", Value: 1}}), false, 40324, ""},
		{"admin database", "admin", 1, cs(bson.D{}), false, 73, "$changeStream may not be opened on the internal admin database"},
		{"config database", "config", 1, cs(bson.D{}), false, 73, "$changeStream may not be opened on the internal config database"},
		{"local collection", "local", "c", cs(bson.D{}), false, 73, ""},
		{"system collection", "db", "system.views", cs(bson.D{}), false, 73, "$changeStream may not be opened on the internal db.system.views collection"},
		{"cluster elsewhere", "db", 1, cs(bson.D{{Key: "allChangesForCluster", Value: true}}), false, 72, "A $changeStream with 'allChangesForCluster:true' may only be opened on the 'admin' database, and with no collection name; found db.$cmd.aggregate"},
		{"cluster on collection", "admin", "c", cs(bson.D{{Key: "allChangesForCluster", Value: true}}), false, 72, ""},
	}
	for _, tc := range cases {
		cmd := bson.D{{Key: "aggregate", Value: tc.target}, {Key: "pipeline", Value: tc.pipeline}}
		if !tc.noCursor {
			cmd = append(cmd, bson.E{Key: "cursor", Value: bson.D{}})
		}
		err := c.Database(tc.db).RunCommand(ctx, cmd).Err()
		ce := cmdErrOf(t, err)
		assert.Equal(t, tc.code, ce.Code, tc.name)
		if tc.msg != "" {
			assert.Equal(t, tc.msg, ce.Message, tc.name)
		}
	}
}

func TestChangeStreamResumeTokenNotFound(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	coll := c.Database("db").Collection("c")
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 0}})
	require.NoError(t, err)
	// A token whose time is retained but names another event than the one
	// logged then: the first batch meets that event and fails.
	var op bson.Raw
	op, err = c.Database("db").RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Raw()
	require.NoError(t, err)
	ot, oi := op.Lookup("operationTime").Timestamp()
	// A collection UUID no event has.
	uuid := [16]byte{0xAB}
	tok := bson.D{{Key: "_data", Value: eventTokenHex(bson.Timestamp{T: ot, I: oi}, uuid)}}
	_, err = coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(tok))
	ce := cmdErrOf(t, err)
	assert.Equal(t, int32(280), ce.Code)
	assert.True(t, ce.HasErrorLabel("NonResumableChangeStreamError"))
	assert.Contains(t, ce.Message, "Executor error during aggregate command on namespace: db.c :: caused by :: cannot resume stream; the resume token was not found. {_data: ")
}

// TestCursorKilledWhileWaiting checks what a getMore that is waiting when
// its cursor dies reports: CursorKilled for killCursors, and a resumable
// InterruptedAtShutdown for the restart KillAllCursors stands for.
func TestCursorKilledWhileWaiting(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		kill      func(s *mongosim.Server, db *mongo.Database, ctx context.Context, id int64)
		code      int32
		resumable bool
	}{
		{"killCursors", func(_ *mongosim.Server, db *mongo.Database, ctx context.Context, id int64) {
			require.NoError(t, db.RunCommand(ctx, bson.D{{Key: "killCursors", Value: "c"}, {Key: "cursors", Value: bson.A{id}}}).Err())
		}, 237, false},
		{"KillAllCursors", func(s *mongosim.Server, _ *mongo.Database, _ context.Context, _ int64) {
			s.KillAllCursors()
		}, 11600, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, c, ctx := csSetup(t)
			db := c.Database("db")
			owner := sessCtx(t, ctx, c)
			agg, err := db.RunCommand(owner, bson.D{
				{Key: "aggregate", Value: "c"},
				{Key: "pipeline", Value: bson.A{bson.D{{Key: "$changeStream", Value: bson.D{}}}}},
				{Key: "cursor", Value: bson.D{}},
			}).Raw()
			require.NoError(t, err)
			id := agg.Lookup("cursor", "id").Int64()
			done := make(chan error, 1)
			go func() {
				done <- db.RunCommand(owner, bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}, {Key: "maxTimeMS", Value: 20000}}).Err()
			}()
			require.Eventually(t, func() bool { return s.AwaitingGetMores() == 1 }, 10*time.Second, time.Millisecond,
				"the getMore never started waiting")
			tc.kill(s, db, sessCtx(t, ctx, c), id)
			ce := cmdErrOf(t, <-done)
			assert.Equal(t, tc.code, ce.Code)
			assert.Equal(t, tc.resumable, ce.HasErrorLabel("ResumableChangeStreamError"))
			err = db.RunCommand(owner, bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}}).Err()
			assert.Equal(t, int32(43), cmdErrOf(t, err).Code, "the cursor is gone")
		})
	}
}

// TestManyConcurrentWatchers runs 50 driver change streams on one
// collection while a writer inserts: each must see every event, in order.
func TestManyConcurrentWatchers(t *testing.T) {
	t.Parallel()
	const watchers, events = 50, 100
	_, c, ctx := csSetup(t)
	coll := c.Database("db").Collection("c")
	streams := make([]*mongo.ChangeStream, watchers)
	for i := range streams {
		cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(time.Second))
		require.NoError(t, err)
		t.Cleanup(func() { _ = cs.Close(context.Background()) })
		streams[i] = cs
	}
	var wg sync.WaitGroup
	got := make([][]int32, watchers)
	for i, cs := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for len(got[i]) < events && cs.Next(ctx) {
				got[i] = append(got[i], cs.Current.Lookup("fullDocument", "n").Int32())
			}
		}()
	}
	for n := range events {
		_, err := coll.InsertOne(ctx, bson.D{{Key: "n", Value: int32(n)}})
		require.NoError(t, err)
	}
	wg.Wait()
	want := make([]int32, events)
	for n := range want {
		want[n] = int32(n)
	}
	for i := range got {
		assert.Equal(t, want, got[i], "watcher %d: %v", i, streams[i].Err())
	}
}

// TestDriverWatchResumesAfterClosedConnection: the driver's own stream
// resumes, with one new aggregate, when its getMore loses the connection.
func TestDriverWatchResumesAfterClosedConnection(t *testing.T) {
	t.Parallel()
	s, c, ctx := csSetup(t)
	coll := c.Database("db").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	require.NoError(t, err)
	defer cs.Close(context.Background())
	require.NoError(t, c.Database("admin").RunCommand(ctx, bson.D{
		{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: bson.D{{Key: "times", Value: 1}}},
		{Key: "data", Value: bson.D{{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "closeConnection", Value: true}}},
	}).Err())
	_, err = coll.InsertOne(ctx, bson.D{{Key: "n", Value: int32(1)}})
	require.NoError(t, err)
	s.ResetCommands()
	require.True(t, cs.Next(ctx), "err: %v", cs.Err())
	assert.Equal(t, int32(1), cs.Current.Lookup("fullDocument", "n").Int32())
	aggregates := 0
	for _, cmd := range s.Commands() {
		if cmd.Name == "aggregate" {
			aggregates++
		}
	}
	assert.Equal(t, 1, aggregates)
}

// TestResumeWithAnotherCollectionsToken: a collection stream resumed with
// a token of another collection's event fails, as the server fails it,
// with ChangeStreamFatalError (280) once it meets an event of its own
// collection, which cannot be the token's.
func TestResumeWithAnotherCollectionsToken(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	db := c.Database("db")
	a, b := db.Collection("a"), db.Collection("b")
	cs, err := a.Watch(ctx, mongo.Pipeline{})
	require.NoError(t, err)
	_, err = a.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)
	require.True(t, cs.Next(ctx), "%v", cs.Err())
	tokenOfA := cs.ResumeToken()
	require.NoError(t, cs.Close(ctx))

	_, err = b.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)
	_, err = b.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(tokenOfA))
	ce := cmdErrOf(t, err)
	assert.Equal(t, int32(280), ce.Code)
	assert.Contains(t, ce.Message, "the resume token was not found")
}
