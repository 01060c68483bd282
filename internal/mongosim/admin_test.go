package mongosim_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestShellCommands(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	db := c.Database("db")
	_, err := db.Collection("c").InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}},
		bson.D{{Key: "_id", Value: 2}, {Key: "a", Value: bson.A{1, 2}}},
		bson.D{{Key: "_id", Value: 3}, {Key: "a", Value: 3}},
	})
	require.NoError(t, err)

	n, err := db.Collection("c").EstimatedDocumentCount(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 3, n, "count")

	var res bson.Raw
	res, err = db.RunCommand(ctx, bson.D{{Key: "count", Value: "c"}, {Key: "query", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "limit", Value: 1}}).Raw()
	require.NoError(t, err)
	assert.EqualValues(t, 1, res.Lookup("n").Int32(), "count with query and limit")

	values, err := db.Collection("c").Distinct(ctx, "a", bson.D{}).Raw()
	require.NoError(t, err)
	got, err := bson.RawArray(values).Values()
	require.NoError(t, err)
	assert.Len(t, got, 3, "distinct spreads arrays and drops repeats: %v", got)

	res, err = db.RunCommand(ctx, bson.D{{Key: "dbStats", Value: 1}}).Raw()
	require.NoError(t, err)
	assert.EqualValues(t, 3, res.Lookup("objects").Int64())
	assert.EqualValues(t, 1, res.Lookup("collections").Int64())

	res, err = c.Database("admin").RunCommand(ctx, bson.D{{Key: "replSetGetStatus", Value: 1}}).Raw()
	require.NoError(t, err)
	assert.Equal(t, "rs0", res.Lookup("set").StringValue())
	assert.Equal(t, "PRIMARY", res.Lookup("members", "0", "stateStr").StringValue())

	err = db.RunCommand(ctx, bson.D{{Key: "replSetGetStatus", Value: 1}}).Err()
	assert.Error(t, err, "replSetGetStatus runs on admin only")
}
