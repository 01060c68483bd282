package mongosim_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// splitStage is the pipeline of the change-streams spec's prose test 19.
var splitStage = mongo.Pipeline{{{Key: "$changeStreamSplitLargeEvent", Value: bson.D{}}}}

// largeUpdate sets up prose test 19: a collection with pre- and
// post-images, a 10 MiB document, and a function that replaces its value
// with another 10 MiB string, whose update event (10 MiB of
// updateDescription plus 10 MiB of fullDocumentBeforeChange) is over 16 MiB.
func largeUpdate(t *testing.T, ctx context.Context, c *mongo.Client) (*mongo.Collection, func()) {
	t.Helper()
	db := c.Database("db")
	require.NoError(t, db.CreateCollection(ctx, "large",
		options.CreateCollection().SetChangeStreamPreAndPostImages(bson.D{{Key: "enabled", Value: true}})))
	coll := db.Collection("large")
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 0}, {Key: "value", Value: strings.Repeat("q", 10<<20)}})
	require.NoError(t, err)
	return coll, func() {
		_, err := coll.UpdateOne(ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "value", Value: strings.Repeat("z", 10<<20)}}}})
		require.NoError(t, err)
	}
}

func nextRaw(t *testing.T, ctx context.Context, cs *mongo.ChangeStream) bson.Raw {
	t.Helper()
	require.True(t, cs.Next(ctx), "next: %v", cs.Err())
	return append(bson.Raw(nil), cs.Current...)
}

func splitOf(t *testing.T, ev bson.Raw) (int32, int32) {
	t.Helper()
	se, ok := ev.Lookup("splitEvent").DocumentOK()
	require.True(t, ok, "splitEvent in %v", keysOf(ev))
	return se.Lookup("fragment").Int32(), se.Lookup("of").Int32()
}

// TestSplitLargeEventProse19 is the change-streams specification's prose
// test 19 ("$changeStreamSplitLargeEvent splits large events"): two
// fragments, {fragment: 1, of: 2} then {fragment: 2, of: 2}, each under
// 16 MiB, each with its own resume token.
func TestSplitLargeEventProse19(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	coll, update := largeUpdate(t, ctx, c)
	cs, err := coll.Watch(ctx, splitStage, options.ChangeStream().SetFullDocumentBeforeChange(options.Required))
	require.NoError(t, err)
	defer cs.Close(ctx)
	update()

	first, second := nextRaw(t, ctx, cs), nextRaw(t, ctx, cs)
	for i, ev := range []bson.Raw{first, second} {
		n, of := splitOf(t, ev)
		assert.Equal(t, [2]int32{int32(i + 1), 2}, [2]int32{n, of})
		assert.LessOrEqual(t, len(ev), 16<<20, "each fragment fits in 16 MiB")
		assert.Equal(t, []string{"_id", "splitEvent"}, keysOf(ev)[:2])
	}
	// Fields keep their order: the first fragment holds the event up to
	// and including updateDescription, the second the pre-image.
	assert.Equal(t, []string{"_id", "splitEvent", "operationType", "clusterTime", "wallTime", "ns", "documentKey", "updateDescription"}, keysOf(first))
	assert.Equal(t, []string{"_id", "splitEvent", "fullDocumentBeforeChange"}, keysOf(second))
	assert.NotEqual(t, first.Lookup("_id").String(), second.Lookup("_id").String(), "each fragment has its own token")
	assert.Less(t, first.Lookup("_id", "_data").StringValue(), second.Lookup("_id", "_data").StringValue(), "fragments' tokens increase")
}

// TestEventTooLargeWithoutSplit: the same event without the split stage
// fails the getMore with BSONObjectTooLarge (10334) and no label, so
// drivers do not resume into it again (split_large_event.js).
func TestEventTooLargeWithoutSplit(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	coll, update := largeUpdate(t, ctx, c)
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetFullDocumentBeforeChange(options.Required))
	require.NoError(t, err)
	defer cs.Close(ctx)
	update()
	require.False(t, cs.Next(ctx))
	ce := cmdErrOf(t, cs.Err())
	assert.Equal(t, int32(10334), ce.Code)
	assert.Empty(t, ce.Labels)
	assert.Contains(t, ce.Message, "Size must be between 0 and 16793600(16MB)")
}

