package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

type item struct {
	ID any   `bson:"_id"`
	N  int32 `bson:"n"`
}

// recorder is a handler that records the n of each event's document.
type recorder struct {
	mu   sync.Mutex
	seen []int32
	ops  []changestream.OperationType
	fail func(n int32) error // when set, an error for some events
}

func (r *recorder) handle(_ context.Context, ev changestream.Event[item]) error {
	var n int32 = -1
	if ev.FullDocument != nil {
		n = ev.FullDocument.N
	}
	if r.fail != nil {
		if err := r.fail(n); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, n)
	r.ops = append(r.ops, ev.OperationType)
	return nil
}

func (r *recorder) got() []int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int32(nil), r.seen...)
}

func (r *recorder) count() int { return len(r.got()) }

// start runs Run in a goroutine. stop cancels it and returns its error;
// ended is closed when Run returns by itself, and stop then returns its
// error at once.
func start(t *testing.T, cfg Config, r *recorder) (stop func() error, ended <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		err = Run(ctx, cfg, r.handle)
	}()
	stop = func() error {
		cancel()
		<-done
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop, done
}

// ends waits for Run to end by itself and returns its error.
func ends(t *testing.T, stop func() error, ended <-chan struct{}) error {
	t.Helper()
	select {
	case <-ended:
		return stop()
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end")
		return nil
	}
}

func insertN(t *testing.T, coll *mongo.Collection, from, to int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for n := from; n < to; n++ {
		_, err := coll.InsertOne(ctx, bson.D{{Key: "n", Value: int32(n)}})
		require.NoError(t, err)
	}
}

func seq(from, to int) []int32 {
	var out []int32
	for n := from; n < to; n++ {
		out = append(out, int32(n))
	}
	return out
}

// TestRunRestart: a consumer stopped and started again carries on from its
// checkpoint: nothing lost, nothing repeated after a clean stop.
func TestRunRestart(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	coll := d.db.Collection("items")
	store, err := NewFileStore(t.TempDir())
	require.NoError(t, err)
	cfg := Config{Key: "items", Collection: coll, Store: store, CommitInterval: 20 * time.Millisecond}

	r := &recorder{}
	stop, _ := start(t, cfg, r)
	require.Eventually(t, func() bool { _, ok, _ := store.Load(context.Background(), "items"); return ok }, 10*time.Second, 5*time.Millisecond,
		"a stream from now saves its starting point at once")
	insertN(t, coll, 0, 50)
	require.Eventually(t, func() bool { return r.count() == 50 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, stop())

	insertN(t, coll, 50, 80) // while no consumer runs
	stop, _ = start(t, cfg, r)
	insertN(t, coll, 80, 100)
	require.Eventually(t, func() bool { return r.count() >= 100 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, stop())
	assert.Equal(t, seq(0, 100), r.got(), "in order, none lost, none repeated")
}

// TestRunParallelKeepsPerKeyOrder: with several workers, each document's
// events are handled in stream order.
func TestRunParallelKeepsPerKeyOrder(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	coll := d.db.Collection("items")
	store, err := NewFileStore(t.TempDir())
	require.NoError(t, err)
	var mu sync.Mutex
	perKey := map[string][]int32{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Key: "k", Collection: coll, Store: store, Workers: 4},
			func(_ context.Context, ev changestream.Event[item]) error {
				var n int32
				if ev.FullDocument != nil {
					n = ev.FullDocument.N
				} else {
					n = ev.UpdateDescription.UpdatedFields.Lookup("n").Int32()
				}
				time.Sleep(time.Duration(n%3) * time.Millisecond)
				mu.Lock()
				defer mu.Unlock()
				perKey[ev.DocumentKey.String()] = append(perKey[ev.DocumentKey.String()], n)
				return nil
			})
	}()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	require.Eventually(t, func() bool { _, ok, _ := store.Load(context.Background(), "k"); return ok }, 10*time.Second, 5*time.Millisecond)
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	for k := range 8 {
		_, err := coll.InsertOne(wctx, bson.D{{Key: "_id", Value: k}, {Key: "n", Value: int32(0)}})
		require.NoError(t, err)
	}
	for n := 1; n < 10; n++ {
		for k := range 8 {
			_, err := coll.UpdateOne(wctx, bson.D{{Key: "_id", Value: k}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: int32(n)}}}})
			require.NoError(t, err)
		}
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		total := 0
		for _, v := range perKey {
			total += len(v)
		}
		return total == 80
	}, 20*time.Second, 5*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for k, v := range perKey {
		assert.Equal(t, seq(0, 10), v, "document %s", k)
	}
}

