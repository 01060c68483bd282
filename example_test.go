package changestream_test

import (
	"context"
	"fmt"
	"time"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// order is the document type of the examples.
type order struct {
	ID   int32  `bson:"_id"`
	Item string `bson:"item"`
	Qty  int32  `bson:"qty"`
}

// exampleClient starts an in-process simulator and connects to it, so that
// the examples run, and their output is checked, without a MongoDB server.
// An application gets its client from mongo.Connect with its own URI
// instead. shutdown disconnects the client and stops the simulator.
func exampleClient() (client *mongo.Client, shutdown func()) {
	client, _, shutdown = exampleServer()
	return client, shutdown
}

func ExampleWatchCollection() {
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

	// The stream sees changes made after it opened.
	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})
	_, _ = orders.InsertOne(ctx, order{ID: 2, Item: "pear", Qty: 5})

	for range 2 {
		if !cs.Next(ctx) {
			fmt.Println("stream:", cs.Err())
			return
		}
		var ev changestream.Event[order]
		if err := cs.Decode(&ev); err != nil {
			fmt.Println("decode:", err)
			return
		}
		fmt.Println(ev.OperationType, ev.FullDocument.Item, ev.FullDocument.Qty)
	}
	// Output:
	// insert apple 3
	// insert pear 5
}

func ExampleWatchDatabase() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shop := client.Database("shop")

	// One stream for every collection of the database.
	cs, err := changestream.WatchDatabase(ctx, shop, nil)
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())

	_, _ = shop.Collection("orders").InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})
	_, _ = shop.Collection("returns").InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 1})

	for range 2 {
		if !cs.Next(ctx) {
			fmt.Println("stream:", cs.Err())
			return
		}
		var ev changestream.Event[order]
		if err := cs.Decode(&ev); err != nil {
			fmt.Println("decode:", err)
			return
		}
		fmt.Println(ev.Namespace.Coll, ev.OperationType, ev.FullDocument.Item, ev.FullDocument.Qty)
	}
	// Output:
	// orders insert apple 3
	// returns insert apple 1
}

func ExampleWatchCluster() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// One stream for every database of the deployment (but admin, config
	// and local).
	cs, err := changestream.WatchCluster(ctx, client, nil)
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())

	_, _ = client.Database("shop").Collection("orders").InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})
	_, _ = client.Database("billing").Collection("invoices").InsertOne(ctx, order{ID: 7, Item: "apple", Qty: 3})

	for range 2 {
		if !cs.Next(ctx) {
			fmt.Println("stream:", cs.Err())
			return
		}
		var ev changestream.Event[order]
		if err := cs.Decode(&ev); err != nil {
			fmt.Println("decode:", err)
			return
		}
		fmt.Printf("%s.%s %s %d\n", ev.Namespace.DB, ev.Namespace.Coll, ev.OperationType, ev.FullDocument.ID)
	}
	// Output:
	// shop.orders insert 1
	// billing.invoices insert 7
}

// The Next loop runs until the stream ends, here because the collection is
// dropped: the drop event comes first, then invalidate, and then Next
// returns false with a nil Err. A loop that runs for good would give each
// call a deadline, and go on after one ends while cs.Alive() holds.
func ExampleChangeStream_Next() {
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

	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})
	_, _ = orders.UpdateByID(ctx, int32(1), bson.D{{Key: "$set", Value: bson.D{{Key: "qty", Value: int32(4)}}}})
	_, _ = orders.DeleteOne(ctx, bson.D{{Key: "_id", Value: int32(1)}})
	_ = orders.Drop(ctx)

	for cs.Next(ctx) {
		var ev changestream.Event[order]
		if err := cs.Decode(&ev); err != nil {
			fmt.Println("decode:", err)
			return
		}
		switch ev.OperationType {
		case changestream.OperationInsert:
			fmt.Println(ev.OperationType, ev.FullDocument.Item, ev.FullDocument.Qty)
		case changestream.OperationUpdate:
			fmt.Println(ev.OperationType, "qty", ev.UpdateDescription.UpdatedFields.Lookup("qty").Int32())
		case changestream.OperationDelete:
			fmt.Println(ev.OperationType, ev.DocumentKey.Lookup("_id").Int32())
		default:
			fmt.Println(ev.OperationType)
		}
	}
	if err := cs.Err(); err != nil {
		fmt.Println("stream:", err)
		return
	}
	fmt.Println("invalidated; alive:", cs.Alive())
	// Output:
	// insert apple 3
	// update qty 4
	// delete 1
	// drop
	// invalidate
	// invalidated; alive: false
}

