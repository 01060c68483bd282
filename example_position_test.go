package changestream_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// A position says where a new stream carries on, and what its token is:
// before any event, a high-water mark at the time the stream opened; after
// an event, that event's place.
func ExampleChangeStream_Position() {
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
	fmt.Println("before any event, a high-water mark:", cs.Position().HighWater)

	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})
	if !cs.Next(ctx) {
		fmt.Println("stream:", cs.Err())
		return
	}
	var ev changestream.Event[order]
	_ = cs.Decode(&ev)
	p := cs.Position()
	fmt.Println("at the event's time:", p.ClusterTime == ev.ClusterTime)
	// Save p.Token; reopen later with changestream.WithResumeAfter(p.Token).
	// Output:
	// before any event, a high-water mark: true
	// at the event's time: true
}

// TokenTime reads the cluster time out of a saved token without a server,
// for example to tell how old a checkpoint is.
func ExampleTokenTime() {
	token, _ := bson.Marshal(bson.D{{Key: "_data", Value: "8265A5B2C5000000072B0429296E04"}})
	ts, ok := changestream.TokenTime(token)
	fmt.Println(ok, ts.T, ts.I)
	fmt.Println(time.Unix(int64(ts.T), 0).UTC().Format(time.RFC3339))
	// Output:
	// true 1705358021 7
	// 2024-01-15T22:33:41Z
}

// A token whose event the server cannot find (here one of another
// collection) is an unresumable position: the stream cannot carry on from
// it, though the history may still be there.
func ExampleUnresumablePositionError() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shop := client.Database("shop")
	orders, invoices := shop.Collection("orders"), shop.Collection("invoices")

	cs, err := changestream.WatchCollection(ctx, invoices, nil)
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	_, _ = invoices.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	if !cs.Next(ctx) {
		fmt.Println("stream:", cs.Err())
		return
	}
	wrong := cs.ResumeToken()
	_ = cs.Close(context.Background())
	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})

	_, err = changestream.WatchCollection(ctx, orders, nil, changestream.WithResumeAfter(wrong))
	fmt.Println("unresumable:", errors.Is(err, changestream.ErrUnresumablePosition))
	fmt.Println("history lost:", errors.Is(err, changestream.ErrHistoryLost))
	var up *changestream.UnresumablePositionError
	if errors.As(err, &up) {
		fmt.Println("server code:", up.Code, "option:", up.Option)
	}
	// Output:
	// unresumable: true
	// history lost: false
	// server code: 280 option: resumeAfter
}

// DecodeToken reads what a resume token says, without a server: here the
// token the MongoDB manual gives as its example.
func ExampleDecodeToken() {
	token, _ := bson.Marshal(bson.D{{Key: "_data", Value: "82635019A0000000012B042C0100296E5A1004AB1154ACACD849A48C61756D70D3B21F" +
		"463C6F7065726174696F6E54797065003C696E736572740046646F63756D656E744B65790046645F69640064635019A078BE67426D7CF4D2000004"}})
	info, err := changestream.DecodeToken(token)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(info.ClusterTime, "version", info.Version, "high-water mark:", info.HighWater)
	fmt.Println(info.EventIdentifier[0].Value, info.EventIdentifier[1].Value)
	// Output:
	// {1666193824 1} version 2 high-water mark: false
	// insert {"_id":{"$oid":"635019a078be67426d7cf4d2"}}
}
