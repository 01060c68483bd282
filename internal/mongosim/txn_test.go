package mongosim_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func txnSetup(t *testing.T) (*mongo.Client, *mongo.Collection, context.Context) {
	t.Helper()
	_, c, ctx := csSetup(t)
	coll := c.Database("db").Collection("c")
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "seed"}, {Key: "n", Value: 0}})
	require.NoError(t, err)
	return c, coll, ctx
}

func startTxn(t *testing.T, ctx context.Context, c *mongo.Client) (*mongo.Session, context.Context) {
	t.Helper()
	sess, err := c.StartSession()
	require.NoError(t, err)
	t.Cleanup(func() { sess.EndSession(context.Background()) })
	require.NoError(t, sess.StartTransaction())
	return sess, mongo.NewSessionContext(ctx, sess)
}

func countAll(t *testing.T, ctx context.Context, coll *mongo.Collection) int64 {
	t.Helper()
	n, err := coll.CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	return n
}

// TestTransactionWithTransaction drives Session.WithTransaction end to end:
// writes are visible inside the transaction and invisible outside until
// commit; the commit's events share one clusterTime, carry the session's
// lsid ({id, uid}) and txnNumber, and their tokens increase with
// txnOpIndex (the server's applyOps expansion,
// change_stream_event_transform.cpp; jstests/change_streams/apply_ops.js).
func TestTransactionWithTransaction(t *testing.T) {
	t.Parallel()
	c, coll, ctx := txnSetup(t)
	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	require.NoError(t, err)
	defer cs.Close(ctx)

	sess, err := c.StartSession()
	require.NoError(t, err)
	defer sess.EndSession(ctx)
	_, err = sess.WithTransaction(ctx, func(sc context.Context) (any, error) {
		for i := 1; i <= 2; i++ {
			if _, err := coll.InsertOne(sc, bson.D{{Key: "_id", Value: i}}); err != nil {
				return nil, err
			}
		}
		if _, err := coll.UpdateOne(sc, bson.D{{Key: "_id", Value: "seed"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}); err != nil {
			return nil, err
		}
		assert.Equal(t, int64(3), countAll(t, sc, coll), "the transaction sees its own writes")
		assert.Equal(t, int64(1), countAll(t, ctx, coll), "nothing outside sees them before commit")
		return nil, nil
	})
	require.NoError(t, err)
	assert.Equal(t, int64(3), countAll(t, ctx, coll))

	var evs []bson.Raw
	for len(evs) < 3 && cs.Next(ctx) {
		evs = append(evs, append(bson.Raw(nil), cs.Current...))
	}
	require.NoError(t, cs.Err())
	require.Len(t, evs, 3)
	sessID := sess.ID().Lookup("id")
	for i, ev := range evs {
		assert.Equal(t, clusterTimeOf(evs[0]), clusterTimeOf(ev), "one commit, one clusterTime")
		assert.Equal(t, sessID, ev.Lookup("lsid", "id"), "event %d names the session", i)
		_, uid := ev.Lookup("lsid", "uid").Binary()
		assert.Len(t, uid, 32, "uid is the SHA-256 of the user")
		assert.Equal(t, int64(1), ev.Lookup("txnNumber").Int64())
		if i > 0 {
			assert.Less(t, evs[i-1].Lookup("_id", "_data").StringValue(), ev.Lookup("_id", "_data").StringValue())
		}
	}
	assert.Equal(t, []string{"insert", "insert", "update"}, []string{
		evs[0].Lookup("operationType").StringValue(), evs[1].Lookup("operationType").StringValue(), evs[2].Lookup("operationType").StringValue()})
	assert.Equal(t, []string{"_id", "operationType", "clusterTime", "wallTime", "fullDocument", "ns", "documentKey", "lsid", "txnNumber"}, keysOf(evs[0]))

	// Resuming from the first operation's token yields the rest of the
	// transaction.
	resumed, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(evs[0].Lookup("_id").Document()))
	require.NoError(t, err)
	defer resumed.Close(ctx)
	for _, want := range evs[1:] {
		require.True(t, resumed.Next(ctx), "%v", resumed.Err())
		assert.Equal(t, want.Lookup("_id"), resumed.Current.Lookup("_id"))
	}
}

// TestTransactionStreamStopsInside: a stream whose batches end in the
// middle of a transaction carries on inside it, and a filter that drops
// some of its events loses none of the others.
func TestTransactionStreamStopsInside(t *testing.T) {
	t.Parallel()
	c, coll, ctx := txnSetup(t)
	only := mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "documentKey._id", Value: bson.D{{Key: "$in", Value: bson.A{2, 4}}}}}}}}
	all, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetBatchSize(1))
	require.NoError(t, err)
	defer all.Close(ctx)
	some, err := coll.Watch(ctx, only, options.ChangeStream().SetBatchSize(1))
	require.NoError(t, err)
	defer some.Close(ctx)

	sess, sc := startTxn(t, ctx, c)
	for i := 1; i <= 5; i++ {
		_, err := coll.InsertOne(sc, bson.D{{Key: "_id", Value: i}})
		require.NoError(t, err)
	}
	require.NoError(t, sess.CommitTransaction(ctx))

	ids := func(cs *mongo.ChangeStream, n int) []int32 {
		var out []int32
		for len(out) < n && cs.Next(ctx) {
			out = append(out, cs.Current.Lookup("documentKey", "_id").Int32())
		}
		require.NoError(t, cs.Err())
		return out
	}
	assert.Equal(t, []int32{1, 2, 3, 4, 5}, ids(all, 5))
	assert.Equal(t, []int32{2, 4}, ids(some, 2))
}

