package checkpoint_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/checkpoint"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// A handler that cannot process one event need not wedge the pipeline:
// with HandlerRetries and DeadLetter, Run calls the handler again twice,
// then hands the event to a dead-letter collection and carries on. The
// event is acknowledged once the dead letter is stored; Stats counts
// both.
func ExampleDeadLetter() {
	client, shutdown := exampleClient()
	defer shutdown()
	orders := client.Database("shop").Collection("orders")
	deadLetters := client.Database("shop").Collection("orders_dead_letters")
	dir, _ := os.MkdirTemp("", "checkpoints")
	defer os.RemoveAll(dir)
	store, _ := checkpoint.NewFileStore(dir)

	var mu sync.Mutex
	var handled []int32
	stats := &checkpoint.Stats{}
	opened := make(chan changestream.Position, 1)
	cfg := checkpoint.Config{Key: "orders", Collection: orders, Store: store,
		HandlerRetries: 2, Stats: stats,
		DeadLetter: func(ctx context.Context, dl checkpoint.DeadLetter) error {
			_, err := deadLetters.InsertOne(ctx, bson.D{{Key: "event", Value: dl.Event},
				{Key: "error", Value: dl.Err.Error()}, {Key: "attempts", Value: dl.Attempts}})
			return err
		},
		OnOpen: func(p changestream.Position) { opened <- p }}
	handle := func(_ context.Context, ev changestream.Event[order]) error {
		if ev.FullDocument.Qty < 0 {
			return errors.New("a negative quantity")
		}
		mu.Lock()
		defer mu.Unlock()
		handled = append(handled, ev.FullDocument.ID)
		return nil
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- checkpoint.Run(ctx, cfg, handle) }()
	<-opened
	_, _ = orders.InsertMany(context.Background(), []any{order{ID: 1, Qty: 5}, order{ID: 2, Qty: -1}, order{ID: 3, Qty: 7}})
	waitUntil(func() bool { mu.Lock(); defer mu.Unlock(); return len(handled) == 2 })
	cancel()
	fmt.Println("run:", <-done)

	var letter struct {
		Event    bson.Raw `bson:"event"`
		Error    string   `bson:"error"`
		Attempts int      `bson:"attempts"`
	}
	_ = deadLetters.FindOne(context.Background(), bson.D{}).Decode(&letter)
	fmt.Println("handled:", handled)
	fmt.Println("dead letter: order", letter.Event.Lookup("documentKey", "_id").Int32(), letter.Error, "after", letter.Attempts, "calls")
	fmt.Println("retries:", stats.HandlerRetries(), "dead-lettered:", stats.DeadLettered())
	// Output:
	// run: <nil>
	// handled: [1 3]
	// dead letter: order 2 a negative quantity after 3 calls
	// retries: 2 dead-lettered: 1
}
