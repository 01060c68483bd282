package mongosim_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// BenchmarkShardedIdleShardLatency measures what an idle shard adds to a
// stream through mongos: a collection on shard0 takes one insert at a
// time, at a random moment of the no-op interval, while shard1 takes
// none, so each event waits until shard1's no-op writer promises past it.
// It reports the insert-to-event latency, p50 and the largest, at a 1 s
// no-op interval and at the default 10 s; a replica set row without the
// router is the floor. Slow by nature (about an interval an event):
//
//	go test -run '^$' -bench ShardedIdleShardLatency -benchtime 10x ./internal/mongosim
func BenchmarkShardedIdleShardLatency(b *testing.B) {
	for _, tc := range []struct {
		name   string
		noop   time.Duration
		shard  bool
		window time.Duration // inserts come at a random moment of it
	}{
		{"replica set", mongosim.DefaultNoopInterval, false, 100 * time.Millisecond},
		{"sharded/noop=1s", time.Second, true, time.Second},
		{"sharded/noop=10s", mongosim.DefaultNoopInterval, true, mongosim.DefaultNoopInterval},
	} {
		b.Run(tc.name, func(b *testing.B) {
			opts := []mongosim.Option{mongosim.WithNoopInterval(tc.noop)}
			var uri string
			if tc.shard {
				sc := mongosim.StartShardedClusterTB(b, 2, 1, 1, opts)
				if err := sc.Catalog().SetPrimaryShard("a", "shard0"); err != nil {
					b.Fatal(err)
				}
				uri = sc.URI()
			} else {
				uri = mongosim.StartReplicaSetTB(b, 1, opts).URI()
			}
			c, err := mongo.Connect(testclient.Options(uri))
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = c.Disconnect(context.Background()) }()
			ctx := context.Background()
			coll := c.Database("a").Collection("c")
			cs, err := coll.Watch(ctx, mongo.Pipeline{})
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
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
			b.Log(fmt.Sprint(lat))
		})
	}
}
