package changestream_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
)

// setQty is the update document that sets an order's quantity.
func setQty(qty int32) bson.D {
	return bson.D{{Key: "$set", Value: bson.D{{Key: "qty", Value: qty}}}}
}

// With updateLookup, update events carry the document as it is when the
// server reads the event; without it they carry only the change.
func ExampleWithFullDocument() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")

	cs, err := changestream.WatchCollection(ctx, orders, nil,
		changestream.WithFullDocument(changestream.FullDocumentUpdateLookup))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())

	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})
	_, _ = orders.UpdateByID(ctx, int32(1), setQty(4))

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
	// update apple 4
}

// Pre-images (and post-images) exist only for a collection that records
// them: here it is created with changeStreamPreAndPostImages enabled. The
// "required" mode makes a missing pre-image a server error rather than a
// missing field.
func ExampleWithFullDocumentBeforeChange() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shop := client.Database("shop")

	err := shop.RunCommand(ctx, bson.D{
		{Key: "create", Value: "orders"},
		{Key: "changeStreamPreAndPostImages", Value: bson.D{{Key: "enabled", Value: true}}},
	}).Err()
	if err != nil {
		fmt.Println("create:", err)
		return
	}
	orders := shop.Collection("orders")
	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})

	cs, err := changestream.WatchCollection(ctx, orders, nil,
		changestream.WithFullDocumentBeforeChange(changestream.FullDocumentBeforeChangeRequired),
		changestream.WithFullDocument(changestream.FullDocumentWhenAvailable))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())

	_, _ = orders.UpdateByID(ctx, int32(1), setQty(4))
	_, _ = orders.DeleteOne(ctx, bson.D{{Key: "_id", Value: int32(1)}})

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
		before := ev.FullDocumentBeforeChange
		switch ev.OperationType {
		case changestream.OperationUpdate:
			fmt.Printf("update %s: qty %d -> %d\n", before.Item, before.Qty, ev.FullDocument.Qty)
		case changestream.OperationDelete:
			fmt.Printf("delete %s: qty was %d; post-image: %v\n", before.Item, before.Qty, ev.FullDocument != nil)
		}
	}
	// Output:
	// update apple: qty 3 -> 4
	// delete apple: qty was 4; post-image: false
}

// A dropped collection invalidates its streams. WithStartAfter takes the
// invalidate event's token, which WithResumeAfter refuses, and opens a
// stream that sees the collection created again under the same name.
func ExampleWithStartAfter() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")
	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})

	cs, err := changestream.WatchCollection(ctx, orders, nil)
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	_ = orders.Drop(ctx)
	for cs.Next(ctx) {
		var ev changestream.Event[order]
		_ = cs.Decode(&ev)
		fmt.Println(ev.OperationType)
	}
	if err := cs.Err(); err != nil {
		fmt.Println("stream:", err)
		_ = cs.Close(context.Background())
		return
	}
	// The stream ended at the invalidate event; its token is the last one.
	invalidated := cs.ResumeToken()
	_ = cs.Close(context.Background())

	cs, err = changestream.WatchCollection(ctx, orders, nil, changestream.WithStartAfter(invalidated))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())
	_, _ = orders.InsertOne(ctx, order{ID: 2, Item: "pear", Qty: 5})
	if !cs.Next(ctx) {
		fmt.Println("stream:", cs.Err())
		return
	}
	var ev changestream.Event[order]
	_ = cs.Decode(&ev)
	fmt.Println(ev.OperationType, ev.FullDocument.Item)
	// Output:
	// drop
	// invalidate
	// insert pear
}

