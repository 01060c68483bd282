package changestream_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
)

// watch opens a collection stream on e.coll and closes it at cleanup.
func watch(t testing.TB, e *testEnv, pipeline any, opts ...changestream.Option) *changestream.ChangeStream {
	t.Helper()
	cs, err := changestream.WatchCollection(ctxTimeout(t, 10*time.Second), e.coll, pipeline, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cs.Close(context.Background()) })
	return cs
}

// next calls Next with a generous deadline and requires an event.
func next(t testing.TB, cs *changestream.ChangeStream) bson.Raw {
	t.Helper()
	require.True(t, cs.Next(ctxTimeout(t, 10*time.Second)), "Next: %v", cs.Err())
	return cs.Current
}

func TestCommandShape(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// No deadline: the driver derives maxTimeMS from a deadline, and this
	// test checks that the stream itself never sends one on the aggregate.
	ctx := context.Background()
	pipeline := bson.A{bson.D{{Key: "$match", Value: bson.D{{Key: "operationType", Value: "insert"}}}}}
	cases := []struct {
		name   string
		open   func() (*changestream.ChangeStream, error)
		db     string
		target any
		stage  bson.D
	}{
		{"collection", func() (*changestream.ChangeStream, error) {
			return changestream.WatchCollection(ctx, e.coll, pipeline,
				changestream.WithFullDocument(changestream.FullDocumentUpdateLookup), changestream.WithBatchSize(5),
				changestream.WithComment("hi"))
		}, e.db.Name(), "events", bson.D{{Key: "fullDocument", Value: "updateLookup"}}},
		{"database", func() (*changestream.ChangeStream, error) {
			return changestream.WatchDatabase(ctx, e.db, pipeline, changestream.WithBatchSize(5), changestream.WithComment("hi"))
		}, e.db.Name(), int32(1), bson.D{}},
		{"cluster", func() (*changestream.ChangeStream, error) {
			return changestream.WatchCluster(ctx, e.client, pipeline, changestream.WithBatchSize(5), changestream.WithComment("hi"))
		}, "admin", int32(1), bson.D{{Key: "allChangesForCluster", Value: true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.mon.reset()
			cs, err := tc.open()
			require.NoError(t, err)
			defer cs.Close(ctx)
			aggs := e.mon.commands("aggregate")
			require.Len(t, aggs, 1)
			cmd := aggs[0]
			assert.Equal(t, tc.db, cmd.Lookup("$db").StringValue())
			switch want := tc.target.(type) {
			case string:
				assert.Equal(t, want, cmd.Lookup("aggregate").StringValue())
			case int32:
				assert.Equal(t, want, cmd.Lookup("aggregate").Int32())
			}
			var stage bson.D
			require.NoError(t, bson.Unmarshal(changeStreamStage(t, cmd), &stage))
			assert.Equal(t, tc.stage, stage, "only the options set go into $changeStream")
			stages, err := cmd.Lookup("pipeline").Array().Values()
			require.NoError(t, err)
			require.Len(t, stages, 2, "the user's stages follow $changeStream")
			assert.Equal(t, int32(5), cmd.Lookup("cursor", "batchSize").Int32())
			assert.Equal(t, "hi", cmd.Lookup("comment").StringValue())
			_, err = cmd.LookupErr("maxTimeMS")
			assert.Error(t, err, "maxAwaitTime is never sent on the aggregate")

			require.False(t, cs.TryNext(ctx))
			require.NoError(t, cs.Err())
			gms := e.mon.commands("getMore")
			require.Len(t, gms, 1, "TryNext sends exactly one getMore")
			assert.Equal(t, "hi", gms[0].Lookup("comment").StringValue(), "comment goes on every getMore")
			assert.Equal(t, int32(5), gms[0].Lookup("batchSize").Int32())
		})
	}
}

func TestEmptyPipelineAndDefaults(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil)
	cmd := e.mon.commands("aggregate")[0]
	assert.Equal(t, bson.Raw(emptyDoc), changeStreamStage(t, cmd), "no options: an empty $changeStream stage")
	stages, _ := cmd.Lookup("pipeline").Array().Values()
	assert.Len(t, stages, 1)
	assert.Equal(t, bson.Raw(emptyDoc), cmd.Lookup("cursor").Document(), "no batch size: cursor: {}")
	assert.NotZero(t, cs.ID(), "prose 7: an empty first batch leaves the cursor open")
	assert.Empty(t, e.mon.commands("killCursors"))
}

