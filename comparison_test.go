package changestream_test

import (
	"context"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// These tests put the driver's own coll.Watch and this package through the
// same situations: the README's comparison table is their output. They
// assert what this package does and log what the driver's stream did, so a
// driver release that fixes its stream does not fail our build.

// situation runs one scenario against a stream and reports whether the
// stream delivered the event inserted after the trouble.
type situation struct {
	name    string
	opts    func(*options.ChangeStreamOptionsBuilder) // driver options
	csOpts  []changestream.Option
	trouble func(t *testing.T, e *testEnv, next func(ctx context.Context) bool)
}

// comparedStream is what both streams offer.
type comparedStream interface {
	Next(context.Context) bool
	Err() error
	Close(context.Context) error
}

func TestComparisonWithDriverWatch(t *testing.T) {
	t.Parallel()
	situations := []situation{
		{
			name:   "a Next whose deadline passes",
			opts:   func(o *options.ChangeStreamOptionsBuilder) {},
			csOpts: nil,
			trouble: func(t *testing.T, _ *testEnv, next func(ctx context.Context) bool) {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				next(ctx)
			},
		},
		{
			name:   "a context cancelled mid-getMore",
			opts:   func(o *options.ChangeStreamOptionsBuilder) { o.SetMaxAwaitTime(5 * time.Second) },
			csOpts: []changestream.Option{changestream.WithMaxAwaitTime(5 * time.Second)},
			trouble: func(t *testing.T, e *testEnv, next func(ctx context.Context) bool) {
				ctx, cancel := context.WithCancel(context.Background())
				waitCancel := e.cancelMidGetMore(cancel)
				next(ctx)
				waitCancel()
			},
		},
		{
			name:   "maxAwaitTime longer than the deadline",
			opts:   func(o *options.ChangeStreamOptionsBuilder) { o.SetMaxAwaitTime(5 * time.Second) },
			csOpts: []changestream.Option{changestream.WithMaxAwaitTime(5 * time.Second)},
			trouble: func(t *testing.T, _ *testEnv, next func(ctx context.Context) bool) {
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				defer cancel()
				next(ctx)
			},
		},
		{
			name: "a resume whose aggregate loses its connection",
			opts: func(o *options.ChangeStreamOptionsBuilder) {},
			trouble: func(t *testing.T, e *testEnv, next func(ctx context.Context) bool) {
				aggregates := len(e.mon.commands("aggregate"))
				e.failPoint(t, "failCommand", bson.D{{Key: "times", Value: 2}}, bson.D{
					{Key: "failCommands", Value: bson.A{"getMore", "aggregate"}}, {Key: "closeConnection", Value: true},
				})
				// Until the resume's aggregate has been sent and met the
				// second fault. After the dropped getMore the driver may
				// take up to its heartbeat to find the server again (the
				// race in its monitor described at testclient.Heartbeat),
				// so one call can end before the resume is even sent. A
				// hang guard, not a timing bound.
				for guard := 0; guard < 6 && len(e.mon.commands("aggregate")) == aggregates; guard++ {
					if next(ctxTimeout(t, 10*time.Second)) {
						t.Fatal("an event arrived, but none was written")
					}
				}
			},
		},
	}
	for _, sit := range situations {
		t.Run(sit.name, func(t *testing.T) {
			t.Parallel()
			for _, impl := range []string{"driver", "changestream"} {
				e := newEnv(t)
				var s comparedStream
				if impl == "driver" {
					o := options.ChangeStream()
					sit.opts(o)
					ds, err := e.coll.Watch(context.Background(), mongo.Pipeline{}, o)
					require.NoError(t, err)
					s = ds
				} else {
					s = watch(t, e, nil, sit.csOpts...)
				}
				sit.trouble(t, e, s.Next)
				troubleErr := s.Err()
				e.insert(t, 1)
				got := s.Next(ctxTimeout(t, 5*time.Second))
				t.Logf("%s: after %q (error %v), the next event arrived: %v (err %v)", impl, sit.name, troubleErr, got, s.Err())
				if impl == "changestream" {
					assert.True(t, got, "this package must carry on: %v", s.Err())
				}
				_ = s.Close(context.Background())
			}
		})
	}
}

// TestComparisonStartAfterResume logs which start option each stream uses
// when a startAfter stream resumes before its first event; the
// specification requires startAfter.
func TestComparisonStartAfterResume(t *testing.T) {
	t.Parallel()
	for _, impl := range []string{"driver", "changestream"} {
		e := newEnv(t)
		probe := watch(t, e, nil)
		e.insert(t, 1)
		tok := bson.Raw(next(t, probe).Lookup("_id").Document())

		var s comparedStream
		if impl == "driver" {
			ds, err := e.coll.Watch(context.Background(), mongo.Pipeline{}, options.ChangeStream().SetStartAfter(tok))
			require.NoError(t, err)
			s = ds
		} else {
			s = watch(t, e, nil, changestream.WithStartAfter(tok))
		}
		e.failPoint(t, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
			{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "errorCode", Value: 10107},
			{Key: "errorLabels", Value: bson.A{"ResumableChangeStreamError"}},
		})
		e.mon.reset()
		e.insert(t, 2)
		require.True(t, s.Next(ctxTimeout(t, 10*time.Second)), "%s: %v", impl, s.Err())
		aggs := e.mon.commands("aggregate")
		require.NotEmpty(t, aggs)
		stage := changeStreamStage(t, aggs[0])
		_, usedStartAfter := stage.Lookup("startAfter").DocumentOK()
		t.Logf("%s: resumed before its first event with startAfter: %v (%s)", impl, usedStartAfter, stage)
		if impl == "changestream" {
			assert.True(t, usedStartAfter)
		}
		_ = s.Close(context.Background())
	}
}