// TestRunHandlerError: a failing handler ends Run with its error, and the
// event is delivered again by the next Run.
func TestRunHandlerError(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	coll := d.db.Collection("items")
	store, err := NewFileStore(t.TempDir())
	require.NoError(t, err)
	cfg := Config{Key: "k", Collection: coll, Store: store, CommitInterval: 10 * time.Millisecond}
	boom := errors.New("boom")
	r := &recorder{fail: func(n int32) error {
		if n == 5 {
			return boom
		}
		return nil
	}}
	stop, ended := start(t, cfg, r)
	require.Eventually(t, func() bool { _, ok, _ := store.Load(context.Background(), "k"); return ok }, 10*time.Second, 5*time.Millisecond)
	insertN(t, coll, 0, 10)
	require.ErrorIs(t, ends(t, stop, ended), boom)
	assert.Equal(t, seq(0, 5), r.got())

	r.fail = nil
	stop, _ = start(t, cfg, r)
	require.Eventually(t, func() bool { return r.count() == 10 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, stop())
	assert.Equal(t, seq(0, 10), r.got(), "the failed event again, then the rest")
}

// TestRunSpecMismatch: a checkpoint of another stream is refused.
func TestRunSpecMismatch(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	coll := d.db.Collection("items")
	store, err := NewFileStore(t.TempDir())
	require.NoError(t, err)
	cfg := Config{Key: "k", Collection: coll, Store: store}
	r := &recorder{}
	stop, _ := start(t, cfg, r)
	require.Eventually(t, func() bool { _, ok, _ := store.Load(context.Background(), "k"); return ok }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, stop())

	cfg.Pipeline = mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "operationType", Value: "insert"}}}}}
	err = Run(context.Background(), cfg, r.handle)
	assert.ErrorIs(t, err, ErrSpecMismatch)
	assert.ErrorContains(t, err, "pipeline=sha256:")
}