var emptyDoc = []byte{5, 0, 0, 0, 0}

func TestEventsInOrderAndTokenTracking(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil, changestream.WithBatchSize(2))
	// Prose 11: the empty first batch's postBatchResumeToken is the token.
	first := e.mon.lastReply()
	pbrt, err := first.LookupErr("cursor", "postBatchResumeToken")
	require.NoError(t, err)
	assert.Equal(t, bson.Raw(pbrt.Document()), cs.ResumeToken())

	e.insert(t, 1, 2, 3)
	for want := int32(1); want <= 3; want++ {
		ev := next(t, cs)
		assert.Equal(t, want, eventN(t, ev))
		id := bson.Raw(ev.Lookup("_id").Document())
		if cs.RemainingBatchLength() > 0 {
			// Prose 13: mid-batch, the token is the event's _id.
			assert.Equal(t, id, cs.ResumeToken())
		} else {
			// Prose 11: the last event of a batch → the batch's postBatchResumeToken.
			reply := e.mon.lastReply()
			pbrt := bson.Raw(reply.Lookup("cursor", "postBatchResumeToken").Document())
			assert.Equal(t, pbrt, cs.ResumeToken())
		}
	}
}

func TestResumeTokenBeforeIteration(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if e.cluster != nil {
		t.Skip("prose 14 needs a non-empty first batch, which mongos never returns (the Change Streams spec says so of this test)")
	}
	// A token to start from: the first of three inserts.
	probe := watch(t, e, nil)
	e.insert(t, 1, 2, 3)
	tok := bson.Raw(next(t, probe).Lookup("_id").Document())

	for _, tc := range []struct {
		name string
		opt  changestream.Option
		want bson.Raw
	}{
		{"startAfter", changestream.WithStartAfter(tok), tok},
		{"resumeAfter", changestream.WithResumeAfter(tok), tok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := watch(t, e, nil, tc.opt)
			require.Positive(t, cs.RemainingBatchLength(), "the first batch holds events 2 and 3")
			// Prose 14: a non-empty batch not yet iterated → the start token.
			assert.Equal(t, tc.want, cs.ResumeToken())
			assert.Equal(t, int32(2), eventN(t, next(t, cs)))
		})
	}
	t.Run("none", func(t *testing.T) {
		ct := probe.Current.Lookup("clusterTime")
		sec, inc := ct.Timestamp()
		cs := watch(t, e, nil, changestream.WithStartAtOperationTime(bson.Timestamp{T: sec, I: inc}))
		require.Positive(t, cs.RemainingBatchLength())
		assert.Nil(t, cs.ResumeToken(), "prose 14: neither startAfter nor resumeAfter → no token yet")
		assert.Equal(t, int32(1), eventN(t, next(t, cs)))
	})
}

func TestResumeOnceWithOriginalPipeline(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pipeline := bson.A{bson.D{{Key: "$match", Value: bson.D{{Key: "fullDocument.n", Value: bson.D{{Key: "$gte", Value: 0}}}}}}}
	cs := watch(t, e, pipeline, changestream.WithFullDocument(changestream.FullDocumentUpdateLookup))
	e.insert(t, 1)
	assert.Equal(t, int32(1), eventN(t, next(t, cs)))
	tok := cs.ResumeToken()

	e.failPoint(t, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "errorCode", Value: 10107},
		{Key: "errorLabels", Value: bson.A{"ResumableChangeStreamError"}},
	})
	e.mon.reset()
	e.insert(t, 2)
	assert.Equal(t, int32(2), eventN(t, next(t, cs)))

	aggs := e.mon.commands("aggregate")
	require.Len(t, aggs, 1, "prose 3: exactly one resume")
	var stage bson.D
	require.NoError(t, bson.Unmarshal(changeStreamStage(t, aggs[0]), &stage))
	assert.Equal(t, bson.D{{Key: "fullDocument", Value: "updateLookup"}, {Key: "resumeAfter", Value: bson.D{{Key: "_data", Value: tok.Lookup("_data").StringValue()}}}}, stage)
	stages, _ := aggs[0].Lookup("pipeline").Array().Values()
	require.Len(t, stages, 2)
	want, err := bson.Marshal(pipeline[0])
	require.NoError(t, err)
	assert.Equal(t, bson.Raw(want), stages[1].Document(), "the original stages, unchanged")
	assert.True(t, cs.Alive())
}

