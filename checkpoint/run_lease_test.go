package checkpoint

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// TestRunLeaseHandover: two consumers share a key; one consumes, the
// other stands by and takes over when the first stops (its lease released
// on the way out), and again when a third party takes the lease away
// (the holder notices, stands by, and takes the lease back once it is
// free). Every event is handled; the clean handover repeats none.
func TestRunLeaseHandover(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	coll := d.db.Collection("items")
	store := d.store(t)
	var mu sync.Mutex
	byOwner := map[string][]int32{}
	var handled []int32
	times := map[int32]bson.Timestamp{}
	cfg := func(owner string) Config {
		return Config{Key: "k", Collection: coll, Store: store, CommitInterval: 10 * time.Millisecond,
			Lease: &LeaseConfig{Store: store, Owner: owner, TTL: 300 * time.Millisecond, RetryEvery: 20 * time.Millisecond}}
	}
	handler := func(owner string) func(context.Context, changestream.Event[item]) error {
		return func(_ context.Context, ev changestream.Event[item]) error {
			mu.Lock()
			defer mu.Unlock()
			n := ev.FullDocument.N
			byOwner[owner] = append(byOwner[owner], n)
			handled = append(handled, n)
			times[n] = ev.ClusterTime
			return nil
		}
	}
	committed := func(n int32) bool {
		mu.Lock()
		ts := times[n]
		mu.Unlock()
		cp, _, _ := store.Load(context.Background(), "k")
		return ts.T != 0 && !cp.ClusterTime.Before(ts)
	}
	run := func(owner string) func() error {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, cfg(owner), handler(owner)) }()
		var once sync.Once
		var err error
		stop := func() error {
			once.Do(func() { cancel(); err = <-done })
			return err
		}
		t.Cleanup(func() { _ = stop() })
		return stop
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(handled)
	}
	distinct := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(times)
	}
	stopA := run("a")
	require.Eventually(t, func() bool { _, ok, _ := store.Load(context.Background(), "k"); return ok }, 10*time.Second, 5*time.Millisecond)
	stopB := run("b")
	insertN(t, coll, 0, 20)
	require.Eventually(t, func() bool { return count() == 20 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, stopA())

	insertN(t, coll, 20, 40)
	require.Eventually(t, func() bool { return count() == 40 && committed(39) }, 10*time.Second, 5*time.Millisecond)

	// Someone else takes the lease: b must stop, stand by, and take it
	// again once it is free.
	ctx := context.Background()
	_, err := d.db.Collection("checkpoints").UpdateOne(ctx, bson.D{{Key: "_id", Value: "k"}},
		mongo.Pipeline{{{Key: "$set", Value: bson.D{{Key: "owner", Value: "intruder"}, {Key: "epoch", Value: bson.D{{Key: "$add", Value: bson.A{"$epoch", 1}}}},
			{Key: "leaseUntil", Value: bson.D{{Key: "$add", Value: bson.A{"$$NOW", 200}}}}}}}})
	require.NoError(t, err)
	insertN(t, coll, 40, 60)
	// Every event, not a count of 60: the events b handled before it
	// noticed the intrusion come again, so 60 handlings can come before
	// the last event's first.
	require.Eventually(t, func() bool { return distinct() == 60 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, stopB())

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, seq(0, 20), byOwner["a"], "a, then a clean handover")
	assert.Equal(t, seq(20, 40), byOwner["b"][:20], "b, from a's last commit")
	// b may handle a few events after the intrusion before it notices:
	// they were not committed (its saves are fenced), so b handles them
	// again after taking the lease back. Nothing is lost.
	seen := map[int32]bool{}
	for _, n := range handled {
		seen[n] = true
	}
	for n := range int32(60) {
		assert.True(t, seen[n], "event %d handled", n)
	}
	for _, n := range handled[40:] {
		assert.GreaterOrEqual(t, n, int32(40), "only events after the intrusion are repeated")
	}
}

// TestRunStopWhenLost: with StopWhenLost, losing the lease ends Run with
// ErrLeaseLost instead of standing by.
func TestRunStopWhenLost(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	store := d.store(t)
	cfg := Config{Key: "k", Collection: d.db.Collection("items"),
		Lease: &LeaseConfig{Store: store, Owner: "a", TTL: 300 * time.Millisecond, StopWhenLost: true}}
	r := &recorder{}
	stop, ended := start(t, cfg, r)
	require.Eventually(t, func() bool { _, ok, _ := store.Load(context.Background(), "k"); return ok }, 10*time.Second, 5*time.Millisecond)
	_, err := d.db.Collection("checkpoints").UpdateOne(context.Background(), bson.D{{Key: "_id", Value: "k"}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "epoch", Value: 1}}}, {Key: "$set", Value: bson.D{{Key: "owner", Value: "intruder"}}}})
	require.NoError(t, err)
	assert.ErrorIs(t, ends(t, stop, ended), ErrLeaseLost)
}
