package mongosim_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

// writeUnreplicated pauses replication to the members paused and writes
// one document that only the primary has.
func writeUnreplicated(ctx context.Context, t *testing.T, rs *mongosim.ReplicaSet, paused ...int) {
	t.Helper()
	for _, i := range paused {
		rs.PauseReplication(i)
	}
	c := rsClient(t, rs)
	w1 := c.Database("db").Collection("c", options.Collection().SetWriteConcern(&writeconcern.WriteConcern{W: 1}))
	_, err := w1.InsertOne(ctx, bson.D{{Key: "x", Value: 1}})
	require.NoError(t, err)
}

// stepDownAsync runs StepDown in the background.
func stepDownAsync(ctx context.Context, rs *mongosim.ReplicaSet, o mongosim.StepDownOptions) <-chan error {
	done := make(chan error, 1)
	go func() { done <- rs.StepDown(ctx, o) }()
	return done
}

// TestStepDownForceWaitsForCatchUp: replSetStepDown with force still
// waits, up to secondaryCatchUpPeriodSecs, for a secondary to catch up,
// and then hands over to it; only at the end of the period does it step
// down regardless (topology_coordinator.cpp, _canCompleteStepDownAttempt:
// force completes the attempt only once now >= waitUntil).
func TestStepDownForceWaitsForCatchUp(t *testing.T) {
	t.Parallel()
	rs := mongosim.StartReplicaSetTB(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old := rs.Primary()
	writeUnreplicated(ctx, t, rs, 1, 2)
	done := stepDownAsync(ctx, rs, mongosim.StepDownOptions{Force: true, CatchUpPeriod: 20 * time.Second, StepDownPeriod: 30 * time.Second})
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("a forced step-down returned before its catch-up period, with no secondary caught up: %v", err)
	default:
	}
	assert.Same(t, old, rs.Primary(), "still primary while it waits")
	rs.ResumeReplication(2)
	require.NoError(t, <-done)
	assert.Same(t, rs.Member(2), rs.Primary(), "handed over to the secondary that caught up")

	rs2 := mongosim.StartReplicaSetTB(t, 3, nil)
	writeUnreplicated(ctx, t, rs2, 1, 2)
	require.NoError(t, rs2.StepDown(ctx, mongosim.StepDownOptions{Force: true, CatchUpPeriod: 200 * time.Millisecond, StepDownPeriod: 30 * time.Second}),
		"at the end of the period, force steps down regardless")
	assert.NotSame(t, rs2.Member(0), rs2.Primary())
}

// TestStepDownNeedsAMajorityCaughtUp: in a five-member set one caught-up
// electable secondary is not enough: a majority (the primary counted)
// must have its last write too (topology_coordinator.cpp,
// _isSafeToStepDown).
func TestStepDownNeedsAMajorityCaughtUp(t *testing.T) {
	t.Parallel()
	rs := mongosim.StartReplicaSetTB(t, 5, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	writeUnreplicated(ctx, t, rs, 2, 3, 4) // member 1 has it: 2 of 5
	err := rs.StepDown(ctx, mongosim.StepDownOptions{CatchUpPeriod: 200 * time.Millisecond, StepDownPeriod: 30 * time.Second})
	var ce *mongosim.CommandError
	require.ErrorAs(t, err, &ce)
	assert.EqualValues(t, 262, ce.Code, "%v", err)
	assert.Same(t, rs.Member(0), rs.Primary())

	done := stepDownAsync(ctx, rs, mongosim.StepDownOptions{StepDownPeriod: 30 * time.Second})
	rs.ResumeReplication(3) // 3 of 5
	require.NoError(t, <-done)
	assert.NotSame(t, rs.Member(0), rs.Primary())
}

// TestFreezeKeepsTheLaterDeadline: replSetFreeze for less than a
// stepped-down member's remaining stepDownSecs does not shorten it (the
// server keeps the later of the two); 0 unfreezes. Seen through
// elections: a member still frozen is never chosen.
// (topology_coordinator.cpp, prepareFreezeResponse.)
func TestFreezeKeepsTheLaterDeadline(t *testing.T) {
	t.Parallel()
	rs := mongosim.StartReplicaSetTB(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, rs.StepDown(ctx, mongosim.StepDownOptions{StepDownPeriod: time.Minute}))
	next := rs.Primary()
	require.NotSame(t, rs.Member(0), next)
	require.NoError(t, rs.Freeze(0, time.Millisecond))
	time.Sleep(10 * time.Millisecond)
	// The third member is frozen for longer than anything here, so the
	// only candidate left would be member 0, if its freeze had shortened.
	third := 1
	if rs.Member(1) == next {
		third = 2
	}
	require.NoError(t, rs.Freeze(third, time.Minute))
	err := rs.StepDown(ctx, mongosim.StepDownOptions{CatchUpPeriod: 200 * time.Millisecond, StepDownPeriod: time.Minute})
	var ce *mongosim.CommandError
	require.ErrorAs(t, err, &ce, "no electable secondary: member 0 is still in its stepDownSecs")
	assert.EqualValues(t, 262, ce.Code)

	require.NoError(t, rs.Freeze(0, 0), "0 unfreezes")
	require.NoError(t, rs.StepDown(ctx, mongosim.StepDownOptions{StepDownPeriod: time.Minute}))
	assert.Same(t, rs.Member(0), rs.Primary())
}

// TestCommitRetriedAfterFailover: a transaction committed (majority) on
// the primary, which then steps down: the driver's commitTransaction sent
// again reaches the new primary, which knows from the replicated session
// record that the transaction committed, and succeeds
// (jstests/replsets/retryable_commit_transaction_after_failover.js). It
// answered NoSuchTransaction, labelled TransientTransactionError, and
// WithTransaction then ran the transaction a second time.
func TestCommitRetriedAfterFailover(t *testing.T) {
	t.Parallel()
	rs := mongosim.StartReplicaSetTB(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := rsClient(t, rs)
	coll := c.Database("db").Collection("c")
	require.NoError(t, c.Database("db").CreateCollection(ctx, "c"))
	sess, err := c.StartSession()
	require.NoError(t, err)
	defer sess.EndSession(context.Background())
	require.NoError(t, sess.StartTransaction())
	_, err = coll.InsertOne(mongo.NewSessionContext(ctx, sess), bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)
	require.NoError(t, sess.CommitTransaction(ctx))

	require.NoError(t, rs.StepDown(ctx, mongosim.StepDownOptions{StepDownPeriod: 10 * time.Second, CatchUpPeriod: time.Second}))
	_, err = rs.WaitForPrimary(ctx)
	require.NoError(t, err)
	var cerr error
	for range 20 { // until the client has found the new primary
		if cerr = sess.CommitTransaction(ctx); cerr == nil {
			break
		}
		var le mongo.LabeledError
		if !errors.As(cerr, &le) || !le.HasErrorLabel("UnknownTransactionCommitResult") && !le.HasErrorLabel("RetryableWriteError") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, cerr, "the retried commit of a committed transaction succeeds on the new primary")
	n, err := coll.CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
}
