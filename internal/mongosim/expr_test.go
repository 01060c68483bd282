package mongosim_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestExpressions evaluates each supported aggregation expression in an
// update pipeline, through the driver. The expected values follow the
// server's src/mongo/db/pipeline/expression.cpp (ExpressionAdd's type
// widening, one date at most, null on a nullish operand; ExpressionIfNull;
// ExpressionCond's two forms; ExpressionCompare on the canonical BSON type
// order, where missing sorts below null; ExpressionAnd/Or/Not on
// Value::coerceToBool) and the jstests under jstests/aggregation/expressions.
func TestExpressions(t *testing.T) {
	t.Parallel()
	ctx, c := connectCRUD(t)
	coll := c.Database("db").Collection("expr")
	date := bson.DateTime(1_700_000_000_000)
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "i", Value: int32(2)}, {Key: "l", Value: int64(3)},
		{Key: "f", Value: 0.5}, {Key: "d", Value: date}, {Key: "s", Value: "x"}, {Key: "n", Value: nil},
		{Key: "big", Value: int32(2147483647)}, {Key: "zero", Value: int32(0)}})
	require.NoError(t, err)

	cases := []struct {
		name string
		expr any
		want any // nil with wantCode 0: the field ends up null
		code int32
	}{
		{"int + int", bson.D{{Key: "$add", Value: bson.A{"$i", int32(5)}}}, int32(7), 0},
		{"int + long", bson.D{{Key: "$add", Value: bson.A{"$i", "$l"}}}, int64(5), 0},
		{"int overflow", bson.D{{Key: "$add", Value: bson.A{"$big", int32(1)}}}, int64(2147483648), 0},
		{"int + double", bson.D{{Key: "$add", Value: bson.A{"$i", "$f"}}}, 2.5, 0},
		{"date + ms", bson.D{{Key: "$add", Value: bson.A{"$d", int32(1000)}}}, date + 1000, 0},
		{"date + double ms", bson.D{{Key: "$add", Value: bson.A{"$d", 1.6}}}, date + 2, 0},
		{"null operand", bson.D{{Key: "$add", Value: bson.A{"$i", "$n"}}}, nil, 0},
		{"missing operand", bson.D{{Key: "$add", Value: bson.A{"$i", "$nope"}}}, nil, 0},
		{"string operand", bson.D{{Key: "$add", Value: bson.A{"$i", "$s"}}}, nil, 16554},
		{"two dates", bson.D{{Key: "$add", Value: bson.A{"$d", "$d"}}}, nil, 16612},
		{"ifNull on null", bson.D{{Key: "$ifNull", Value: bson.A{"$n", "$nope", "$s"}}}, "x", 0},
		{"ifNull on a value", bson.D{{Key: "$ifNull", Value: bson.A{"$i", "$s"}}}, int32(2), 0},
		{"ifNull with one argument", bson.D{{Key: "$ifNull", Value: bson.A{"$i"}}}, nil, 1257},
		{"cond array", bson.D{{Key: "$cond", Value: bson.A{"$zero", "yes", "no"}}}, "no", 0},
		{"cond object", bson.D{{Key: "$cond", Value: bson.D{{Key: "if", Value: "$s"}, {Key: "then", Value: "yes"}, {Key: "else", Value: "no"}}}}, "yes", 0},
		{"cond missing else", bson.D{{Key: "$cond", Value: bson.D{{Key: "if", Value: true}, {Key: "then", Value: 1}}}}, nil, 17082},
		{"cond unknown key", bson.D{{Key: "$cond", Value: bson.D{{Key: "when", Value: true}}}}, nil, 17083},
		{"missing < null", bson.D{{Key: "$lt", Value: bson.A{"$nope", "$n"}}}, true, 0},
		{"null < date", bson.D{{Key: "$lt", Value: bson.A{"$n", "$d"}}}, true, 0},
		{"number < string", bson.D{{Key: "$lt", Value: bson.A{"$l", "$s"}}}, true, 0},
		{"1 == 1.0", bson.D{{Key: "$eq", Value: bson.A{int32(1), 1.0}}}, true, 0},
		{"cmp", bson.D{{Key: "$cmp", Value: bson.A{"$s", "$i"}}}, int32(1), 0},
		{"gte of three", bson.D{{Key: "$gte", Value: bson.A{1, 2, 3}}}, nil, 16020},
		{"and", bson.D{{Key: "$and", Value: bson.A{"$i", "$s", "$zero"}}}, false, 0},
		{"or", bson.D{{Key: "$or", Value: bson.A{"$n", "$nope", "$f"}}}, true, 0},
		{"empty and", bson.D{{Key: "$and", Value: bson.A{}}}, true, 0},
		{"not", bson.D{{Key: "$not", Value: bson.A{"$n"}}}, true, 0},
		{"unsupported operator", bson.D{{Key: "$multiply", Value: bson.A{1, 2}}}, nil, 238},
		{"unknown operator", bson.D{{Key: "$frobnicate", Value: 1}}, nil, 168},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}},
				mongo.Pipeline{{{Key: "$set", Value: bson.D{{Key: "out", Value: tc.expr}}}}})
			if tc.code != 0 {
				require.Error(t, err)
				var se mongo.ServerError
				require.True(t, errors.As(err, &se), "%v", err)
				assert.True(t, se.HasErrorCode(int(tc.code)), "%v", err)
				return
			}
			require.NoError(t, err)
			var got bson.M
			require.NoError(t, coll.FindOne(ctx, bson.D{{Key: "_id", Value: 1}}).Decode(&got))
			assert.Equal(t, tc.want, got["out"])
		})
	}
}

