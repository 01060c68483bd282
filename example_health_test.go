package changestream_test

import (
	"context"
	"fmt"
	"time"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Health says what a stream is doing, for a probe: caught up once it has
// read everything, stuck once the application stops calling Next for
// longer than the threshold.
func ExampleChangeStream_Health() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx := context.Background()
	orders := client.Database("shop").Collection("orders")
	cs, _ := changestream.WatchCollection(ctx, orders, nil)
	defer cs.Close(ctx)

	th := changestream.HealthThresholds{Stuck: 100 * time.Millisecond}
	cs.TryNext(ctx)
	fmt.Println(cs.Health(th).State, cs.Health(th).State.Healthy())
	time.Sleep(200 * time.Millisecond) // nobody calls Next
	fmt.Println(cs.Health(th).State, cs.Health(th).State.Healthy())
	// Output:
	// caught-up true
	// stuck false
}

// Headroom tells how much history a saved position has left before the
// oplog overtakes it: well before a resume from it would fail with
// ErrHistoryLost.
func ExampleHeadroom() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx := context.Background()
	orders := client.Database("shop").Collection("orders")
	cs, _ := changestream.WatchCollection(ctx, orders, nil)
	defer cs.Close(ctx)
	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})
	cs.Next(ctx)

	h, err := changestream.Headroom(ctx, client, cs.Position())
	if err != nil {
		fmt.Println(err)
		return
	}
	if h.Known && !h.Lost && h.Margin < h.Window/4 {
		fmt.Println("warning: the position is in the oldest quarter of the history")
	}
	fmt.Println("known:", h.Known, "lost:", h.Lost, "set:", h.Source)
	// Output:
	// known: true lost: false set: rs0
}

// HeadroomOf measures a position on every shard of a sharded cluster,
// with a client of each shard's replica set, and returns the least: the
// shard that would lose the position first.
func ExampleHeadroomOf() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx := context.Background()
	orders := client.Database("shop").Collection("orders")
	cs, _ := changestream.WatchCollection(ctx, orders, nil)
	defer cs.Close(ctx)
	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})
	cs.Next(ctx)

	// Here the one replica set stands in for the shards.
	h, _ := changestream.HeadroomOf(ctx, []*mongo.Client{client}, cs.Position())
	fmt.Println("known:", h.Known, "least on:", h.Source)
	// Output:
	// known: true least on: rs0
}