// A consumer that saves the token of each event it has finished with
// loses nothing when it stops: the events that arrive while it is down wait
// in the oplog, and WithResumeAfter picks up right after the saved token.
func ExampleWithResumeAfter() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")

	var saved bson.Raw // in production: a file or a database row
	consume := func(n int, opts ...changestream.Option) {
		cs, err := changestream.WatchCollection(ctx, orders, nil, opts...)
		if err != nil {
			fmt.Println("watch:", err)
			return
		}
		defer cs.Close(context.Background())
		if n == 2 { // the first run: its events are inserted once it watches
			_, _ = orders.InsertMany(ctx, []any{
				order{ID: 1, Item: "apple", Qty: 3},
				order{ID: 2, Item: "pear", Qty: 5},
			})
		}
		for range n {
			if !cs.Next(ctx) {
				fmt.Println("stream:", cs.Err())
				return
			}
			var ev changestream.Event[order]
			_ = cs.Decode(&ev)
			fmt.Println("processed", ev.FullDocument.Item)
			saved = cs.ResumeToken()
		}
	}

	consume(2)
	// The consumer is down while two more orders arrive.
	_, _ = orders.InsertMany(ctx, []any{
		order{ID: 3, Item: "plum", Qty: 2},
		order{ID: 4, Item: "fig", Qty: 9},
	})
	consume(2, changestream.WithResumeAfter(saved))
	// Output:
	// processed apple
	// processed pear
	// processed plum
	// processed fig
}

// WithStartAtOperationTime replays the changes made since a cluster time,
// here the operation time of a write, which a session reports.
func ExampleWithStartAtOperationTime() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")

	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})
	sess, err := client.StartSession()
	if err != nil {
		fmt.Println("session:", err)
		return
	}
	_, _ = orders.InsertOne(mongo.NewSessionContext(ctx, sess), order{ID: 2, Item: "pear", Qty: 5})
	since := *sess.OperationTime() // the time of the pear's insert
	sess.EndSession(ctx)
	_, _ = orders.InsertOne(ctx, order{ID: 3, Item: "plum", Qty: 2})

	// The stream opens after all three inserts, and returns the changes
	// made at or after since.
	cs, err := changestream.WatchCollection(ctx, orders, nil, changestream.WithStartAtOperationTime(since))
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
		var ev changestream.Event[order]
		_ = cs.Decode(&ev)
		fmt.Println(ev.OperationType, ev.FullDocument.Item)
	}
	// Output:
	// insert pear
	// insert plum
}

// A loop that must also do other work gives each Next a short deadline. A
// deadline costs neither the stream nor an event: Next returns false, Err
// wraps context.DeadlineExceeded, Alive stays true, and the next call
// carries on. WithMaxAwaitTime sets how long the server holds each empty
// getMore; the stream shortens it to fit a call's deadline.
func ExampleWithMaxAwaitTime() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")

	cs, err := changestream.WatchCollection(ctx, orders, nil, changestream.WithMaxAwaitTime(50*time.Millisecond))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())

	// next waits for one event for at most 100ms.
	next := func() bool {
		callCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		return cs.Next(callCtx)
	}

	idle := false
	for seen := 0; seen < 2 && ctx.Err() == nil; {
		if next() {
			var ev changestream.Event[order]
			_ = cs.Decode(&ev)
			fmt.Println(ev.OperationType, ev.FullDocument.Item)
			seen++
			continue
		}
		if !errors.Is(cs.Err(), context.DeadlineExceeded) || !cs.Alive() {
			fmt.Println("stream:", cs.Err())
			return
		}
		// No event in time: do the other work, then wait again.
		if !idle {
			idle = true
			fmt.Println("no event yet; alive:", cs.Alive())
			_, _ = orders.InsertMany(ctx, []any{
				order{ID: 1, Item: "apple", Qty: 3},
				order{ID: 2, Item: "pear", Qty: 5},
			})
		}
	}
	// Output:
	// no event yet; alive: true
	// insert apple
	// insert pear
}

// WithBatchSize bounds the events of each reply; RemainingBatchLength says
// how many of the current batch Next returns without asking the server.
func ExampleWithBatchSize() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")

	cs, err := changestream.WatchCollection(ctx, orders, nil, changestream.WithBatchSize(2))
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
	for range 3 {
		if !cs.Next(ctx) {
			fmt.Println("stream:", cs.Err())
			return
		}
		var ev changestream.Event[order]
		_ = cs.Decode(&ev)
		fmt.Println(ev.FullDocument.Item, "- left in batch:", cs.RemainingBatchLength())
	}
	// Output:
	// apple - left in batch: 1
	// pear - left in batch: 0
	// plum - left in batch: 0
}

