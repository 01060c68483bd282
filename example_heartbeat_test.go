package changestream_test

import (
	"context"
	"fmt"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Through mongos, an idle shard holds back the events of a busy one until
// its periodic no-op write (every 10 s by default). A heartbeat bounds the
// wait: PrepareHeartbeat places one document of an operations collection
// on each shard, once, and WithHeartbeat updates them at an interval. Here
// the simulated shards' no-op writer is off, so without the heartbeat the
// event would wait for good.
func ExampleWithHeartbeat() {
	sc, err := mongosim.NewShardedCluster(2, 1, 1, []mongosim.Option{mongosim.WithNoopInterval(0)})
	if err != nil {
		panic(err)
	}
	defer sc.Close()
	_ = sc.Catalog().SetPrimaryShard("shop", "shard0") // shard1 stays idle
	client, err := mongo.Connect(testclient.Options(sc.URI()))
	if err != nil {
		panic(err)
	}
	defer client.Disconnect(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	beats := client.Database("ops").Collection("heartbeat")
	if err := changestream.PrepareHeartbeat(ctx, beats); err != nil {
		fmt.Println("prepare:", err)
		return
	}
	orders := client.Database("shop").Collection("orders")
	cs, err := changestream.WatchCollection(ctx, orders, nil, changestream.WithHeartbeat(beats, 200*time.Millisecond))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())
	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple", Qty: 3})
	if cs.Next(ctx) {
		fmt.Println(cs.Current.Lookup("operationType").StringValue(), cs.Current.Lookup("documentKey", "_id"))
	}
	fmt.Println("heartbeats written:", cs.Stats().Heartbeats > 0)
	// Output:
	// insert {"$numberInt":"1"}
	// heartbeats written: true
}
