package mongosim_test

import (
	"context"
	"fmt"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

// connectSet starts a replica set and a client of all its members. The
// returned shutdown closes the set before the client disconnects, so that
// no driver monitor waits out an awaitable hello.
func connectSet(n int, opts ...mongosim.ReplicaSetOption) (*mongosim.ReplicaSet, *mongo.Client, func()) {
	rs, err := mongosim.NewReplicaSet(n, nil, opts...)
	if err != nil {
		panic(err)
	}
	client, err := mongo.Connect(testclient.Options(rs.URI()))
	if err != nil {
		_ = rs.Close()
		panic(err)
	}
	return rs, client, func() {
		_ = rs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = client.Disconnect(ctx)
	}
}

func ExampleNewReplicaSet() {
	rs, client, shutdown := connectSet(3)
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The default write concern, majority, waits for a secondary.
	_, err := client.Database("shop").Collection("orders").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	fmt.Println("insert:", err)
	fmt.Println("members:", len(rs.Members()), "primary is member 0:", rs.Primary() == rs.Member(0))
	// Output:
	// insert: <nil>
	// members: 3 primary is member 0: true
}

func ExampleReplicaSet_StepDown() {
	rs, client, shutdown := connectSet(3)
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")
	_, _ = orders.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})

	old := rs.Primary()
	if err := rs.StepDown(ctx, mongosim.StepDownOptions{}); err != nil {
		fmt.Println("step down:", err)
		return
	}
	// The driver hears of the new primary through its streaming hello.
	_, err := orders.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}})
	fmt.Println("insert after the step-down:", err)
	fmt.Println("new primary:", rs.Primary() != old, "term:", rs.Term())
	// Output:
	// insert after the step-down: <nil>
	// new primary: true term: 2
}

func ExampleReplicaSet_PauseReplication() {
	rs, client, shutdown := connectSet(3)
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")
	cs, err := orders.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(50*time.Millisecond))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())

	rs.PauseReplication(1)
	rs.PauseReplication(2)
	w1 := client.Database("shop").Collection("orders", options.Collection().SetWriteConcern(&writeconcern.WriteConcern{W: 1}))
	_, _ = w1.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	fmt.Println("seen while only the primary has it:", cs.TryNext(ctx))

	rs.ResumeReplication(1)
	fmt.Println("seen once a majority has it:", cs.Next(ctx))
	// Output:
	// seen while only the primary has it: false
	// seen once a majority has it: true
}

func ExampleReplicaSet_Kill() {
	rs, client, shutdown := connectSet(3, mongosim.WithElectionTimeout(100*time.Millisecond))
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")

	// A write only the primary has when it dies...
	rs.PauseReplication(1)
	rs.PauseReplication(2)
	w1 := client.Database("shop").Collection("orders", options.Collection().SetWriteConcern(&writeconcern.WriteConcern{W: 1}))
	_, _ = w1.InsertOne(ctx, bson.D{{Key: "_id", Value: "unacknowledged by a majority"}})
	rs.Kill(0)
	rs.ResumeReplication(1)
	rs.ResumeReplication(2)
	if _, err := rs.WaitForPrimary(ctx); err != nil {
		fmt.Println("election:", err)
		return
	}
	_, _ = orders.InsertOne(ctx, bson.D{{Key: "_id", Value: "after the election"}})

	// ...is rolled back when the old primary rejoins.
	if err := rs.Restart(0); err != nil {
		fmt.Println("restart:", err)
		return
	}
	for rs.Rollbacks() == 0 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	n, err := orders.CountDocuments(ctx, bson.D{})
	fmt.Println("documents:", n, err, "rollbacks:", rs.Rollbacks())
	// Output:
	// documents: 1 <nil> rollbacks: 1
}
