// Command benchwriter is the writer of the live-stream benchmark
// (live_bench_test.go), a process of its own so that the benchmark's
// CPU figures are the reading client's alone. It inserts {_id: n, k: n %
// 2, t: <send time, Unix ns>} into a collection at a steady rate, in
// batches, until interrupted: with the collection sharded on {k: 1, _id:
// 1} and the two k chunks on two shards, both shards are busy.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func main() {
	uri := flag.String("uri", "", "the deployment")
	db := flag.String("db", "bench", "the database")
	coll := flag.String("coll", "live", "the collection")
	rate := flag.Int("rate", 2000, "documents a second")
	batch := flag.Int("batch", 10, "documents an insert")
	flag.Parse()
	if err := run(*uri, *db, *coll, *rate, *batch); err != nil {
		fmt.Fprintln(os.Stderr, "benchwriter:", err)
		os.Exit(1)
	}
}

func run(uri, db, collName string, rate, batch int) error {
	if rate <= 0 || batch <= 0 {
		return fmt.Errorf("-rate and -batch must be positive")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return err
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	coll := client.Database(db).Collection(collName)
	// Each batch is due at its own time, so a slow insert is made up for
	// by the next ones rather than lowering the rate.
	every := time.Duration(batch) * time.Second / time.Duration(rate)
	next := time.Now()
	for n := int32(0); ; {
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(d):
			}
		}
		next = next.Add(every)
		docs := make([]any, batch)
		for i := range docs {
			docs[i] = bson.D{{Key: "_id", Value: n}, {Key: "k", Value: n % 2}, {Key: "t", Value: time.Now().UnixNano()}}
			n++
		}
		if _, err := coll.InsertMany(ctx, docs); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}
