package hub_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/hub"
	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// exampleColl connects to a fresh simulator; shutdown stops both.
func exampleColl() (*mongo.Collection, func()) {
	sim, err := mongosim.NewServer()
	if err != nil {
		panic(err)
	}
	client, err := mongo.Connect(testclient.Options(sim.URI()))
	if err != nil {
		panic(err)
	}
	return client.Database("shop").Collection("orders"), func() {
		_ = client.Disconnect(context.Background())
		_ = sim.Close()
	}
}

// One stream, two subscribers: one sees everything, the other only
// deletes.
func ExampleNew() {
	orders, shutdown := exampleColl()
	defer shutdown()
	ctx := context.Background()
	cs, err := changestream.WatchCollection(ctx, orders, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	h, err := hub.New(cs) // the hub owns cs now
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close(ctx)

	all, _ := h.Subscribe()
	deletes, _ := h.Subscribe(hub.WithFilter(func(ev bson.Raw) bool {
		return ev.Lookup("operationType").StringValue() == "delete"
	}))
	_, _ = orders.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	_, _ = orders.DeleteOne(ctx, bson.D{{Key: "_id", Value: 1}})

	for range 2 {
		all.Next(ctx)
		fmt.Println("all:", all.Current.Lookup("operationType").StringValue())
	}
	deletes.Next(ctx)
	fmt.Println("deletes:", deletes.Current.Lookup("operationType").StringValue())
	// Output:
	// all: insert
	// all: delete
	// deletes: delete
}

// A subscription that falls behind is dropped with a LaggingError that
// says where it stopped, and the others go on.
func ExampleWithPolicy() {
	orders, shutdown := exampleColl()
	defer shutdown()
	ctx := context.Background()
	cs, _ := changestream.WatchCollection(ctx, orders, nil)
	h, _ := hub.New(cs)
	defer h.Close(ctx)

	slow, _ := h.Subscribe(hub.WithBuffer(1), hub.WithPolicy(hub.Drop))
	steady, _ := h.Subscribe()
	for i := range 3 {
		_, _ = orders.InsertOne(ctx, bson.D{{Key: "_id", Value: i}})
	}
	for range 3 {
		steady.Next(ctx)
	}
	for slow.Next(ctx) {
		fmt.Println("slow got", slow.Current.Lookup("documentKey", "_id").Int32())
	}
	var lag *hub.LaggingError
	fmt.Println("dropped:", errors.As(slow.Err(), &lag), "with", lag.Buffered, "unread")
	// Output:
	// slow got 0
	// dropped: true with 1 unread
}

// A subscription ranges over typed events like a stream.
func ExampleEvents() {
	orders, shutdown := exampleColl()
	defer shutdown()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs, _ := changestream.WatchCollection(ctx, orders, nil)
	h, _ := hub.New(cs)
	defer h.Close(context.Background())
	sub, _ := h.Subscribe()
	defer sub.Close()

	type order struct {
		ID  int32 `bson:"_id"`
		Qty int32 `bson:"qty"`
	}
	_, _ = orders.InsertOne(ctx, order{ID: 7, Qty: 3})
	for ev, err := range hub.Events[order](ctx, sub) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(ev.OperationType, ev.FullDocument.ID, ev.FullDocument.Qty)
		break
	}
	// Output: insert 7 3
}

// A subscriber can filter with a query document, as in a $match stage,
// evaluated in process on each event.
func ExampleWithMatch() {
	orders, shutdown := exampleColl()
	defer shutdown()
	ctx := context.Background()
	cs, _ := changestream.WatchCollection(ctx, orders, nil)
	h, _ := hub.New(cs)
	defer h.Close(ctx)

	acme, err := h.Subscribe(hub.WithMatch(bson.D{
		{Key: "operationType", Value: "insert"},
		{Key: "fullDocument.tenant", Value: "acme"},
		{Key: "fullDocument.total", Value: bson.D{{Key: "$gte", Value: 100}}},
	}))
	if err != nil {
		fmt.Println(err)
		return
	}
	_, _ = orders.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "tenant", Value: "acme"}, {Key: "total", Value: 20}})
	_, _ = orders.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}, {Key: "tenant", Value: "other"}, {Key: "total", Value: 500}})
	_, _ = orders.InsertOne(ctx, bson.D{{Key: "_id", Value: 3}, {Key: "tenant", Value: "acme"}, {Key: "total", Value: 250.5}})
	acme.Next(ctx)
	fmt.Println("acme's large order:", acme.Current.Lookup("documentKey", "_id").Int32())

	_, err = h.Subscribe(hub.WithMatch(bson.D{{Key: "fullDocument.sku", Value: bson.D{{Key: "$regex", Value: "^A"}}}}))
	fmt.Println(err)
	// Output:
	// acme's large order: 3
	// hub: WithMatch: unsupported operator $regex (on fullDocument.sku)
}

// A subscriber that leaves keeps the position of the last event it took,
// and later carries on from there on a stream of its own: a hub serves
// only from its current position.
func ExampleSubscription_Position() {
	orders, shutdown := exampleColl()
	defer shutdown()
	ctx := context.Background()
	cs, _ := changestream.WatchCollection(ctx, orders, nil)
	h, _ := hub.New(cs)
	defer h.Close(ctx)

	sub, _ := h.Subscribe()
	_, _ = orders.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	sub.Next(ctx)
	pos := sub.Position() // saved, say, with the subscriber's session
	_ = sub.Close()

	_, _ = orders.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}}) // while it is away

	own, err := changestream.WatchCollection(ctx, orders, nil, changestream.WithResumeAfter(pos.Token))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer own.Close(ctx)
	own.Next(ctx)
	fmt.Println("carried on at:", own.Current.Lookup("documentKey", "_id").Int32())
	// Output: carried on at: 2
}

// A subscriber that only needs to know that something changed, such as a
// cache to invalidate, keeps one event with Coalesce: the newest replaces
// what it has not read, and TryNext takes it without waiting.
func ExampleSubscription_TryNext() {
	orders, shutdown := exampleColl()
	defer shutdown()
	ctx := context.Background()
	cs, _ := changestream.WatchCollection(ctx, orders, nil)
	h, _ := hub.New(cs)
	defer h.Close(ctx)

	cache, _ := h.Subscribe(hub.WithBuffer(1), hub.WithPolicy(hub.Coalesce))
	steady, _ := h.Subscribe() // after cache: once steady has an event, cache has had it
	for i := range 3 {
		_, _ = orders.InsertOne(ctx, bson.D{{Key: "_id", Value: i}})
	}
	for range 3 {
		steady.Next(ctx)
	}

	for cache.TryNext(ctx) {
		fmt.Println("invalidate after:", cache.Current.Lookup("documentKey", "_id").Int32())
	}
	fmt.Println("nothing more for now:", cache.Err() == nil)
	// Output:
	// invalidate after: 2
	// nothing more for now: true
}

// Closing the hub ends every subscription with ErrClosed, and closes its
// stream.
func ExampleHub_Close() {
	orders, shutdown := exampleColl()
	defer shutdown()
	ctx := context.Background()
	cs, _ := changestream.WatchCollection(ctx, orders, nil)
	h, _ := hub.New(cs)
	sub, _ := h.Subscribe()

	_ = h.Close(ctx)
	fmt.Println("next:", sub.Next(ctx), errors.Is(sub.Err(), hub.ErrClosed))
	_, err := h.Subscribe()
	fmt.Println("subscribe:", errors.Is(err, hub.ErrClosed))
	fmt.Println("stream alive:", cs.Alive())
	// Output:
	// next: false true
	// subscribe: true
	// stream alive: false
}