func TestNoResumeOnAggregateError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.failPoint(t, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"aggregate"}}, {Key: "errorCode", Value: 48},
	})
	_, err := changestream.WatchCollection(ctxTimeout(t, 10*time.Second), e.coll, nil)
	require.Error(t, err)
	var ce mongo.CommandError
	require.True(t, errors.As(err, &ce), "the server's error stays reachable: %v", err)
	assert.EqualValues(t, 48, ce.Code)
	assert.Len(t, e.mon.commands("aggregate"), 1, "prose 4: no retry of a non-retryable aggregate error")
}

func TestOpeningAggregateRetriedOnceOnNetworkError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.failPoint(t, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"aggregate"}}, {Key: "closeConnection", Value: true},
	})
	cs := watch(t, e, nil)
	assert.True(t, cs.Alive())
	assert.Len(t, e.mon.commands("aggregate"), 2)
}

func TestKillCursorsErrorIgnoredDuringResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil)
	e.failPoint(t, "failCommand", bson.D{{Key: "times", Value: 2}}, bson.D{
		{Key: "failCommands", Value: bson.A{"getMore", "killCursors"}}, {Key: "errorCode", Value: 10107},
		{Key: "errorLabels", Value: bson.A{"ResumableChangeStreamError"}},
	})
	e.insert(t, 1)
	assert.Equal(t, int32(1), eventN(t, next(t, cs)), "prose 8")
	assert.Len(t, e.mon.commands("killCursors"), 1)
}

func TestStartAfterResumeRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	probe := watch(t, e, nil)
	e.insert(t, 1)
	tok := bson.Raw(next(t, probe).Lookup("_id").Document())

	resumeGetMoreOnce := func(t *testing.T) {
		e.failPoint(t, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
			{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "errorCode", Value: 10107},
			{Key: "errorLabels", Value: bson.A{"ResumableChangeStreamError"}},
		})
	}
	t.Run("no event yet resumes with startAfter", func(t *testing.T) {
		cs := watch(t, e, nil, changestream.WithStartAfter(tok))
		resumeGetMoreOnce(t)
		e.mon.reset()
		require.False(t, cs.TryNext(ctxTimeout(t, 10*time.Second)))
		require.NoError(t, cs.Err())
		aggs := e.mon.commands("aggregate")
		require.Len(t, aggs, 1)
		stage := changeStreamStage(t, aggs[0])
		_, err := stage.LookupErr("startAfter")
		assert.NoError(t, err, "prose 17: %s", stage)
		_, err = stage.LookupErr("resumeAfter")
		assert.Error(t, err)
	})
	t.Run("after an event resumes with resumeAfter", func(t *testing.T) {
		cs := watch(t, e, nil, changestream.WithStartAfter(tok))
		e.insert(t, 2)
		assert.Equal(t, int32(2), eventN(t, next(t, cs)))
		resumeGetMoreOnce(t)
		e.mon.reset()
		e.insert(t, 3)
		assert.Equal(t, int32(3), eventN(t, next(t, cs)))
		aggs := e.mon.commands("aggregate")
		require.Len(t, aggs, 1)
		stage := changeStreamStage(t, aggs[0])
		_, err := stage.LookupErr("resumeAfter")
		assert.NoError(t, err, "prose 18: %s", stage)
		_, err = stage.LookupErr("startAfter")
		assert.Error(t, err)
	})
}

func TestNonResumableErrorEndsStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil)
	e.failPoint(t, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "errorCode", Value: 2},
	})
	require.False(t, cs.Next(ctxTimeout(t, 10*time.Second)))
	var ce mongo.CommandError
	require.ErrorAs(t, cs.Err(), &ce)
	assert.EqualValues(t, 2, ce.Code)
	assert.False(t, cs.Alive())
	assert.Empty(t, e.mon.commands("aggregate")[1:], "no resume")
	assert.False(t, cs.Next(context.Background()), "a dead stream stays dead")
}

func TestResumableErrorCodesFromServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil)
	// The server labels resumable getMore errors itself.
	e.failPoint(t, "failGetMoreAfterCursorCheckout", bson.D{{Key: "times", Value: 1}}, bson.D{{Key: "errorCode", Value: 6}})
	e.insert(t, 1)
	assert.Equal(t, int32(1), eventN(t, next(t, cs)))
	assert.Len(t, e.mon.commands("aggregate"), 2)
}

