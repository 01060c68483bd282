package mongosim_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// BenchmarkStream measures how fast one change stream drains a backlog:
// b.N small insert events already in the oplog, read by one driver watcher
// started at an operation time before the first insert. It is the shape of
// a consumer catching up after a pause, where the simulator's cost per
// event dominates. The filling is not timed; allocations are counted for
// the server and the driver together, both being in this process, and
// b.N events make allocs/op read as allocations per event.
//
//	go test -run '^$' -bench BenchmarkStream -cpu 1 ./internal/mongosim/
func BenchmarkStream(b *testing.B) {
	for _, batchSize := range []int32{0, 1000, 10_000} {
		name := fmt.Sprintf("batch=%d", batchSize)
		if batchSize == 0 {
			name = "batch=default"
		}
		b.Run(name, func(b *testing.B) { benchStream(b, batchSize) })
	}
}

func benchStream(b *testing.B, batchSize int32) {
	s := mongosim.StartTB(b, mongosim.WithCommandLogMax(0))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := mongo.Connect(options.Client().ApplyURI(s.URI()))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Disconnect(context.Background()) }()
	coll := c.Database("bench").Collection("events")

	// The start time comes from the server, so the stream covers every
	// insert below and nothing before.
	var pong struct {
		OperationTime bson.Timestamp `bson:"operationTime"`
	}
	if err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Decode(&pong); err != nil {
		b.Fatal(err)
	}
	start := pong.OperationTime
	start.I++ // after the ping, at or before the first insert

	const chunk = 10_000
	docs := make([]any, 0, chunk)
	for i := 0; i < b.N; {
		docs = docs[:0]
		for ; i < b.N && len(docs) < chunk; i++ {
			docs = append(docs, bson.D{{Key: "_id", Value: int64(i)}, {Key: "n", Value: int32(i)}, {Key: "s", Value: "payload"}})
		}
		if _, err := coll.InsertMany(ctx, docs); err != nil {
			b.Fatal(err)
		}
	}

	opts := options.ChangeStream().SetStartAtOperationTime(&start).SetMaxAwaitTime(time.Second)
	if batchSize > 0 {
		opts.SetBatchSize(batchSize)
	}
	b.ReportAllocs()
	b.ResetTimer()
	began := time.Now()
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, opts)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for n < b.N && cs.Next(ctx) {
		n++
	}
	elapsed := time.Since(began)
	b.StopTimer()
	if n != b.N {
		b.Fatalf("read %d of %d events: %v", n, b.N, cs.Err())
	}
	_ = cs.Close(ctx)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}
