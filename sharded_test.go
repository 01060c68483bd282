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

// TestShardedRouterRestarts runs a cluster-wide ChangeStream through a
// simulated sharded cluster (2 shards, 2 mongos) while each mongos in
// turn is stopped and restarted under it: the stream's cursor dies with
// its router (a network error, then CursorNotFound on the restarted
// one), and it resumes on a mongos with every event once, in order,
// from both shards. It needs the simulator: a real cluster's mongos
// cannot be restarted from a test.
func TestShardedRouterRestarts(t *testing.T) {
	t.Parallel()
	sc := mongosim.StartShardedClusterTB(t, 2, 1, 2, []mongosim.Option{mongosim.WithNoopInterval(100 * time.Millisecond)})
	require.NoError(t, sc.Catalog().SetPrimaryShard("a", "shard0"))
	require.NoError(t, sc.Catalog().SetPrimaryShard("b", "shard1"))
	client, err := mongo.Connect(testclient.Options(sc.URI()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	ctx := ctxTimeout(t, 60*time.Second)

	cs, err := changestream.WatchCluster(ctx, client, nil)
	require.NoError(t, err)
	defer cs.Close(context.Background())
	const n = 30
	wrote := make(chan error, 1)
	go func() {
		for i := range n {
			db := []string{"a", "b"}[i%2]
			if err := insertRetrying(ctx, client.Database(db).Collection("c"), int32(i)); err != nil {
				wrote <- err
				return
			}
			if i == 10 || i == 20 {
				r := sc.Router(i / 20)
				r.Stop()
				if err := r.Restart(); err != nil {
					wrote <- err
					return
				}
			}
		}
		wrote <- nil
	}()
	// An error the stream survives (its resume met the restarted
	// router's dead connection) is reported, and the next call goes on.
	var got []int32
	for len(got) < n && ctx.Err() == nil {
		if !cs.Next(ctx) {
			require.True(t, cs.Alive(), "the stream ended: %v (got %v)", cs.Err(), got)
			continue
		}
		got = append(got, cs.Current.Lookup("documentKey", "_id").Int32())
	}
	require.NoError(t, <-wrote)
	want := make([]int32, n)
	for i := range want {
		want[i] = int32(i)
	}
	assert.Equal(t, want, got, "every event once, in order, across both restarts")
	assert.GreaterOrEqual(t, cs.Stats().Resumes, int64(1), "the stream's own mongos was one of the two")
}

// insertRetrying inserts {_id: id}, again after an error (a router
// restarting: the driver's one retry may meet another dead pooled
// connection, or a pool cleared by one); a duplicate key means an
// earlier try went through.
func insertRetrying(ctx context.Context, coll *mongo.Collection, id int32) error {
	var err error
	for range 10 {
		_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}})
		if err == nil || mongo.IsDuplicateKeyError(err) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return err
}

// TestShardedShardDown: a whole shard stops under a stream through mongos
// (its one member killed). The stream stays alive: a call reports the
// error, naming the shard, and the stream carries on once the shard is
// back, nothing lost. A stream opened while the shard is down fails with
// an error that says which shard has no primary. It needs the simulator:
// a real cluster's shard cannot be stopped from a test.
func TestShardedShardDown(t *testing.T) {
	t.Parallel()
	sc := mongosim.StartShardedClusterTB(t, 2, 1, 1, []mongosim.Option{mongosim.WithNoopInterval(100 * time.Millisecond)})
	require.NoError(t, sc.Catalog().SetPrimaryShard("a", "shard0"))
	client, err := mongo.Connect(testclient.Options(sc.URI()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	ctx := ctxTimeout(t, 60*time.Second)
	coll := client.Database("a").Collection("c")
	cs, err := changestream.WatchCollection(ctx, coll, nil)
	require.NoError(t, err)
	defer cs.Close(context.Background())
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)
	require.True(t, cs.Next(ctx), "%v", cs.Err())

	sc.Shard(1).Kill(0) // the idle shard: every event waits for it
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}})
	require.NoError(t, err, "the collection's shard still takes writes")
	callCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	assert.False(t, cs.Next(callCtx), "no event while a shard is down")
	cancel()
	require.Error(t, cs.Err())
	assert.True(t, cs.Alive(), "the stream survives: %v", cs.Err())
	t.Logf("while the shard is down: %v", cs.Err())

	_, err = changestream.WatchCollection(ctx, coll, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "shard1", "the error names the shard")
	t.Logf("opening while the shard is down: %v", err)

	require.NoError(t, sc.Shard(1).Restart(0))
	require.True(t, cs.Next(ctx), "%v", cs.Err())
	assert.Equal(t, int32(2), cs.Current.Lookup("documentKey", "_id").Int32(), "nothing lost")
}
