package changestream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

func rawToken(t *testing.T, data string) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(bson.D{{Key: "_data", Value: data}})
	require.NoError(t, err)
	return b
}

// TestTokenTime reads the cluster time at the head of tokens in the
// server's format (the manual's example insert token, a version-1 token of
// a 6.0 server, a high-water mark) and refuses what is not one.
func TestTokenTime(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		data string
		want bson.Timestamp
		ok   bool
		hwm  bool
	}{
		{"event, version 2", "82635019A0000000012B042C0100296E5A1004AB1154ACACD849A48C61756D70D3B21F463C6F7065726174696F6E54797065003C696E736572740046646F63756D656E744B65790046645F69640064635019A078BE67426D7CF4D2000004",
			bson.Timestamp{T: 0x635019A0, I: 1}, true, false},
		{"event, version 1", "8263F5C1D6000000022B022C0100296E5A1004", bson.Timestamp{T: 0x63F5C1D6, I: 2}, true, false},
		{"high-water mark", "8265A5B2C5000000072B0429296E04", bson.Timestamp{T: 0x65A5B2C5, I: 7}, true, true},
		{"lower-case hex", "8265a5b2c5000000072b0429296e04", bson.Timestamp{T: 0x65A5B2C5, I: 7}, true, true},
		{"not hex", "82ZZ", bson.Timestamp{}, false, false},
		{"too short", "8265A5B2C5", bson.Timestamp{}, false, false},
		{"not a timestamp", "3C65A5B2C50000000704", bson.Timestamp{}, false, false},
	}
	for _, tc := range cases {
		tok := rawToken(t, tc.data)
		got, ok := changestream.TokenTime(tok)
		assert.Equal(t, tc.ok, ok, tc.name)
		assert.Equal(t, tc.want, got, tc.name)
	}
	_, ok := changestream.TokenTime(nil)
	assert.False(t, ok, "no token")
	_, ok = changestream.TokenTime(bson.Raw(mustMarshal(t, bson.D{{Key: "_data", Value: 1}})))
	assert.False(t, ok, "_data not a string")
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := bson.Marshal(v)
	require.NoError(t, err)
	return b
}

// TestPosition follows a stream's position: a high-water mark before any
// event, the event's own token and clusterTime in the middle of a batch,
// the batch's postBatchResumeToken after its last event.
func TestPosition(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxTimeout(t, 10*time.Second)
	cs := watch(t, e, mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "operationType", Value: "insert"}}}}})
	start := cs.Position()
	require.False(t, start.IsZero(), "the opening reply's postBatchResumeToken")
	assert.True(t, start.HighWater)
	assert.NotZero(t, start.ClusterTime.T)

	e.insert(t, 1, 2)
	require.True(t, cs.Next(ctx), "%v", cs.Err())
	var ev changestream.Event[bson.Raw]
	require.NoError(t, cs.Decode(&ev))
	mid := cs.Position()
	if cs.RemainingBatchLength() > 0 {
		assert.Equal(t, ev.ID, mid.Token, "mid-batch: the event's own token")
		assert.False(t, mid.HighWater)
	}
	assert.Equal(t, ev.ClusterTime, mid.ClusterTime)
	assert.Equal(t, cs.ResumeToken(), mid.Token)

	require.True(t, cs.Next(ctx), "%v", cs.Err())
	end := cs.Position()
	assert.False(t, end.ClusterTime.Before(mid.ClusterTime), "positions never move back")
	assert.Equal(t, cs.ResumeToken(), end.Token)
	tt, ok := changestream.TokenTime(end.Token)
	require.True(t, ok)
	assert.Equal(t, tt, end.ClusterTime)
}

// TestHistoryLostOnOpenStream: an open stream that falls so far behind that
// the oplog drops its place gets CappedPositionLost (136) from its
// getMore; that is lost history too, and ends the stream.
func TestHistoryLostOnOpenStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mongosimOplogMax(5))
	ctx := ctxTimeout(t, 10*time.Second)
	cs := watch(t, e, nil, changestream.WithBatchSize(1))
	e.insert(t, 1)
	assert.Equal(t, int32(1), eventN(t, next(t, cs)))
	at := cs.ResumeToken()
	e.insert(t, 2, 3, 4, 5, 6, 7, 8, 9)

	require.False(t, cs.Next(ctx))
	err := cs.Err()
	require.ErrorIs(t, err, changestream.ErrHistoryLost)
	require.ErrorIs(t, err, changestream.ErrUnresumablePosition)
	var hl *changestream.HistoryLostError
	require.ErrorAs(t, err, &hl)
	assert.EqualValues(t, 136, hl.Code)
	assert.Empty(t, hl.Option)
	assert.Equal(t, at, hl.ResumeToken)
	assert.Equal(t, at, hl.Position().Token)
	assert.Contains(t, err.Error(), "the stream fell behind the server's oplog after token")
	assert.False(t, cs.Alive())
}

