package mongosim_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func connectCRUD(t *testing.T) (context.Context, *mongo.Client) {
	t.Helper()
	s := mongosim.StartTB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	c, err := mongo.Connect(testclient.Options(s.URI()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return ctx, c
}

func TestCRUDInsertFind(t *testing.T) {
	t.Parallel()
	ctx, c := connectCRUD(t)
	coll := c.Database("db").Collection("c")
	res, err := coll.InsertOne(ctx, bson.D{{Key: "x", Value: 1}})
	require.NoError(t, err)
	require.IsType(t, bson.ObjectID{}, res.InsertedID)

	docs := make([]any, 250)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: i}, {Key: "n", Value: i % 10}}
	}
	_, err = coll.InsertMany(ctx, docs)
	require.NoError(t, err)

	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 7}})
	var we mongo.WriteException
	require.True(t, errors.As(err, &we))
	require.Equal(t, 11000, we.WriteErrors[0].Code)
	require.Equal(t, "E11000 duplicate key error collection: db.c index: _id_ dup key: { _id: 7 }", we.WriteErrors[0].Message)

	// More than one batch, sorted, skipped, limited, projected.
	cur, err := coll.Find(ctx, bson.D{{Key: "n", Value: bson.D{{Key: "$gte", Value: 5}}}},
		options.Find().SetSort(bson.D{{Key: "_id", Value: -1}}).SetSkip(1).SetProjection(bson.D{{Key: "n", Value: 0}}))
	require.NoError(t, err)
	var got []bson.D
	require.NoError(t, cur.All(ctx, &got))
	require.Len(t, got, 124)
	require.Equal(t, bson.D{{Key: "_id", Value: int32(248)}}, got[0])

	n, err := coll.CountDocuments(ctx, bson.D{{Key: "n", Value: 3}})
	require.NoError(t, err)
	require.EqualValues(t, 25, n)

	var one bson.D
	require.NoError(t, coll.FindOne(ctx, bson.D{{Key: "_id", Value: 3}}).Decode(&one))
	require.Equal(t, bson.D{{Key: "_id", Value: int32(3)}, {Key: "n", Value: int32(3)}}, one)
	require.ErrorIs(t, coll.FindOne(ctx, bson.D{{Key: "_id", Value: -1}}).Err(), mongo.ErrNoDocuments)

	err = coll.FindOne(ctx, bson.D{{Key: "a", Value: bson.D{{Key: "$foo", Value: 1}}}}).Err()
	var ce mongo.CommandError
	require.True(t, errors.As(err, &ce))
	require.EqualValues(t, 2, ce.Code)
	require.Equal(t, "BadValue", ce.Name)
	require.Contains(t, ce.Message, "unknown operator: $foo")
}

func TestCRUDUpdateDelete(t *testing.T) {
	t.Parallel()
	ctx, c := connectCRUD(t)
	coll := c.Database("db").Collection("u")
	_, err := coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}}, bson.D{{Key: "_id", Value: 2}, {Key: "a", Value: 1}}})
	require.NoError(t, err)

	r, err := coll.UpdateMany(ctx, bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "a", Value: 1}}}})
	require.NoError(t, err)
	require.EqualValues(t, 2, r.MatchedCount)
	require.EqualValues(t, 2, r.ModifiedCount)

	r, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 2}}}})
	require.NoError(t, err)
	require.EqualValues(t, 1, r.MatchedCount)
	require.EqualValues(t, 0, r.ModifiedCount, "a no-op update modifies nothing")

	r, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 9}, {Key: "k", Value: "v"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "b", Value: 1}}}, {Key: "$setOnInsert", Value: bson.D{{Key: "c", Value: 1}}}},
		options.UpdateOne().SetUpsert(true))
	require.NoError(t, err)
	require.EqualValues(t, int32(9), r.UpsertedID)
	var up bson.D
	require.NoError(t, coll.FindOne(ctx, bson.D{{Key: "_id", Value: 9}}).Decode(&up))
	require.Equal(t, bson.D{{Key: "_id", Value: int32(9)}, {Key: "k", Value: "v"}, {Key: "b", Value: int32(1)}, {Key: "c", Value: int32(1)}}, up)

	_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "_id", Value: 5}}}})
	var we mongo.WriteException
	require.True(t, errors.As(err, &we))
	require.Equal(t, 66, we.WriteErrors[0].Code)

	rr, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "z", Value: true}})
	require.NoError(t, err)
	require.EqualValues(t, 1, rr.ModifiedCount)

	var fam bson.D
	require.NoError(t, coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$push", Value: bson.D{{Key: "l", Value: "x"}}}},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&fam))
	require.Equal(t, bson.D{{Key: "_id", Value: int32(1)}, {Key: "a", Value: int32(2)}, {Key: "l", Value: bson.A{"x"}}}, fam)

	var removed bson.D
	require.NoError(t, coll.FindOneAndDelete(ctx, bson.D{}, options.FindOneAndDelete().SetSort(bson.D{{Key: "_id", Value: -1}})).Decode(&removed))
	require.Equal(t, int32(9), removed[0].Value)

	dr, err := coll.DeleteMany(ctx, bson.D{})
	require.NoError(t, err)
	require.EqualValues(t, 2, dr.DeletedCount)
}

