// Command soakconsumer is the consumer process of the checkpoint package's
// soaks (checkpoint/soak_test.go): it runs checkpoint.Run on a collection
// and records each event's effect in another, so that the soak can count
// what was lost and what was repeated across the crashes and pauses it
// inflicts.
//
// Without -ttl it keeps its checkpoint in a FileStore and writes effects
// with plain inserts. With -ttl it holds a lease in a MongoStore and
// writes each effect in a transaction fenced by the lease's epoch, the
// pattern that turns at-least-once delivery into exactly-once effects.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/checkpoint"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

type doc struct {
	N int32 `bson:"n"`
}

// errStale is returned by the handler when the sink's fence holds a newer
// epoch: another consumer took over while this one was paused.
var errStale = errors.New("soakconsumer: the sink is fenced by a newer epoch")

func main() {
	uri := flag.String("uri", "", "the deployment")
	dbName := flag.String("db", "soak", "the database")
	key := flag.String("key", "soak", "the checkpoint key")
	source := flag.String("source", "source", "the collection consumed, whose documents carry a number n")
	owner := flag.String("owner", "", "the lease owner (with -ttl)")
	ttl := flag.Duration("ttl", 0, "lease ttl; 0: no lease, a file store in -dir")
	dir := flag.String("dir", "", "the file store's directory (without -ttl)")
	inFlight := flag.Int("max-in-flight", 100, "the checkpointer's in-flight bound")
	every := flag.Duration("commit", 50*time.Millisecond, "the commit interval")
	trace := flag.Bool("trace", false, "log each effect written (n, epoch, the event's cluster time)")
	mirror := flag.Bool("mirror", false, "snapshot the source first, and mirror it into the mirror collection (without -ttl)")
	flag.Parse()
	level := slog.LevelInfo
	if *trace {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	var err error
	if *mirror {
		err = runMirror(*uri, *dbName, *key, *dir, *every, log)
	} else {
		err = run(*uri, *dbName, *source, *key, *owner, *dir, *ttl, *inFlight, *every, log)
	}
	if err != nil {
		log.Error("soakconsumer: exiting", "error", err.Error())
		os.Exit(1)
	}
}

func run(uri, dbName, source, key, owner, dir string, ttl time.Duration, inFlight int, every time.Duration, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return err
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	db := client.Database(dbName)
	effects, fence := db.Collection("effects"), db.Collection("fence")
	cfg := checkpoint.Config{Key: key, Collection: db.Collection(source), MaxInFlight: inFlight,
		CommitInterval: every, Logger: log, MinBackoff: 10 * time.Millisecond, MaxBackoff: time.Second}

	if ttl == 0 {
		store, err := checkpoint.NewFileStore(dir)
		if err != nil {
			return err
		}
		cfg.Store = store
		return checkpoint.Run(ctx, cfg, func(ctx context.Context, ev changestream.Event[doc]) error {
			_, err := effects.InsertOne(ctx, bson.D{{Key: "n", Value: ev.FullDocument.N}})
			return err
		})
	}

	store, err := checkpoint.NewMongoStore(db.Collection("checkpoints"))
	if err != nil {
		return err
	}
	cfg.Store = store
	cfg.Lease = &checkpoint.LeaseConfig{Store: store, Owner: owner, TTL: ttl, RetryEvery: ttl / 5}
	return checkpoint.Run(ctx, cfg, func(ctx context.Context, ev changestream.Event[doc]) error {
		epoch := checkpoint.LeaseFromContext(ctx).Epoch()
		sess, err := client.StartSession()
		if err != nil {
			return err
		}
		defer sess.EndSession(context.Background())
		_, err = sess.WithTransaction(ctx, func(sc context.Context) (any, error) {
			// The fence is the sink's own record of the newest epoch that
			// wrote to it: a write from an older epoch is refused, and
			// every write moves the sink's sequence on.
			var f struct {
				Seq int64 `bson:"seq"`
			}
			err := fence.FindOneAndUpdate(sc,
				bson.D{{Key: "_id", Value: key}, {Key: "epoch", Value: bson.D{{Key: "$lte", Value: epoch}}}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "epoch", Value: epoch}}}, {Key: "$inc", Value: bson.D{{Key: "seq", Value: int64(1)}}}},
				options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&f)
			if errors.Is(err, mongo.ErrNoDocuments) {
				return nil, errStale
			}
			if err != nil {
				return nil, err
			}
			_, err = effects.InsertOne(sc, bson.D{{Key: "n", Value: ev.FullDocument.N}, {Key: "epoch", Value: epoch},
				{Key: "owner", Value: owner}, {Key: "seq", Value: f.Seq}})
			return nil, err
		})
		if errors.Is(err, errStale) {
			log.Warn("soakconsumer: stale effect refused", "epoch", epoch, "n", ev.FullDocument.N)
			return fmt.Errorf("%w (epoch %d)", err, epoch)
		}
		if err == nil {
			log.Debug("soakconsumer: effect", "n", ev.FullDocument.N, "epoch", epoch, "clusterTime", ev.ClusterTime.T, "inc", ev.ClusterTime.I)
		} else {
			log.Debug("soakconsumer: handler failed", "n", ev.FullDocument.N, "epoch", epoch, "error", err.Error())
		}
		return err
	})
}

// runMirror snapshots the source collection, then mirrors its changes,
// into the mirror collection, with a FileStore checkpoint.
func runMirror(uri, dbName, key, dir string, every time.Duration, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return err
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	db := client.Database(dbName)
	mirror := db.Collection("mirror")
	store, err := checkpoint.NewFileStore(dir)
	if err != nil {
		return err
	}
	cfg := checkpoint.Config{Key: key, Collection: db.Collection("source"), Store: store, CommitInterval: every, Logger: log,
		FullDocument: changestream.FullDocumentUpdateLookup, Snapshot: checkpoint.SnapshotInitial, SnapshotBatch: 500, Workers: 4}
	return checkpoint.Run(ctx, cfg, func(ctx context.Context, ev changestream.Event[bson.Raw]) error {
		switch ev.OperationType {
		case checkpoint.OperationSnapshot, changestream.OperationInsert, changestream.OperationReplace, changestream.OperationUpdate:
			if ev.FullDocument == nil {
				return nil
			}
			_, err := mirror.ReplaceOne(ctx, ev.DocumentKey, *ev.FullDocument, options.Replace().SetUpsert(true))
			return err
		case changestream.OperationDelete:
			_, err := mirror.DeleteOne(ctx, ev.DocumentKey)
			return err
		}
		return nil
	})
}