// TestResumableLabelOnTimeoutCodeResumes: the server's label decides, even
// on MaxTimeMSExpired, which the driver makes match context.DeadlineExceeded
// (spec test "change stream resumes if error contains
// ResumableChangeStreamError").
func TestResumableLabelOnTimeoutCodeResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil)
	e.failPoint(t, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "errorCode", Value: 50},
		{Key: "errorLabels", Value: bson.A{"ResumableChangeStreamError"}},
	})
	e.insert(t, 1)
	assert.Equal(t, int32(1), eventN(t, next(t, cs)))
	assert.Len(t, e.mon.commands("aggregate"), 2)
}

func TestCursorNotFoundResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.needSim(t)
	cs := watch(t, e, nil)
	e.insert(t, 1)
	assert.Equal(t, int32(1), eventN(t, next(t, cs)))
	e.killAllCursors()
	e.insert(t, 2)
	assert.Equal(t, int32(2), eventN(t, next(t, cs)))
}

func TestNetworkErrorResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil, changestream.WithBatchSize(1))
	e.insert(t, 1, 2, 3)
	assert.Equal(t, int32(1), eventN(t, next(t, cs)))
	e.failPoint(t, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "closeConnection", Value: true},
	})
	assert.Equal(t, int32(2), eventN(t, next(t, cs)))
	assert.Equal(t, int32(3), eventN(t, next(t, cs)))
}

func TestFailedResumeKeepsStreamAlive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil)
	// The getMore and then the resume's aggregate lose their connections.
	e.failPoint(t, "failCommand", bson.D{{Key: "times", Value: 2}}, bson.D{
		{Key: "failCommands", Value: bson.A{"getMore", "aggregate"}}, {Key: "closeConnection", Value: true},
	})
	e.insert(t, 1)
	ctx := ctxTimeout(t, 10*time.Second)
	require.False(t, cs.Next(ctx))
	require.Error(t, cs.Err())
	assert.True(t, mongo.IsNetworkError(cs.Err()), "%v", cs.Err())
	assert.True(t, cs.Alive(), "a failed resume that may pass leaves the stream alive")
	assert.Equal(t, int32(1), eventN(t, next(t, cs)), "the next call resumes")
}

func TestContextDeadlineKeepsStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil, changestream.WithMaxAwaitTime(5*time.Second))
	for round := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		require.False(t, cs.Next(ctx))
		cancel()
		require.ErrorIs(t, cs.Err(), context.DeadlineExceeded)
		require.True(t, cs.Alive())
		a, b := 10*round+1, 10*round+2
		e.insert(t, a, b)
		assert.EqualValues(t, a, eventN(t, next(t, cs)), "round %d", round)
		assert.EqualValues(t, b, eventN(t, next(t, cs)), "round %d", round)
	}
	// The server's wait is cut to fit each deadline, so a deadline normally
	// ends with an empty batch and costs no resume; on a loaded machine a
	// reply can still come late, which a resume then absorbs.
	t.Logf("resumes after 5 expired deadlines: %d", len(e.mon.commands("aggregate"))-1)
}

func TestContextCancelMidGetMoreResumesWithoutLoss(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil, changestream.WithMaxAwaitTime(10*time.Second), changestream.WithBatchSize(1))
	e.insert(t, 1, 2)
	assert.Equal(t, int32(1), eventN(t, next(t, cs)))
	assert.Equal(t, int32(2), eventN(t, next(t, cs)))

	ctx, cancel := context.WithCancel(context.Background())
	waitCancel := e.cancelMidGetMore(cancel)
	require.False(t, cs.Next(ctx), "blocks in a getMore until cancelled")
	waitCancel()
	require.ErrorIs(t, cs.Err(), context.Canceled)
	require.True(t, cs.Alive())

	e.mon.reset()
	e.insert(t, 3)
	assert.Equal(t, int32(3), eventN(t, next(t, cs)))
	aggs := e.mon.commands("aggregate")
	require.Len(t, aggs, 1, "the abandoned cursor is replaced once")
	_, err := changeStreamStage(t, aggs[0]).LookupErr("resumeAfter")
	assert.NoError(t, err)
	assert.Len(t, e.mon.commands("killCursors"), 1, "the abandoned cursor is killed")
}

func TestCancelledContextSpendsNoResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e.mon.reset()
	require.False(t, cs.Next(ctx))
	require.ErrorIs(t, cs.Err(), context.Canceled)
	assert.Empty(t, e.mon.commands(""), "a done ctx sends nothing")
	assert.True(t, cs.Alive())
}