func TestCRUDDDL(t *testing.T) {
	t.Parallel()
	ctx, c := connectCRUD(t)
	db := c.Database("ddl")
	require.NoError(t, db.CreateCollection(ctx, "a"))
	require.NoError(t, db.CreateCollection(ctx, "a"), "identical options: ok")
	err := db.CreateCollection(ctx, "a", options.CreateCollection().SetCapped(true).SetSizeInBytes(4096))
	var ce mongo.CommandError
	require.True(t, errors.As(err, &ce))
	require.EqualValues(t, 48, ce.Code)

	names, err := db.ListCollectionNames(ctx, bson.D{})
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, names)

	idx, err := db.Collection("a").Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "x", Value: 1}}})
	require.NoError(t, err)
	require.Equal(t, "x_1", idx)
	specs, err := db.Collection("a").Indexes().ListSpecifications(ctx)
	require.NoError(t, err)
	require.Len(t, specs, 2)
	require.NoError(t, db.Collection("a").Indexes().DropOne(ctx, "x_1"))

	require.NoError(t, c.Database("admin").RunCommand(ctx, bson.D{{Key: "renameCollection", Value: "ddl.a"}, {Key: "to", Value: "ddl.b"}}).Err())
	err = c.Database("admin").RunCommand(ctx, bson.D{{Key: "renameCollection", Value: "ddl.a"}, {Key: "to", Value: "ddl.b"}}).Err()
	require.True(t, errors.As(err, &ce))
	require.EqualValues(t, 26, ce.Code)

	dbs, err := c.ListDatabaseNames(ctx, bson.D{})
	require.NoError(t, err)
	require.Contains(t, dbs, "ddl")

	require.NoError(t, db.Collection("missing").Drop(ctx))
	require.NoError(t, db.Collection("b").Drop(ctx))
	require.NoError(t, db.Drop(ctx))
	dbs, err = c.ListDatabaseNames(ctx, bson.D{{Key: "name", Value: "ddl"}})
	require.NoError(t, err)
	require.Empty(t, dbs)
}

func TestCRUDAggregate(t *testing.T) {
	t.Parallel()
	ctx, c := connectCRUD(t)
	coll := c.Database("db").Collection("agg")
	_, err := coll.InsertMany(ctx, []any{bson.D{{Key: "v", Value: 3}}, bson.D{{Key: "v", Value: 1}}, bson.D{{Key: "v", Value: 2}}})
	require.NoError(t, err)
	cur, err := coll.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$match", Value: bson.D{{Key: "v", Value: bson.D{{Key: "$gt", Value: 1}}}}}},
		{{Key: "$sort", Value: bson.D{{Key: "v", Value: 1}}}},
		{{Key: "$project", Value: bson.D{{Key: "_id", Value: 0}, {Key: "v", Value: 1}}}},
	})
	require.NoError(t, err)
	var got []bson.D
	require.NoError(t, cur.All(ctx, &got))
	require.Equal(t, []bson.D{{{Key: "v", Value: int32(2)}}, {{Key: "v", Value: int32(3)}}}, got)

	_, err = coll.Aggregate(ctx, mongo.Pipeline{{{Key: "$nope", Value: 1}}})
	var ce mongo.CommandError
	require.True(t, errors.As(err, &ce))
	require.EqualValues(t, 40324, ce.Code)
	require.Equal(t, "Unrecognized pipeline stage name: '$nope'", ce.Message)
}
