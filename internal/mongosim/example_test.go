package mongosim_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// connect starts a simulator with opts and connects the driver to it.
// shutdown disconnects the client and stops the simulator.
func connect(opts ...mongosim.Option) (sim *mongosim.Server, client *mongo.Client, shutdown func()) {
	sim, err := mongosim.NewServer(opts...)
	if err != nil {
		panic(err)
	}
	client, err = mongo.Connect(testclient.Options(sim.URI()))
	if err != nil {
		_ = sim.Close()
		panic(err)
	}
	return sim, client, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = client.Disconnect(ctx)
		_ = sim.Close()
	}
}

func ExampleNewServer() {
	sim, err := mongosim.NewServer()
	if err != nil {
		fmt.Println("start:", err)
		return
	}
	defer sim.Close()

	client, err := mongo.Connect(testclient.Options(sim.URI()))
	if err != nil {
		fmt.Println("connect:", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer client.Disconnect(ctx)

	if err := client.Ping(ctx, nil); err != nil {
		fmt.Println("ping:", err)
		return
	}
	fmt.Println("ok")
	// Output:
	// ok
}

// The driver's change stream resumes after a network error: the stream
// goes on as if nothing had happened.
func ExampleServer_CloseClientConnections() {
	sim, client, shutdown := connect()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	coll := client.Database("shop").Collection("orders")

	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	_, _ = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	_, _ = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}})

	sim.CloseClientConnections() // the stream's next getMore fails
	for range 2 {
		if !cs.Next(ctx) {
			// The driver's Watch resumes once, and that attempt can meet
			// the pool the driver clears after a network error: then the
			// stream is over, and the application reopens it from its
			// resume token, as after any real network failure.
			token := cs.ResumeToken()
			_ = cs.Close(ctx)
			if cs, err = coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(token)); err != nil || !cs.Next(ctx) {
				fmt.Println("reopened stream:", err)
				return
			}
		}
		fmt.Println(cs.Current.Lookup("operationType").StringValue(), cs.Current.Lookup("documentKey", "_id").Int32())
	}
	_ = cs.Close(context.Background())
	// Output:
	// insert 1
	// insert 2
}

// A cursor the server has forgotten fails its next getMore with
// CursorNotFound, as after a failover or a cursor timeout.
func ExampleServer_KillAllCursors() {
	sim, client, shutdown := connect()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	coll := client.Database("shop").Collection("orders")
	_, _ = coll.InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: 1}},
		bson.D{{Key: "_id", Value: 2}},
		bson.D{{Key: "_id", Value: 3}},
	})

	cur, err := coll.Find(ctx, bson.D{}, options.Find().SetBatchSize(1))
	if err != nil {
		fmt.Println("find:", err)
		return
	}
	defer cur.Close(context.Background())
	fmt.Println("first:", cur.Next(ctx), "open cursors:", sim.OpenCursors())

	sim.KillAllCursors()
	fmt.Println("second:", cur.Next(ctx), "open cursors:", sim.OpenCursors())
	var ce mongo.CommandError
	if errors.As(cur.Err(), &ce) {
		fmt.Println(ce.Code, ce.Name)
	}
	// Output:
	// first: true open cursors: 1
	// second: false open cursors: 0
	// 43 CursorNotFound
}

// After TruncateOplog only the newest entry is left, so a change stream
// cannot resume from an earlier token.
func ExampleServer_TruncateOplog() {
	sim, client, shutdown := connect()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	coll := client.Database("shop").Collection("orders")

	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	_, _ = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	if !cs.Next(ctx) {
		fmt.Println("stream:", cs.Err())
		_ = cs.Close(context.Background())
		return
	}
	token := cs.ResumeToken()
	_ = cs.Close(context.Background())
	_, _ = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}})
	_, _ = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 3}})

	sim.TruncateOplog()
	_, err = coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(token))
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		fmt.Println(ce.Code, ce.Name)
	}
	// Output:
	// 286 ChangeStreamHistoryLost
}

// A test can act while a change stream waits on the server, without
// sleeping for a guessed time.
func ExampleServer_AwaitingGetMores() {
	sim, client, shutdown := connect()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	coll := client.Database("shop").Collection("orders")

	// The server holds an empty getMore for up to 5s (the driver wants
	// less than the time left on ctx).
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(5*time.Second))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())

	done := make(chan bool)
	go func() { done <- cs.Next(ctx) }()
	waiting := false
	for !waiting && ctx.Err() == nil {
		if waiting = sim.AwaitingGetMores() == 1; !waiting {
			time.Sleep(time.Millisecond)
		}
	}
	fmt.Println("getMore waiting:", waiting)

	// The insert wakes the waiting getMore.
	_, _ = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	fmt.Println("next:", <-done)
	fmt.Println(cs.Current.Lookup("operationType").StringValue())
	// Output:
	// getMore waiting: true
	// next: true
	// insert
}

// The command log records what the driver sent, for tests that check the
// shape of commands.
func ExampleServer_Commands() {
	sim, client, shutdown := connect()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	coll := client.Database("shop").Collection("orders")
	_, _ = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})

	sim.ResetCommands()
	_ = coll.FindOne(ctx, bson.D{{Key: "_id", Value: 1}}).Err()
	_, _ = coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: 1}})

	// Monitoring connections run hello on admin: keep the shop's commands.
	for _, cmd := range sim.Commands() {
		if cmd.DB == "shop" {
			fmt.Println(cmd.Name, cmd.Body.Lookup(cmd.Name).StringValue())
		}
	}
	// Output:
	// find orders
	// delete orders
}

// A standalone server refuses change streams, as a real one does.
func ExampleWithStandalone() {
	_, client, shutdown := connect(mongosim.WithStandalone())
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, err := client.Database("shop").Collection("orders").Watch(ctx, mongo.Pipeline{})
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		fmt.Println(ce.Code, ce.Message)
	}
	// Output:
	// 40573 The $changeStream stage is only supported on replica sets
}
