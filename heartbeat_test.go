package changestream_test

import (
	"context"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// TestHeartbeatBoundsAnIdleShard: with the shards' no-op writer off, an
// idle shard holds a busy shard's events back for good; a heartbeat
// every 200 ms on a collection PrepareHeartbeat placed one document per
// shard releases them (any stream's: the writes move the shards on), and
// the stream that writes it never shows its events, even cluster-wide. It needs a sharded cluster; the simulator's, since
// a real one's no-op writer cannot be turned off.
func TestHeartbeatBoundsAnIdleShard(t *testing.T) {
	t.Parallel()
	sc := mongosim.StartShardedClusterTB(t, 2, 1, 1, []mongosim.Option{mongosim.WithNoopInterval(0)})
	require.NoError(t, sc.Catalog().SetPrimaryShard("a", "shard0"))
	require.NoError(t, sc.Catalog().SetPrimaryShard("ops", "shard0"))
	client, err := mongo.Connect(testclient.Options(sc.URI()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	ctx := ctxTimeout(t, 30*time.Second)
	beats := client.Database("ops").Collection("heartbeat")
	require.NoError(t, changestream.PrepareHeartbeat(ctx, beats))
	require.NoError(t, changestream.PrepareHeartbeat(ctx, beats), "again: nothing changes")
	var chunks []struct {
		Shard string `bson:"shard"`
	}
	cur, err := client.Database("config").Collection("chunks").Find(ctx, bson.D{})
	require.NoError(t, err)
	require.NoError(t, cur.All(ctx, &chunks))
	require.Len(t, chunks, 2)
	assert.ElementsMatch(t, []string{"shard0", "shard1"}, []string{chunks[0].Shard, chunks[1].Shard}, "a chunk on each shard")

	coll := client.Database("a").Collection("c")
	plain, err := changestream.WatchCluster(ctx, client, nil, changestream.WithMaxAwaitTime(100*time.Millisecond))
	require.NoError(t, err)
	defer plain.Close(context.Background())
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)
	for range 5 {
		assert.False(t, plain.TryNext(ctx), "held back by the idle shard, with no heartbeat")
		require.NoError(t, plain.Err())
	}

	cs, err := changestream.WatchCluster(ctx, client, nil, changestream.WithHeartbeat(beats, 200*time.Millisecond))
	require.NoError(t, err)
	defer cs.Close(context.Background())
	require.True(t, plain.Next(ctx), "released by the heartbeat: %v", plain.Err())
	assert.Equal(t, int32(1), plain.Current.Lookup("documentKey", "_id").Int32())
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}})
	require.NoError(t, err)
	require.True(t, cs.Next(ctx), "%v", cs.Err())
	assert.Equal(t, int32(2), cs.Current.Lookup("documentKey", "_id").Int32(), "the event, never a heartbeat's")
	require.True(t, plain.Next(ctx), "%v", plain.Err())
	assert.Equal(t, "heartbeat", plain.Current.Lookup("ns", "coll").StringValue(), "a stream without the option sees the writes")
	st := cs.Stats()
	assert.Positive(t, st.Heartbeats)
	assert.Zero(t, st.HeartbeatErrors, "%v", st.HeartbeatErr)
	require.NoError(t, cs.Close(context.Background()))
	n := cs.Stats().Heartbeats
	time.Sleep(500 * time.Millisecond)
	assert.Equal(t, n, cs.Stats().Heartbeats, "Close stops the writer")
}

// TestHeartbeatOnAReplicaSet: there is no idle shard to bound; the
// stream writes nothing and works as without it. Bad settings are
// refused.
func TestHeartbeatOnAReplicaSet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if e.cluster != nil {
		t.Skip("the replica-set half of TestHeartbeatBoundsAnIdleShard")
	}
	ctx := ctxTimeout(t, 10*time.Second)
	beats := e.db.Collection("heartbeat")
	require.NoError(t, changestream.PrepareHeartbeat(ctx, beats), "nothing to do")
	cs := watch(t, e, nil, changestream.WithHeartbeat(beats, 100*time.Millisecond))
	e.insert(t, 1)
	assert.Equal(t, int32(1), eventN(t, next(t, cs)))
	assert.Zero(t, cs.Stats().Heartbeats)
	n, err := beats.CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	assert.Zero(t, n)

	for _, opt := range []changestream.Option{changestream.WithHeartbeat(nil, time.Second), changestream.WithHeartbeat(beats, time.Millisecond)} {
		_, err := changestream.WatchCollection(ctx, e.coll, nil, opt)
		assert.Error(t, err)
	}
	assert.Error(t, changestream.PrepareHeartbeat(ctx, nil))
}