// TryNext never waits for events beyond one getMore, so a loop that has
// other work to do between events can poll with it. A false return with a
// nil Err on a live stream means "nothing yet".
func ExampleChangeStream_TryNext() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")

	// The max await time bounds how long the server holds an empty getMore.
	cs, err := changestream.WatchCollection(ctx, orders, nil, changestream.WithMaxAwaitTime(100*time.Millisecond))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())

	_, _ = orders.InsertMany(ctx, []any{
		order{ID: 1, Item: "apple", Qty: 3},
		order{ID: 2, Item: "pear", Qty: 5},
		order{ID: 3, Item: "plum", Qty: 2},
	})

	for seen := 0; seen < 3; {
		if cs.TryNext(ctx) {
			var ev changestream.Event[order]
			if err := cs.Decode(&ev); err != nil {
				fmt.Println("decode:", err)
				return
			}
			fmt.Println(ev.OperationType, ev.FullDocument.Item)
			seen++
			continue
		}
		if err := cs.Err(); err != nil {
			fmt.Println("stream:", err)
			return
		}
		if !cs.Alive() {
			fmt.Println("stream ended")
			return
		}
		// Nothing yet: other work would go here.
	}
	if !cs.TryNext(ctx) && cs.Err() == nil && cs.Alive() {
		fmt.Println("caught up: no event waiting")
	}
	// Output:
	// insert apple
	// insert pear
	// insert plum
	// caught up: no event waiting
}

func ExampleEvents() {
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

	_, _ = orders.InsertMany(ctx, []any{
		order{ID: 1, Item: "apple", Qty: 3},
		order{ID: 2, Item: "pear", Qty: 5},
	})

	// Events yields decoded events; a stream error ends the loop with a
	// non-nil err. Breaking out leaves the stream open.
	n := 0
	for ev, err := range changestream.Events[order](ctx, cs) {
		if err != nil {
			fmt.Println("stream:", err)
			break
		}
		fmt.Println(ev.OperationType, ev.FullDocument.ID, ev.FullDocument.Item)
		if n++; n == 2 {
			break
		}
	}
	// Output:
	// insert 1 apple
	// insert 2 pear
}

// A consumer that must not miss events saves the resume token once it has
// finished with an event, and reopens the stream after that token when it
// restarts.
func ExampleChangeStream_ResumeToken() {
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
	_, _ = orders.InsertMany(ctx, []any{
		order{ID: 1, Item: "apple", Qty: 3},
		order{ID: 2, Item: "pear", Qty: 5},
		order{ID: 3, Item: "plum", Qty: 2},
	})
	if !cs.Next(ctx) {
		fmt.Println("stream:", cs.Err())
		_ = cs.Close(context.Background())
		return
	}
	var ev changestream.Event[order]
	_ = cs.Decode(&ev)
	fmt.Println("processed", ev.FullDocument.Item)

	// The token is opaque BSON; store its bytes (a file, a database row).
	saved := []byte(cs.ResumeToken())
	_ = cs.Close(context.Background())

	// Later, perhaps in another process: carry on after the saved token.
	cs, err = changestream.WatchCollection(ctx, orders, nil, changestream.WithResumeAfter(bson.Raw(saved)))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())
	for range 2 {
		if !cs.Next(ctx) {
			fmt.Println("stream:", cs.Err())
			return
		}
		_ = cs.Decode(&ev)
		fmt.Println("processed", ev.FullDocument.Item)
	}
	// Output:
	// processed apple
	// processed pear
	// processed plum
}
