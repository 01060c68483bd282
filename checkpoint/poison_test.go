package checkpoint

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

var errPoison = errors.New("poison")

// TestRunHandlerPolicy: what Run does when the handler fails on one event
// (n = 2): by default it stops; with HandlerRetries it calls again with a
// backoff, carries on if a call succeeds and stops once the retries are
// spent; with DeadLetter it hands the event over and carries on. A
// stopped Run's checkpoint stays before the event, so the next Run
// delivers it again; a dead-lettered event is acknowledged.
func TestRunHandlerPolicy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		failures    int // calls on n = 2 that fail before one succeeds
		retries     int
		deadLetter  bool
		wantErr     bool
		wantSeen    []int32
		wantRetries int64
		wantLetters int64
	}{
		{name: "default stops", failures: 100, wantErr: true, wantSeen: seq(0, 2)},
		{name: "a retry succeeds", failures: 2, retries: 3, wantSeen: seq(0, 5), wantRetries: 2},
		{name: "retries spent stop", failures: 100, retries: 2, wantErr: true, wantSeen: seq(0, 2), wantRetries: 2},
		{name: "dead letter", failures: 100, retries: 1, deadLetter: true, wantSeen: []int32{0, 1, 3, 4}, wantRetries: 1, wantLetters: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDeployment(t)
			coll := d.db.Collection("items")
			store := newMemStore()
			stats := &Stats{}
			var mu sync.Mutex
			var letters []DeadLetter
			calls := 0
			cfg := Config{Key: "k", Collection: coll, Store: store, HandlerRetries: tc.retries, Stats: stats,
				MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, CommitInterval: 10 * time.Millisecond}
			if tc.deadLetter {
				cfg.DeadLetter = func(_ context.Context, dl DeadLetter) error {
					mu.Lock()
					defer mu.Unlock()
					letters = append(letters, dl)
					return nil
				}
			}
			r := &recorder{fail: func(n int32) error {
				if n != 2 {
					return nil
				}
				mu.Lock()
				defer mu.Unlock()
				if calls++; calls <= tc.failures {
					return errPoison
				}
				return nil
			}}
			stop, ended := start(t, cfg, r)
			require.Eventually(t, func() bool { return !store.saved("k").ClusterTime.IsZero() }, 10*time.Second, 5*time.Millisecond)
			insertN(t, coll, 0, 5)
			if tc.wantErr {
				err := ends(t, stop, ended)
				require.ErrorIs(t, err, errPoison)
				assert.Equal(t, tc.wantSeen, r.got())
			} else {
				require.Eventually(t, func() bool { return r.count() == len(tc.wantSeen) }, 10*time.Second, 5*time.Millisecond)
				require.NoError(t, stop())
				assert.Equal(t, tc.wantSeen, r.got())
			}
			assert.Equal(t, tc.wantRetries, stats.HandlerRetries())
			assert.Equal(t, tc.wantLetters, stats.DeadLettered())
			if tc.deadLetter {
				require.Len(t, letters, 1)
				dl := letters[0]
				assert.Equal(t, "k", dl.Key)
				assert.Equal(t, "insert", dl.Event.Lookup("operationType").StringValue())
				assert.Equal(t, int32(2), dl.Event.Lookup("fullDocument", "n").Int32())
				assert.False(t, dl.Position.ClusterTime.IsZero())
				assert.ErrorIs(t, dl.Err, errPoison)
				assert.Equal(t, 2, dl.Attempts)
			}

			// The next Run delivers again what was not acknowledged: the
			// event that stopped Run, none that went to the dead letter.
			again := &recorder{}
			stop, _ = start(t, Config{Key: "k", Collection: coll, Store: store, CommitInterval: 10 * time.Millisecond}, again)
			insertN(t, coll, 5, 6)
			want := []int32{5}
			if tc.wantErr {
				want = []int32{2, 3, 4, 5}
			}
			require.Eventually(t, func() bool { return again.count() == len(want) }, 10*time.Second, 5*time.Millisecond)
			require.NoError(t, stop())
			assert.Equal(t, want, again.got())
		})
	}
}

