package mongosim_test

import (
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestNoopWriterMovesIdleStream: with nothing written, the periodic no-op
// writer's entries move an idle stream's postBatchResumeToken, and never
// appear as events (a primary's periodicNoopIntervalSecs; the change
// streams manual: "postBatchResumeToken ... advances even when no events").
func TestNoopWriterMovesIdleStream(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t, mongosim.WithNoopInterval(20*time.Millisecond))
	coll := c.Database("db").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(50*time.Millisecond))
	require.NoError(t, err)
	defer cs.Close(ctx)
	start := tokenTime(t, cs.ResumeToken())
	moved := false
	for i := 0; i < 100 && !moved; i++ {
		require.False(t, cs.TryNext(ctx), "a no-op is never an event")
		require.NoError(t, cs.Err())
		moved = tsAfter(tokenTime(t, cs.ResumeToken()), start)
	}
	assert.True(t, moved, "the postBatchResumeToken moved past %v", start)
}

// TestNoopWriterOff: with the writer off, an idle stream's token stays.
func TestNoopWriterOff(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t, mongosim.WithNoopInterval(0))
	coll := c.Database("db").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(30*time.Millisecond))
	require.NoError(t, err)
	defer cs.Close(ctx)
	start := cs.ResumeToken()
	for i := 0; i < 3; i++ {
		require.False(t, cs.TryNext(ctx))
	}
	assert.Equal(t, start, cs.ResumeToken())
}

func TestNoopIntervalNegative(t *testing.T) {
	t.Parallel()
	_, err := mongosim.NewServer(mongosim.WithNoopInterval(-time.Second))
	assert.ErrorContains(t, err, "negative no-op interval")
}

// TestTokenFromAnotherLife: a token older than the oldest retained oplog
// entry is lost history (286) even though nothing was ever truncated, as
// on a new deployment, whose oplog starts with the entry that initiated
// it: a simulator started after the one that issued the token refuses it
// instead of silently skipping events (the resumability check compares
// the start with the oplog's first entry).
func TestTokenFromAnotherLife(t *testing.T) {
	t.Parallel()
	_, c1, ctx := csSetup(t)
	coll1 := c1.Database("db").Collection("c")
	cs, err := coll1.Watch(ctx, mongo.Pipeline{})
	require.NoError(t, err)
	for i := 0; i < 1000; i++ {
		_, err := coll1.InsertOne(ctx, bson.D{{Key: "_id", Value: i}})
		require.NoError(t, err)
	}
	var eventToken bson.Raw
	for i := 0; i < 1000 && cs.Next(ctx); i++ {
		if i == 500 {
			eventToken = cs.ResumeToken()
		}
	}
	require.NoError(t, cs.Err())
	hwm := cs.ResumeToken()
	require.NoError(t, cs.Close(ctx))

	// The restart comes after the second of the previous life's last
	// token: cluster times are wall-clock seconds, and two lives within
	// one second cannot be told apart by time (nor can two real
	// deployments).
	last := tokenTime(t, hwm).T
	for uint32(time.Now().Unix()) < last {
		time.Sleep(50 * time.Millisecond)
	}
	_, c2, _ := csSetup(t)
	coll2 := c2.Database("db").Collection("c")
	for _, tok := range []bson.Raw{eventToken, hwm} {
		_, err = coll2.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(tok))
		assert.Equal(t, int32(286), cmdErrOf(t, err).Code)
	}
}

func tsAfter(a, b bson.Timestamp) bool { return a.T > b.T || (a.T == b.T && a.I > b.I) }