// TestRunHistoryLost: a checkpoint that left the oplog fails Run with
// ErrHistoryLost by default; with ResyncFromNow, Resync is called once and
// the consumer carries on from now.
func TestRunHistoryLost(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	if d.sim == nil && d.cluster == nil {
		t.Skip("needs the simulator's TruncateOplog")
	}
	coll := d.db.Collection("items")
	store, err := NewFileStore(t.TempDir())
	require.NoError(t, err)
	cfg := Config{Key: "k", Collection: coll, Store: store, CommitInterval: 10 * time.Millisecond}
	r := &recorder{}
	stop, _ := start(t, cfg, r)
	require.Eventually(t, func() bool { _, ok, _ := store.Load(context.Background(), "k"); return ok }, 10*time.Second, 5*time.Millisecond)
	insertN(t, coll, 0, 3)
	require.Eventually(t, func() bool { return r.count() == 3 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, stop())

	insertN(t, coll, 3, 6)
	d.truncateOplog(t)
	insertN(t, coll, 6, 7)

	err = Run(context.Background(), cfg, r.handle)
	require.ErrorIs(t, err, changestream.ErrHistoryLost, "fails by default")

	var resyncs atomic.Int32
	cfg.OnUnresumable = ResyncFromNow
	cfg.Resync = func(ctx context.Context, cause error) error {
		resyncs.Add(1)
		assert.ErrorIs(t, cause, changestream.ErrHistoryLost)
		// A change made while the resync runs comes after it.
		_, err := coll.InsertOne(ctx, bson.D{{Key: "n", Value: int32(50)}})
		return err
	}
	stop, _ = start(t, cfg, r)
	require.Eventually(t, func() bool {
		cp, _, _ := store.Load(context.Background(), "k")
		return cp.ClusterTime.T > 0 && resyncs.Load() == 1
	}, 10*time.Second, 5*time.Millisecond)
	insertN(t, coll, 100, 102)
	require.Eventually(t, func() bool { return r.count() == 6 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, stop())
	assert.EqualValues(t, 1, resyncs.Load())
	assert.Equal(t, []int32{0, 1, 2, 50, 100, 101}, r.got(), "carries on from before the resync")

	stop, _ = start(t, cfg, r) // the resync's position was saved
	insertN(t, coll, 102, 103)
	require.Eventually(t, func() bool { return r.count() == 7 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, stop())
	assert.EqualValues(t, 1, resyncs.Load(), "no second resync")
}

// TestRunInvalidate: dropping the collection stops Run with ErrInvalidated
// by default; RestartAfterInvalidate carries on with the new collection.
func TestRunInvalidate(t *testing.T) {
	t.Parallel()
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%t", restart), func(t *testing.T) {
			t.Parallel()
			d := newDeployment(t)
			coll := d.db.Collection("items")
			store, err := NewFileStore(t.TempDir())
			require.NoError(t, err)
			cfg := Config{Key: "k", Collection: coll, Store: store, CommitInterval: 10 * time.Millisecond}
			if restart {
				cfg.OnInvalidate = RestartAfterInvalidate
			}
			r := &recorder{}
			stop, ended := start(t, cfg, r)
			require.Eventually(t, func() bool { _, ok, _ := store.Load(context.Background(), "k"); return ok }, 10*time.Second, 5*time.Millisecond)
			insertN(t, coll, 0, 2)
			require.NoError(t, coll.Drop(context.Background()))
			if !restart {
				require.ErrorIs(t, ends(t, stop, ended), ErrInvalidated)
				assert.Equal(t, []changestream.OperationType{"insert", "insert", "drop", "invalidate"}, r.ops)
				return
			}
			require.Eventually(t, func() bool { return r.count() == 4 }, 10*time.Second, 5*time.Millisecond)
			insertN(t, coll, 2, 4)
			require.Eventually(t, func() bool { return r.count() == 6 }, 10*time.Second, 5*time.Millisecond)
			require.NoError(t, stop())
			assert.Equal(t, []int32{0, 1, -1, -1, 2, 3}, r.got())
		})
	}
}

// TestRunQuietStreamProgress: a filtered stream that sees no events still
// moves its checkpoint (the no-op writer moves the server's time).
func TestRunQuietStreamProgress(t *testing.T) {
	t.Parallel()
	d := newDeployment(t, mongosim.WithNoopInterval(50*time.Millisecond))
	coll := d.db.Collection("items")
	store, err := NewFileStore(t.TempDir())
	require.NoError(t, err)
	cfg := Config{Key: "k", Collection: coll, Store: store, CommitInterval: 10 * time.Millisecond,
		Pipeline: mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "operationType", Value: "delete"}}}}},
		Options:  []changestream.Option{changestream.WithMaxAwaitTime(50 * time.Millisecond)}}
	r := &recorder{}
	stop, _ := start(t, cfg, r)
	var first Checkpoint
	require.Eventually(t, func() bool {
		var ok bool
		first, ok, _ = store.Load(context.Background(), "k")
		return ok
	}, 10*time.Second, 5*time.Millisecond)
	insertN(t, coll, 0, 5) // filtered out
	require.Eventually(t, func() bool {
		cp, _, _ := store.Load(context.Background(), "k")
		return Compare(cp.Position, first.Position) > 0 && cp.ClusterTime.T > first.ClusterTime.T
	}, 10*time.Second, 5*time.Millisecond, "the checkpoint moved without an event")
	require.NoError(t, stop())
	assert.Zero(t, r.count())
}

