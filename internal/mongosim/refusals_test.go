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

// TestStrictParsing: aggregate and getMore refuse fields their IDL
// definitions do not name (40415), while the generic arguments every
// command takes pass; a change stream runs only under read concern local
// or majority (72), and not on a view (166).
func TestStrictParsing(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	db := c.Database("db")
	require.NoError(t, db.CreateCollection(ctx, "c"))
	require.NoError(t, db.CreateView(ctx, "v", "c", mongo.Pipeline{}))
	sctx := sessCtx(t, ctx, c)
	cs := bson.A{bson.D{{Key: "$changeStream", Value: bson.D{}}}}
	agg := func(target string, extra ...bson.E) error {
		cmd := bson.D{{Key: "aggregate", Value: target}, {Key: "pipeline", Value: cs}, {Key: "cursor", Value: bson.D{}}}
		return db.RunCommand(sctx, append(cmd, extra...)).Err()
	}
	rc := func(level string) bson.E {
		return bson.E{Key: "readConcern", Value: bson.D{{Key: "level", Value: level}}}
	}

	ce := cmdErrOf(t, agg("c", bson.E{Key: "bogus", Value: 1}))
	assert.Equal(t, int32(40415), ce.Code)
	assert.Equal(t, "BSON field 'aggregate.bogus' is an unknown field.", ce.Message)
	require.NoError(t, agg("c", bson.E{Key: "comment", Value: "generic arguments pass"}, bson.E{Key: "maxTimeMS", Value: 1000}))
	for _, level := range []string{"local", "majority"} {
		assert.NoError(t, agg("c", rc(level)), level)
	}
	for _, level := range []string{"available", "linearizable", "snapshot"} {
		ce := cmdErrOf(t, agg("c", rc(level)))
		assert.Equal(t, int32(72), ce.Code, level)
		assert.Contains(t, ce.Message, "cannot run with a readConcern other than 'local', or 'majority'")
	}
	assert.Equal(t, int32(166), cmdErrOf(t, agg("v")).Code)

	var reply bson.Raw
	reply, err := db.RunCommand(sctx, bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: cs}, {Key: "cursor", Value: bson.D{}}}).Raw()
	require.NoError(t, err)
	id := reply.Lookup("cursor", "id").Int64()
	err = db.RunCommand(sctx, bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}, {Key: "bogus", Value: true}}).Err()
	assert.Equal(t, int32(40415), cmdErrOf(t, err).Code)
}

// TestHonestRefusals: what the server does and the simulator does not
// fails with NotImplemented (238) and a message naming the simulator;
// what the server does not know either fails as on the server.
func TestHonestRefusals(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	db := c.Database("db")
	coll := db.Collection("c")
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: bson.A{1, 2}}, {Key: "s", Value: "x"}})
	require.NoError(t, err)

	aggregate := func(stage bson.D) error {
		cur, err := coll.Aggregate(ctx, mongo.Pipeline{stage})
		if err == nil {
			err = cur.All(ctx, new([]bson.D))
		}
		return err
	}
	notImpl := func(name string, err error) {
		t.Helper()
		var code int32
		msg := ""
		var we mongo.WriteException
		var ce mongo.CommandError
		switch {
		case errors.As(err, &we) && len(we.WriteErrors) > 0:
			code, msg = int32(we.WriteErrors[0].Code), we.WriteErrors[0].Message
		case errors.As(err, &ce):
			code, msg = ce.Code, ce.Message
		default:
			t.Errorf("%s: want a server error, got %v", name, err)
		}
		assert.Equal(t, int32(238), code, name)
		assert.Contains(t, msg, "mongosim does not implement", name)
	}
	serverCode := func(name string, err error, want int32) {
		t.Helper()
		assert.Equal(t, want, cmdErrOf(t, err).Code, name)
	}

	notImpl("$lookup", aggregate(bson.D{{Key: "$lookup", Value: bson.D{{Key: "from", Value: "x"}}}}))
	serverCode("unknown stage", aggregate(bson.D{{Key: "$bogus", Value: bson.D{}}}), 40324)
	notImpl("$toUpper in $project", aggregate(bson.D{{Key: "$project", Value: bson.D{{Key: "u", Value: bson.D{{Key: "$toUpper", Value: "$s"}}}}}}))
	serverCode("unknown expression", aggregate(bson.D{{Key: "$project", Value: bson.D{{Key: "u", Value: bson.D{{Key: "$bogus", Value: "$s"}}}}}}), 168)
	notImpl("$addToSet", aggregate(bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: nil}, {Key: "s", Value: bson.D{{Key: "$addToSet", Value: "$s"}}}}}}))
	serverCode("unknown accumulator", aggregate(bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: nil}, {Key: "s", Value: bson.D{{Key: "$bogus", Value: "$s"}}}}}}), 15952)

	err = coll.FindOne(ctx, bson.D{}, options.FindOne().SetProjection(bson.D{{Key: "u", Value: bson.D{{Key: "$toUpper", Value: "$s"}}}})).Err()
	notImpl("$toUpper in a find projection", err)
	_, err = coll.Watch(ctx, mongo.Pipeline{{{Key: "$project", Value: bson.D{{Key: "u", Value: bson.D{{Key: "$toUpper", Value: "$operationType"}}}}}}})
	notImpl("$toUpper in a change stream", err)

	_, err = coll.UpdateOne(ctx, bson.D{{Key: "a", Value: 2}}, bson.D{{Key: "$set", Value: bson.D{{Key: "a.$", Value: 3}}}})
	notImpl("positional $", err)

	_, err = coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "s", Value: 1}}, Options: options.Index().SetUnique(true)})
	notImpl("unique index", err)
	_, err = coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "s", Value: 1}}})
	assert.NoError(t, err, "a plain index is fine")

	err = db.CreateCollection(ctx, "validated", options.CreateCollection().SetValidator(bson.D{{Key: "s", Value: bson.D{{Key: "$type", Value: "string"}}}}))
	notImpl("validator", err)
	err = db.RunCommand(ctx, bson.D{{Key: "collMod", Value: "c"}, {Key: "validator", Value: bson.D{{Key: "s", Value: "x"}}}}).Err()
	notImpl("collMod validator", err)

	caseless := &options.Collation{Locale: "en", Strength: 2}
	err = coll.FindOne(ctx, bson.D{{Key: "s", Value: "X"}}, options.FindOne().SetCollation(caseless)).Err()
	notImpl("collation on find", err)
	_, err = coll.DeleteOne(ctx, bson.D{{Key: "s", Value: "X"}}, options.DeleteOne().SetCollation(caseless))
	notImpl("collation on delete", err)
	_, err = coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetCollation(*caseless))
	notImpl("collation on a change stream", err)
	err = coll.FindOne(ctx, bson.D{{Key: "s", Value: "x"}}, options.FindOne().SetCollation(&options.Collation{Locale: "simple"})).Err()
	assert.NoError(t, err, "the simple collation is the one implemented")
}