// TestHistoryLostNamesStartOption: the error names the option the
// aggregate really used.
func TestHistoryLostNamesStartOption(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mongosimOplogMax(3))
	probe := watch(t, e, nil)
	e.insert(t, 1)
	old := bson.Raw(next(t, probe).Lookup("_id").Document())
	e.insert(t, 2, 3, 4, 5, 6)
	ctx := ctxTimeout(t, 10*time.Second)
	for _, tc := range []struct {
		opt    changestream.Option
		option string
		text   string
	}{
		{changestream.WithStartAfter(old), "startAfter", "cannot start after token"},
		{changestream.WithResumeAfter(old), "resumeAfter", "cannot resume after token"},
	} {
		_, err := changestream.WatchCollection(ctx, e.coll, nil, tc.opt)
		var hl *changestream.HistoryLostError
		require.ErrorAs(t, err, &hl, tc.option)
		assert.Equal(t, tc.option, hl.Option)
		assert.EqualValues(t, 286, hl.Code)
		assert.Contains(t, err.Error(), tc.text)
	}
}

// TestUnresumablePosition: a token whose event the server does not find
// (another collection's) is refused with ChangeStreamFatalError (280); it is
// an unresumable position, not lost history.
func TestUnresumablePosition(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxTimeout(t, 10*time.Second)
	other := e.db.Collection("other")
	probe, err := changestream.WatchCollection(ctx, other, nil)
	require.NoError(t, err)
	defer probe.Close(context.Background())
	_, err = other.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)
	require.True(t, probe.Next(ctx), "%v", probe.Err())
	foreign := probe.ResumeToken()
	e.insert(t, 1)

	cs, err := changestream.WatchCollection(ctx, e.coll, nil, changestream.WithResumeAfter(foreign))
	if e.cluster != nil {
		// mongos answers the aggregate with an empty first batch, always:
		// it finds that no shard has the token at the first getMore.
		require.NoError(t, err)
		require.False(t, cs.Next(ctx))
		err = cs.Err()
		assert.False(t, cs.Alive())
	}
	require.ErrorIs(t, err, changestream.ErrUnresumablePosition)
	assert.NotErrorIs(t, err, changestream.ErrHistoryLost)
	var up *changestream.UnresumablePositionError
	require.ErrorAs(t, err, &up)
	assert.EqualValues(t, 280, up.Code)
	assert.Equal(t, "resumeAfter", up.Option)
	assert.Equal(t, foreign, up.Position().Token)
	var ce mongo.CommandError
	require.ErrorAs(t, err, &ce, "the server's error stays reachable")

	t.Run("a token the server cannot read", func(t *testing.T) {
		e.needSim(t) // a 8.0 server still reads version-1 tokens; the simulator does not
		_, err := changestream.WatchCollection(ctx, e.coll, nil,
			changestream.WithResumeAfter(rawToken(t, "8263F5C1D6000000022B022C0100296E5A1004")))
		var up *changestream.UnresumablePositionError
		require.ErrorAs(t, err, &up)
		assert.EqualValues(t, 260, up.Code)
	})
}

// TestTransactionEventFields: the events of a transaction carry its lsid
// and txnNumber; others carry neither.
func TestTransactionEventFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxTimeout(t, 10*time.Second)
	e.insert(t, 0)
	cs := watch(t, e, nil)
	sess, err := e.client.StartSession()
	require.NoError(t, err)
	defer sess.EndSession(ctx)
	_, err = sess.WithTransaction(ctx, func(sc context.Context) (any, error) {
		_, err := e.coll.InsertMany(sc, []any{bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}}})
		return nil, err
	})
	require.NoError(t, err)
	e.insert(t, 3)

	var evs []changestream.Event[bson.Raw]
	for len(evs) < 3 && cs.Next(ctx) {
		var ev changestream.Event[bson.Raw]
		require.NoError(t, cs.Decode(&ev))
		evs = append(evs, ev)
	}
	require.NoError(t, cs.Err())
	require.Len(t, evs, 3)
	for _, ev := range evs[:2] {
		require.NotNil(t, ev.TxnNumber)
		assert.Equal(t, sess.ID().Lookup("id"), ev.LSID.Lookup("id"))
		assert.Equal(t, evs[0].ClusterTime, ev.ClusterTime)
	}
	assert.Equal(t, *evs[0].TxnNumber, *evs[1].TxnNumber)
	assert.Nil(t, evs[2].TxnNumber)
	assert.Nil(t, evs[2].LSID)
}