func TestRunBadConfig(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	coll := d.db.Collection("items")
	store, err := NewFileStore(t.TempDir())
	require.NoError(t, err)
	ms := d.store(t)
	h := (&recorder{}).handle
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no key", Config{Collection: coll, Store: store}, "empty key"},
		{"no target", Config{Key: "k", Store: store}, "exactly one of"},
		{"two targets", Config{Key: "k", Collection: coll, Database: d.db, Store: store}, "exactly one of"},
		{"no store", Config{Key: "k", Collection: coll}, "Store is required"},
		{"lease without its store", Config{Key: "k", Collection: coll, Store: store, Lease: &LeaseConfig{Store: ms}}, "Store must be Lease.Store"},
		{"lease without a store", Config{Key: "k", Collection: coll, Store: ms, Lease: &LeaseConfig{}}, "Lease.Store is required"},
		{"tiny ttl", Config{Key: "k", Collection: coll, Store: ms, Lease: &LeaseConfig{Store: ms, TTL: time.Millisecond}}, "below 10ms"},
		{"resync without a function", Config{Key: "k", Collection: coll, Store: store, OnUnresumable: ResyncFromNow}, "needs a Resync"},
		{"negative workers", Config{Key: "k", Collection: coll, Store: store, Workers: -1}, "cannot be negative"},
		{"backoffs", Config{Key: "k", Collection: coll, Store: store, MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "MaxBackoff is below"},
		{"bad pipeline", Config{Key: "k", Collection: coll, Store: store, Pipeline: 7}, "pipeline"},
		{"unknown policy", Config{Key: "k", Collection: coll, Store: store, OnInvalidate: 9}, "unknown OnInvalidate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.ErrorContains(t, Run(context.Background(), tc.cfg, h), tc.want)
		})
	}
	assert.ErrorContains(t, Run[item](context.Background(), Config{Key: "k", Collection: coll, Store: store}, nil), "nil handler")
}

// TestRunStartAndBeforeCommit: without a checkpoint, Run starts where
// StartAfter or StartAtOperationTime say; BeforeCommit runs before every
// save, and a save it refuses does not happen.
func TestRunStartAndBeforeCommit(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	coll := d.db.Collection("items")
	ctx := context.Background()
	cs, err := changestream.WatchCollection(ctx, coll, nil)
	require.NoError(t, err)
	insertN(t, coll, 0, 5)
	var events []changestream.Event[item]
	for range 5 {
		require.True(t, cs.Next(ctx), "%v", cs.Err())
		var ev changestream.Event[item]
		require.NoError(t, cs.Decode(&ev))
		events = append(events, ev)
	}
	require.NoError(t, cs.Close(ctx))

	for _, tc := range []struct {
		name string
		set  func(*Config)
		want []int32
	}{
		{"StartAfter", func(c *Config) { c.StartAfter = events[1].ID }, seq(2, 5)},
		{"StartAtOperationTime", func(c *Config) { ts := events[3].ClusterTime; c.StartAtOperationTime = &ts }, seq(3, 5)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, err := NewFileStore(t.TempDir())
			require.NoError(t, err)
			var flushes atomic.Int32
			cfg := Config{Key: "k", Collection: coll, Store: store, CommitInterval: 5 * time.Millisecond,
				BeforeCommit: func(context.Context) error { flushes.Add(1); return nil }}
			tc.set(&cfg)
			r := &recorder{}
			stop, _ := start(t, cfg, r)
			require.Eventually(t, func() bool { return r.count() == len(tc.want) }, 10*time.Second, 5*time.Millisecond)
			require.Eventually(t, func() bool {
				cp, _, _ := store.Load(ctx, "k")
				return Compare(cp.Position, positionOf(events[4])) >= 0
			}, 10*time.Second, 5*time.Millisecond)
			require.NoError(t, stop())
			assert.Equal(t, tc.want, r.got())
			assert.Positive(t, flushes.Load())
		})
	}

	store, err := NewFileStore(t.TempDir())
	require.NoError(t, err)
	refuse := errors.New("disk full")
	err = Run(ctx, Config{Key: "k", Collection: coll, Store: store, BeforeCommit: func(context.Context) error { return refuse }},
		(&recorder{}).handle)
	assert.ErrorIs(t, err, refuse, "the first save, of the starting point, is refused")
	_, ok, err := store.Load(ctx, "k")
	require.NoError(t, err)
	assert.False(t, ok, "nothing saved")

	ts := events[0].ClusterTime
	err = Run(ctx, Config{Key: "k", Collection: coll, Store: store, StartAfter: events[0].ID, StartAtOperationTime: &ts}, (&recorder{}).handle)
	assert.ErrorContains(t, err, "at most one of")
}

