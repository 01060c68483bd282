package checkpoint_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/checkpoint"
	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// exampleClient connects to a fresh simulator (examples must not need a
// server); shutdown stops both.
func exampleClient() (*mongo.Client, func()) {
	sim, err := mongosim.NewServer()
	if err != nil {
		panic(err)
	}
	client, err := mongo.Connect(testclient.Options(sim.URI()))
	if err != nil {
		panic(err)
	}
	return client, func() {
		_ = client.Disconnect(context.Background())
		_ = sim.Close()
	}
}

// Run consumes a collection durably: here it keeps each order's quantity
// in a map, and a second Run with the same key carries on where the first
// stopped, with the order inserted between the two.
func ExampleRun() {
	client, shutdown := exampleClient()
	defer shutdown()
	orders := client.Database("shop").Collection("orders")
	dir, _ := os.MkdirTemp("", "checkpoints")
	defer os.RemoveAll(dir)
	store, _ := checkpoint.NewFileStore(dir)

	var mu sync.Mutex
	qty := map[int32]int32{}
	// OnOpen says when the stream is open: every change made after it is
	// delivered.
	opened := make(chan changestream.Position, 1)
	cfg := checkpoint.Config{Key: "orders", Collection: orders, Store: store,
		OnOpen: func(p changestream.Position) { opened <- p }}
	handle := func(_ context.Context, ev changestream.Event[order]) error {
		mu.Lock()
		defer mu.Unlock()
		qty[ev.FullDocument.ID] = ev.FullDocument.Qty
		return nil
	}
	handled := func(n int) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return len(qty) == n }
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- checkpoint.Run(ctx, cfg, handle) }()
	// Without a checkpoint, Run starts from the moment its stream opens.
	<-opened
	_, _ = orders.InsertOne(context.Background(), order{ID: 1, Qty: 10})
	waitUntil(handled(1))
	cancel()
	fmt.Println("first run:", <-done)

	_, _ = orders.InsertOne(context.Background(), order{ID: 2, Qty: 20}) // no consumer runs

	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- checkpoint.Run(ctx, cfg, handle) }()
	<-opened // after the checkpoint: the order inserted in between comes first
	waitUntil(handled(2))
	cancel()
	fmt.Println("second run:", <-done)
	fmt.Println(qty)
	// Output:
	// first run: <nil>
	// second run: <nil>
	// map[1:10 2:20]
}

type order struct {
	ID  int32 `bson:"_id"`
	Qty int32 `bson:"qty"`
}

func waitUntil(cond func() bool) {
	for deadline := time.Now().Add(10 * time.Second); !cond() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

// A Checkpointer commits, in stream order, only what the consumer has
// acknowledged, whatever order the acknowledgements come in.
func ExampleNewCheckpointer() {
	dir, _ := os.MkdirTemp("", "checkpoints")
	defer os.RemoveAll(dir)
	store, _ := checkpoint.NewFileStore(dir)
	ctx := context.Background()
	cp, err := checkpoint.NewCheckpointer(store, "orders", checkpoint.StreamSpec{Target: "shop.orders"},
		checkpoint.MaxInFlight(100))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cp.Close(ctx)

	var acks []checkpoint.Ack
	for i := range 3 {
		a, _ := cp.Mark(ctx, position(i)) // in stream order
		acks = append(acks, a)
	}
	acks[2].Done() // the third event finished first
	_ = cp.Commit(ctx)
	fmt.Println("saved after event 3 alone:", cp.Saved().ClusterTime.I)
	acks[0].Done()
	_ = cp.Commit(ctx)
	fmt.Println("saved after event 1:", cp.Saved().ClusterTime.I)
	acks[1].Done()
	_ = cp.Commit(ctx)
	fmt.Println("saved after event 2:", cp.Saved().ClusterTime.I, "in flight:", cp.InFlight())

	// A quiet stream's progress is committed once nothing is in flight.
	cp.Progress(position(10))
	_ = cp.Commit(ctx)
	fmt.Println("saved after progress:", cp.Saved().ClusterTime.I)
	// Output:
	// saved after event 3 alone: 0
	// saved after event 1: 1
	// saved after event 2: 3 in flight: 0
	// saved after progress: 11
}

// position makes the position of the i-th event of a made-up stream.
func position(i int) changestream.Position {
	ts := bson.Timestamp{T: 1_700_000_000, I: uint32(i + 1)}
	token, _ := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("82%08X%08X2B0229", ts.T, ts.I)}})
	return changestream.Position{Token: token, ClusterTime: ts}
}

