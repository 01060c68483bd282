package changestream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestOutageIsNotTheCallersDeadline: with the server gone and no deadline
// of the caller's, the error after the client's server selection timeout
// is ErrServerUnavailable and does not match context.DeadlineExceeded; the
// stream stays alive. With the caller's own short deadline, the error is
// the caller's (issue defect 5).
func TestOutageIsNotTheCallersDeadline(t *testing.T) {
	t.Parallel()
	sim, err := mongosim.NewServer()
	require.NoError(t, err)
	c, err := mongo.Connect(options.Client().ApplyURI(sim.URI()).SetServerSelectionTimeout(300 * time.Millisecond))
	require.NoError(t, err)
	defer c.Disconnect(context.Background())
	cs, err := changestream.WatchCollection(context.Background(), c.Database("d").Collection("c"), nil)
	require.NoError(t, err)
	defer cs.Close(context.Background())
	require.NoError(t, sim.Close())

	var saw bool
	for i := 0; i < 3 && !saw; i++ {
		require.False(t, cs.Next(context.Background()))
		err := cs.Err()
		require.Error(t, err)
		assert.True(t, cs.Alive(), "an outage is survivable")
		if errors.Is(err, changestream.ErrServerUnavailable) {
			saw = true
			assert.False(t, errors.Is(err, context.DeadlineExceeded), "not the caller's deadline: %v", err)
		}
	}
	assert.True(t, saw, "the outage was reported as one")

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.False(t, cs.Next(ctx))
	assert.ErrorIs(t, cs.Err(), context.DeadlineExceeded, "the caller's own deadline")
	assert.False(t, errors.Is(cs.Err(), changestream.ErrServerUnavailable))

	_, err = changestream.WatchCollection(context.Background(), c.Database("d").Collection("c"), nil)
	assert.ErrorIs(t, err, changestream.ErrServerUnavailable, "opening during an outage")
	assert.False(t, errors.Is(err, context.DeadlineExceeded))
}

// TestShortDeadlinesDeliverWaitingEvents: events already waiting are
// delivered to calls with only 1 ms each, once each, and the short
// deadlines cost no resume (issue defects 1 and 2).
func TestShortDeadlinesDeliverWaitingEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil)
	e.insert(t, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	var got []int32
	for calls := 0; calls < 200 && len(got) < 10; calls++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		if cs.Next(ctx) {
			got = append(got, eventN(t, cs.Current))
		} else {
			require.True(t, cs.Alive(), "a deadline never ends the stream: %v", cs.Err())
		}
		cancel()
	}
	assert.Equal(t, []int32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, got)
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		require.False(t, cs.Next(ctx))
		assert.ErrorIs(t, cs.Err(), context.DeadlineExceeded)
		cancel()
	}
	if e.sim != nil {
		assert.Zero(t, cs.Stats().Resumes, "short deadlines break no connection")
	}
}

// TestWithTimeout: a call without a deadline of its own is bounded by
// WithTimeout, as a client's timeoutMS bounds the driver's Watch, here
// while a getMore hangs in a simulated partition; the stream survives it
// (issue defect 8).
func TestWithTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil, changestream.WithTimeout(300*time.Millisecond))
	e.failPoint(t, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "blockConnection", Value: true}, {Key: "blockTimeMS", Value: 3000}})
	require.False(t, cs.Next(context.Background()))
	assert.ErrorIs(t, cs.Err(), context.DeadlineExceeded)
	assert.True(t, cs.Alive())

	e.insert(t, 1)
	ctx := ctxTimeout(t, 10*time.Second)
	require.True(t, cs.Next(ctx), "%v", cs.Err())
	assert.Equal(t, int32(1), eventN(t, cs.Current))

	_, err := changestream.WatchCollection(ctx, e.coll, nil, changestream.WithTimeout(-time.Second))
	assert.ErrorContains(t, err, "WithTimeout: negative duration")
}

// TestClientTimeoutMS: without WithTimeout, a call without a deadline of
// its own is bounded by the client's timeoutMS, as each Next of the
// driver's Watch is, here while a getMore hangs in a simulated partition;
// the stream survives it (issue defect 8).
func TestClientTimeoutMS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c, err := mongo.Connect(options.Client().ApplyURI(e.uri).SetAppName(e.appName).SetTimeout(300 * time.Millisecond))
	require.NoError(t, err)
	defer c.Disconnect(context.Background())
	// Discovery and the first connection, on a loaded machine, can take
	// longer than the client's 300 ms: they happen here, under a deadline
	// of the test's, and not inside the stream's first call.
	require.NoError(t, c.Ping(ctxTimeout(t, 10*time.Second), nil))
	coll := c.Database(e.db.Name()).Collection(e.coll.Name())
	cs, err := changestream.WatchCollection(context.Background(), coll, nil)
	require.NoError(t, err)
	defer cs.Close(context.Background())

	e.failPoint(t, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "blockConnection", Value: true}, {Key: "blockTimeMS", Value: 3000}})
	require.False(t, cs.Next(context.Background()))
	assert.ErrorIs(t, cs.Err(), context.DeadlineExceeded)
	assert.True(t, cs.Alive())

	e.insert(t, 1)
	ctx := ctxTimeout(t, 10*time.Second)
	require.True(t, cs.Next(ctx), "%v", cs.Err())
	assert.Equal(t, int32(1), eventN(t, cs.Current))
}