func positionOf(ev changestream.Event[item]) changestream.Position {
	ts, _ := changestream.TokenTime(ev.ID)
	return changestream.Position{Token: ev.ID, ClusterTime: ts}
}

// TestRunRaw: the handler gets each event whole, as the server sent it.
func TestRunRaw(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	coll := d.db.Collection("items")
	store, err := NewFileStore(t.TempDir())
	require.NoError(t, err)
	var mu sync.Mutex
	var got []bson.Raw
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- RunRaw(ctx, Config{Key: "k", Collection: coll, Store: store, Workers: 2}, func(_ context.Context, ev bson.Raw) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, ev)
			return nil
		})
	}()
	require.Eventually(t, func() bool { _, ok, _ := store.Load(context.Background(), "k"); return ok }, 10*time.Second, 5*time.Millisecond)
	insertN(t, coll, 0, 3)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 3 }, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	for _, ev := range got {
		assert.Equal(t, "insert", ev.Lookup("operationType").StringValue())
		assert.NotEmpty(t, ev.Lookup("_id", "_data").StringValue())
		assert.NotZero(t, ev.Lookup("wallTime").Time())
	}
	assert.ErrorContains(t, RunRaw(context.Background(), Config{}, nil), "nil handler")
}

// TestRunCrashRepeatsAtMostMaxInFlight: the issue's own case. With
// MaxInFlight 5 and a commit interval of 30 s, a consumer that has
// handled 60 events leaves a checkpoint (copied as a SIGKILL would leave
// it, without the final commit) from which a new Run repeats at most 5.
// Before the bound counted saves, it repeated all 60.
func TestRunCrashRepeatsAtMostMaxInFlight(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	coll := d.db.Collection("items")
	dir := t.TempDir()
	store, err := NewFileStore(dir)
	require.NoError(t, err)
	cfg := Config{Key: "items", Collection: coll, Store: store, MaxInFlight: 5, CommitInterval: 30 * time.Second}
	r := &recorder{}
	opened := make(chan struct{})
	cfg.OnOpen = func(changestream.Position) { close(opened) }
	stop, _ := start(t, cfg, r)
	<-opened
	insertN(t, coll, 0, 60)
	require.Eventually(t, func() bool { return r.count() == 60 }, 10*time.Second, 5*time.Millisecond)
	crashed := t.TempDir()
	files, err := filepath.Glob(filepath.Join(dir, "checkpoint-*.json"))
	require.NoError(t, err)
	require.Len(t, files, 1)
	data, err := os.ReadFile(files[0])
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(crashed, filepath.Base(files[0])), data, 0o600))
	require.NoError(t, stop())

	crashedStore, err := NewFileStore(crashed)
	require.NoError(t, err)
	cfg.Store, cfg.OnOpen = crashedStore, nil
	again := &recorder{}
	stop, _ = start(t, cfg, again)
	insertN(t, coll, 60, 61) // a marker: once it is handled, every repeat came before it
	require.Eventually(t, func() bool { g := again.got(); return len(g) > 0 && g[len(g)-1] == 60 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, stop())
	repeated := again.got()
	t.Logf("repeated after the crash: %v", repeated[:len(repeated)-1])
	assert.LessOrEqual(t, len(repeated)-1, 5)
	assert.Equal(t, seq(60-(len(repeated)-1), 61), repeated, "the last events, in order, none skipped")
}

