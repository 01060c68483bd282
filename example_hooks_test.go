package changestream_test

import (
	"context"
	"expvar"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/changestream-go/changestream"
)

// streamMetrics adapts the stream's hooks to a metrics system, here the
// standard library's expvar; a Prometheus or OpenTelemetry adapter is
// written the same way, outside this package.
type streamMetrics struct {
	batches, events, resumes, failedResumes, errors *expvar.Int
}

func (m streamMetrics) OnBatch(ev changestream.BatchEvent) {
	m.batches.Add(1)
	m.events.Add(int64(ev.Events))
}

func (m streamMetrics) OnResume(ev changestream.ResumeEvent) {
	if ev.Err != nil {
		m.failedResumes.Add(1)
		return
	}
	m.resumes.Add(1)
}

func (m streamMetrics) OnError(ev changestream.ErrorEvent) { m.errors.Add(1) }

// Hooks feed metrics without the package depending on a metrics library.
func ExampleWithHooks() {
	client, sim, shutdown := exampleServer()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")

	m := streamMetrics{new(expvar.Int), new(expvar.Int), new(expvar.Int), new(expvar.Int), new(expvar.Int)}
	cs, err := changestream.WatchCollection(ctx, orders, nil, changestream.WithHooks(m))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())
	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple"})
	cs.Next(ctx)
	sim.KillAllCursors() // as a failover would
	_, _ = orders.InsertOne(ctx, order{ID: 2, Item: "pear"})
	cs.Next(ctx)
	fmt.Println("events:", m.events.Value(), "resumes:", m.resumes.Value(), "errors:", m.errors.Value())
	// Output:
	// events: 2 resumes: 1 errors: 0
}

// The logger hears of resumes and of the end of the stream, never of
// single events. (The time attribute is dropped here to keep the output
// stable.)
func ExampleWithLogger() {
	client, sim, shutdown := exampleServer()
	defer shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orders := client.Database("shop").Collection("orders")

	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			switch a.Key {
			case slog.TimeKey, "position_time_t", "position_time_i", "took", "cause":
				return slog.Attr{}
			}
			return a
		},
	}))
	cs, err := changestream.WatchCollection(ctx, orders, nil, changestream.WithLogger(logger))
	if err != nil {
		fmt.Println("watch:", err)
		return
	}
	defer cs.Close(context.Background())
	_, _ = orders.InsertOne(ctx, order{ID: 1, Item: "apple"})
	cs.Next(ctx)
	sim.KillAllCursors()
	_, _ = orders.InsertOne(ctx, order{ID: 2, Item: "pear"})
	cs.Next(ctx)
	// Output:
	// level=INFO msg="changestream: resumed" option=resumeAfter
}
