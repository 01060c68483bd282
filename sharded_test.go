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
			if _, err := client.Database(db).Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: int32(i)}}); err != nil {
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
	var got []int32
	for len(got) < n && cs.Next(ctx) {
		got = append(got, cs.Current.Lookup("documentKey", "_id").Int32())
	}
	require.NoError(t, cs.Err())
	require.NoError(t, <-wrote)
	want := make([]int32, n)
	for i := range want {
		want[i] = int32(i)
	}
	assert.Equal(t, want, got, "every event once, in order, across both restarts")
	assert.GreaterOrEqual(t, cs.Stats().Resumes, 1, "the stream's own mongos was one of the two")
}