// TestSplitResume: a stream resumed from fragment k's token returns
// fragment k+1 first; resumed from the last fragment's token, the next
// event. A pipeline without the split stage cannot resume from a
// fragment's token.
func TestSplitResume(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	coll, update := largeUpdate(t, ctx, c)
	opts := func() *options.ChangeStreamOptionsBuilder {
		return options.ChangeStream().SetFullDocumentBeforeChange(options.Required)
	}
	cs, err := coll.Watch(ctx, splitStage, opts())
	require.NoError(t, err)
	update()
	first, second := nextRaw(t, ctx, cs), nextRaw(t, ctx, cs)
	require.NoError(t, cs.Close(ctx))
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)

	resumed, err := coll.Watch(ctx, splitStage, opts().SetResumeAfter(first.Lookup("_id").Document()))
	require.NoError(t, err)
	ev := nextRaw(t, ctx, resumed)
	n, of := splitOf(t, ev)
	assert.Equal(t, [2]int32{2, 2}, [2]int32{n, of})
	assert.Equal(t, second.Lookup("_id").String(), ev.Lookup("_id").String())
	assert.Equal(t, "insert", nextRaw(t, ctx, resumed).Lookup("operationType").StringValue())
	require.NoError(t, resumed.Close(ctx))

	after, err := coll.Watch(ctx, splitStage, opts().SetStartAfter(second.Lookup("_id").Document()))
	require.NoError(t, err)
	assert.Equal(t, "insert", nextRaw(t, ctx, after).Lookup("operationType").StringValue())
	require.NoError(t, after.Close(ctx))

	_, err = coll.Watch(ctx, mongo.Pipeline{}, opts().SetResumeAfter(first.Lookup("_id").Document()))
	ce := cmdErrOf(t, err)
	assert.Equal(t, int32(280), ce.Code)
	assert.Contains(t, ce.Message, "$changeStreamSplitLargeEvent stage is not present")
}

// TestSplitStageValidation: the stage takes only {}, only last, only in a
// change stream.
func TestSplitStageValidation(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	db := c.Database("db")
	require.NoError(t, db.CreateCollection(ctx, "c"))
	cs := bson.D{{Key: "$changeStream", Value: bson.D{}}}
	split := func(v any) bson.D { return bson.D{{Key: "$changeStreamSplitLargeEvent", Value: v}} }
	match := bson.D{{Key: "$match", Value: bson.D{}}}
	for _, tc := range []struct {
		name     string
		pipeline bson.A
		code     int32
	}{
		{"not empty", bson.A{cs, split(bson.D{{Key: "x", Value: 1}})}, 7182800},
		{"not a document", bson.A{cs, split(1)}, 7182800},
		{"not last", bson.A{cs, split(bson.D{}), match}, 7182802},
		{"not a change stream", bson.A{split(bson.D{})}, 7182801},
	} {
		err := db.RunCommand(ctx, bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: tc.pipeline}, {Key: "cursor", Value: bson.D{}}}).Err()
		assert.Equal(t, tc.code, cmdErrOf(t, err).Code, tc.name)
	}
}

// TestSplitFieldTooLarge: an event whose single field cannot fit in a
// fragment fails even with the split stage.
func TestSplitFieldTooLarge(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	coll := c.Database("db").Collection("c")
	cs, err := coll.Watch(ctx, splitStage)
	require.NoError(t, err)
	defer cs.Close(ctx)
	// A document just under the 16 MiB limit: its insert event's
	// fullDocument field alone leaves no room for the fragment's header.
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 0}, {Key: "v", Value: strings.Repeat("x", 16<<20-40)}})
	require.NoError(t, err)
	require.False(t, cs.Next(ctx))
	assert.Equal(t, int32(10334), cmdErrOf(t, cs.Err()).Code)
}

// TestDocumentSizeLimit: a write whose document is over 16 MiB is refused
// (an insert by the driver or the server, an update by the server with
// 17419), so no event of it ever exists.
func TestDocumentSizeLimit(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	coll := c.Database("db").Collection("c")
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 0}, {Key: "v", Value: strings.Repeat("x", 17<<20)}})
	require.Error(t, err)

	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: strings.Repeat("x", 9<<20)}})
	require.NoError(t, err)
	_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "w", Value: strings.Repeat("y", 9<<20)}}}})
	var we mongo.WriteException
	require.ErrorAs(t, err, &we)
	require.Len(t, we.WriteErrors, 1)
	assert.Equal(t, 17419, we.WriteErrors[0].Code)
	ctx2, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := coll.CountDocuments(ctx2, bson.D{{Key: "w", Value: bson.D{{Key: "$exists", Value: true}}}})
	require.NoError(t, err)
	assert.Zero(t, n)
}