// A FileStore keeps one file per key and never moves a checkpoint back.
func ExampleNewFileStore() {
	dir, _ := os.MkdirTemp("", "checkpoints")
	defer os.RemoveAll(dir)
	store, err := checkpoint.NewFileStore(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	_ = store.Save(ctx, "orders", checkpoint.Checkpoint{Position: position(5), Spec: "spec"})
	_ = store.Save(ctx, "orders", checkpoint.Checkpoint{Position: position(2), Spec: "spec"}) // ignored
	cp, ok, _ := store.Load(ctx, "orders")
	fmt.Println(ok, cp.ClusterTime.I)
	_ = store.Delete(ctx, "orders")
	_, ok, _ = store.Load(ctx, "orders")
	fmt.Println(ok)
	// Output:
	// true 6
	// false
}

// A lease lets one process consume a key; a store fenced by it refuses
// the saves of a holder that lost it.
func ExampleMongoStore_Acquire() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx := context.Background()
	store, _ := checkpoint.NewMongoStore(client.Database("app").Collection("checkpoints"))

	a, _ := store.Acquire(ctx, "orders", "consumer-a", 200*time.Millisecond)
	_, err := store.Acquire(ctx, "orders", "consumer-b", 200*time.Millisecond)
	fmt.Println("b while a holds it:", errors.Is(err, checkpoint.ErrLeaseHeld))

	time.Sleep(300 * time.Millisecond) // a stops renewing
	b, err := store.Acquire(ctx, "orders", "consumer-b", 200*time.Millisecond)
	fmt.Println("b after it expired:", err, "epoch", b.Epoch())

	err = store.Fenced(a).Save(ctx, "orders", checkpoint.Checkpoint{Position: position(1)})
	fmt.Println("a's save:", errors.Is(err, checkpoint.ErrLeaseLost))
	fmt.Println("a's renewal:", errors.Is(a.Renew(ctx), checkpoint.ErrLeaseLost))
	fmt.Println("b's save:", store.Fenced(b).Save(ctx, "orders", checkpoint.Checkpoint{Position: position(1)}))
	fmt.Println("b's release:", b.Release(ctx))
	// Output:
	// b while a holds it: true
	// b after it expired: <nil> epoch 2
	// a's save: true
	// a's renewal: true
	// b's save: <nil>
	// b's release: <nil>
}

// Compare orders positions of one stream.
func ExampleCompare() {
	fmt.Println(checkpoint.Compare(position(1), position(2)), checkpoint.Compare(position(2), position(2)))
	// Output: -1 0
}

// The fingerprint a checkpoint records of its stream.
func ExampleStreamSpec_Fingerprint() {
	spec := checkpoint.StreamSpec{Target: "shop.orders", FullDocument: changestream.FullDocumentUpdateLookup}
	fp, _ := spec.Fingerprint()
	fmt.Println(fp)
	// Output: collection shop.orders; fullDocument=updateLookup; fullDocumentBeforeChange=off; showExpandedEvents=false; splitLargeEvents=false; pipeline=none
}

// A checkpoint of another stream is refused.
func ExampleSpecMismatchError() {
	dir, _ := os.MkdirTemp("", "checkpoints")
	defer os.RemoveAll(dir)
	store, _ := checkpoint.NewFileStore(dir)
	ctx := context.Background()
	_ = store.Save(ctx, "orders", checkpoint.Checkpoint{Position: position(1), Spec: "collection shop.orders"})
	cp, _ := checkpoint.NewCheckpointer(store, "orders", checkpoint.StreamSpec{Target: "shop.invoices"})
	_, _, err := cp.Load(ctx)
	var mismatch *checkpoint.SpecMismatchError
	fmt.Println(errors.As(err, &mismatch), mismatch.Saved)
	// Output: true collection shop.orders
}

// A handler reads the lease it runs under, to fence its own writes.
func ExampleLeaseFromContext() {
	handle := func(ctx context.Context, ev changestream.Event[bson.Raw]) error {
		if l := checkpoint.LeaseFromContext(ctx); l != nil {
			_ = l.Epoch() // write it with the effect, and refuse older epochs
		}
		return nil
	}
	_ = handle
	fmt.Println(checkpoint.LeaseFromContext(context.Background()) == nil)
	// Output: true
}