// With showExpandedEvents a stream also reports DDL events, such as the
// creation of a collection or an index, and their collection's UUID.
func ExampleWithShowExpandedEvents() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shop := client.Database("shop")

	cs, err := changestream.WatchDatabase(ctx, shop, nil, changestream.WithShowExpandedEvents(true))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())

	if err := shop.CreateCollection(ctx, "orders"); err != nil {
		fmt.Println("create:", err)
		return
	}
	orders := shop.Collection("orders")
	_, _ = orders.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "item", Value: 1}}})
	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})

	for range 3 {
		if !cs.Next(ctx) {
			fmt.Println("stream:", cs.Err())
			return
		}
		var ev changestream.Event[order]
		_ = cs.Decode(&ev)
		fmt.Println(ev.OperationType, ev.Namespace.Coll, "- collection UUID:", ev.CollectionUUID != nil)
	}
	// Output:
	// create orders - collection UUID: true
	// createIndexes orders - collection UUID: true
	// insert orders - collection UUID: true
}

// The comment goes with the aggregate and every getMore, so the stream's
// commands can be told apart in the server's logs and profiler. Here the
// simulator's command log stands in for them.
func ExampleWithComment() {
	client, sim, shutdown := exampleServer()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")

	cs, err := changestream.WatchCollection(ctx, orders, nil, changestream.WithComment("order-sync"))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())
	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})
	if !cs.Next(ctx) {
		fmt.Println("stream:", cs.Err())
		return
	}

	printed := map[string]bool{}
	for _, cmd := range sim.Commands() {
		comment, ok := cmd.Body.Lookup("comment").StringValueOK()
		if ok && !printed[cmd.Name] {
			printed[cmd.Name] = true
			fmt.Println(cmd.Name, comment)
		}
	}
	// Output:
	// aggregate order-sync
	// getMore order-sync
}

// The collation applies to the string comparisons of the pipeline's
// stages; without it the stream uses the collection's default collation.
// Here the simple collation makes the $match compare bytes, so "apple"
// matches exactly "apple", whatever case-insensitive default the
// collection was created with. (The embedded simulator implements only
// the simple collation and refuses others; a server applies any.)
func ExampleWithCollation() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")

	apples := mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "fullDocument.item", Value: "apple"}}}}}
	cs, err := changestream.WatchCollection(ctx, orders, apples,
		changestream.WithCollation(&options.Collation{Locale: "simple"}))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())

	_, _ = orders.InsertMany(ctx, []any{
		order{ID: 1, Item: "apple", Qty: 3},
		order{ID: 2, Item: "APPLE", Qty: 5},
		order{ID: 3, Item: "apple", Qty: 2},
	})
	for range 2 {
		if !cs.Next(ctx) {
			fmt.Println("stream:", cs.Err())
			return
		}
		var ev changestream.Event[order]
		_ = cs.Decode(&ev)
		fmt.Println(ev.FullDocument.ID, ev.FullDocument.Item)
	}
	// Output:
	// 1 apple
	// 3 apple
}

// A stream does not inherit the client's or the collection's read
// preference: pass it. The stream selects a server with it when it opens
// and every time it resumes.
func ExampleWithReadPreference() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")

	cs, err := changestream.WatchCollection(ctx, orders, nil,
		changestream.WithReadPreference(readpref.PrimaryPreferred()))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())

	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})
	if !cs.Next(ctx) {
		fmt.Println("stream:", cs.Err())
		return
	}
	var ev changestream.Event[order]
	_ = cs.Decode(&ev)
	fmt.Println(ev.OperationType, ev.FullDocument.Item)
	// Output:
	// insert apple
}

// As with the read preference, a stream does not inherit a read concern:
// pass it.
func ExampleWithReadConcern() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")

	cs, err := changestream.WatchCollection(ctx, orders, nil,
		changestream.WithReadConcern(readconcern.Majority()))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())

	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})
	if !cs.Next(ctx) {
		fmt.Println("stream:", cs.Err())
		return
	}
	var ev changestream.Event[order]
	_ = cs.Decode(&ev)
	fmt.Println(ev.OperationType, ev.FullDocument.Item)
	// Output:
	// insert apple
}