// TestRunSlowDocumentHoldsUpOnlyItself: with Workers 8, one handler call
// that does not return holds up the later events of its own document and
// no other: the other 63 documents' events are all handled while it
// hangs. Before, every document that hashed to the stuck call's worker
// (about 8 of 64) waited for it.
func TestRunSlowDocumentHoldsUpOnlyItself(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	coll := d.db.Collection("items")
	store, err := NewFileStore(t.TempDir())
	require.NoError(t, err)
	const docs = 64
	release := make(chan struct{})
	var mu sync.Mutex
	handled := map[int32][]string{} // document -> operation types handled
	opened := make(chan struct{})
	cfg := Config{Key: "k", Collection: coll, Store: store, Workers: 8, OnOpen: func(changestream.Position) { close(opened) }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, func(ctx context.Context, ev changestream.Event[item]) error {
			id := ev.DocumentKey.Lookup("_id").Int32()
			if id == 0 && ev.OperationType == changestream.OperationInsert {
				select { // stuck until released
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			mu.Lock()
			defer mu.Unlock()
			handled[id] = append(handled[id], string(ev.OperationType))
			return nil
		})
	}()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	<-opened
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	for id := range int32(docs) {
		_, err := coll.InsertOne(wctx, bson.D{{Key: "_id", Value: id}, {Key: "n", Value: id}})
		require.NoError(t, err)
	}
	_, err = coll.UpdateOne(wctx, bson.D{{Key: "_id", Value: int32(0)}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: -1}}}})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == docs-1
	}, 10*time.Second, 5*time.Millisecond, "every other document handled while document 0 hangs")
	mu.Lock()
	assert.Empty(t, handled[0], "document 0's update waits for its insert")
	mu.Unlock()
	close(release)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled[0]) == 2
	}, 10*time.Second, 5*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"insert", "update"}, handled[0], "in order")
}

// TestDocumentIdentity: a document is known by its namespace and _id,
// whatever else its documentKey carries.
func TestDocumentIdentity(t *testing.T) {
	t.Parallel()
	raw := func(d bson.D) bson.Raw { b, err := bson.Marshal(d); require.NoError(t, err); return b }
	unsharded := raw(bson.D{{Key: "_id", Value: 1}})
	sharded := raw(bson.D{{Key: "sku", Value: 5}, {Key: "_id", Value: 1}})
	assert.Equal(t, documentIdentity("d", "c", unsharded), documentIdentity("d", "c", sharded), "the shard key's fields do not change it")
	assert.NotEqual(t, documentIdentity("d", "c", unsharded), documentIdentity("d", "c2", unsharded), "another collection's document")
	assert.NotEqual(t, documentIdentity("d", "c", unsharded), documentIdentity("d", "c", raw(bson.D{{Key: "_id", Value: int64(1)}})), "another type, another _id")
	assert.Nil(t, documentIdentity("d", "c", nil))
	noID := raw(bson.D{{Key: "k", Value: 1}})
	assert.Equal(t, noID, documentIdentity("d", "c", noID))
}