// TestTransactionAbort: an aborted transaction leaves no data and no event.
func TestTransactionAbort(t *testing.T) {
	t.Parallel()
	c, coll, ctx := txnSetup(t)
	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	require.NoError(t, err)
	defer cs.Close(ctx)
	sess, sc := startTxn(t, ctx, c)
	_, err = coll.InsertOne(sc, bson.D{{Key: "_id", Value: "ghost"}})
	require.NoError(t, err)
	_, err = coll.DeleteOne(sc, bson.D{{Key: "_id", Value: "seed"}})
	require.NoError(t, err)
	require.NoError(t, sess.AbortTransaction(ctx))
	assert.Equal(t, int64(1), countAll(t, ctx, coll))

	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "after"}})
	require.NoError(t, err)
	require.True(t, cs.Next(ctx), "%v", cs.Err())
	assert.Equal(t, "after", cs.Current.Lookup("documentKey", "_id").StringValue(), "the aborted writes made no events")
}

// TestTransactionWriteConflict: the second writer of a document gets
// WriteConflict (112) labelled TransientTransactionError and its
// transaction is gone (NoSuchTransaction, 251, on commit); so does a
// transaction whose document changed after its snapshot.
func TestTransactionWriteConflict(t *testing.T) {
	t.Parallel()
	c, coll, ctx := txnSetup(t)
	inc := bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}
	seed := bson.D{{Key: "_id", Value: "seed"}}

	first, sc1 := startTxn(t, ctx, c)
	second, sc2 := startTxn(t, ctx, c)
	_, err := coll.UpdateOne(sc1, seed, inc)
	require.NoError(t, err)
	_, err = coll.UpdateOne(sc2, seed, inc)
	ce := cmdErrOf(t, err)
	assert.Equal(t, int32(112), ce.Code)
	assert.True(t, ce.HasErrorLabel("TransientTransactionError"))
	err = second.CommitTransaction(ctx)
	assert.Equal(t, int32(251), cmdErrOf(t, err).Code)
	require.NoError(t, first.CommitTransaction(ctx))

	// Snapshot isolation: a change committed after the snapshot.
	third, sc3 := startTxn(t, ctx, c)
	require.NoError(t, coll.FindOne(sc3, seed).Err()) // the snapshot is taken
	_, err = coll.UpdateOne(ctx, seed, inc)
	require.NoError(t, err)
	_, err = coll.UpdateOne(sc3, seed, inc)
	assert.Equal(t, int32(112), cmdErrOf(t, err).Code)
	_ = third.AbortTransaction(ctx)

	var doc struct {
		N int32 `bson:"n"`
	}
	require.NoError(t, coll.FindOne(ctx, seed).Decode(&doc))
	assert.Equal(t, int32(2), doc.N, "one committed transaction and one plain update")
}

// TestTransactionRefusals: what the server refuses inside a transaction,
// and what the simulator refuses because it does not implement it.
func TestTransactionRefusals(t *testing.T) {
	t.Parallel()
	c, coll, ctx := txnSetup(t)
	sess, sc := startTxn(t, ctx, c)
	_, err := coll.InsertOne(sc, bson.D{{Key: "_id", Value: "locked"}})
	require.NoError(t, err)

	// A write outside the transaction to a document it wrote would wait
	// on a real server: refused, naming the simulator.
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "locked"}})
	var we mongo.WriteException
	if errors.As(err, &we) && len(we.WriteErrors) > 0 {
		assert.Equal(t, 238, we.WriteErrors[0].Code)
		assert.Contains(t, we.WriteErrors[0].Message, "mongosim does not implement")
	} else {
		ce := cmdErrOf(t, err)
		assert.Equal(t, int32(238), ce.Code)
		assert.Contains(t, ce.Message, "mongosim does not implement")
	}

	// A change stream cannot be opened inside a transaction.
	_, err = coll.Watch(sc, mongo.Pipeline{})
	assert.Equal(t, int32(263), cmdErrOf(t, err).Code)
	require.NoError(t, sess.AbortTransaction(ctx))

	// A command naming a transaction the session never started.
	err = c.Database("admin").RunCommand(mongo.NewSessionContext(ctx, sess), bson.D{
		{Key: "commitTransaction", Value: 1}, {Key: "txnNumber", Value: int64(99)}, {Key: "autocommit", Value: false},
	}).Err()
	ce := cmdErrOf(t, err)
	assert.Equal(t, int32(251), ce.Code)
	assert.True(t, ce.HasErrorLabel("TransientTransactionError"))

	// DDL inside a transaction.
	sess2, sc2 := startTxn(t, ctx, c)
	err = c.Database("db").RunCommand(sc2, bson.D{{Key: "drop", Value: "c"}}).Err()
	assert.Equal(t, int32(263), cmdErrOf(t, err).Code)
	_ = sess2.AbortTransaction(ctx)
}
