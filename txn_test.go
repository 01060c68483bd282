package changestream_test

import (
	"context"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestResumeInsideTransaction: a transaction's events share one cluster
// time; a stream whose cursor is lost after some of them resumes from the
// token of the last one returned and delivers the rest, nothing lost,
// nothing repeated.
func TestResumeInsideTransaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.needSim(t)
	ctx := ctxTimeout(t, 10*time.Second)
	cs := watch(t, e, nil, changestream.WithBatchSize(2))
	sess, err := e.client.StartSession()
	require.NoError(t, err)
	defer sess.EndSession(ctx)
	_, err = sess.WithTransaction(ctx, func(sc context.Context) (any, error) {
		for i := 1; i <= 5; i++ {
			if _, err := e.coll.InsertOne(sc, bson.D{{Key: "_id", Value: int32(i)}, {Key: "n", Value: int32(i)}}); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
	require.NoError(t, err)
	e.insert(t, 6)

	var got []int32
	var times []bson.Timestamp
	for len(got) < 6 {
		if len(got) == 2 || len(got) == 3 {
			e.killAllCursors() // inside the transaction, twice
		}
		require.True(t, cs.Next(ctx), "%v", cs.Err())
		var ev changestream.Event[bson.Raw]
		require.NoError(t, cs.Decode(&ev))
		got = append(got, eventN(t, cs.Current))
		times = append(times, ev.ClusterTime)
	}
	assert.Equal(t, []int32{1, 2, 3, 4, 5, 6}, got)
	for _, ts := range times[1:5] {
		assert.Equal(t, times[0], ts, "one transaction, one cluster time")
	}
	assert.EqualValues(t, 2, cs.Stats().Resumes)
}
