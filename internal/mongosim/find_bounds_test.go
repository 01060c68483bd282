package mongosim_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestFindMinMax: a find with hint {_id: 1} and min/max walks the _id
// index across every type, min inclusive and max exclusive, as the server
// does (jstests/core/query/minmax.js, minmax_edge.js); min or max without
// a hint fails with 51173; a hint of an index the simulator cannot scan is
// refused.
func TestFindMinMax(t *testing.T) {
	t.Parallel()
	ctx, c := connectCRUD(t)
	coll := c.Database("db").Collection("mm")
	oid := bson.NewObjectID()
	_, err := coll.InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: "b"}}, bson.D{{Key: "_id", Value: int32(2)}}, bson.D{{Key: "_id", Value: oid}},
		bson.D{{Key: "_id", Value: 1.5}}, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "_id", Value: int64(10)}},
	})
	require.NoError(t, err)
	ids := func(opts *options.FindOptionsBuilder) []any {
		t.Helper()
		cur, err := coll.Find(ctx, bson.D{}, opts)
		require.NoError(t, err)
		var docs []bson.M
		require.NoError(t, cur.All(ctx, &docs))
		var out []any
		for _, d := range docs {
			out = append(out, d["_id"])
		}
		return out
	}
	asc := bson.D{{Key: "_id", Value: 1}}
	assert.Equal(t, []any{1.5, int32(2), int64(10), "a", "b", oid}, ids(options.Find().SetHint(asc)), "index order across types")
	assert.Equal(t, []any{int64(10), "a", "b", oid}, ids(options.Find().SetHint(asc).SetMin(bson.D{{Key: "_id", Value: 10}})), "min is inclusive")
	assert.Equal(t, []any{"b", oid}, ids(options.Find().SetHint("_id_").SetMin(bson.D{{Key: "_id", Value: "a\x00"}})))
	assert.Equal(t, []any{1.5, int32(2)}, ids(options.Find().SetHint(asc).SetMax(bson.D{{Key: "_id", Value: 10}})), "max is exclusive")
	assert.Equal(t, []any{"a", int64(10), int32(2)},
		ids(options.Find().SetHint(bson.D{{Key: "_id", Value: -1}}).SetMin(bson.D{{Key: "_id", Value: "a"}}).SetMax(bson.D{{Key: "_id", Value: 1.5}})),
		"a descending index: min is the upper end")
	assert.Len(t, ids(options.Find().SetHint(asc).SetMin(bson.D{{Key: "_id", Value: 2}}).SetLimit(2).SetSort(asc)), 2)

	var se mongo.ServerError
	_, err = coll.Find(ctx, bson.D{}, options.Find().SetMin(bson.D{{Key: "_id", Value: 1}}))
	require.True(t, errors.As(err, &se), "%v", err)
	assert.True(t, se.HasErrorCode(51173), "%v", err)
	_, err = coll.Find(ctx, bson.D{}, options.Find().SetHint(bson.D{{Key: "v", Value: 1}}))
	require.True(t, errors.As(err, &se), "%v", err)
	assert.True(t, se.HasErrorCode(238), "%v", err)
}
