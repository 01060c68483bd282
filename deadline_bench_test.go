package changestream_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/internal/mongosim"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The deadline benchmarks measure what per-call deadlines cost a consumer,
// for the deadline table in README.md:
//
//	go test -run '^$' -bench Deadline -benchtime 200x .
//
// BenchmarkDeadlineWaiting: ten events are waiting; calls with a deadline
// of d each fetch them. It reports the events delivered per round of ten
// (up to 100 calls a round) and the calls it took.
func BenchmarkDeadlineWaiting(b *testing.B) {
	for _, d := range deadlines {
		b.Run("changestream/"+d.String(), func(b *testing.B) {
			env := newDeadlineEnv(b)
			cs, err := changestream.WatchCollection(context.Background(), env.coll, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer cs.Close(context.Background())
			delivered, calls := 0, 0
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				env.insertTen(b)
				b.StartTimer()
				got := 0
				for c := 0; c < 100 && got < 10; c++ {
					ctx, cancel := context.WithTimeout(context.Background(), d)
					if cs.Next(ctx) {
						got++
					}
					cancel()
					calls++
				}
				delivered += got
			}
			b.ReportMetric(float64(delivered)/float64(b.N), "events/10")
			b.ReportMetric(float64(calls)/float64(b.N), "calls/round")
		})
		b.Run("driver/"+d.String(), func(b *testing.B) {
			env := newDeadlineEnv(b)
			cs, err := env.coll.Watch(context.Background(), mongo.Pipeline{})
			if err != nil {
				b.Fatal(err)
			}
			defer cs.Close(context.Background())
			delivered, calls := 0, 0
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				env.insertTen(b)
				b.StartTimer()
				got := 0
				for c := 0; c < 100 && got < 10; c++ {
					ctx, cancel := context.WithTimeout(context.Background(), d)
					if cs.Next(ctx) {
						got++
					}
					cancel()
					calls++
				}
				delivered += got
			}
			b.ReportMetric(float64(delivered)/float64(b.N), "events/10")
			b.ReportMetric(float64(calls)/float64(b.N), "calls/round")
		})
	}
}

// BenchmarkDeadlineIdle: calls with a deadline of d on a stream with
// nothing to read. It reports the resumes per 1,000 calls: each one is a
// connection broken mid-read by a deadline. (The driver's Watch is not
// measured: its first deadline ends the stream for good.)
func BenchmarkDeadlineIdle(b *testing.B) {
	for _, d := range deadlines {
		b.Run(d.String(), func(b *testing.B) {
			env := newDeadlineEnv(b)
			cs, err := changestream.WatchCollection(context.Background(), env.coll, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer cs.Close(context.Background())
			for i := 0; i < b.N; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), d)
				if cs.Next(ctx) {
					b.Fatal("an event on an idle stream")
				}
				cancel()
			}
			b.ReportMetric(float64(cs.Stats().Resumes)*1000/float64(b.N), "resumes/1000calls")
		})
	}
}

var deadlines = []time.Duration{time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond}

type deadlineEnv struct {
	coll *mongo.Collection
	next int
}

func newDeadlineEnv(b *testing.B) *deadlineEnv {
	b.Helper()
	uri := os.Getenv("MONGODB_URI")
	if uri == "" {
		uri = mongosim.StartTB(b, mongosim.WithNoopInterval(0)).URI()
	}
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	coll := client.Database("bench_deadline").Collection(b.Name()[len(b.Name())-4:])
	return &deadlineEnv{coll: coll}
}

func (e *deadlineEnv) insertTen(b *testing.B) {
	docs := make([]any, 10)
	for i := range docs {
		e.next++
		docs[i] = bson.D{{Key: "_id", Value: e.next}}
	}
	if _, err := e.coll.InsertMany(context.Background(), docs); err != nil {
		b.Fatal(err)
	}
}
