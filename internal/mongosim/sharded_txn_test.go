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

// TestShardedCommitOnARestartedRouter: a transaction's commit that
// reaches a router which never saw the transaction (here the same mongos,
// restarted between the statement and the commit) is decided by the
// shard the recoveryToken names, as 8.0's TransactionRouter does with
// _commitWithRecoveryToken: the transaction's write is committed, never
// reported done and dropped. A transaction that only read has an empty
// token, and its commit there fails with NoSuchTransaction labelled
// TransientTransactionError (error_labels.cpp), so that the driver runs
// it again.
func TestShardedCommitOnARestartedRouter(t *testing.T) {
	t.Parallel()
	sc, _ := startSharded(t)
	c := connectTo(t, "mongodb://"+sc.Router(0).Addr()+"/")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	coll := c.Database("a").Collection("c")
	require.NoError(t, c.Database("a").CreateCollection(ctx, "c"))

	commitAfterRestart := func(statement func(context.Context) error) error {
		sess, err := c.StartSession()
		require.NoError(t, err)
		defer sess.EndSession(context.Background())
		require.NoError(t, sess.StartTransaction())
		require.NoError(t, statement(mongo.NewSessionContext(ctx, sess)))
		sc.Router(0).Stop()
		require.NoError(t, sc.Router(0).Restart())
		for {
			// A commit may be retried after a network error; the first
			// tries can meet the connections the restart broke.
			err = sess.CommitTransaction(ctx)
			var le mongo.LabeledError
			if err == nil || ctx.Err() != nil || !errors.As(err, &le) || !le.HasErrorLabel("UnknownTransactionCommitResult") {
				return err
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	require.NoError(t, commitAfterRestart(func(ctx context.Context) error {
		_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
		return err
	}))
	n, err := coll.CountDocuments(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "the commit reported done, so the write is there")

	err = commitAfterRestart(func(ctx context.Context) error {
		return coll.FindOne(ctx, bson.D{{Key: "_id", Value: 1}}).Err()
	})
	var se mongo.ServerError
	require.ErrorAs(t, err, &se)
	assert.True(t, se.HasErrorCode(251), "NoSuchTransaction: %v", err)
	assert.True(t, se.HasErrorLabel("TransientTransactionError"), "%v", err)
}
