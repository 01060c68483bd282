package csprom_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/plugin/csprom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// A stream named "orders" feeds the metrics through its hook, and Watch
// has them read its figures at each scrape; here one scrape is printed in
// part, as promhttp would serve it.
func ExampleNew() {
	sim, _ := mongosim.NewServer()
	defer sim.Close()
	client, _ := mongo.Connect(options.Client().ApplyURI(sim.URI()))
	defer func() { _ = client.Disconnect(context.Background()) }()
	orders := client.Database("shop").Collection("orders")

	m := csprom.New(csprom.WithHealthThresholds(changestream.HealthThresholds{Lagging: time.Minute}))
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	ctx := context.Background()
	cs, _ := changestream.WatchCollection(ctx, orders, nil, changestream.WithHooks(m.Hook("orders")))
	defer cs.Close(ctx)
	m.Watch("orders", cs)
	defer m.Forget("orders")

	_, _ = orders.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	cs.Next(ctx)
	cs.TryNext(ctx) // nothing more: caught up

	families, _ := reg.Gather()
	for _, f := range families {
		if n := f.GetName(); n == "changestream_events_total" || n == "changestream_health" {
			for _, metric := range f.GetMetric() {
				var labels []string
				for _, l := range metric.GetLabel() {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
				value := metric.GetCounter().GetValue() + metric.GetGauge().GetValue()
				fmt.Printf("%s{%s} %v\n", n, strings.Join(labels, ","), value)
			}
		}
	}
	fmt.Println("lint problems:", len(must(testutil.CollectAndLint(m))))
	// Output:
	// changestream_events_total{stream=orders} 1
	// changestream_health{state=caught-up,stream=orders} 1
	// lint problems: 0
}

// ErrorKind is the label value of changestream_errors_total: a bounded
// set, whatever the error's text.
func ExampleErrorKind() {
	fmt.Println(csprom.ErrorKind(fmt.Errorf("changestream: %w", context.DeadlineExceeded)))
	fmt.Println(csprom.ErrorKind(changestream.ErrClosed))
	// Output:
	// timeout
	// closed
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
