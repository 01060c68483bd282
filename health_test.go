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

// TestHealth: Health tells each state of a stream apart from what it has
// measured: caught up; consuming, and lagging past the threshold, while
// events wait; stuck when the application stops calling, and when a call
// gets no reply while behind; resuming after a call failed with an error
// the stream survives; failed when it is dead; ended once invalidated or
// closed.
func TestHealth(t *testing.T) {
	t.Parallel()
	fast := changestream.HealthThresholds{Lagging: time.Hour, Stuck: time.Hour}
	for _, tc := range []struct {
		name   string
		th     changestream.HealthThresholds
		do     func(t *testing.T, e *testEnv, cs *changestream.ChangeStream)
		want   changestream.HealthState
		hasErr bool
	}{
		{name: "caught up", th: fast, want: changestream.HealthCaughtUp, do: func(t *testing.T, e *testEnv, cs *changestream.ChangeStream) {
			cs.TryNext(ctxTimeout(t, 10*time.Second))
		}},
		{name: "consuming", th: fast, want: changestream.HealthConsuming, do: func(t *testing.T, e *testEnv, cs *changestream.ChangeStream) {
			e.insert(t, 1, 2, 3)
			next(t, cs) // a batch of 1 with more to come
		}},
		{name: "lagging", th: changestream.HealthThresholds{Lagging: time.Nanosecond, Stuck: time.Hour}, want: changestream.HealthLagging,
			do: func(t *testing.T, e *testEnv, cs *changestream.ChangeStream) {
				e.insert(t, 1, 2, 3)
				next(t, cs)
			}},
		{name: "stuck: no calls", th: changestream.HealthThresholds{Stuck: 50 * time.Millisecond}, want: changestream.HealthStuck,
			do: func(t *testing.T, e *testEnv, cs *changestream.ChangeStream) {
				e.insert(t, 1, 2, 3)
				next(t, cs)
				time.Sleep(100 * time.Millisecond) // the application stopped reading
			}},
		{name: "resuming", th: fast, want: changestream.HealthResuming, hasErr: true, do: func(t *testing.T, e *testEnv, cs *changestream.ChangeStream) {
			e.failPoint(t, "failCommand", bson.D{{Key: "times", Value: 2}}, bson.D{
				{Key: "failCommands", Value: bson.A{"getMore", "aggregate"}}, {Key: "closeConnection", Value: true}})
			for guard := 0; guard < 6 && cs.Err() == nil; guard++ { // a hang guard, as in the comparison tests
				cs.Next(ctxTimeout(t, 10*time.Second))
			}
			require.True(t, cs.Alive())
		}},
		{name: "failed", th: fast, want: changestream.HealthFailed, hasErr: true, do: func(t *testing.T, e *testEnv, cs *changestream.ChangeStream) {
			e.failPoint(t, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
				{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "errorCode", Value: 2}}) // BadValue: not resumable
			assert.False(t, cs.Next(ctxTimeout(t, 10*time.Second)))
			require.False(t, cs.Alive())
		}},
		{name: "ended: invalidated", th: fast, want: changestream.HealthEnded, do: func(t *testing.T, e *testEnv, cs *changestream.ChangeStream) {
			e.insert(t, 1)
			require.NoError(t, e.coll.Drop(context.Background()))
			for cs.Next(ctxTimeout(t, 10*time.Second)) {
			}
			require.NoError(t, cs.Err())
		}},
		{name: "ended: closed", th: fast, want: changestream.HealthEnded, do: func(t *testing.T, e *testEnv, cs *changestream.ChangeStream) {
			require.NoError(t, cs.Close(context.Background()))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			cs := watch(t, e, nil, changestream.WithBatchSize(1))
			tc.do(t, e, cs)
			h := cs.Health(tc.th)
			assert.Equal(t, tc.want, h.State, "%+v", h)
			assert.NotEmpty(t, h.Reason)
			assert.Equal(t, tc.hasErr, h.Err != nil, "%v", h.Err)
			assert.Equal(t, tc.want != changestream.HealthStuck && tc.want != changestream.HealthFailed, h.State.Healthy())
		})
	}
}

// TestHealthStuckInACall: a call in progress that gets no reply while the
// stream is behind is stuck once the threshold has passed.
func TestHealthStuckInACall(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil, changestream.WithBatchSize(1))
	e.insert(t, 1, 2, 3)
	next(t, cs)
	e.failPoint(t, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "blockConnection", Value: true}, {Key: "blockTimeMS", Value: 1500}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The next event is in the batch already; the one after needs a
		// getMore, which the server holds.
		for range 2 {
			cs.Next(ctxTimeout(t, 10*time.Second))
		}
	}()
	th := changestream.HealthThresholds{Stuck: 300 * time.Millisecond}
	require.Eventually(t, func() bool { return cs.Health(th).State == changestream.HealthStuck }, 5*time.Second, 10*time.Millisecond)
	assert.Contains(t, cs.Health(th).Reason, "no reply from the server")
	<-done
}
