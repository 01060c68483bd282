package changestream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// exampleServer is exampleClient for the examples that also need the
// simulator itself: to start it with options, inject a fault, or read its
// command log. shutdown disconnects the client and stops the simulator.
func exampleServer(opts ...mongosim.Option) (client *mongo.Client, sim *mongosim.Server, shutdown func()) {
	sim, err := mongosim.NewServer(opts...)
	if err != nil {
		panic(err)
	}
	client, err = mongo.Connect(testclient.Options(sim.URI()))
	if err != nil {
		_ = sim.Close()
		panic(err)
	}
	return client, sim, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = client.Disconnect(ctx)
		_ = sim.Close()
	}
}

// A stream cannot start from a point the server's oplog no longer holds.
// The error matches ErrHistoryLost, and as a *HistoryLostError it names the
// point; the server's own error stays reachable. Here the simulator keeps
// only the two newest oplog entries, so the token of the first of four
// inserts is soon too old, as on a server whose oplog has rolled over while
// the consumer was down.
func ExampleHistoryLostError() {
	client, _, shutdown := exampleServer(mongosim.WithOplogMax(2))
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")

	cs, err := changestream.WatchCollection(ctx, orders, nil)
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})
	if !cs.Next(ctx) {
		fmt.Println("stream:", cs.Err())
		_ = cs.Close(context.Background())
		return
	}
	saved := cs.ResumeToken()
	_ = cs.Close(context.Background())

	// While the consumer is down, more writes than the oplog holds.
	_, _ = orders.InsertMany(ctx, []any{
		order{ID: 2, Item: "pear", Qty: 5},
		order{ID: 3, Item: "plum", Qty: 2},
		order{ID: 4, Item: "fig", Qty: 9},
	})

	_, err = changestream.WatchCollection(ctx, orders, nil, changestream.WithResumeAfter(saved))
	fmt.Println("history lost:", errors.Is(err, changestream.ErrHistoryLost))
	var hl *changestream.HistoryLostError
	if errors.As(err, &hl) {
		fmt.Println("lost after the saved token:", bytes.Equal(hl.ResumeToken, saved))
	}
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		fmt.Println("server error:", ce.Code, ce.Name)
	}
	// The events are gone: re-read the collection, then watch from now on.
	// Output:
	// history lost: true
	// lost after the saved token: true
	// server error: 286 ChangeStreamHistoryLost
}

// Err tells apart the reasons Next returned false. A deadline leaves the
// stream alive; an error the stream cannot resume from ends it. Here the
// simulator forgets the stream's cursor and every oplog entry but the
// newest, so the resume that follows fails with history lost.
func ExampleChangeStream_Err() {
	client, sim, shutdown := exampleServer()
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

	callCtx, callCancel := context.WithTimeout(ctx, 100*time.Millisecond)
	got := cs.Next(callCtx)
	callCancel()
	fmt.Println("next:", got, "deadline:", errors.Is(cs.Err(), context.DeadlineExceeded), "alive:", cs.Alive())

	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})
	got = cs.Next(ctx)
	fmt.Println("next:", got, "err:", cs.Err(), "alive:", cs.Alive())

	_, _ = orders.InsertMany(ctx, []any{
		order{ID: 2, Item: "pear", Qty: 5},
		order{ID: 3, Item: "plum", Qty: 2},
	})
	sim.TruncateOplog()  // only the plum's insert is left
	sim.KillAllCursors() // the next getMore fails: the stream resumes
	got = cs.Next(ctx)
	fmt.Println("next:", got, "history lost:", errors.Is(cs.Err(), changestream.ErrHistoryLost), "alive:", cs.Alive())
	// Output:
	// next: false deadline: true alive: true
	// next: true err: <nil> alive: true
	// next: false history lost: true alive: false
}

// Close may be called from any goroutine: a Next waiting for events in
// another returns false at once, and Err is ErrClosed.
func ExampleChangeStream_Close() {
	client, sim, shutdown := exampleServer()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")

	// The server would hold each empty getMore for a minute.
	cs, err := changestream.WatchCollection(ctx, orders, nil, changestream.WithMaxAwaitTime(time.Minute))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}

	done := make(chan bool)
	go func() { done <- cs.Next(context.Background()) }()

	// Wait until Next waits on the server (the simulator can tell).
	for sim.AwaitingGetMores() != 1 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	_ = cs.Close(context.Background())
	got := <-done

	fmt.Println("next:", got)
	fmt.Println("closed:", errors.Is(cs.Err(), changestream.ErrClosed))
	fmt.Println("alive:", cs.Alive())
	// Output:
	// next: false
	// closed: true
	// alive: false
}

// Alive tells whether a false Next ended the stream. After a deadline it
// has not; after the invalidate event (the collection was dropped) it has,
// with a nil Err.
func ExampleChangeStream_Alive() {
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

	callCtx, callCancel := context.WithTimeout(ctx, 100*time.Millisecond)
	got := cs.Next(callCtx)
	callCancel()
	fmt.Println("next:", got, "deadline:", errors.Is(cs.Err(), context.DeadlineExceeded), "alive:", cs.Alive())

	_ = orders.Drop(ctx)
	for cs.Next(ctx) {
		var ev changestream.Event[bson.Raw]
		_ = cs.Decode(&ev)
		fmt.Println(ev.OperationType)
	}
	fmt.Println("err:", cs.Err(), "alive:", cs.Alive())
	// Output:
	// next: false deadline: true alive: true
	// drop
	// invalidate
	// err: <nil> alive: false
}

// ID is the server cursor's id while the stream holds one, and 0 once it
// has ended or been closed.
func ExampleChangeStream_ID() {
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
	fmt.Println("open cursor:", cs.ID() != 0)
	_ = cs.Close(context.Background())
	fmt.Println("open cursor:", cs.ID() != 0)
	// Output:
	// open cursor: true
	// open cursor: false
}