func TestCloseInterruptsNext(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil, changestream.WithMaxAwaitTime(30*time.Second))
	done := make(chan bool)
	go func() { done <- cs.Next(context.Background()) }()
	if e.sim != nil {
		require.Eventually(t, func() bool { return e.sim.AwaitingGetMores() == 1 }, 10*time.Second, time.Millisecond)
	} else {
		time.Sleep(100 * time.Millisecond) // a real server cannot tell: give Next time to reach its getMore
	}
	closeStart := time.Now()
	require.NoError(t, cs.Close(context.Background()))
	select {
	case got := <-done:
		assert.False(t, got)
		t.Logf("Close returned and Next was released %v after Close began", time.Since(closeStart))
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not interrupt Next")
	}
	assert.ErrorIs(t, cs.Err(), changestream.ErrClosed)
	assert.False(t, cs.Alive())
	assert.NoError(t, cs.Close(context.Background()), "Close is idempotent")
	assert.False(t, cs.Next(context.Background()))
	assert.ErrorIs(t, cs.Err(), changestream.ErrClosed)
	assert.ErrorIs(t, cs.Decode(&bson.D{}), changestream.ErrClosed)
	assert.False(t, cs.TryNext(context.Background()))
	assert.ErrorIs(t, cs.Err(), changestream.ErrClosed)
}

func TestResumeTokenConcurrentWithIteration(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil, changestream.WithBatchSize(3))
	const n = 50
	go func() {
		for i := range n {
			_, _ = e.coll.InsertOne(context.Background(), bson.D{{Key: "_id", Value: int32(i)}, {Key: "n", Value: int32(i)}})
		}
	}()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				tok := cs.ResumeToken()
				if tok != nil {
					assert.NoError(t, tok.Validate())
				}
				_ = cs.Alive()
			}
		}
	}()
	for i := range n {
		assert.EqualValues(t, i, eventN(t, next(t, cs)))
	}
	close(stop)
	wg.Wait()
}

func TestInvalidate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.insert(t, 0)
	cs := watch(t, e, nil)
	require.NoError(t, e.coll.Drop(context.Background()))
	ev := next(t, cs)
	assert.Equal(t, "drop", ev.Lookup("operationType").StringValue())
	ev = next(t, cs)
	assert.Equal(t, "invalidate", ev.Lookup("operationType").StringValue())
	invalidateToken := cs.ResumeToken()
	require.False(t, cs.Next(ctxTimeout(t, 10*time.Second)))
	assert.NoError(t, cs.Err())
	assert.False(t, cs.Alive())
	assert.Zero(t, cs.ID())

	// startAfter the invalidate carries on with the recreated collection.
	cs2 := watch(t, e, nil, changestream.WithStartAfter(invalidateToken))
	e.insert(t, 7)
	assert.Equal(t, int32(7), eventN(t, next(t, cs2)))
}

