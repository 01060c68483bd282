package hub_test

import (
	"context"
	"testing"

	"github.com/changestream-go/changestream/hub"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// TestOrderWhenTheDocumentKeyChangesShape: a subscription matching a
// document by documentKey._id sees its events in stream order when the
// documentKey gains fields on the way, its collection sharded and then
// its shard key refined. Sharded cluster only: on a replica set a
// documentKey is {_id} always.
func TestOrderWhenTheDocumentKeyChangesShape(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if e.dep.Cluster == nil {
		t.Skip("a documentKey changes shape only when a collection is sharded (CHANGESTREAM_TEST_TOPOLOGY=sharded)")
	}
	s := e.subscribe(t, hub.WithMatch(bson.D{{Key: "documentKey._id", Value: 1}}))
	ctx := context.Background()
	admin := e.coll.Database().Client().Database("admin")
	ns := e.coll.Database().Name() + "." + e.coll.Name()
	sku := bson.D{{Key: "sku", Value: 1}}
	skuColor := bson.D{{Key: "sku", Value: 1}, {Key: "color", Value: 1}}
	filter := bson.D{{Key: "sku", Value: 5}, {Key: "color", Value: "red"}}
	set := func(n int) bson.D { return bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: n}}}} }

	_, err := e.coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "sku", Value: 5}, {Key: "color", Value: "red"}})
	require.NoError(t, err)
	require.NoError(t, admin.RunCommand(ctx, bson.D{{Key: "shardCollection", Value: ns}, {Key: "key", Value: sku}}).Err())
	_, err = e.coll.UpdateOne(ctx, filter, set(1))
	require.NoError(t, err)
	_, err = e.coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: skuColor})
	require.NoError(t, err)
	require.NoError(t, admin.RunCommand(ctx, bson.D{{Key: "refineCollectionShardKey", Value: ns}, {Key: "key", Value: skuColor}}).Err())
	_, err = e.coll.UpdateOne(ctx, filter, set(2))
	require.NoError(t, err)

	var got []string
	for range 3 {
		require.True(t, s.Next(ctx), s.Err())
		got = append(got, s.Current.Lookup("operationType").StringValue()+" "+s.Current.Lookup("documentKey").String())
	}
	assert.Equal(t, []string{
		`insert {"_id": {"$numberInt":"1"}}`,
		`update {"sku": {"$numberInt":"5"},"_id": {"$numberInt":"1"}}`,
		`update {"sku": {"$numberInt":"5"},"color": "red","_id": {"$numberInt":"1"}}`,
	}, got)
}
