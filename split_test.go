package changestream_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// largeUpdateEnv sets up the change-streams specification's prose test 19:
// a collection with pre- and post-images and a 10 MiB document; update()
// sets its value to another 10 MiB string, an event of over 20 MiB with
// fullDocumentBeforeChange. before is the position before that event.
func largeUpdateEnv(t *testing.T) (e *testEnv, update func()) {
	t.Helper()
	e = newEnv(t)
	ctx := ctxTimeout(t, 30*time.Second)
	require.NoError(t, e.db.CreateCollection(ctx, "large",
		options.CreateCollection().SetChangeStreamPreAndPostImages(bson.D{{Key: "enabled", Value: true}})))
	e.coll = e.db.Collection("large")
	_, err := e.coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 0}, {Key: "value", Value: strings.Repeat("q", 10<<20)}})
	require.NoError(t, err)
	return e, func() {
		_, err := e.coll.UpdateOne(ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "value", Value: strings.Repeat("z", 10<<20)}}}})
		require.NoError(t, err)
	}
}

// rawFragmentTokens watches with the split stage through the driver and
// returns the fragments' tokens of the next event.
func rawFragmentTokens(t *testing.T, ctx context.Context, coll *mongo.Collection, opts *options.ChangeStreamOptionsBuilder) []bson.Raw {
	t.Helper()
	raw, err := coll.Watch(ctx, mongo.Pipeline{{{Key: "$changeStreamSplitLargeEvent", Value: bson.D{}}}}, opts)
	require.NoError(t, err)
	defer raw.Close(context.Background())
	var toks []bson.Raw
	for raw.Next(ctx) {
		toks = append(toks, append(bson.Raw(nil), raw.Current.Lookup("_id").Document()...))
		se := raw.Current.Lookup("splitEvent").Document()
		if se.Lookup("fragment").Int32() == se.Lookup("of").Int32() {
			return toks
		}
	}
	require.NoError(t, raw.Err())
	return toks
}

// TestSplitLargeEvents is prose test 19 through WithSplitLargeEvents: the
// two fragments come back as one event, with every field of both and the
// last fragment's token as _id, and the position stays before the event
// until it is whole.
func TestSplitLargeEvents(t *testing.T) {
	t.Parallel()
	e, update := largeUpdateEnv(t)
	ctx := ctxTimeout(t, 30*time.Second)
	before := watch(t, e, nil).ResumeToken()
	cs := watch(t, e, nil, changestream.WithSplitLargeEvents(),
		changestream.WithFullDocumentBeforeChange(changestream.FullDocumentBeforeChangeRequired),
		changestream.WithResumeAfter(before))
	update()
	toks := rawFragmentTokens(t, ctx, e.coll, options.ChangeStream().SetFullDocumentBeforeChange(options.Required).SetResumeAfter(before))
	require.Len(t, toks, 2)

	require.True(t, cs.Next(ctx), "%v", cs.Err())
	var ev changestream.Event[bson.Raw]
	require.NoError(t, cs.Decode(&ev))
	assert.Equal(t, changestream.OperationUpdate, ev.OperationType)
	assert.Nil(t, ev.SplitEvent, "one whole event")
	assert.Equal(t, toks[1], ev.ID, "its _id is the last fragment's token")
	require.NotNil(t, ev.UpdateDescription)
	assert.Len(t, ev.UpdateDescription.UpdatedFields.Lookup("value").StringValue(), 10<<20)
	assert.Len(t, ev.FullDocumentBeforeChange.Lookup("value").StringValue(), 10<<20)
	assert.Greater(t, len(cs.Current), 16<<20)
	assert.NotEqual(t, toks[0], cs.ResumeToken(), "the position never points inside the split")
	for i, tok := range toks {
		info, err := changestream.DecodeToken(tok)
		require.NoError(t, err)
		require.NotNil(t, info.FragmentNum, "a fragment's token says which")
		assert.EqualValues(t, i, *info.FragmentNum)
	}
}