// Options are values: a caller can build the list as its configuration
// says. Options the package can check fail before any command is sent; the
// server checks the rest.
func ExampleOption() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")

	var savedToken bson.Raw // none yet: a first run
	opts := []changestream.Option{
		changestream.WithFullDocument(changestream.FullDocumentUpdateLookup),
		changestream.WithBatchSize(100),
	}
	if savedToken != nil {
		opts = append(opts, changestream.WithResumeAfter(savedToken))
	}
	cs, err := changestream.WatchCollection(ctx, orders, nil, opts...)
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	fmt.Println("opened; alive:", cs.Alive())
	_ = cs.Close(context.Background())

	_, err = changestream.WatchCollection(ctx, orders, nil, changestream.WithBatchSize(-1))
	fmt.Println(err)
	// Output:
	// opened; alive: true
	// changestream: invalid options: WithBatchSize: -1 is negative
}

// The same update, seen by two streams: in the default mode the event
// carries only the change; with updateLookup it also carries the document.
func ExampleFullDocument() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")
	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})

	var streams []*changestream.ChangeStream
	for _, mode := range []changestream.FullDocument{changestream.FullDocumentDefault, changestream.FullDocumentUpdateLookup} {
		cs, err := changestream.WatchCollection(ctx, orders, nil, changestream.WithFullDocument(mode))
		if err != nil {
			fmt.Println("watch:", err)
			return
		}
		defer cs.Close(context.Background())
		streams = append(streams, cs)
	}

	_, _ = orders.UpdateByID(ctx, int32(1), setQty(4))
	for _, cs := range streams {
		if !cs.Next(ctx) {
			fmt.Println("stream:", cs.Err())
			return
		}
		var ev changestream.Event[order]
		_ = cs.Decode(&ev)
		if ev.FullDocument == nil {
			fmt.Println(ev.OperationType, "- no document; qty set to", ev.UpdateDescription.UpdatedFields.Lookup("qty").Int32())
		} else {
			fmt.Println(ev.OperationType, "- document:", ev.FullDocument.Item, ev.FullDocument.Qty)
		}
	}
	// Output:
	// update - no document; qty set to 4
	// update - document: apple 4
}

// On a collection that does not record pre-images, whenAvailable leaves
// the pre-image out, and required makes the event an error that ends the
// stream.
func ExampleFullDocumentBeforeChange() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")
	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})

	var streams []*changestream.ChangeStream
	for _, mode := range []changestream.FullDocumentBeforeChange{
		changestream.FullDocumentBeforeChangeWhenAvailable,
		changestream.FullDocumentBeforeChangeRequired,
	} {
		cs, err := changestream.WatchCollection(ctx, orders, nil, changestream.WithFullDocumentBeforeChange(mode))
		if err != nil {
			fmt.Println("watch:", err)
			return
		}
		defer cs.Close(context.Background())
		streams = append(streams, cs)
	}

	_, _ = orders.UpdateByID(ctx, int32(1), setQty(4))
	for _, cs := range streams {
		if !cs.Next(ctx) {
			fmt.Println("failed:", cs.Err() != nil, "alive:", cs.Alive())
			continue
		}
		var ev changestream.Event[order]
		_ = cs.Decode(&ev)
		fmt.Println(ev.OperationType, "- pre-image:", ev.FullDocumentBeforeChange != nil)
	}
	// Output:
	// update - pre-image: false
	// failed: true alive: false
}

// A stream whose calls carry no deadline is bounded per call by its
// client's timeoutMS, if the client has one; WithTimeout sets a bound of
// the stream's own: here an idle stream's Next gives up after 100 ms and
// the stream carries on.
func ExampleWithTimeout() {
	client, shutdown := exampleClient()
	defer shutdown()
	orders := client.Database("shop").Collection("orders")

	cs, err := changestream.WatchCollection(context.Background(), orders, nil,
		changestream.WithTimeout(100*time.Millisecond))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())
	ok := cs.Next(context.Background())
	fmt.Println("event:", ok, "timed out:", errors.Is(cs.Err(), context.DeadlineExceeded), "alive:", cs.Alive())
	// Output:
	// event: false timed out: true alive: true
}
