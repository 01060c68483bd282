package checkpoint

import (
	"context"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// BenchmarkSnapshot reads a collection of 50,000 small documents two ways
// in one run: a plain find with the driver (the floor), and a Run
// snapshot handing each document to a handler as an Event[bson.Raw],
// batches of 1,000 with a checkpoint saved after each.
//
//	go test -run '^$' -bench Snapshot -benchmem ./checkpoint
func BenchmarkSnapshot(b *testing.B) {
	const docs = 50000
	d := newDeployment(b)
	coll := d.db.Collection("a")
	ctx := context.Background()
	for i := 0; i < docs; i += 1000 {
		batch := make([]any, 0, 1000)
		for j := i; j < i+1000; j++ {
			batch = append(batch, bson.D{{Key: "_id", Value: int32(j)}, {Key: "name", Value: "document"}, {Key: "n", Value: int32(j)}})
		}
		if _, err := coll.InsertMany(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("find", func(b *testing.B) {
		b.ReportAllocs()
		start := time.Now()
		for range b.N {
			cur, err := coll.Find(ctx, bson.D{})
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for cur.Next(ctx) {
				var doc bson.Raw
				if err := cur.Decode(&doc); err != nil {
					b.Fatal(err)
				}
				n++
			}
			if err := cur.Close(ctx); err != nil || n != docs {
				b.Fatal(err, n)
			}
		}
		b.ReportMetric(float64(docs*b.N)/time.Since(start).Seconds(), "docs/s")
	})
	b.Run("snapshot", func(b *testing.B) {
		b.ReportAllocs()
		start := time.Now()
		for i := range b.N {
			store, err := NewFileStore(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			finished := make(chan struct{})
			n := 0
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				done <- Run(rctx, Config{Key: "k", Collection: coll, Store: store, Snapshot: SnapshotInitial,
					OnSnapshot: func(r SnapshotReport) {
						if r.Done {
							close(finished)
						}
					}},
					func(_ context.Context, ev changestream.Event[bson.Raw]) error {
						if ev.OperationType == OperationSnapshot {
							n++
						}
						return nil
					})
			}()
			<-finished
			cancel()
			if err := <-done; err != nil || n != docs {
				b.Fatal(i, err, n)
			}
		}
		b.ReportMetric(float64(docs*b.N)/time.Since(start).Seconds(), "docs/s")
	})
}
