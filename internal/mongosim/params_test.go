package mongosim_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// TestTransactionLifetime: a transaction left open (its client died) is
// aborted once older than transactionLifetimeLimitSeconds (60 s by
// default, settable with setParameter, as on the server: the parameter is
// in src/mongo/db/transaction/transaction_participant.idl, and
// jstests/core/txns/abort_expired_transaction.js sets it to 1 and waits
// for the abort). Until then it holds its writes against other
// transactions (WriteConflict); after, they go through, and the abandoned
// transaction's own commit fails with NoSuchTransaction.
func TestTransactionLifetime(t *testing.T) {
	t.Parallel()
	ctx, c := connectCRUD(t)
	admin := c.Database("admin")
	var got bson.M
	require.NoError(t, admin.RunCommand(ctx, bson.D{{Key: "getParameter", Value: 1}, {Key: "transactionLifetimeLimitSeconds", Value: 1}}).Decode(&got))
	assert.EqualValues(t, 60, got["transactionLifetimeLimitSeconds"])
	require.NoError(t, admin.RunCommand(ctx, bson.D{{Key: "setParameter", Value: 1}, {Key: "transactionLifetimeLimitSeconds", Value: 1}}).Decode(&got))
	assert.EqualValues(t, 60, got["was"])

	var se mongo.ServerError
	err := admin.RunCommand(ctx, bson.D{{Key: "setParameter", Value: 1}, {Key: "transactionLifetimeLimitSeconds", Value: 0}}).Err()
	require.True(t, errors.As(err, &se))
	assert.True(t, se.HasErrorCode(2), "%v", err)
	err = admin.RunCommand(ctx, bson.D{{Key: "setParameter", Value: 1}, {Key: "logLevel", Value: 1}}).Err()
	require.True(t, errors.As(err, &se))
	assert.True(t, se.HasErrorCode(238), "%v", err)
	err = c.Database("db").RunCommand(ctx, bson.D{{Key: "setParameter", Value: 1}, {Key: "transactionLifetimeLimitSeconds", Value: 5}}).Err()
	require.True(t, errors.As(err, &se))
	assert.True(t, se.HasErrorCode(13), "%v", err)

	coll := c.Database("db").Collection("fence")
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 0}})
	require.NoError(t, err)
	bump := func(sess *mongo.Session) error {
		return mongo.WithSession(ctx, sess, func(sc context.Context) error {
			_, err := coll.UpdateOne(sc, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}})
			return err
		})
	}
	abandoned, err := c.StartSession()
	require.NoError(t, err)
	defer abandoned.EndSession(ctx)
	require.NoError(t, abandoned.StartTransaction())
	require.NoError(t, bump(abandoned))

	other, err := c.StartSession()
	require.NoError(t, err)
	defer other.EndSession(ctx)
	require.NoError(t, other.StartTransaction())
	err = bump(other)
	require.True(t, errors.As(err, &se), "%v", err)
	assert.True(t, se.HasErrorCode(112), "the open transaction holds the document: %v", err)
	_ = other.AbortTransaction(ctx)

	time.Sleep(1100 * time.Millisecond)
	require.NoError(t, other.StartTransaction())
	require.NoError(t, bump(other), "the expired transaction was aborted")
	require.NoError(t, other.CommitTransaction(ctx))

	err = abandoned.CommitTransaction(ctx)
	require.True(t, errors.As(err, &se), "%v", err)
	assert.True(t, se.HasErrorCode(251), "%v", err)
	var doc bson.M
	require.NoError(t, coll.FindOne(ctx, bson.D{{Key: "_id", Value: 1}}).Decode(&doc))
	assert.EqualValues(t, 1, doc["n"], "only the second transaction's write")
}

// TestGetParameter: getParameter answers the parameters the simulator has
// ("*" lists them all), and fails with "no option found to get" when it
// has none of those asked, as the server's parameters.cpp does, never ok
// with nothing.
func TestGetParameter(t *testing.T) {
	t.Parallel()
	ctx, c := connectCRUD(t)
	admin := c.Database("admin")
	var all bson.M
	require.NoError(t, admin.RunCommand(ctx, bson.D{{Key: "getParameter", Value: "*"}}).Decode(&all))
	for _, name := range []string{"featureCompatibilityVersion", "transactionLifetimeLimitSeconds", "enableTestCommands", "periodicNoopIntervalSecs"} {
		assert.Contains(t, all, name)
	}
	var one bson.M
	require.NoError(t, admin.RunCommand(ctx, bson.D{{Key: "getParameter", Value: 1}, {Key: "featureCompatibilityVersion", Value: 1}, {Key: "noSuchParameter", Value: 1}}).Decode(&one))
	assert.Equal(t, bson.D{{Key: "version", Value: "8.0"}}, one["featureCompatibilityVersion"])
	assert.NotContains(t, one, "noSuchParameter")
	err := admin.RunCommand(ctx, bson.D{{Key: "getParameter", Value: 1}, {Key: "noSuchParameter", Value: 1}}).Err()
	var se mongo.ServerError
	require.ErrorAs(t, err, &se)
	assert.True(t, se.HasErrorCode(72), "%v", err)
	assert.Contains(t, err.Error(), "no option found to get")
}
