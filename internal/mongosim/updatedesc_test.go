package mongosim_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// TestUpdateDescriptionFromDelta pins updateDescription to what the
// server derives from the update's own delta (update/v2_log_builder.cpp,
// change_stream_event_transform.cpp; the manual's "Change Events: update"
// and jstests/change_streams/pipeline_style_updates.js), not to a diff of
// the two documents: $set of a sub-document or an array reports the whole
// field, $push reports the appended elements, $pop and $pull the whole
// array, a created path is reported at its first new component, and only
// a pipeline update (which the server does diff) reports truncatedArrays.
func TestUpdateDescriptionFromDelta(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	coll := c.Database("db").Collection("c")
	type want struct {
		updated   bson.D
		removed   []string
		truncated bson.A
	}
	cases := []struct {
		name   string
		doc    bson.D
		update any
		want   want
	}{
		{"$set of a sub-document", bson.D{{Key: "a", Value: bson.D{{Key: "x", Value: 1}}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: bson.D{{Key: "x", Value: 2}, {Key: "y", Value: 3}}}}}},
			want{updated: bson.D{{Key: "a", Value: bson.D{{Key: "x", Value: int32(2)}, {Key: "y", Value: int32(3)}}}}}},
		{"$set of an array", bson.D{{Key: "arr", Value: bson.A{1, 2}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "arr", Value: bson.A{1, 2, 3}}}}},
			want{updated: bson.D{{Key: "arr", Value: bson.A{int32(1), int32(2), int32(3)}}}}},
		{"$set of a dotted existing path", bson.D{{Key: "a", Value: bson.D{{Key: "x", Value: 1}}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "a.x", Value: 5}}}},
			want{updated: bson.D{{Key: "a.x", Value: int32(5)}}}},
		{"$set creating a nested path", bson.D{{Key: "a", Value: bson.D{}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "a.b.c", Value: 1}, {Key: "a.b.d", Value: 2}}}},
			want{updated: bson.D{{Key: "a.b", Value: bson.D{{Key: "c", Value: int32(1)}, {Key: "d", Value: int32(2)}}}}}},
		{"updated in place before created", bson.D{{Key: "z", Value: 0}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "b", Value: 1}, {Key: "z", Value: 1}}}},
			want{updated: bson.D{{Key: "z", Value: int32(1)}, {Key: "b", Value: int32(1)}}}},
		{"$push", bson.D{{Key: "arr", Value: bson.A{1, 2}}},
			bson.D{{Key: "$push", Value: bson.D{{Key: "arr", Value: 3}}}},
			want{updated: bson.D{{Key: "arr.2", Value: int32(3)}}}},
		{"$push $each", bson.D{{Key: "arr", Value: bson.A{1}}},
			bson.D{{Key: "$push", Value: bson.D{{Key: "arr", Value: bson.D{{Key: "$each", Value: bson.A{2, 3}}}}}}},
			want{updated: bson.D{{Key: "arr.1", Value: int32(2)}, {Key: "arr.2", Value: int32(3)}}}},
		{"$push at the front", bson.D{{Key: "arr", Value: bson.A{1}}},
			bson.D{{Key: "$push", Value: bson.D{{Key: "arr", Value: bson.D{{Key: "$each", Value: bson.A{0}}, {Key: "$position", Value: 0}}}}}},
			want{updated: bson.D{{Key: "arr", Value: bson.A{int32(0), int32(1)}}}}},
		{"$pop", bson.D{{Key: "arr", Value: bson.A{1, 2, 3}}},
			bson.D{{Key: "$pop", Value: bson.D{{Key: "arr", Value: 1}}}},
			want{updated: bson.D{{Key: "arr", Value: bson.A{int32(1), int32(2)}}}}},
		{"$pull", bson.D{{Key: "arr", Value: bson.A{1, 2, 3}}},
			bson.D{{Key: "$pull", Value: bson.D{{Key: "arr", Value: 2}}}},
			want{updated: bson.D{{Key: "arr", Value: bson.A{int32(1), int32(3)}}}}},
		{"$addToSet", bson.D{{Key: "arr", Value: bson.A{1}}},
			bson.D{{Key: "$addToSet", Value: bson.D{{Key: "arr", Value: 2}}}},
			want{updated: bson.D{{Key: "arr", Value: bson.A{int32(1), int32(2)}}}}},
		{"$inc", bson.D{{Key: "n", Value: 1}},
			bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}},
			want{updated: bson.D{{Key: "n", Value: int32(2)}}}},
		{"$unset", bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 1}},
			bson.D{{Key: "$unset", Value: bson.D{{Key: "b", Value: ""}, {Key: "a", Value: ""}}}},
			want{removed: []string{"a", "b"}}},
		{"$rename", bson.D{{Key: "a", Value: 1}},
			bson.D{{Key: "$rename", Value: bson.D{{Key: "a", Value: "b"}}}},
			want{updated: bson.D{{Key: "b", Value: int32(1)}}, removed: []string{"a"}}},
		{"pipeline update shortening an array", bson.D{{Key: "arr", Value: bson.A{1, 2, 3}}},
			mongo.Pipeline{{{Key: "$set", Value: bson.D{{Key: "arr", Value: bson.D{{Key: "$literal", Value: bson.A{1, 2}}}}}}}},
			want{truncated: bson.A{bson.D{{Key: "field", Value: "arr"}, {Key: "newSize", Value: int32(2)}}}}},
	}
	cs, err := coll.Watch(ctx, mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "operationType", Value: "update"}}}}})
	require.NoError(t, err)
	defer cs.Close(ctx)
	for i, tc := range cases {
		_, err := coll.InsertOne(ctx, append(bson.D{{Key: "_id", Value: i}}, tc.doc...))
		require.NoError(t, err, tc.name)
		_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: i}}, tc.update)
		require.NoError(t, err, tc.name)
	}
	for _, tc := range cases {
		require.True(t, cs.Next(ctx), "%s: %v", tc.name, cs.Err())
		var ev struct {
			UpdateDescription struct {
				UpdatedFields   bson.D   `bson:"updatedFields"`
				RemovedFields   []string `bson:"removedFields"`
				TruncatedArrays bson.A   `bson:"truncatedArrays"`
			} `bson:"updateDescription"`
		}
		require.NoError(t, cs.Decode(&ev))
		ud := ev.UpdateDescription
		if tc.want.updated == nil {
			tc.want.updated = bson.D{}
		}
		if tc.want.removed == nil {
			tc.want.removed = []string{}
		}
		if tc.want.truncated == nil {
			tc.want.truncated = bson.A{}
		}
		assert.Equal(t, tc.want.updated, ud.UpdatedFields, tc.name)
		assert.Equal(t, tc.want.removed, ud.RemovedFields, tc.name)
		assert.Equal(t, tc.want.truncated, ud.TruncatedArrays, tc.name)
	}
}

