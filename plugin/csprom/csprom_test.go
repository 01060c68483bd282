package csprom_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/checkpoint"
	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/plugin/csprom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func connect(t *testing.T) *mongo.Client {
	t.Helper()
	dep := mongosim.StartDeploymentTB(t)
	c, err := mongo.Connect(options.Client().ApplyURI(dep.URI))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

// TestStreamMetrics: a stream's events, resumes, errors by kind, batch
// latency and bytes, behind and health reach the registry under its name,
// with names and help that pass Prometheus's own lint; Forget drops them.
func TestStreamMetrics(t *testing.T) {
	t.Parallel()
	c := connect(t)
	coll := c.Database("d").Collection("c")
	m := csprom.New()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(m))
	ctx := context.Background()
	cs, err := changestream.WatchCollection(ctx, coll, nil, changestream.WithHooks(m.Hook("orders")))
	require.NoError(t, err)
	defer cs.Close(ctx)
	m.Watch("orders", cs)

	_, err = coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}}})
	require.NoError(t, err)
	for range 2 {
		nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		require.True(t, cs.Next(nctx), "%v", cs.Err())
		cancel()
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	cs.Next(short) // a caller's deadline: an error of kind timeout, not terminal
	cancel()

	problems, err := testutil.CollectAndLint(m)
	require.NoError(t, err)
	assert.Empty(t, problems)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP changestream_events_total Events the stream returned.
# TYPE changestream_events_total counter
changestream_events_total{stream="orders"} 2
# HELP changestream_errors_total Errors the stream reported, by kind, and whether they ended it.
# TYPE changestream_errors_total counter
changestream_errors_total{kind="timeout",stream="orders",terminal="false"} 1
`), "changestream_events_total", "changestream_errors_total"))
	assert.Equal(t, 1, testutil.CollectAndCount(m, "changestream_health"))
	n, err := testutil.GatherAndCount(reg, "changestream_batch_duration_seconds")
	require.NoError(t, err)
	assert.Positive(t, n)
	n, err = testutil.GatherAndCount(reg, "changestream_batch_bytes_total")
	require.NoError(t, err)
	assert.Equal(t, 1, n)

	m.Forget("orders")
	assert.Zero(t, testutil.CollectAndCount(m, "changestream_events_total", "changestream_batch_duration_seconds", "changestream_errors_total"))
}

// TestRunMetrics: a checkpoint.Run's health state, lease epoch (0 without
// a lease) and handler counters.
func TestRunMetrics(t *testing.T) {
	t.Parallel()
	c := connect(t)
	coll := c.Database("d").Collection("c")
	store, err := checkpoint.NewFileStore(t.TempDir())
	require.NoError(t, err)
	m := csprom.New()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(m))
	st := &checkpoint.Stats{}
	m.WatchRun("orders", st)
	opened := make(chan changestream.Position, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- checkpoint.RunRaw(ctx, checkpoint.Config{Key: "orders", Collection: coll, Store: store, Stats: st,
			OnOpen: func(p changestream.Position) { opened <- p }}, func(context.Context, bson.Raw) error { return nil })
	}()
	<-opened
	want := func(state string) string {
		return `
# HELP changestream_run_health 1 for a checkpoint.Run's health state.
# TYPE changestream_run_health gauge
changestream_run_health{state="` + state + `",stream="orders"} 1
# HELP changestream_run_lease_epoch The epoch of the lease the Run holds, 0 for none.
# TYPE changestream_run_lease_epoch gauge
changestream_run_lease_epoch{stream="orders"} 0
# HELP changestream_run_dead_lettered_total Events handed to the dead-letter function.
# TYPE changestream_run_dead_lettered_total counter
changestream_run_dead_lettered_total{stream="orders"} 0
`
	}
	names := []string{"changestream_run_health", "changestream_run_lease_epoch", "changestream_run_dead_lettered_total"}
	require.Eventually(t, func() bool {
		return testutil.GatherAndCompare(reg, strings.NewReader(want("caught-up")), names...) == nil
	}, 10*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want("stopped")), names...))
	problems, err := testutil.CollectAndLint(m)
	require.NoError(t, err)
	assert.Empty(t, problems)
}
