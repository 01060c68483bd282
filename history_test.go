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

// TestHeadroom: a stream's position measured against the replica set's
// oplog (serverStatus's oplog section): known, a margin between 0 and the
// window, the set named; once the oplog has overtaken the position,
// Lost. Through mongos it is unknown, with the reason; measured on each
// shard with HeadroomOf it is known, the least of the shards.
func TestHeadroom(t *testing.T) {
	t.Parallel()
	t.Run("replica set", func(t *testing.T) {
		t.Parallel()
		ctx := ctxTimeout(t, 30*time.Second)
		e := newEnv(t, mongosimOplogMax(20))
		if e.sim == nil {
			t.Skip("a replica set's oplog; the sharded case is below")
		}
		cs := watch(t, e, nil)
		e.insert(t, 1)
		next(t, cs)
		pos := cs.Position()
		h, err := changestream.Headroom(ctx, e.client, pos)
		require.NoError(t, err)
		require.True(t, h.Known, h.Reason)
		assert.False(t, h.Lost)
		assert.GreaterOrEqual(t, h.Margin, time.Duration(0))
		assert.LessOrEqual(t, h.Margin, h.Window)
		assert.NotEmpty(t, h.Source)
		for n := 2; n < 40; n++ { // past the 20 entries the oplog keeps
			e.insert(t, n)
		}
		h, err = changestream.Headroom(ctx, e.client, pos)
		require.NoError(t, err)
		assert.True(t, h.Lost, "%+v", h)
	})
	t.Run("sharded", func(t *testing.T) {
		t.Parallel()
		ctx := ctxTimeout(t, 30*time.Second)
		sc := mongosim.StartShardedClusterTB(t, 2, 1, 1, []mongosim.Option{mongosim.WithNoopInterval(100 * time.Millisecond)})
		client, err := mongo.Connect(testclient.Options(sc.URI()))
		require.NoError(t, err)
		t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
		coll := client.Database("a").Collection("c")
		cs, err := changestream.WatchCollection(ctx, coll, nil)
		require.NoError(t, err)
		defer cs.Close(context.Background())
		_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
		require.NoError(t, err)
		require.True(t, cs.Next(ctx), "%v", cs.Err())

		h, err := changestream.Headroom(ctx, client, cs.Position())
		require.NoError(t, err)
		assert.False(t, h.Known)
		assert.Contains(t, h.Reason, "mongos")

		var shards []*mongo.Client
		for _, rs := range sc.Shards() {
			c, err := mongo.Connect(testclient.Options(rs.URI()))
			require.NoError(t, err)
			t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
			shards = append(shards, c)
		}
		h, err = changestream.HeadroomOf(ctx, shards, cs.Position())
		require.NoError(t, err)
		require.True(t, h.Known, h.Reason)
		assert.Contains(t, []string{"shard0", "shard1"}, h.Source)
		require.NoError(t, sc.LoseHistory(1))
		h, err = changestream.HeadroomOf(ctx, shards, cs.Position())
		require.NoError(t, err)
		assert.True(t, h.Lost)
		assert.Equal(t, "shard1", h.Source, "the shard that lost it has the least headroom")
	})
}