// TestNow: $$NOW is the command's time, the same in the filter ($expr)
// and the update pipeline of one command; a lease taken with it expires
// by the server's clock. $expr works in find, update, findAndModify and
// delete, and an expression that fails while matching fails the command.
func TestNow(t *testing.T) {
	t.Parallel()
	ctx, c := connectCRUD(t)
	coll := c.Database("db").Collection("lease")
	acquire := func(owner string, ttlMS int32) (bson.M, error) {
		var got bson.M
		err := coll.FindOneAndUpdate(ctx,
			bson.D{{Key: "_id", Value: "k"}, {Key: "$expr", Value: bson.D{{Key: "$or", Value: bson.A{
				bson.D{{Key: "$lt", Value: bson.A{"$until", "$$NOW"}}},
				bson.D{{Key: "$eq", Value: bson.A{"$owner", owner}}}}}}}},
			mongo.Pipeline{{{Key: "$set", Value: bson.D{
				{Key: "owner", Value: owner},
				{Key: "epoch", Value: bson.D{{Key: "$add", Value: bson.A{bson.D{{Key: "$ifNull", Value: bson.A{"$epoch", int64(0)}}}, int64(1)}}}},
				{Key: "until", Value: bson.D{{Key: "$add", Value: bson.A{"$$NOW", ttlMS}}}},
				{Key: "at", Value: "$$NOW"}}}}},
			options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After)).Decode(&got)
		return got, err
	}
	before := time.Now()
	a, err := acquire("a", 200)
	require.NoError(t, err)
	assert.Equal(t, int64(1), a["epoch"])
	at := a["at"].(bson.DateTime).Time()
	assert.WithinDuration(t, before, at, 5*time.Second)
	assert.Equal(t, at.Add(200*time.Millisecond), a["until"].(bson.DateTime).Time(), "one $$NOW per command")

	_, err = acquire("b", 200)
	var se mongo.ServerError
	require.True(t, errors.As(err, &se), "held: the upsert's insert collides: %v", err)
	assert.True(t, se.HasErrorCode(11000))

	a, err = acquire("a", 200)
	require.NoError(t, err, "the owner renews")
	assert.Equal(t, int64(2), a["epoch"])

	time.Sleep(250 * time.Millisecond)
	b, err := acquire("b", 200)
	require.NoError(t, err, "expired: another owner takes it")
	assert.Equal(t, "b", b["owner"])
	assert.Equal(t, int64(3), b["epoch"])

	n, err := coll.CountDocuments(ctx, bson.D{}) // count takes no $expr; find does
	require.NoError(t, err)
	assert.EqualValues(t, 1, n)
	cur, err := coll.Find(ctx, bson.D{{Key: "$expr", Value: bson.D{{Key: "$gt", Value: bson.A{"$until", "$at"}}}}})
	require.NoError(t, err)
	var docs []bson.M
	require.NoError(t, cur.All(ctx, &docs))
	assert.Len(t, docs, 1)

	_, err = coll.Find(ctx, bson.D{{Key: "$expr", Value: bson.D{{Key: "$add", Value: bson.A{"$owner", 1}}}}})
	require.True(t, errors.As(err, &se), "%v", err)
	assert.True(t, se.HasErrorCode(16554), "an expression failing while matching fails the command: %v", err)

	res, err := coll.DeleteMany(ctx, bson.D{{Key: "$expr", Value: bson.D{{Key: "$eq", Value: bson.A{"$owner", "b"}}}}})
	require.NoError(t, err)
	assert.EqualValues(t, 1, res.DeletedCount)

	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "other"}})
	require.NoError(t, err)
	_, err = coll.Aggregate(ctx, mongo.Pipeline{{{Key: "$project", Value: bson.D{{Key: "t", Value: "$$NOW"}}}}})
	require.True(t, errors.As(err, &se), "%v", err)
	assert.True(t, se.HasErrorCode(238), "$$NOW where the simulator has no command time: %v", err)
}
