package changestream_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// An update event names the namespace and the key of the changed document
// and describes the change; without WithFullDocument it carries no
// document.
func ExampleEvent() {
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
	defer cs.Close(context.Background())

	_, _ = orders.UpdateByID(ctx, int32(1), setQty(4))
	if !cs.Next(ctx) {
		fmt.Println("stream:", cs.Err())
		return
	}
	var ev changestream.Event[order]
	if err := cs.Decode(&ev); err != nil {
		fmt.Println("decode:", err)
		return
	}
	fmt.Println("operation:", ev.OperationType)
	fmt.Printf("namespace: %s.%s\n", ev.Namespace.DB, ev.Namespace.Coll)
	fmt.Println("document key:", ev.DocumentKey.Lookup("_id").Int32())
	fmt.Println("new qty:", ev.UpdateDescription.UpdatedFields.Lookup("qty").Int32())
	fmt.Println("full document:", ev.FullDocument != nil)
	fmt.Println("has resume token:", len(ev.ID) > 0)
	// Output:
	// operation: update
	// namespace: shop.orders
	// document key: 1
	// new qty: 4
	// full document: false
	// has resume token: true
}

// Decode unmarshals the current event into any type the driver can decode
// into: an Event, a struct with only the fields needed, a bson.M... Before
// the first event, and after Close, it fails.
func ExampleChangeStream_Decode() {
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
	fmt.Println("before Next:", cs.Decode(&bson.M{}) != nil)

	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})
	if !cs.Next(ctx) {
		fmt.Println("stream:", cs.Err())
		_ = cs.Close(context.Background())
		return
	}
	var brief struct {
		Op  string `bson:"operationType"`
		Doc struct {
			Item string `bson:"item"`
		} `bson:"fullDocument"`
	}
	if err := cs.Decode(&brief); err != nil {
		fmt.Println("decode:", err)
	}
	fmt.Println(brief.Op, brief.Doc.Item)

	_ = cs.Close(context.Background())
	fmt.Println("after Close:", errors.Is(cs.Decode(&brief), changestream.ErrClosed))
	// Output:
	// before Next: true
	// insert apple
	// after Close: true
}

// An update's description lists the fields set, the fields removed and the
// arrays shortened from their end.
func ExampleUpdateDescription() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")
	_, _ = orders.InsertOne(ctx, bson.D{
		{Key: "_id", Value: int32(1)},
		{Key: "item", Value: "apple"},
		{Key: "qty", Value: int32(3)},
		{Key: "note", Value: "gift"},
		{Key: "tags", Value: bson.A{"red", "fresh", "sale"}},
	})

	cs, err := changestream.WatchCollection(ctx, orders, nil)
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())

	// A pipeline update: the server describes it by diffing the document,
	// so the shortened array is reported as truncated. (An operator such
	// as $pop would report the whole new array in UpdatedFields instead.)
	_, _ = orders.UpdateByID(ctx, int32(1), mongo.Pipeline{
		{{Key: "$set", Value: bson.D{
			{Key: "qty", Value: int32(4)},
			{Key: "tags", Value: bson.D{{Key: "$literal", Value: bson.A{"red", "fresh"}}}},
		}}},
		{{Key: "$unset", Value: "note"}},
	})
	if !cs.Next(ctx) {
		fmt.Println("stream:", cs.Err())
		return
	}
	var ev changestream.Event[bson.Raw]
	if err := cs.Decode(&ev); err != nil {
		fmt.Println("decode:", err)
		return
	}
	ud := ev.UpdateDescription
	fmt.Println("set qty:", ud.UpdatedFields.Lookup("qty").Int32())
	fmt.Println("removed:", ud.RemovedFields)
	for _, ta := range ud.TruncatedArrays {
		fmt.Println("truncated:", ta.Field, "to", ta.NewSize)
	}
	// Output:
	// set qty: 4
	// removed: [note]
	// truncated: tags to 2
}

// A rename event names the collection's old namespace in Namespace and the
// new one in To. A database stream, unlike a stream on the renamed
// collection, goes on after it.
func ExampleNamespace() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shop := client.Database("shop")
	_, _ = shop.Collection("orders").InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})

	cs, err := changestream.WatchDatabase(ctx, shop, nil)
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())

	err = client.Database("admin").RunCommand(ctx, bson.D{
		{Key: "renameCollection", Value: "shop.orders"},
		{Key: "to", Value: "shop.archive"},
	}).Err()
	if err != nil {
		fmt.Println("rename:", err)
		return
	}
	_, _ = shop.Collection("archive").InsertOne(ctx, order{ID: 2, Item: "pear", Qty: 5})

	for range 2 {
		if !cs.Next(ctx) {
			fmt.Println("stream:", cs.Err())
			return
		}
		var ev changestream.Event[order]
		_ = cs.Decode(&ev)
		if ev.To != nil {
			fmt.Printf("%s %s.%s -> %s.%s\n", ev.OperationType, ev.Namespace.DB, ev.Namespace.Coll, ev.To.DB, ev.To.Coll)
		} else {
			fmt.Printf("%s %s.%s\n", ev.OperationType, ev.Namespace.DB, ev.Namespace.Coll)
		}
	}
	// Output:
	// rename shop.orders -> shop.archive
	// insert shop.archive
}

// Dropping a database drops its collections first: a database stream
// reports a drop for each, then dropDatabase, then invalidate, its last
// event.
func ExampleOperationType() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shop := client.Database("shop")

	cs, err := changestream.WatchDatabase(ctx, shop, nil)
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())

	orders := shop.Collection("orders")
	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})
	_, _ = orders.ReplaceOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}, order{ID: 1, Item: "apple", Qty: 5})
	_ = shop.Drop(ctx)

	for cs.Next(ctx) {
		var ev changestream.Event[order]
		_ = cs.Decode(&ev)
		switch ev.OperationType {
		case changestream.OperationInsert, changestream.OperationReplace,
			changestream.OperationUpdate, changestream.OperationDelete:
			fmt.Println(ev.OperationType, "- a document changed")
		case changestream.OperationInvalidate:
			fmt.Println(ev.OperationType, "- the stream ends")
		default:
			fmt.Println(ev.OperationType, "- a namespace changed")
		}
	}
	fmt.Println("err:", cs.Err(), "alive:", cs.Alive())
	// Output:
	// insert - a document changed
	// replace - a document changed
	// drop - a namespace changed
	// dropDatabase - a namespace changed
	// invalidate - the stream ends
	// err: <nil> alive: false
}