// TestNoOpUpdateHasNoEvent: an update whose operators change nothing
// writes no oplog entry, so no event.
func TestNoOpUpdateHasNoEvent(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	coll := c.Database("db").Collection("c")
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}, {Key: "arr", Value: bson.A{1}}})
	require.NoError(t, err)
	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	require.NoError(t, err)
	defer cs.Close(ctx)
	for _, u := range []bson.D{
		{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}},
		{{Key: "$pull", Value: bson.D{{Key: "arr", Value: 9}}}},
		{{Key: "$addToSet", Value: bson.D{{Key: "arr", Value: 1}}}},
		{{Key: "$unset", Value: bson.D{{Key: "missing", Value: ""}}}},
	} {
		res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, u)
		require.NoError(t, err)
		assert.Zero(t, res.ModifiedCount, "%v", u)
	}
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "marker"}})
	require.NoError(t, err)
	require.True(t, cs.Next(ctx), "%v", cs.Err())
	assert.Equal(t, "insert", cs.Current.Lookup("operationType").StringValue(), "no update event came first")
}

// TestPipelineUpdateAsReplace: a pipeline update that rewrites most of the
// document is logged whole, and the event is a replace
// (jstests/change_streams/pipeline_style_updates.js).
func TestPipelineUpdateAsReplace(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	coll := c.Database("db").Collection("c")
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}, {Key: "b", Value: 2}})
	require.NoError(t, err)
	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	require.NoError(t, err)
	defer cs.Close(ctx)
	_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, mongo.Pipeline{
		{{Key: "$unset", Value: bson.A{"a", "b"}}},
		{{Key: "$set", Value: bson.D{{Key: "c", Value: 3}}}},
	})
	require.NoError(t, err)
	require.True(t, cs.Next(ctx), "%v", cs.Err())
	assert.Equal(t, "replace", cs.Current.Lookup("operationType").StringValue())
	assert.Equal(t, bson.Raw(mustMarshal(t, bson.D{{Key: "_id", Value: int32(1)}, {Key: "c", Value: int32(3)}})), cs.Current.Lookup("fullDocument").Document())
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := bson.Marshal(v)
	require.NoError(t, err)
	return b
}
