package changestream_test

import (
	"context"
	"fmt"
	"time"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// A stream that watches for deletes sees none while orders are inserted,
// yet its position moves past the inserts; saving the reported position
// keeps it resumable however long it stays quiet.
func ExampleWithProgress() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")

	var saved changestream.Position
	deletes := mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "operationType", Value: "delete"}}}}}
	cs, err := changestream.WatchCollection(ctx, orders, deletes,
		changestream.WithMaxAwaitTime(50*time.Millisecond),
		changestream.WithProgress(time.Second, func(p changestream.Progress) {
			saved = p.Position // in production: write it to the checkpoint store
		}))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())

	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})
	for i := 0; i < 20 && saved.IsZero(); i++ {
		cs.TryNext(ctx)
	}
	fmt.Println("position saved:", !saved.IsZero(), "high-water mark:", saved.HighWater)
	// Output:
	// position saved: true high-water mark: true
}

// Stats count what a stream did; export them as metrics.
func ExampleChangeStream_Stats() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")

	cs, err := changestream.WatchCollection(ctx, orders, nil)
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())
	_, _ = orders.InsertMany(ctx, []any{order{ID: 1, Item: "apple"}, order{ID: 2, Item: "pear"}})
	for range 2 {
		cs.Next(ctx)
	}
	s := cs.Stats()
	fmt.Println("events:", s.Events, "resumes:", s.Resumes)
	// Output:
	// events: 2 resumes: 0
}

// Behind is 0 once a stream has read everything the server had; a health
// check can alert when it stays above a bound.
func ExampleChangeStream_Behind() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")

	cs, err := changestream.WatchCollection(ctx, orders, nil,
		changestream.WithBatchSize(1), changestream.WithMaxAwaitTime(50*time.Millisecond))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())
	_, _ = orders.InsertMany(ctx, []any{order{ID: 1, Item: "apple"}, order{ID: 2, Item: "pear"}})
	cs.Next(ctx)
	fmt.Println("behind after one of two:", cs.Behind() > 0)
	cs.Next(ctx)
	cs.TryNext(ctx)
	fmt.Println("behind at the end:", cs.Behind())
	// Output:
	// behind after one of two: true
	// behind at the end: 0s
}
