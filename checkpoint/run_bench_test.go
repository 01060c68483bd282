package checkpoint

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// BenchmarkRun measures Run's throughput with its defaults (MaxInFlight
// 1,000, a FileStore, CommitInterval 1s) over b.N inserts of small
// documents made before it starts, with Workers 1, 8 and 64, and two
// handlers: one that does nothing (the cost of Run itself) and one that
// waits 1ms, standing in for a sink's round trip, where parallel
// handling is what counts. Each of the 64 documents is inserted b.N/64
// times under its own key, so that events of one key must keep their
// order. Run it with a fixed count, so that every row reads the same
// number of events:
//
//	go test -run '^$' -bench 'BenchmarkRun$' -benchtime 20000x ./checkpoint
func BenchmarkRun(b *testing.B) {
	for _, work := range []time.Duration{0, time.Millisecond} {
		for _, workers := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("handler=%v/workers=%d", work, workers), func(b *testing.B) {
				benchmarkRun(b, workers, work)
			})
		}
	}
}

func benchmarkRun(b *testing.B, workers int, work time.Duration) {
	d := newDeployment(b)
	coll := d.db.Collection("bench")
	ctx := context.Background()
	// The stream starts at the first insert's time: every event is in the
	// history before Run starts, so the figure is Run's, not the writer's.
	res := d.db.RunCommand(ctx, bson.D{{Key: "ping", Value: 1}})
	var ping struct {
		OperationTime bson.Timestamp `bson:"operationTime"`
	}
	if err := res.Decode(&ping); err != nil {
		b.Fatal(err)
	}
	const keys = 64
	for i := 0; i < b.N; i += 1000 {
		batch := make([]any, 0, 1000)
		for j := i; j < min(i+1000, b.N); j++ {
			batch = append(batch, bson.D{{Key: "k", Value: int32(j % keys)}, {Key: "n", Value: int32(j)}})
		}
		if _, err := coll.InsertMany(ctx, batch, options.InsertMany().SetOrdered(true)); err != nil {
			b.Fatal(err)
		}
	}
	store, err := NewFileStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	var handled atomic.Int64
	finished := make(chan struct{})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	start := ping.OperationTime
	b.ReportAllocs()
	b.ResetTimer()
	began := time.Now()
	go func() {
		done <- Run(rctx, Config{Key: "k", Collection: coll, Store: store, Workers: workers, StartAtOperationTime: &start},
			func(_ context.Context, ev changestream.Event[bson.Raw]) error {
				if work > 0 {
					time.Sleep(work)
				}
				if handled.Add(1) == int64(b.N) {
					close(finished)
				}
				return nil
			})
	}()
	select {
	case <-finished:
	case err := <-done:
		b.Fatal("Run returned early:", err)
	}
	elapsed := time.Since(began)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}