// TestSplitLargeEventsResumeInside: a resumable error between the
// fragments resumes after the last fragment received, keeps what was
// gathered, and delivers the event whole, once.
func TestSplitLargeEventsResumeInside(t *testing.T) {
	t.Parallel()
	e, update := largeUpdateEnv(t)
	ctx := ctxTimeout(t, 30*time.Second)
	// The fail point goes off once the stream has resumed: on a replica
	// set fragment 2 comes in the resume's first batch, but on mongos the
	// first batch is always empty and a getMore brings it.
	off := resumeHook(func(changestream.ResumeEvent) {
		_ = e.client.Database("admin").RunCommand(context.Background(), bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: "off"}})
	})
	cs := watch(t, e, nil, changestream.WithSplitLargeEvents(), changestream.WithBatchSize(1),
		changestream.WithFullDocumentBeforeChange(changestream.FullDocumentBeforeChangeRequired), changestream.WithHooks(off))
	start := cs.ResumeToken()
	update()
	e.insert(t, 1)
	// The first getMore brings fragment 1; every later one fails, labelled
	// resumable, until the stream resumes.
	e.failPoint(t, "failCommand", bson.D{{Key: "skip", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "errorCode", Value: 6},
		{Key: "errorLabels", Value: bson.A{"ResumableChangeStreamError"}},
	})
	e.mon.reset()
	require.True(t, cs.Next(ctx), "%v", cs.Err())
	var ev changestream.Event[bson.Raw]
	require.NoError(t, cs.Decode(&ev))
	assert.Equal(t, changestream.OperationUpdate, ev.OperationType)
	assert.Nil(t, ev.SplitEvent)
	assert.NotNil(t, ev.UpdateDescription)
	assert.NotNil(t, ev.FullDocumentBeforeChange)

	aggs := e.mon.commands("aggregate")
	require.NotEmpty(t, aggs, "the stream resumed")
	resumeAfter := changeStreamStage(t, aggs[0]).Lookup("resumeAfter").Document()
	assert.NotEqual(t, bson.Raw(resumeAfter), start, "it resumed after the fragment, not before the event")

	// The next event follows, nothing repeated.
	require.True(t, cs.Next(ctx), "%v", cs.Err())
	assert.Equal(t, int32(1), eventN(t, cs.Current))
}

// TestSplitLargeEventsIncomplete: a stream started from a token inside a
// split cannot put the event together and says so.
func TestSplitLargeEventsIncomplete(t *testing.T) {
	t.Parallel()
	e, update := largeUpdateEnv(t)
	ctx := ctxTimeout(t, 30*time.Second)
	before := watch(t, e, nil).ResumeToken()
	update()
	toks := rawFragmentTokens(t, ctx, e.coll, options.ChangeStream().SetFullDocumentBeforeChange(options.Required).SetResumeAfter(before))
	require.Len(t, toks, 2)

	cs := watch(t, e, nil, changestream.WithSplitLargeEvents(), changestream.WithResumeAfter(toks[0]),
		changestream.WithFullDocumentBeforeChange(changestream.FullDocumentBeforeChangeRequired))
	require.False(t, cs.Next(ctx))
	require.ErrorIs(t, cs.Err(), changestream.ErrIncompleteSplitEvent)
	assert.False(t, cs.Alive())
}

// TestEventTooLarge: without WithSplitLargeEvents the event ends the stream
// with an *EventTooLargeError that holds the position before it and says
// what to do; there is no resume loop.
func TestEventTooLarge(t *testing.T) {
	t.Parallel()
	e, update := largeUpdateEnv(t)
	ctx := ctxTimeout(t, 30*time.Second)
	cs := watch(t, e, nil, changestream.WithFullDocumentBeforeChange(changestream.FullDocumentBeforeChangeRequired))
	before := cs.ResumeToken()
	update()
	e.mon.reset()
	require.False(t, cs.Next(ctx))
	err := cs.Err()
	require.ErrorIs(t, err, changestream.ErrEventTooLarge)
	var tl *changestream.EventTooLargeError
	require.ErrorAs(t, err, &tl)
	assert.Equal(t, before, tl.Position.Token)
	assert.Contains(t, err.Error(), "WithSplitLargeEvents")
	assert.False(t, cs.Alive())
	assert.Empty(t, e.mon.commands("aggregate"), "no resume")

	// Reopened there with the option, the event arrives whole.
	again := watch(t, e, nil, changestream.WithSplitLargeEvents(), changestream.WithResumeAfter(tl.Position.Token),
		changestream.WithFullDocumentBeforeChange(changestream.FullDocumentBeforeChangeRequired))
	require.True(t, again.Next(ctx), "%v", again.Err())
	assert.Equal(t, "update", again.Current.Lookup("operationType").StringValue())
}

// resumeHook is a HookResume of a function.
type resumeHook func(changestream.ResumeEvent)

func (h resumeHook) OnResume(ev changestream.ResumeEvent) { h(ev) }