// TestConflictingStartOptions: start options given together are all sent,
// as the specification asks, and the server's refusal reaches the caller;
// none is picked silently (issue defect 4).
func TestConflictingStartOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxTimeout(t, 10*time.Second)
	probe := watch(t, e, nil)
	e.insert(t, 1)
	tok := bson.Raw(next(t, probe).Lookup("_id").Document())
	at := bson.Timestamp{T: uint32(time.Now().Unix()), I: 1}
	for _, tc := range []struct {
		name string
		opts []changestream.Option
		sent []string
		code int32
	}{
		{"resumeAfter and startAfter", []changestream.Option{changestream.WithResumeAfter(tok), changestream.WithStartAfter(tok)},
			[]string{"resumeAfter", "startAfter"}, 50865},
		{"a token and a time", []changestream.Option{changestream.WithResumeAfter(tok), changestream.WithStartAtOperationTime(at)},
			[]string{"resumeAfter", "startAtOperationTime"}, 40674},
	} {
		e.mon.reset()
		_, err := changestream.WatchCollection(ctx, e.coll, nil, tc.opts...)
		var ce mongo.CommandError
		require.ErrorAs(t, err, &ce, tc.name)
		assert.Equal(t, tc.code, ce.Code, tc.name)
		aggs := e.mon.commands("aggregate")
		require.NotEmpty(t, aggs, tc.name)
		stage := changeStreamStage(t, aggs[0])
		for _, k := range tc.sent {
			_, err := stage.LookupErr(k)
			assert.NoError(t, err, "%s: %s sent", tc.name, k)
		}
	}
}

// TestZeroValues: zero values of the driver's types and of ChangeStream
// fail with clear errors instead of panicking (issue defect 6).
func TestZeroValues(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, err := changestream.WatchCollection(ctx, &mongo.Collection{}, nil)
	assert.ErrorContains(t, err, "not made by a client")
	_, err = changestream.WatchDatabase(ctx, &mongo.Database{}, nil)
	assert.ErrorContains(t, err, "not made by a client")

	var cs changestream.ChangeStream
	assert.False(t, cs.Next(ctx))
	assert.ErrorContains(t, cs.Err(), "not opened by WatchCollection")
	assert.False(t, cs.TryNext(ctx))
	assert.Error(t, cs.Decode(new(bson.Raw)))
	assert.ErrorContains(t, cs.Close(ctx), "not opened")
	assert.False(t, cs.Alive())
	assert.Nil(t, cs.ResumeToken())
	assert.True(t, cs.Position().IsZero())
}

// TestEventsDecodeError: an event that does not decode is yielded with a
// *DecodeError that carries it, told apart from a stream error with
// errors.As, and the iteration goes on (issue defect 7).
func TestEventsDecodeError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxTimeout(t, 10*time.Second)
	cs := watch(t, e, nil)
	_, err := e.coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: "not a number"}})
	require.NoError(t, err)
	e.insert(t, 2)
	type doc struct {
		N int32 `bson:"n"`
	}
	var got []int32
	var decodeErrs int
	for ev, err := range changestream.Events[doc](ctx, cs) {
		var de *changestream.DecodeError
		if errors.As(err, &de) {
			decodeErrs++
			assert.Equal(t, int32(1), de.Event.Lookup("documentKey", "_id").Int32())
			assert.NotNil(t, de.ResumeToken)
			var bde *bson.DecodeError
			assert.ErrorAs(t, err, &bde, "the decoder's error stays reachable")
			continue
		}
		require.NoError(t, err)
		got = append(got, ev.FullDocument.N)
		break
	}
	assert.Equal(t, 1, decodeErrs)
	assert.Equal(t, []int32{2}, got)
}
