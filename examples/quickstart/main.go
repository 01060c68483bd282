// Command quickstart shows package changestream at work: it watches a
// collection, prints each change as it arrives, cuts the connection in the
// middle of the stream, and shows that the stream resumed by itself with no
// event lost or repeated.
//
//	go run ./examples/quickstart
//
// With MONGODB_URI set it uses that deployment (a replica set or a sharded
// cluster; change streams need one) and a collection of its own in the
// quickstart database. Otherwise it starts an in-process simulator, so it
// runs anywhere Go does.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/internal/mongosim"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// overallTimeout bounds the whole program: it normally takes a second or
// two (after a dropped connection the driver waits about a second before it
// selects the server again), and must never hang.
const overallTimeout = 20 * time.Second

// appName marks the program's connections, so that a fail point set on a
// shared deployment only ever cuts this program's getMore.
const appName = "changestream-quickstart"

// order is the document type the stream decodes events into.
type order struct {
	ID   int32  `bson:"_id"`
	Item string `bson:"item"`
	Qty  int32  `bson:"qty"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	ctx, cancel := context.WithTimeout(ctx, overallTimeout)
	err := run(ctx, os.Stdout)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// run is the whole program minus process plumbing, so that its test can
// drive it. Everything it starts (simulator, client, stream, reader
// goroutine) is stopped before it returns.
func run(ctx context.Context, w io.Writer) (err error) {
	uri := os.Getenv("MONGODB_URI")
	var sim *mongosim.Server
	if uri == "" {
		sim, err = mongosim.NewServer()
		if err != nil {
			return fmt.Errorf("starting the simulator: %w", err)
		}
		defer sim.Close()
		uri = sim.URI()
		fmt.Fprintf(w, "no MONGODB_URI: using an in-process simulator at %s\n", uri)
	} else {
		fmt.Fprintln(w, "using the deployment in MONGODB_URI")
	}

	// The command monitor only serves to show the resume: the stream
	// reopens itself with a new aggregate, and nothing else here sends one.
	// It reports how the first resume said where to start.
	var aggregates atomic.Int32
	resumed := make(chan string, 1)
	mon := &event.CommandMonitor{Started: func(_ context.Context, ev *event.CommandStartedEvent) {
		if ev.CommandName == "aggregate" && aggregates.Add(1) > 1 {
			select {
			case resumed <- startOption(ev.Command):
			default:
			}
		}
	}}
	// A short server selection timeout turns an unreachable deployment into
	// a clear error in seconds rather than the driver's default 30. A short
	// heartbeat bounds the driver's own limit after a network error (see
	// "Guarantees" in the README): the driver can miss cutting short its
	// monitor's wait and then finds the server again only a heartbeat later,
	// 10 s by default, which the resume would wait out.
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetAppName(appName).SetMonitor(mon).
		SetServerSelectionTimeout(5 * time.Second).SetHeartbeatInterval(time.Second))
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = client.Disconnect(dctx)
	}()

	name := "orders"
	if sim == nil {
		// A fresh collection on a real deployment, dropped at the end.
		var b [4]byte
		_, _ = rand.Read(b[:])
		name += "_" + hex.EncodeToString(b[:])
	}
	coll := client.Database("quickstart").Collection(name)
	if sim == nil {
		defer func() {
			dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = coll.Drop(dctx)
		}()
	}

	cs, err := changestream.WatchCollection(ctx, coll, nil)
	if err != nil {
		return fmt.Errorf("opening the change stream: %w", err)
	}
	fmt.Fprintf(w, "watching quickstart.%s\n", name)

	// The reader owns the stream's iteration; run stops it and waits for it
	// before closing the stream.
	events := make(chan changestream.Event[order])
	failed := make(chan error, 1)
	readCtx, stopReading := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		read(readCtx, cs, events, failed)
	}()
	defer func() {
		stopReading()
		wg.Wait()
		_ = cs.Close(context.Background())
	}()

	var got []int32
	receive := func(n int) error {
		for range n {
			select {
			case ev := <-events:
				fmt.Fprintf(w, "%-7s _id=%d %s\n", ev.OperationType, ev.FullDocument.ID, docJSON(ev.FullDocument))
				got = append(got, ev.FullDocument.ID)
			case err := <-failed:
				return fmt.Errorf("the stream failed: %w", err)
			case <-ctx.Done():
				return fmt.Errorf("waiting for event %d: %w", len(got)+1, ctx.Err())
			}
		}
		return nil
	}

	first := []order{{1, "apple", 3}, {2, "pear", 5}, {3, "plum", 2}}
	second := []order{{4, "kiwi", 7}, {5, "lime", 1}, {6, "mango", 4}}

	if err := insert(ctx, coll, first); err != nil {
		return err
	}
	if err := receive(len(first)); err != nil {
		return err
	}

	// The reader now waits in a getMore for the next event, or is about to
	// send one: cut the connection of the next.
	cut, err := cutConnection(ctx, w, client)
	if err != nil {
		return err
	}
	if cut {
		select {
		case how := <-resumed:
			fmt.Fprintf(w, "-- the stream resumed by itself: a new aggregate with %s\n", how)
		case err := <-failed:
			return fmt.Errorf("the stream failed instead of resuming: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("waiting for the resume: %w", ctx.Err())
		}
	}

	if err := insert(ctx, coll, second); err != nil {
		return err
	}
	if err := receive(len(second)); err != nil {
		return err
	}

	var want []int32
	for _, o := range append(first, second...) {
		want = append(want, o.ID)
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("events lost or repeated: got _ids %v, want %v", got, want)
	}
	fmt.Fprintf(w, "%d events, none lost\n", len(got))
	return nil
}

// read delivers the stream's events until ctx ends or the stream fails for
// good. A false Next on a live stream (a resume that failed while the
// server was being rediscovered) is retried after a short pause.
func read(ctx context.Context, cs *changestream.ChangeStream, events chan<- changestream.Event[order], failed chan<- error) {
	for {
		if !cs.Next(ctx) {
			if ctx.Err() != nil {
				return
			}
			if !cs.Alive() {
				err := cs.Err()
				if err == nil {
					err = errors.New("the stream was invalidated")
				}
				failed <- err
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		var ev changestream.Event[order]
		if err := cs.Decode(&ev); err != nil {
			failed <- err
			return
		}
		if ev.FullDocument == nil {
			failed <- fmt.Errorf("unexpected %s event without a document", ev.OperationType)
			return
		}
		select {
		case events <- ev:
		case <-ctx.Done():
			return
		}
	}
}

// insert writes docs one at a time.
func insert(ctx context.Context, coll *mongo.Collection, docs []order) error {
	for _, d := range docs {
		if _, err := coll.InsertOne(ctx, d); err != nil {
			return fmt.Errorf("inserting %d: %w", d.ID, err)
		}
	}
	return nil
}

// cutConnection breaks the stream's connection and reports whether it did.
// It sets a failCommand fail point that closes the connection of the next
// getMore this program sends (matched by appName), which the simulator
// honours as a server started with enableTestCommands does; a deployment
// that refuses the fail point is left alone and the cut skipped.
//
// The fail point, rather than closing sockets at some instant, is what
// makes the cut certain to hit the stream: a connection closed while the
// reader is between two getMores is only dropped from the pool, and the
// next getMore then goes out on a fresh connection with nothing to resume.
func cutConnection(ctx context.Context, w io.Writer, client *mongo.Client) (bool, error) {
	err := client.Database("admin").RunCommand(ctx, bson.D{
		{Key: "configureFailPoint", Value: "failCommand"},
		{Key: "mode", Value: bson.D{{Key: "times", Value: 1}}},
		{Key: "data", Value: bson.D{
			{Key: "failCommands", Value: bson.A{"getMore"}},
			{Key: "closeConnection", Value: true},
			{Key: "appName", Value: appName},
		}},
	}).Err()
	if err != nil {
		fmt.Fprintf(w, "-- cut skipped: the deployment refused a failCommand fail point (%v)\n", err)
		return false, nil
	}
	fmt.Fprintln(w, "-- cutting the stream's connection (failCommand closeConnection on its next getMore)")
	return true, nil
}

// startOption describes where the $changeStream stage of an aggregate
// starts the stream.
func startOption(cmd bson.Raw) string {
	stage, err := cmd.LookupErr("pipeline", "0", "$changeStream")
	if err != nil {
		return "no $changeStream stage"
	}
	doc, _ := stage.DocumentOK()
	for _, key := range []string{"resumeAfter", "startAfter", "startAtOperationTime"} {
		if _, err := doc.LookupErr(key); err == nil {
			return key + " from the cached position"
		}
	}
	return "no start option"
}

// docJSON renders a document as relaxed Extended JSON.
func docJSON(v any) string {
	b, err := bson.MarshalExtJSON(v, false, false)
	if err != nil {
		return fmt.Sprintf("%+v", v)
	}
	return string(b)
}
