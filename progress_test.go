package changestream_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// progressLog collects what WithProgress reports.
type progressLog struct {
	mu  sync.Mutex
	got []changestream.Progress
}

func (l *progressLog) add(p changestream.Progress) {
	l.mu.Lock()
	l.got = append(l.got, p)
	l.mu.Unlock()
}

func (l *progressLog) all() []changestream.Progress {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]changestream.Progress(nil), l.got...)
}

// TestProgressIdleStream: with nothing written, the server's periodic
// no-op entries move an idle stream's position, and WithProgress reports
// it, with no event.
func TestProgressIdleStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mongosim.WithNoopInterval(20*time.Millisecond))
	ctx := ctxTimeout(t, 10*time.Second)
	var log progressLog
	cs := watch(t, e, nil, changestream.WithProgress(0, log.add), changestream.WithMaxAwaitTime(50*time.Millisecond))
	start := cs.Position()
	for i := 0; i < 100 && len(log.all()) == 0; i++ {
		require.False(t, cs.TryNext(ctx), "no event")
		require.NoError(t, cs.Err())
	}
	got := log.all()
	require.NotEmpty(t, got, "progress reported")
	p := got[len(got)-1]
	assert.True(t, p.CaughtUp)
	assert.True(t, p.Position.HighWater)
	assert.True(t, p.Position.ClusterTime.After(start.ClusterTime), "%v after %v", p.Position.ClusterTime, start.ClusterTime)
	assert.Zero(t, cs.Stats().Events)
	assert.Zero(t, cs.Behind(), "an idle, caught-up stream is not behind")
}

// TestProgressFilteredStream: writes a $match filters out move the
// position; a stream reopened from the reported position misses nothing
// that passes the filter and repeats nothing.
func TestProgressFilteredStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxTimeout(t, 10*time.Second)
	deletes := mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "operationType", Value: "delete"}}}}}
	var log progressLog
	cs := watch(t, e, deletes, changestream.WithProgress(0, log.add), changestream.WithMaxAwaitTime(50*time.Millisecond))
	start := cs.Position()
	e.insert(t, 1, 2, 3)
	for i := 0; i < 50 && len(log.all()) == 0; i++ {
		require.False(t, cs.TryNext(ctx))
		require.NoError(t, cs.Err())
	}
	got := log.all()
	require.NotEmpty(t, got)
	saved := got[len(got)-1].Position
	assert.True(t, start.ClusterTime.Before(saved.ClusterTime) || start.ClusterTime == saved.ClusterTime)
	assert.NotEqual(t, start.Token, saved.Token)

	_, err := e.coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: 2}})
	require.NoError(t, err)
	again := watch(t, e, deletes, changestream.WithResumeAfter(saved.Token))
	ev := next(t, again)
	assert.Equal(t, "delete", ev.Lookup("operationType").StringValue())
	assert.Equal(t, int32(2), ev.Lookup("documentKey", "_id").Int32())
}

// TestProgressInterval: at most one report per interval.
func TestProgressInterval(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxTimeout(t, 10*time.Second)
	deletes := mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "operationType", Value: "delete"}}}}}
	var log progressLog
	cs := watch(t, e, deletes, changestream.WithProgress(time.Hour, log.add), changestream.WithMaxAwaitTime(20*time.Millisecond))
	// The first report comes with the first move of the position: at
	// once on a replica set; through mongos once every shard has promised
	// past the first insert, an idle shard at its next no-op.
	for i := 1; len(log.all()) == 0; i++ {
		e.insert(t, i)
		require.False(t, cs.TryNext(ctx))
		require.NoError(t, cs.Err())
	}
	for i := 100; i < 103; i++ {
		e.insert(t, i)
		for j := 0; j < 3; j++ {
			require.False(t, cs.TryNext(ctx))
		}
	}
	assert.Len(t, log.all(), 1)
}

func TestProgressBadOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxTimeout(t, 10*time.Second)
	_, err := changestream.WatchCollection(ctx, e.coll, nil, changestream.WithProgress(time.Second, nil))
	assert.ErrorContains(t, err, "WithProgress: nil function")
	_, err = changestream.WatchCollection(ctx, e.coll, nil, changestream.WithProgress(-time.Second, func(changestream.Progress) {}))
	assert.ErrorContains(t, err, "WithProgress: negative interval")
}

// TestStatsAndBehind: events and resumes are counted; a stream with
// events waiting beyond its batch is behind, and is not once it has read
// them all.
func TestStatsAndBehind(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxTimeout(t, 10*time.Second)
	cs := watch(t, e, nil, changestream.WithBatchSize(2), changestream.WithMaxAwaitTime(50*time.Millisecond))
	assert.Zero(t, cs.Behind(), "just opened, nothing to read")
	e.insert(t, 1, 2, 3, 4, 5)
	require.True(t, cs.Next(ctx))
	assert.Positive(t, cs.Behind(), "a full batch: more may be waiting")
	for i := 2; i <= 5; i++ {
		require.True(t, cs.Next(ctx), "%v", cs.Err())
	}
	require.False(t, cs.TryNext(ctx), "nothing more")
	assert.Zero(t, cs.Behind(), "read to the end")
	s := cs.Stats()
	assert.EqualValues(t, 5, s.Events)
	assert.False(t, s.LastEvent.IsZero())
	assert.False(t, s.LastCaughtUp.IsZero())
	assert.Equal(t, cs.ResumeToken(), s.Position.Token)

	t.Run("resumes", func(t *testing.T) {
		e.needSim(t)
		e.killAllCursors()
		e.insert(t, 6)
		require.True(t, cs.Next(ctx), "%v", cs.Err())
		assert.EqualValues(t, 1, cs.Stats().Resumes)
	})
}

// TestBehindWithoutBatchSize: with no batch size asked, a getMore is
// filled up to 16 MiB, so one that holds more than the aggregate's 101
// events but stopped short of that was caught up; and a reply of over
// 8 MiB whose postBatchResumeToken lies past its last event (the server
// read on to the end of the oplog) was caught up too.
func TestBehindWithoutBatchSize(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		write func(t *testing.T, e *testEnv)
		n     int
	}{
		{"150 small events", func(t *testing.T, e *testEnv) {
			ns := make([]int, 150)
			for i := range ns {
				ns[i] = i + 1
			}
			e.insert(t, ns...)
		}, 150},
		{"9 MiB of events, then another collection's write", func(t *testing.T, e *testEnv) {
			ctx := ctxTimeout(t, 20*time.Second)
			big := strings.Repeat("x", 1<<20)
			for i := range 9 {
				_, err := e.coll.InsertOne(ctx, bson.D{{Key: "n", Value: int32(i + 1)}, {Key: "pad", Value: big}})
				require.NoError(t, err)
			}
			_, err := e.db.Collection("other").InsertOne(ctx, bson.D{{Key: "n", Value: 0}})
			require.NoError(t, err)
		}, 9},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ctx := ctxTimeout(t, 20*time.Second)
			cs := watch(t, e, nil)
			tc.write(t, e)
			for i := range tc.n {
				require.True(t, cs.Next(ctx), "event %d: %v", i+1, cs.Err())
			}
			assert.Zero(t, cs.Behind(), "every event of a caught-up reply returned")
		})
	}
}
