package changestream_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// BenchmarkIdleShardHeartbeat measures the insert-to-Next latency of a
// ChangeStream through mongos while one of two shards is idle: at the
// shards' default 10 s no-op interval, with WithHeartbeat at 1 s, and
// with the shards' no-op interval at 1 s. Each insert comes at a random
// moment of a 10 s window (1 s for the 1 s cases), one at a time; p50,
// p99 and the largest are reported. Slow by nature:
//
//	go test -run '^$' -bench IdleShardHeartbeat -benchtime 20x .
func BenchmarkIdleShardHeartbeat(b *testing.B) {
	for _, tc := range []struct {
		name      string
		noop      time.Duration
		heartbeat time.Duration
		window    time.Duration
	}{
		{"noop=10s", mongosim.DefaultNoopInterval, 0, mongosim.DefaultNoopInterval},
		{"noop=10s/heartbeat=1s", mongosim.DefaultNoopInterval, time.Second, time.Second},
		{"noop=1s", time.Second, 0, time.Second},
	} {
		b.Run(tc.name, func(b *testing.B) {
			sc := mongosim.StartShardedClusterTB(b, 2, 1, 1, []mongosim.Option{mongosim.WithNoopInterval(tc.noop)})
			for _, db := range []string{"a", "ops"} {
				if err := sc.Catalog().SetPrimaryShard(db, "shard0"); err != nil {
					b.Fatal(err)
				}
			}
			c, err := mongo.Connect(testclient.Options(sc.URI()))
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = c.Disconnect(context.Background()) }()
			ctx := context.Background()
			var opts []changestream.Option
			if tc.heartbeat > 0 {
				beats := c.Database("ops").Collection("heartbeat")
				if err := changestream.PrepareHeartbeat(ctx, beats); err != nil {
					b.Fatal(err)
				}
				opts = append(opts, changestream.WithHeartbeat(beats, tc.heartbeat))
			}
			coll := c.Database("a").Collection("c")
			cs, err := changestream.WatchCollection(ctx, coll, nil, opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer cs.Close(ctx)
			rng := rand.New(rand.NewPCG(1, 2))
			var lat []time.Duration
			b.ResetTimer()
			for i := range b.N {
				time.Sleep(time.Duration(rng.Int64N(int64(tc.window))))
				start := time.Now()
				if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}}); err != nil {
					b.Fatal(err)
				}
				if !cs.Next(ctx) {
					b.Fatal(cs.Err())
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[(len(lat)*99-1)/100]), "p99-ms")
			b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
		})
	}
}