// TestRunOrderWhenTheDocumentKeyChangesShape: a document's events keep
// their order among the workers when its documentKey gains fields while
// it is consumed, its collection sharded ({_id} becomes {sku, _id}) or
// its shard key refined ({sku, _id} becomes {sku, color, _id}): the
// update after the change waits for the insert before it. Sharded
// cluster only: on a replica set a documentKey is {_id} always.
func TestRunOrderWhenTheDocumentKeyChangesShape(t *testing.T) {
	t.Parallel()
	sku := bson.D{{Key: "sku", Value: 1}}
	skuColor := bson.D{{Key: "sku", Value: 1}, {Key: "color", Value: 1}}
	for _, tc := range []struct {
		name      string
		before    bson.D                                    // the shard key before the insert, nil for none
		change    func(*testing.T, *testDeployment, string) // between the insert and the update
		insertKey string
		updateKey string
	}{
		{name: "sharded", change: func(t *testing.T, d *testDeployment, ns string) {
			require.NoError(t, d.client.Database("admin").RunCommand(context.Background(), bson.D{{Key: "shardCollection", Value: ns}, {Key: "key", Value: sku}}).Err())
		}, insertKey: `{"_id": {"$numberInt":"1"}}`, updateKey: `{"sku": {"$numberInt":"5"},"_id": {"$numberInt":"1"}}`},
		{name: "refined", before: sku, change: func(t *testing.T, d *testDeployment, ns string) {
			_, err := d.db.Collection("items").Indexes().CreateOne(context.Background(), mongo.IndexModel{Keys: skuColor})
			require.NoError(t, err)
			require.NoError(t, d.client.Database("admin").RunCommand(context.Background(), bson.D{{Key: "refineCollectionShardKey", Value: ns}, {Key: "key", Value: skuColor}}).Err())
		}, insertKey: `{"sku": {"$numberInt":"5"},"_id": {"$numberInt":"1"}}`, updateKey: `{"sku": {"$numberInt":"5"},"color": "red","_id": {"$numberInt":"1"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDeployment(t)
			if d.cluster == nil {
				t.Skip("a documentKey changes shape only when a collection is sharded (CHANGESTREAM_TEST_TOPOLOGY=sharded)")
			}
			coll := d.db.Collection("items")
			ns := d.db.Name() + ".items"
			if tc.before != nil {
				require.NoError(t, d.db.CreateCollection(context.Background(), "items"))
				require.NoError(t, d.client.Database("admin").RunCommand(context.Background(), bson.D{{Key: "shardCollection", Value: ns}, {Key: "key", Value: tc.before}}).Err())
			}
			store, err := NewFileStore(t.TempDir())
			require.NoError(t, err)
			var mu sync.Mutex
			var order []string
			first := make(chan struct{})
			opened := make(chan struct{})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- Run(ctx, Config{Key: "k", Collection: coll, Store: store, Workers: 4, OnOpen: func(changestream.Position) { close(opened) }},
					func(_ context.Context, ev changestream.Event[bson.Raw]) error {
						if ev.OperationType == changestream.OperationInsert {
							<-first // held until the update has been dispatched
						}
						mu.Lock()
						defer mu.Unlock()
						order = append(order, string(ev.OperationType)+" "+ev.DocumentKey.String())
						return nil
					})
			}()
			defer func() {
				cancel()
				require.NoError(t, <-done)
			}()
			<-opened
			wctx := context.Background()
			_, err = coll.InsertOne(wctx, bson.D{{Key: "_id", Value: 1}, {Key: "sku", Value: 5}, {Key: "color", Value: "red"}})
			require.NoError(t, err)
			tc.change(t, d, ns)
			_, err = coll.UpdateOne(wctx, bson.D{{Key: "sku", Value: 5}, {Key: "color", Value: "red"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}})
			require.NoError(t, err)
			time.Sleep(1500 * time.Millisecond) // the update reaches the dispatcher (an idle shard holds it up to a no-op and a getMore)
			mu.Lock()
			assert.Empty(t, order, "the update waits behind the insert of the same document")
			mu.Unlock()
			close(first)
			require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 2 }, 10*time.Second, 5*time.Millisecond)
			assert.Equal(t, []string{"insert " + tc.insertKey, "update " + tc.updateKey}, order)
		})
	}
}