// RunRaw hands the handler each event whole, as the server sent it; with
// BeforeCommit, output buffered by the handler is flushed before a
// checkpoint covers it.
func ExampleRunRaw() {
	client, shutdown := exampleClient()
	defer shutdown()
	orders := client.Database("shop").Collection("orders")
	dir, _ := os.MkdirTemp("", "checkpoints")
	defer os.RemoveAll(dir)
	store, _ := checkpoint.NewFileStore(dir)

	var mu sync.Mutex
	var buffered, flushed []string
	opened := make(chan changestream.Position, 1)
	cfg := checkpoint.Config{Key: "orders", Collection: orders, Store: store,
		OnOpen: func(p changestream.Position) { opened <- p },
		BeforeCommit: func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			flushed, buffered = append(flushed, buffered...), nil
			return nil
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- checkpoint.RunRaw(ctx, cfg, func(_ context.Context, ev bson.Raw) error {
			mu.Lock()
			defer mu.Unlock()
			buffered = append(buffered, ev.Lookup("operationType").StringValue())
			return nil
		})
	}()
	<-opened
	_, _ = orders.InsertOne(context.Background(), order{ID: 1})
	_, _ = orders.DeleteOne(context.Background(), bson.D{{Key: "_id", Value: 1}})
	waitUntil(func() bool { mu.Lock(); defer mu.Unlock(); return len(flushed) == 2 })
	cancel()
	fmt.Println(<-done, flushed)
	// Output: <nil> [insert delete]
}

// With a Snapshot mode, Run hands the handler the target's documents
// first, between a start and an end event, then the changes since.
func ExampleRun_snapshot() {
	client, shutdown := exampleClient()
	defer shutdown()
	orders := client.Database("shop").Collection("orders")
	_, _ = orders.InsertMany(context.Background(), []any{order{ID: 1, Qty: 10}, order{ID: 2, Qty: 20}})
	dir, _ := os.MkdirTemp("", "checkpoints")
	defer os.RemoveAll(dir)
	store, _ := checkpoint.NewFileStore(dir)

	var mu sync.Mutex
	var seen []string
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- checkpoint.Run(ctx, checkpoint.Config{Key: "orders", Collection: orders, Store: store, Snapshot: checkpoint.SnapshotInitial},
			func(_ context.Context, ev changestream.Event[order]) error {
				mu.Lock()
				defer mu.Unlock()
				line := string(ev.OperationType)
				if ev.FullDocument != nil {
					line += fmt.Sprintf(" %d", ev.FullDocument.ID)
				}
				seen = append(seen, line)
				return nil
			})
	}()
	waitUntil(func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 4 })
	_, _ = orders.InsertOne(context.Background(), order{ID: 3, Qty: 30})
	waitUntil(func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 5 })
	cancel()
	fmt.Println(<-done)
	for _, s := range seen {
		fmt.Println(s)
	}
	// Output:
	// <nil>
	// snapshotStart
	// snapshot 1
	// snapshot 2
	// snapshotEnd
	// insert 3
}

// A lease held by another owner is refused with a LeaseHeldError naming
// the holder and when its lease ends, so a standby can say what it waits
// for.
func ExampleLeaseHeldError() {
	client, shutdown := exampleClient()
	defer shutdown()
	ctx := context.Background()
	store, _ := checkpoint.NewMongoStore(client.Database("app").Collection("checkpoints"))

	a, _ := store.Acquire(ctx, "orders", "consumer-a", time.Minute)
	defer a.Release(ctx)
	fmt.Println("held by", a.Owner(), "for about a minute:", a.Remaining() > 50*time.Second)

	_, err := store.Acquire(ctx, "orders", "consumer-b", time.Minute)
	var held *checkpoint.LeaseHeldError
	if errors.As(err, &held) {
		fmt.Println("b waits for", held.Owner, "until its lease ends:", held.Until.Equal(a.Until()))
	}
	// Output:
	// held by consumer-a for about a minute: true
	// b waits for consumer-a until its lease ends: true
}

// A checkpoint that cannot be a position (here a file whose token is
// null) is a *DamagedError naming the key, the file and the fix, never
// "no checkpoint": Run would otherwise start from now and skip every event
// since the saved position.
func ExampleDamagedError() {
	dir, _ := os.MkdirTemp("", "checkpoints")
	defer os.RemoveAll(dir)
	store, _ := checkpoint.NewFileStore(dir)
	_ = os.WriteFile(filepath.Join(dir, "checkpoint-orders.json"), []byte(`{"key": "orders", "token": null, "spec": "s"}`), 0o600)
	_, ok, err := store.Load(context.Background(), "orders")
	var damaged *checkpoint.DamagedError
	fmt.Println(ok, errors.As(err, &damaged), errors.Is(err, checkpoint.ErrDamaged))
	fmt.Println(damaged.Key, filepath.Base(damaged.Where), damaged.Problem)
	// Output:
	// false true true
	// orders checkpoint-orders.json it has no token
}
