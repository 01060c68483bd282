package changestream_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/internal/mongosim"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The streaming benchmarks read b.N events that are already in the oplog,
// so they measure the client's cost per event, not the wait for writes.
// Every variant asks for the same batch size and starts at the same
// operation time, and opening the stream is inside the timed region for
// all of them. One operation is one event: ns/op is the cost of an event,
// allocs/op the allocations per event.
//
//	go test -run '^$' -bench 'Stream|Decode' -benchmem -count 5 .
//
// BenchmarkStreamRawCursor is the floor: the same $changeStream aggregate
// through a plain driver cursor, with no resume-token bookkeeping at all.

// benchBatch is the batch size of every variant: cursor.batchSize on the
// aggregate and batchSize on each getMore.
const benchBatch = 1000

// benchDoc is the document every event carries.
type benchDoc struct {
	ID   int32  `bson:"_id"`
	N    int32  `bson:"n"`
	Name string `bson:"name"`
}

// benchStream is what the loop needs from each variant; mongo.Cursor,
// mongo.ChangeStream and changestream.ChangeStream all have it.
type benchStream interface {
	Next(context.Context) bool
	Decode(any) error
	Err() error
	Close(context.Context) error
}

// benchEnv is a deployment whose collection holds n inserts made after start.
type benchEnv struct {
	db    *mongo.Database
	coll  *mongo.Collection
	start bson.Timestamp
}

// newBenchEnv starts a simulator (or uses MONGODB_URI), connects a client
// without a command monitor (the test env's monitor copies every reply,
// which would dominate the allocations measured here) and inserts n
// documents in chunks of 1,000.
func newBenchEnv(b *testing.B, n int) *benchEnv {
	b.Helper()
	ctx := context.Background()
	uri := os.Getenv("MONGODB_URI")
	if uri == "" {
		uri = mongosim.StartDeploymentTB(b).URI // CHANGESTREAM_TEST_TOPOLOGY=sharded: through mongos
	}
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = client.Disconnect(ctx)
	})
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	db := client.Database("cs_bench_" + hex.EncodeToString(suffix[:]))
	if os.Getenv("MONGODB_URI") != "" {
		b.Cleanup(func() { _ = db.Drop(context.Background()) })
	}
	env := &benchEnv{db: db, coll: db.Collection("events")}

	// The operation time of a command run before the inserts is where all
	// variants start: every insert comes after it.
	sess, err := client.StartSession()
	if err != nil {
		b.Fatal(err)
	}
	defer sess.EndSession(ctx)
	if err := db.RunCommand(mongo.NewSessionContext(ctx, sess), bson.D{{Key: "ping", Value: 1}}).Err(); err != nil {
		b.Fatal(err)
	}
	if sess.OperationTime() == nil {
		b.Fatal("the server sent no operationTime")
	}
	env.start = *sess.OperationTime()

	docs := make([]any, 0, 1000)
	for i := 0; i < n; {
		docs = docs[:0]
		for ; i < n && len(docs) < cap(docs); i++ {
			docs = append(docs, benchDoc{ID: int32(i), N: int32(i), Name: "widget"})
		}
		if _, err := env.coll.InsertMany(ctx, docs); err != nil {
			b.Fatal(err)
		}
	}
	return env
}