func TestHistoryLost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mongosimOplogMax(5))
	probe := watch(t, e, nil)
	e.insert(t, 1)
	old := bson.Raw(next(t, probe).Lookup("_id").Document())
	e.insert(t, 2, 3, 4, 5, 6, 7, 8)

	t.Run("on open", func(t *testing.T) {
		_, err := changestream.WatchCollection(ctxTimeout(t, 10*time.Second), e.coll, nil, changestream.WithResumeAfter(old))
		require.ErrorIs(t, err, changestream.ErrHistoryLost)
		var hl *changestream.HistoryLostError
		require.ErrorAs(t, err, &hl)
		assert.Equal(t, old, hl.ResumeToken)
		var ce mongo.CommandError
		require.ErrorAs(t, err, &ce)
		assert.EqualValues(t, 286, ce.Code)
	})
	t.Run("on resume", func(t *testing.T) {
		e.needSim(t)
		cs := watch(t, e, nil, changestream.WithBatchSize(1))
		e.insert(t, 20, 21)
		assert.Equal(t, int32(20), eventN(t, next(t, cs)))
		e.insert(t, 22, 23, 24, 25, 26, 27, 28)
		e.truncateOplog()
		e.killAllCursors()
		require.False(t, cs.Next(ctxTimeout(t, 10*time.Second)))
		require.ErrorIs(t, cs.Err(), changestream.ErrHistoryLost)
		var ce mongo.CommandError
		require.ErrorAs(t, cs.Err(), &ce)
		assert.EqualValues(t, 286, ce.Code)
		assert.False(t, cs.Alive())
	})
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxTimeout(t, 10*time.Second)
	cases := []struct {
		name string
		open func() (*changestream.ChangeStream, error)
	}{
		{"nil collection", func() (*changestream.ChangeStream, error) { return changestream.WatchCollection(ctx, nil, nil) }},
		{"nil database", func() (*changestream.ChangeStream, error) { return changestream.WatchDatabase(ctx, nil, nil) }},
		{"nil client", func() (*changestream.ChangeStream, error) { return changestream.WatchCluster(ctx, nil, nil) }},
		{"document pipeline", func() (*changestream.ChangeStream, error) {
			return changestream.WatchCollection(ctx, e.coll, bson.D{{Key: "$match", Value: bson.D{}}})
		}},
		{"string pipeline", func() (*changestream.ChangeStream, error) { return changestream.WatchCollection(ctx, e.coll, "x") }},
		{"stage not a document", func() (*changestream.ChangeStream, error) {
			return changestream.WatchCollection(ctx, e.coll, bson.A{1})
		}},
		{"negative batch size", func() (*changestream.ChangeStream, error) {
			return changestream.WatchCollection(ctx, e.coll, nil, changestream.WithBatchSize(-1))
		}},
		{"negative await", func() (*changestream.ChangeStream, error) {
			return changestream.WatchCollection(ctx, e.coll, nil, changestream.WithMaxAwaitTime(-time.Second))
		}},
		{"nil option", func() (*changestream.ChangeStream, error) { return changestream.WatchCollection(ctx, e.coll, nil, nil) }},
		{"garbage token", func() (*changestream.ChangeStream, error) {
			return changestream.WatchCollection(ctx, e.coll, nil, changestream.WithResumeAfter(bson.Raw{1, 2}))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := tc.open()
			require.Error(t, err)
			assert.Nil(t, cs)
			assert.Contains(t, err.Error(), "changestream: ")
		})
	}
	assert.Empty(t, e.mon.commands("aggregate"), "bad input never reaches the server")

	cs := watch(t, e, nil)
	assert.Error(t, cs.Decode(&bson.D{}), "Decode before Next")
}

func TestServerValidatesOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, err := changestream.WatchCollection(ctxTimeout(t, 10*time.Second), e.coll, nil,
		changestream.WithFullDocument("bogus"))
	var ce mongo.CommandError
	require.ErrorAs(t, err, &ce, "the server's error, unchanged: %v", err)
	assert.NotZero(t, ce.Code)
	assert.Len(t, e.mon.commands("aggregate"), 1)
}

func TestProjectedIDIsFatal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, bson.A{bson.D{{Key: "$project", Value: bson.D{{Key: "_id", Value: 0}}}}})
	e.insert(t, 1)
	require.False(t, cs.Next(ctxTimeout(t, 10*time.Second)))
	var ce mongo.CommandError
	require.ErrorAs(t, cs.Err(), &ce, "prose 2: the server refuses an event without _id: %v", cs.Err())
	assert.EqualValues(t, 280, ce.Code)
	assert.False(t, cs.Alive())
}

func TestDatabaseAndClusterStreams(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxTimeout(t, 10*time.Second)
	dbcs, err := changestream.WatchDatabase(ctx, e.db, nil)
	require.NoError(t, err)
	defer dbcs.Close(ctx)
	clcs, err := changestream.WatchCluster(ctx, e.client, nil)
	require.NoError(t, err)
	defer clcs.Close(ctx)
	_, err = e.db.Collection("other").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: int32(1)}})
	require.NoError(t, err)
	for _, cs := range []*changestream.ChangeStream{dbcs, clcs} {
		ev := next(t, cs)
		assert.Equal(t, "other", ev.Lookup("ns", "coll").StringValue())
	}
}

func TestResumeSelectsServerWithOriginalReadPreference(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil, changestream.WithReadPreference(readpref.PrimaryPreferred()))
	e.failPoint(t, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "closeConnection", Value: true},
	})
	e.insert(t, 1)
	assert.Equal(t, int32(1), eventN(t, next(t, cs)))
	aggs := e.mon.commands("aggregate")
	require.Len(t, aggs, 2)
	for i, agg := range aggs {
		// Prose 6: the resume selects a server again, with the stream's
		// read preference, which the driver sends as $readPreference.
		mode, err := agg.LookupErr("$readPreference", "mode")
		require.NoError(t, err, "aggregate %d: %s", i, agg)
		assert.Equal(t, "primaryPreferred", mode.StringValue(), "aggregate %d", i)
	}
}