// TestComparisonShardDown puts both streams through TestShardedShardDown's
// outage: a collection stream through mongos while the other shard (its
// one member) is down for two seconds, the calls TryNext with no
// deadline, then a write once it is back. It logs what the driver's
// stream did and asserts that this package's carried on with nothing
// lost. Simulator only: a real cluster's shard cannot be stopped from a
// test.
func TestComparisonShardDown(t *testing.T) {
	t.Parallel()
	for _, impl := range []string{"driver", "changestream"} {
		t.Run(impl, func(t *testing.T) {
			t.Parallel()
			sc := mongosim.StartShardedClusterTB(t, 2, 1, 1, []mongosim.Option{mongosim.WithNoopInterval(100 * time.Millisecond)})
			require.NoError(t, sc.Catalog().SetPrimaryShard("a", "shard0"))
			client, err := mongo.Connect(testclient.Options(sc.URI()))
			require.NoError(t, err)
			t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
			ctx := ctxTimeout(t, 60*time.Second)
			coll := client.Database("a").Collection("c")
			var s interface {
				comparedStream
				TryNext(context.Context) bool
			}
			if impl == "driver" {
				s, err = coll.Watch(ctx, mongo.Pipeline{})
			} else {
				s, err = changestream.WatchCollection(ctx, coll, nil)
			}
			require.NoError(t, err)
			defer s.Close(context.Background())

			sc.Shard(1).Kill(0)
			var outageErr error
			for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
				if s.TryNext(context.Background()) {
					t.Fatal("an event arrived, but none was written")
				}
				if outageErr == nil {
					outageErr = s.Err()
				}
				time.Sleep(50 * time.Millisecond)
			}
			require.NoError(t, sc.Shard(1).Restart(0))
			_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
			require.NoError(t, err)
			got := s.Next(ctxTimeout(t, 20*time.Second))
			t.Logf("%s: with a shard down, the first error was %v; once it was back, the next event arrived: %v (err %v)", impl, outageErr, got, s.Err())
			if impl == "changestream" {
				assert.True(t, got, "this package must carry on: %v", s.Err())
			}
		})
	}
}