// runStreamBench pre-fills b.N events, then opens a stream with open and
// reads them all, decoding each into a changestream.Event when decode is
// set (the same target type for every variant, so only the stream differs).
func runStreamBench(b *testing.B, decode bool, open func(context.Context, *benchEnv) (benchStream, error)) {
	env := newBenchEnv(b, b.N)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()

	s, err := open(ctx, env)
	if err != nil {
		b.Fatal(err)
	}
	for i := range b.N {
		if !s.Next(ctx) {
			b.Fatalf("event %d of %d: stream ended: %v", i, b.N, s.Err())
		}
		if decode {
			var ev changestream.Event[benchDoc]
			if err := s.Decode(&ev); err != nil {
				b.Fatal(err)
			}
			if ev.FullDocument == nil || ev.FullDocument.N != int32(i) {
				b.Fatalf("event %d: got %+v", i, ev.FullDocument)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	_ = s.Close(ctx)
}

// openRawCursor runs the $changeStream aggregate as a plain command and
// iterates the driver's cursor: what any change stream must at least cost.
func openRawCursor(ctx context.Context, env *benchEnv) (benchStream, error) {
	cmd := bson.D{
		{Key: "aggregate", Value: env.coll.Name()},
		{Key: "pipeline", Value: bson.A{bson.D{{Key: "$changeStream", Value: bson.D{{Key: "startAtOperationTime", Value: env.start}}}}}},
		{Key: "cursor", Value: bson.D{{Key: "batchSize", Value: int32(benchBatch)}}},
	}
	cur, err := env.db.RunCommandCursor(ctx, cmd)
	if err != nil {
		return nil, err
	}
	cur.SetBatchSize(benchBatch)
	return cur, nil
}

func openDriverWatch(ctx context.Context, env *benchEnv) (benchStream, error) {
	opts := options.ChangeStream().SetStartAtOperationTime(&env.start).SetBatchSize(benchBatch)
	return env.coll.Watch(ctx, mongo.Pipeline{}, opts)
}

func openChangestream(ctx context.Context, env *benchEnv) (benchStream, error) {
	return changestream.WatchCollection(ctx, env.coll, nil,
		changestream.WithStartAtOperationTime(env.start), changestream.WithBatchSize(benchBatch))
}

func BenchmarkStreamRawCursor(b *testing.B)    { runStreamBench(b, false, openRawCursor) }
func BenchmarkStreamDriverWatch(b *testing.B)  { runStreamBench(b, false, openDriverWatch) }
func BenchmarkStreamChangestream(b *testing.B) { runStreamBench(b, false, openChangestream) }

// The decoding variants add what typed consumers pay: one Decode per event
// into changestream.Event[benchDoc]. BenchmarkDecodeRawCursor is their floor.

func BenchmarkDecodeRawCursor(b *testing.B)    { runStreamBench(b, true, openRawCursor) }
func BenchmarkDecodeDriverWatch(b *testing.B)  { runStreamBench(b, true, openDriverWatch) }
func BenchmarkDecodeChangestream(b *testing.B) { runStreamBench(b, true, openChangestream) }

// BenchmarkSplitReassembly streams update events of about 39 MiB (a 13 MiB
// updateDescription, a 13 MiB pre-image and a 13 MiB post-image), which the
// server sends in three fragments and WithSplitLargeEvents puts back
// together. One op is one event, its update included; B/op and allocs/op
// include the simulator's work when it runs in process.
//
//	go test -run '^$' -bench SplitReassembly -benchmem .
func BenchmarkSplitReassembly(b *testing.B) {
	ctx := context.Background()
	uri := os.Getenv("MONGODB_URI")
	if uri == "" {
		uri = mongosim.StartTB(b).URI()
	}
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Disconnect(ctx)
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	db := client.Database("bench_split_" + hex.EncodeToString(suffix[:]))
	defer db.Drop(ctx)
	if err := db.CreateCollection(ctx, "large", options.CreateCollection().SetChangeStreamPreAndPostImages(bson.D{{Key: "enabled", Value: true}})); err != nil {
		b.Fatal(err)
	}
	coll := db.Collection("large")
	const size = 13 << 20
	values := [2]string{strings.Repeat("a", size), strings.Repeat("b", size)}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 0}, {Key: "v", Value: values[0]}}); err != nil {
		b.Fatal(err)
	}
	cs, err := changestream.WatchCollection(ctx, coll, nil, changestream.WithSplitLargeEvents(),
		changestream.WithFullDocument(changestream.FullDocumentRequired),
		changestream.WithFullDocumentBeforeChange(changestream.FullDocumentBeforeChangeRequired))
	if err != nil {
		b.Fatal(err)
	}
	defer cs.Close(ctx)
	b.SetBytes(3 * size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := coll.UpdateOne(ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: values[(i+1)%2]}}}}); err != nil {
			b.Fatal(err)
		}
		if !cs.Next(ctx) {
			b.Fatal(cs.Err())
		}
		if len(cs.Current) < 3*size {
			b.Fatalf("event of %d bytes", len(cs.Current))
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cs.Stats().Fragments)/float64(b.N), "fragments/op")
}
