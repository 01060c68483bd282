package mongosim_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestShardedRefineShardKey: refineCollectionShardKey through mongos, as
// 8.0 runs it (cluster_refine_collection_shard_key_cmd.cpp and
// refine_collection_shard_key_coordinator.cpp): refused on a collection
// that is not sharded (NamespaceNotSharded), for a key that does not
// extend the current one or has no index starting with it
// (InvalidOptions, as jstests/sharding/refine_collection_shard_key_basic.js
// asserts); done, it reports one refineCollectionShardKey event
// {shardKey, oldShardKey} to a stream with showExpandedEvents (the
// manual's change event page of that name), every later write on every
// shard has the new fields in its documentKey, the chunk bounds gain the
// new fields as MinKey (MaxKey at the top) so that no document changes
// chunk, and queries still find every document.
func TestShardedRefineShardKey(t *testing.T) {
	t.Parallel()
	_, c := startSharded(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	shardOnSku(ctx, t, c) // sku < 50 on shard0, the rest on shard1
	admin := c.Database("admin")
	coll := c.Database("a").Collection("c")
	cs, err := c.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetShowExpandedEvents(true))
	require.NoError(t, err)
	defer cs.Close(context.Background())
	_, err = coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: 1}, {Key: "sku", Value: 10}, {Key: "color", Value: "red"}},
		bson.D{{Key: "_id", Value: 2}, {Key: "sku", Value: 60}, {Key: "color", Value: "blue"}}})
	require.NoError(t, err)

	refine := func(ns string, key bson.D) error {
		return admin.RunCommand(ctx, bson.D{{Key: "refineCollectionShardKey", Value: ns}, {Key: "key", Value: key}}).Err()
	}
	refused := []struct {
		name string
		ns   string
		key  bson.D
		code int
	}{
		{"not sharded", "a.other", bson.D{{Key: "sku", Value: 1}, {Key: "color", Value: 1}}, 118},
		{"no index starts with the key", "a.c", bson.D{{Key: "sku", Value: 1}, {Key: "color", Value: 1}}, 72},
		{"does not start with the current key", "a.c", bson.D{{Key: "color", Value: 1}, {Key: "sku", Value: 1}}, 72},
		{"the current key itself", "a.c", bson.D{{Key: "sku", Value: 1}}, 72},
	}
	for _, tc := range refused {
		var se mongo.ServerError
		require.ErrorAs(t, refine(tc.ns, tc.key), &se, tc.name)
		assert.True(t, se.HasErrorCode(tc.code), "%s: %v", tc.name, se)
	}
	_, err = coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "sku", Value: 1}, {Key: "color", Value: 1}}})
	require.NoError(t, err)
	refined := bson.D{{Key: "sku", Value: int32(1)}, {Key: "color", Value: int32(1)}}
	require.NoError(t, refine("a.c", refined))

	_, err = coll.UpdateOne(ctx, bson.D{{Key: "sku", Value: 10}, {Key: "color", Value: "red"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 1}}}})
	require.NoError(t, err)
	_, err = coll.UpdateOne(ctx, bson.D{{Key: "sku", Value: 60}, {Key: "color", Value: "blue"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 2}}}})
	require.NoError(t, err)
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 3}, {Key: "sku", Value: 70}, {Key: "color", Value: "green"}})
	require.NoError(t, err)

	type event struct {
		Op   string `bson:"operationType"`
		Key  bson.D `bson:"documentKey"`
		Desc bson.D `bson:"operationDescription"`
	}
	var got []event
	for len(got) < 6 && cs.Next(ctx) {
		var ev event
		require.NoError(t, cs.Decode(&ev))
		if ev.Op == "createIndexes" {
			continue
		}
		got = append(got, ev)
	}
	require.NoError(t, cs.Err())
	key := func(sku int32, color string, id int32) bson.D {
		if color == "" {
			return bson.D{{Key: "sku", Value: sku}, {Key: "_id", Value: id}}
		}
		return bson.D{{Key: "sku", Value: sku}, {Key: "color", Value: color}, {Key: "_id", Value: id}}
	}
	want := []event{
		{Op: "insert", Key: key(10, "", 1)},
		{Op: "insert", Key: key(60, "", 2)},
		{Op: "refineCollectionShardKey", Desc: bson.D{{Key: "shardKey", Value: refined}, {Key: "oldShardKey", Value: bson.D{{Key: "sku", Value: int32(1)}}}}},
		{Op: "update", Key: key(10, "red", 1)},
		{Op: "update", Key: key(60, "blue", 2)},
		{Op: "insert", Key: key(70, "green", 3)},
	}
	assert.Equal(t, want, got[:min(len(got), len(want))])

	var chunks []struct {
		Min   bson.D `bson:"min"`
		Max   bson.D `bson:"max"`
		Shard string `bson:"shard"`
	}
	cur, err := c.Database("config").Collection("chunks").Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "min", Value: 1}}))
	require.NoError(t, err)
	require.NoError(t, cur.All(ctx, &chunks))
	require.Len(t, chunks, 2)
	assert.Equal(t, bson.D{{Key: "sku", Value: bson.MinKey{}}, {Key: "color", Value: bson.MinKey{}}}, chunks[0].Min)
	assert.Equal(t, bson.D{{Key: "sku", Value: int32(50)}, {Key: "color", Value: bson.MinKey{}}}, chunks[0].Max)
	assert.Equal(t, bson.D{{Key: "sku", Value: bson.MaxKey{}}, {Key: "color", Value: bson.MaxKey{}}}, chunks[1].Max)
	assert.Equal(t, []string{"shard0", "shard1"}, []string{chunks[0].Shard, chunks[1].Shard})
	var meta struct {
		Key bson.D `bson:"key"`
	}
	require.NoError(t, c.Database("config").Collection("collections").FindOne(ctx, bson.D{{Key: "_id", Value: "a.c"}}).Decode(&meta))
	assert.Equal(t, refined, meta.Key)
	n, err := coll.CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	assert.Equal(t, int64(3), n)
	var one bson.M
	require.NoError(t, coll.FindOne(ctx, bson.D{{Key: "sku", Value: 60}, {Key: "color", Value: "blue"}}).Decode(&one))
	assert.Equal(t, int32(2), one["_id"])
}