// TestRunDeadLetterKeepsDocumentOrder: with several workers, a document's
// event that goes to the dead letter holds back that document's later
// events until the dead letter has returned, and only them.
func TestRunDeadLetterKeepsDocumentOrder(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	coll := d.db.Collection("items")
	store := newMemStore()
	release := make(chan struct{})
	var mu sync.Mutex
	var order []string
	note := func(s string) { mu.Lock(); defer mu.Unlock(); order = append(order, s) }
	cfg := Config{Key: "k", Collection: coll, Store: store, Workers: 4,
		DeadLetter: func(_ context.Context, dl DeadLetter) error {
			<-release
			note("dead letter " + dl.Event.Lookup("operationType").StringValue())
			return nil
		}}
	opened := make(chan struct{})
	cfg.OnOpen = func(changestream.Position) { close(opened) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, func(_ context.Context, ev changestream.Event[bson.Raw]) error {
			id := ev.DocumentKey.Lookup("_id").Int32()
			if id == 1 && ev.OperationType == changestream.OperationInsert {
				return errPoison
			}
			note(string(ev.OperationType) + " " + ev.DocumentKey.Lookup("_id").String())
			return nil
		})
	}()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	<-opened
	wctx := context.Background()
	for _, id := range []int32{1, 2} {
		_, err := coll.InsertOne(wctx, bson.D{{Key: "_id", Value: id}})
		require.NoError(t, err)
	}
	_, err := coll.UpdateOne(wctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}})
	require.NoError(t, err)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 1 }, 10*time.Second, 5*time.Millisecond,
		"the other document is handled while the dead letter waits")
	time.Sleep(200 * time.Millisecond) // the update has had time to be dispatched
	mu.Lock()
	assert.Equal(t, []string{`insert {"$numberInt":"2"}`}, order, "the update of the dead-lettered document waits")
	mu.Unlock()
	close(release)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 3 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, []string{`insert {"$numberInt":"2"}`, "dead letter insert", `update {"$numberInt":"1"}`}, order)
}

// TestRunDeadLetterOutcomes: an event Run cannot decode into the
// handler's type goes to the dead letter without a handler call (and
// Run carries on); a dead-letter function that fails ends Run with both
// errors, and the event is delivered again by the next Run.
func TestRunDeadLetterOutcomes(t *testing.T) {
	t.Parallel()
	t.Run("undecodable", func(t *testing.T) {
		t.Parallel()
		d := newDeployment(t)
		coll := d.db.Collection("items")
		store := newMemStore()
		var got []DeadLetter
		var mu sync.Mutex
		cfg := Config{Key: "k", Collection: coll, Store: store, DeadLetter: func(_ context.Context, dl DeadLetter) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, dl)
			return nil
		}}
		r := &recorder{}
		stop, _ := start(t, cfg, r)
		require.Eventually(t, func() bool { return !store.saved("k").ClusterTime.IsZero() }, 10*time.Second, 5*time.Millisecond)
		_, err := coll.InsertOne(context.Background(), bson.D{{Key: "n", Value: "not a number"}})
		require.NoError(t, err)
		insertN(t, coll, 1, 2)
		require.Eventually(t, func() bool { return r.count() == 1 }, 10*time.Second, 5*time.Millisecond)
		require.NoError(t, stop())
		assert.Equal(t, []int32{1}, r.got())
		require.Len(t, got, 1)
		assert.Zero(t, got[0].Attempts, "no handler call")
		assert.ErrorContains(t, got[0].Err, "decoding")
		assert.Equal(t, "not a number", got[0].Event.Lookup("fullDocument", "n").StringValue())
	})
	t.Run("dead letter fails", func(t *testing.T) {
		t.Parallel()
		d := newDeployment(t)
		coll := d.db.Collection("items")
		store := newMemStore()
		errQueue := errors.New("the dead-letter queue is down")
		cfg := Config{Key: "k", Collection: coll, Store: store, CommitInterval: 10 * time.Millisecond,
			DeadLetter: func(context.Context, DeadLetter) error { return errQueue }}
		r := &recorder{fail: func(n int32) error {
			if n == 1 {
				return errPoison
			}
			return nil
		}}
		stop, ended := start(t, cfg, r)
		require.Eventually(t, func() bool { return !store.saved("k").ClusterTime.IsZero() }, 10*time.Second, 5*time.Millisecond)
		insertN(t, coll, 0, 3)
		err := ends(t, stop, ended)
		require.ErrorIs(t, err, errPoison)
		assert.ErrorContains(t, err, errQueue.Error())
		assert.Equal(t, []int32{0}, r.got())

		again := &recorder{}
		stop, _ = start(t, Config{Key: "k", Collection: coll, Store: store}, again)
		require.Eventually(t, func() bool { return again.count() == 2 }, 10*time.Second, 5*time.Millisecond)
		require.NoError(t, stop())
		assert.Equal(t, []int32{1, 2}, again.got())
	})
}

func TestConfigHandlerRetriesNegative(t *testing.T) {
	t.Parallel()
	_, err := Config{Key: "k", Collection: newDeployment(t).db.Collection("c"), Store: newMemStore(), HandlerRetries: -1}.check()
	assert.ErrorContains(t, err, "HandlerRetries")
}
