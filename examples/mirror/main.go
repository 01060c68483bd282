// Command mirror keeps a copy of a MongoDB collection in another
// collection, durably: it saves its position in a MongoDB checkpoint, so a
// restart carries on where it stopped, and holds a lease, so that of
// several copies started at once one mirrors and the others stand by to
// take over when it dies.
//
// Against a deployment, start it as many times as you want standbys:
//
//	MONGODB_URI=mongodb://... go run ./examples/mirror -source shop.orders -target backup.orders
//
// Without MONGODB_URI it runs a demonstration on an embedded simulator:
// two mirrors, the first stopped halfway, the second taking over, and the
// copy checked against the source.
//
//	go run ./examples/mirror
//
// Each change is applied in stream order per document and at least once:
// after a crash, the events since the last commit come again. The copy
// stays right because applying an event again is harmless here: a
// replacement by the post-image (fullDocument: updateLookup) or a delete.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/checkpoint"
	"github.com/changestream-go/changestream/internal/mongosim"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func main() {
	source := flag.String("source", "shop.orders", "the collection to mirror, as db.coll")
	target := flag.String("target", "backup.orders", "the copy, as db.coll")
	key := flag.String("key", "", "the checkpoint and lease key (default: mirror:<source>-><target>)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	if uri := os.Getenv("MONGODB_URI"); uri != "" {
		err = serve(ctx, uri, *source, *target, *key)
	} else {
		err = demo(ctx, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mirror:", err)
		os.Exit(1)
	}
}

// serve mirrors source into target until ctx ends.
func serve(ctx context.Context, uri, source, target, key string) error {
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return err
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	src, err := collection(client, source)
	if err != nil {
		return err
	}
	dst, err := collection(client, target)
	if err != nil {
		return err
	}
	if key == "" {
		key = "mirror:" + source + "->" + target
	}
	m, err := newMirror(client.Database(dst.Database().Name()).Collection("checkpoints"), src, dst, key, "", slog.Default())
	if err != nil {
		return err
	}
	return m.run(ctx)
}

func collection(c *mongo.Client, name string) (*mongo.Collection, error) {
	db, coll, ok := strings.Cut(name, ".")
	if !ok || db == "" || coll == "" {
		return nil, fmt.Errorf("%q is not db.coll", name)
	}
	return c.Database(db).Collection(coll), nil
}

// mirror copies src into dst.
type mirror struct {
	cfg checkpoint.Config
	dst *mongo.Collection
}

// newMirror prepares a mirror that keeps its checkpoint and lease in
// checkpoints. owner names it ("" for checkpoint.DefaultOwner()).
func newMirror(checkpoints, src, dst *mongo.Collection, key, owner string, log *slog.Logger) (*mirror, error) {
	store, err := checkpoint.NewMongoStore(checkpoints)
	if err != nil {
		return nil, err
	}
	return &mirror{dst: dst, cfg: checkpoint.Config{
		Key:          key,
		Collection:   src,
		FullDocument: changestream.FullDocumentUpdateLookup,
		Store:        store,
		Lease:        &checkpoint.LeaseConfig{Store: store, Owner: owner, TTL: 2 * time.Second},
		Workers:      4, // in parallel across documents, in order for each
		Logger:       log,
		// A dropped source ends the mirror: a human decides what the copy
		// should become.
		OnInvalidate: checkpoint.StopOnInvalidate,
	}}, nil
}

// run mirrors until ctx ends, or the source is dropped.
func (m *mirror) run(ctx context.Context) error {
	return checkpoint.Run(ctx, m.cfg, m.apply)
}

// apply makes the copy of one document what the event says it is.
func (m *mirror) apply(ctx context.Context, ev changestream.Event[bson.Raw]) error {
	switch ev.OperationType {
	case changestream.OperationInsert, changestream.OperationReplace, changestream.OperationUpdate:
		if ev.FullDocument == nil {
			// Deleted since the event: the delete event follows.
			return nil
		}
		_, err := m.dst.ReplaceOne(ctx, ev.DocumentKey, *ev.FullDocument, options.Replace().SetUpsert(true))
		return err
	case changestream.OperationDelete:
		_, err := m.dst.DeleteOne(ctx, ev.DocumentKey)
		return err
	}
	return nil // drop and invalidate end the stream; Run stops after them
}

// demo runs two mirrors on an embedded simulator: the first mirrors, the
// second stands by; the first stops, the second takes over where it left
// off; the copy is checked against the source.
func demo(ctx context.Context, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	sim, err := mongosim.NewServer()
	if err != nil {
		return err
	}
	defer sim.Close()
	client, err := mongo.Connect(options.Client().ApplyURI(sim.URI()))
	if err != nil {
		return err
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	src, dst := client.Database("shop").Collection("orders"), client.Database("backup").Collection("orders")
	checkpoints := client.Database("backup").Collection("checkpoints")
	quiet := slog.New(slog.DiscardHandler)

	// start runs a mirror; opened is closed once it has opened its stream
	// (it holds the lease then): every write after that is mirrored.
	start := func(owner string) (stop func() error, opened <-chan struct{}, err error) {
		m, err := newMirror(checkpoints, src, dst, "mirror:shop.orders", owner, quiet)
		if err != nil {
			return nil, nil, err
		}
		open := make(chan struct{})
		var once sync.Once
		m.cfg.OnOpen = func(changestream.Position) { once.Do(func() { close(open) }) }
		mctx, mcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		var runErr error
		go func() {
			defer close(done)
			runErr = m.run(mctx)
		}()
		return func() error {
			mcancel()
			<-done
			return runErr
		}, open, nil
	}
	stopA, openedA, err := start("mirror-a")
	if err != nil {
		return err
	}
	defer stopA()
	// A mirror without a checkpoint starts from the moment its stream
	// opens: wait for that before writing.
	select {
	case <-openedA:
	case <-ctx.Done():
		return ctx.Err()
	}
	stopB, _, err := start("mirror-b")
	if err != nil {
		return err
	}
	defer stopB()
	fmt.Fprintln(out, "mirror-a holds the lease; mirror-b stands by")

	for i := range 10 {
		if _, err := src.InsertOne(ctx, bson.D{{Key: "_id", Value: i}, {Key: "qty", Value: i}}); err != nil {
			return err
		}
	}
	if err := waitFor(ctx, func() (bool, error) { return same(ctx, src, dst) }); err != nil {
		return err
	}
	fmt.Fprintln(out, "mirror-a copied 10 orders")
	if err := stopA(); err != nil {
		return err
	}
	fmt.Fprintln(out, "mirror-a stopped (it committed and released its lease)")

	if _, err := src.UpdateMany(ctx, bson.D{}, bson.D{{Key: "$inc", Value: bson.D{{Key: "qty", Value: 100}}}}); err != nil {
		return err
	}
	if _, err := src.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: 5}}}}); err != nil {
		return err
	}
	if err := waitFor(ctx, func() (bool, error) { return holds(ctx, checkpoints, "mirror-b") }); err != nil {
		return err
	}
	fmt.Fprintln(out, "mirror-b took the lease over")
	if err := waitFor(ctx, func() (bool, error) { return same(ctx, src, dst) }); err != nil {
		return err
	}
	n, err := dst.CountDocuments(ctx, bson.D{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "mirror-b applied 10 updates and 5 deletes: the copy matches the source (%d orders)\n", n)
	return stopB()
}

// holds reports whether owner holds the mirror's lease.
func holds(ctx context.Context, checkpoints *mongo.Collection, owner string) (bool, error) {
	var d struct {
		Owner string    `bson:"owner"`
		Until time.Time `bson:"leaseUntil"`
	}
	err := checkpoints.FindOne(ctx, bson.D{{Key: "_id", Value: "mirror:shop.orders"}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	return d.Owner == owner && d.Until.After(time.Now()), err
}

// same reports whether two collections hold the same documents.
func same(ctx context.Context, a, b *mongo.Collection) (bool, error) {
	read := func(c *mongo.Collection) ([]bson.Raw, error) {
		cur, err := c.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
		if err != nil {
			return nil, err
		}
		var docs []bson.Raw
		return docs, cur.All(ctx, &docs)
	}
	x, err := read(a)
	if err != nil {
		return false, err
	}
	y, err := read(b)
	if err != nil || len(x) != len(y) {
		return false, err
	}
	for i := range x {
		if !bytesEqual(x[i], y[i]) {
			return false, nil
		}
	}
	return true, nil
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
