//go:build unix

package changestream_test

import (
	"context"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/internal/proctest"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// BenchmarkLive reads a live stream, a replica set's and a sharded
// cluster's (2 shards behind 2 mongos, both shards busy) side by side,
// with this package and with the driver's Watch: a writer process
// (internal/benchwriter) inserts 2,000 documents a second, alternating
// between the shards, each stamped with its send time, while the
// benchmark's b.N Next calls read them. It reports the insert-to-Next
// latency (p50 and p99), the reading process's CPU per event (user and
// system, from getrusage: the simulator and the writer are processes of
// their own), the events a second it kept up with, and the events each
// getMore brought (a router answers with what it can release, so more
// often with less). Run it with a
// fixed count, such as -benchtime 20000x (10 s each).
func BenchmarkLive(b *testing.B) {
	sim := proctest.Build(b, "./cmd/mongosim")
	writer := proctest.Build(b, "./internal/benchwriter")
	for _, dep := range []struct {
		name string
		args []string
	}{
		{"replset", []string{"-addr", "127.0.0.1:0"}},
		{"sharded", []string{"-shards", "2", "-mongos", "2"}},
	} {
		for _, impl := range []string{"driver", "changestream"} {
			b.Run(dep.name+"/"+impl, func(b *testing.B) {
				uri := proctest.StartSimArgs(b, sim, dep.args...)
				var getMores atomic.Int64
				mon := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
					if e.CommandName == "getMore" {
						getMores.Add(1)
					}
				}}
				client, err := mongo.Connect(options.Client().ApplyURI(uri).SetMonitor(mon))
				require.NoError(b, err)
				b.Cleanup(func() { _ = client.Disconnect(context.Background()) })
				ctx := context.Background()
				coll := client.Database("bench").Collection("live")
				require.NoError(b, coll.Database().CreateCollection(ctx, "live"))
				if dep.name == "sharded" {
					spreadOverTwoShards(ctx, b, client, "bench.live")
				}
				next, closeStream := openLive(ctx, b, impl, coll)
				defer closeStream()
				w := &proctest.Proc{Bin: writer, Args: []string{"-uri", uri, "-rate", "2000", "-batch", "10"}}
				w.Start(b)
				b.Cleanup(w.Stop)
				for range 1000 { // warm up: connections, the first batches
					_, err := next(ctx)
					require.NoError(b, err)
				}

				lat := make([]time.Duration, 0, b.N)
				cpu0, gm0 := processCPU(), getMores.Load()
				b.ResetTimer()
				for range b.N {
					sent, err := next(ctx)
					if err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(time.Unix(0, sent)))
				}
				b.StopTimer()
				cpu, gm := processCPU()-cpu0, getMores.Load()-gm0
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64(cpu.Nanoseconds())/1000/float64(b.N), "cpu-µs/event")
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
				b.ReportMetric(float64(b.N)/float64(max(gm, 1)), "events/getMore")
			})
		}
	}
}

// openLive opens impl's stream on coll and returns its next event's send
// time, and its Close.
func openLive(ctx context.Context, b *testing.B, impl string, coll *mongo.Collection) (func(context.Context) (int64, error), func()) {
	b.Helper()
	sent := func(ev bson.Raw) int64 { return ev.Lookup("fullDocument", "t").Int64() }
	if impl == "driver" {
		cs, err := coll.Watch(ctx, mongo.Pipeline{})
		require.NoError(b, err)
		return func(ctx context.Context) (int64, error) {
			if cs.Next(ctx) {
				return sent(cs.Current), nil
			}
			return 0, cs.Err()
		}, func() { _ = cs.Close(context.Background()) }
	}
	cs, err := changestream.WatchCollection(ctx, coll, nil)
	require.NoError(b, err)
	return func(ctx context.Context) (int64, error) {
		if cs.Next(ctx) {
			return sent(cs.Current), nil
		}
		return 0, cs.Err()
	}, func() { _ = cs.Close(context.Background()) }
}

// spreadOverTwoShards shards ns on {k: 1, _id: 1} and puts the k: 0 and
// k: 1 documents on different shards.
func spreadOverTwoShards(ctx context.Context, tb testing.TB, client *mongo.Client, ns string) {
	tb.Helper()
	admin := client.Database("admin")
	require.NoError(tb, admin.RunCommand(ctx, bson.D{{Key: "shardCollection", Value: ns}, {Key: "key", Value: bson.D{{Key: "k", Value: 1}, {Key: "_id", Value: 1}}}}).Err())
	require.NoError(tb, admin.RunCommand(ctx, bson.D{{Key: "split", Value: ns}, {Key: "middle", Value: bson.D{{Key: "k", Value: 1}, {Key: "_id", Value: bson.MinKey{}}}}}).Err())
	var chunk struct {
		Shard string `bson:"shard"`
	}
	require.NoError(tb, client.Database("config").Collection("chunks").FindOne(ctx, bson.D{}).Decode(&chunk))
	to := "shard1"
	if chunk.Shard == "shard1" {
		to = "shard0"
	}
	require.NoError(tb, admin.RunCommand(ctx, bson.D{{Key: "moveChunk", Value: ns}, {Key: "find", Value: bson.D{{Key: "k", Value: 1}, {Key: "_id", Value: 0}}}, {Key: "to", Value: to}}).Err())
}

// processCPU is the user and system time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
