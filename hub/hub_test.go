package hub_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/hub"
	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	dep  mongosim.Deployment // a replica set, or a sharded cluster (CHANGESTREAM_TEST_TOPOLOGY=sharded)
	coll *mongo.Collection
	hub  *hub.Hub
}

// newEnv starts a simulator and a hub on a collection stream.
func newEnv(t testing.TB, opts ...changestream.Option) *env {
	t.Helper()
	dep := mongosim.StartDeploymentTB(t)
	client, err := mongo.Connect(testclient.Options(dep.URI))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	coll := client.Database("d").Collection("c")
	cs, err := changestream.WatchCollection(context.Background(), coll, nil, opts...)
	require.NoError(t, err)
	h, err := hub.New(cs)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	return &env{dep: dep, coll: coll, hub: h}
}

// killAllCursors kills the member's cursors, or every mongos's.
func (e *env) killAllCursors() {
	if e.dep.Server != nil {
		e.dep.Server.KillAllCursors()
		return
	}
	for _, r := range e.dep.Cluster.Routers() {
		r.KillAllCursors()
	}
}

// closeClientConnections drops the clients' connections to the member,
// or to every mongos.
func (e *env) closeClientConnections() {
	if e.dep.Server != nil {
		e.dep.Server.CloseClientConnections()
		return
	}
	for _, r := range e.dep.Cluster.Routers() {
		r.CloseClientConnections()
	}
}

// insert writes documents from..to-1, again after an error the test's own
// faults caused (a duplicate key then means the first try went through).
func (e *env) insert(t testing.TB, from, to int) {
	t.Helper()
	for n := from; n < to; n++ {
		var err error
		for range 5 {
			_, err = e.coll.InsertOne(context.Background(), bson.D{{Key: "_id", Value: int32(n)}})
			if err == nil || mongo.IsDuplicateKeyError(err) {
				err = nil
				break
			}
		}
		require.NoError(t, err)
	}
}

func (e *env) subscribe(t testing.TB, opts ...hub.Option) *hub.Subscription {
	t.Helper()
	s, err := e.hub.Subscribe(opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// read takes n events from s and returns their _id.
func read(t testing.TB, s *hub.Subscription, n int) []int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []int32
	for len(out) < n {
		require.True(t, s.Next(ctx), "after %v: %v", out, s.Err())
		out = append(out, s.Current.Lookup("documentKey", "_id").Int32())
	}
	return out
}

func seq(from, to int) []int32 {
	var out []int32
	for n := from; n < to; n++ {
		out = append(out, int32(n))
	}
	return out
}

func isEven(ev bson.Raw) bool {
	id, ok := ev.Lookup("documentKey", "_id").Int32OK()
	return ok && id%2 == 0
}

// TestOrderAndFilters: every subscriber sees the events its filters
// (WithFilter, WithMatch, or both) take, in stream order.
func TestOrderAndFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	all := e.subscribe(t)
	even := e.subscribe(t, hub.WithFilter(isEven))
	low := e.subscribe(t, hub.WithMatch(bson.D{{Key: "documentKey._id", Value: bson.D{{Key: "$lt", Value: 5}}}}))
	lowEven := e.subscribe(t, hub.WithMatch(bson.D{{Key: "operationType", Value: "insert"}, {Key: "fullDocument._id", Value: bson.D{{Key: "$lt", Value: 5}}}}),
		hub.WithFilter(isEven))
	e.insert(t, 0, 20)
	assert.Equal(t, seq(0, 20), read(t, all, 20))
	assert.Equal(t, []int32{0, 2, 4, 6, 8, 10, 12, 14, 16, 18}, read(t, even, 10))
	assert.Equal(t, seq(0, 5), read(t, low, 5))
	assert.Equal(t, []int32{0, 2, 4}, read(t, lowEven, 3), "both filters must keep an event")
	for _, s := range []*hub.Subscription{even, low, lowEven} {
		assert.False(t, s.TryNext(context.Background()), "nothing more, at once")
		assert.NoError(t, s.Err())
	}
	assert.Equal(t, 4, e.hub.Subscribers())
}

// TestBlock: a full Block subscription holds the hub, and nothing is lost.
func TestBlock(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	slow := e.subscribe(t, hub.WithBuffer(2))
	fast := e.subscribe(t)
	e.insert(t, 0, 10)
	got := read(t, fast, 2)
	time.Sleep(50 * time.Millisecond) // the hub is blocked on slow
	// The hub may have handed event 2 to fast before blocking on slow
	// (the order of subscriptions is not fixed), and no more.
	for fast.TryNext(context.Background()) {
		got = append(got, fast.Current.Lookup("documentKey", "_id").Int32())
	}
	assert.LessOrEqual(t, len(got), 3, "the hub waits for the slowest: %v", got)
	assert.Equal(t, seq(0, 10), read(t, slow, 10))
	assert.Equal(t, seq(0, 10), append(got, read(t, fast, 10-len(got))...))
}

// TestWakeups: a subscriber that mixes TryNext, Next with deadlines that
// expire, and waiting Next, over a buffer of two that keeps the hub
// waiting for room, still gets every event once and in order; a second
// one, reading with Next alone, too. The hub wakes a subscription only
// when its Next waits, and a take wakes the hub only when the hub waits:
// this is the test of those two handshakes.
func TestWakeups(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mixed := e.subscribe(t, hub.WithBuffer(2))
	plain := e.subscribe(t, hub.WithBuffer(2))
	const n = 300
	// Goroutines report with assert: require may stop only the test's own.
	done := make(chan []int32, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var ids []int32
		for len(ids) < n && plain.Next(ctx) {
			ids = append(ids, plain.Current.Lookup("documentKey", "_id").Int32())
		}
		assert.NoError(t, plain.Err())
		done <- ids
	}()
	inserted := make(chan struct{})
	go func() {
		defer close(inserted)
		for i := range n {
			_, err := e.coll.InsertOne(context.Background(), bson.D{{Key: "_id", Value: int32(i)}})
			if !assert.NoError(t, err) {
				return
			}
		}
	}()
	var got []int32
	for i := 0; len(got) < n; i++ {
		var ok bool
		switch i % 3 {
		case 0:
			ok = mixed.TryNext(context.Background())
		case 1:
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			ok = mixed.Next(ctx)
			cancel()
		default:
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			ok = mixed.Next(ctx)
			cancel()
			require.True(t, ok, "after %d events: %v", len(got), mixed.Err())
		}
		if ok {
			got = append(got, mixed.Current.Lookup("documentKey", "_id").Int32())
		}
	}
	assert.Equal(t, seq(0, n), got)
	assert.Equal(t, seq(0, n), <-done)
	<-inserted
}

// TestDrop: a full Drop subscription ends with a LaggingError; the others
// go on.
func TestDrop(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	slow := e.subscribe(t, hub.WithBuffer(2), hub.WithPolicy(hub.Drop))
	fast := e.subscribe(t)
	assert.Equal(t, []int32{0}, func() []int32 { e.insert(t, 0, 1); return read(t, slow, 1) }())
	e.insert(t, 1, 10)
	assert.Equal(t, seq(0, 10), read(t, fast, 10))
	assert.Equal(t, []int32{1, 2}, read(t, slow, 2), "what it held comes first")
	assert.False(t, slow.Next(context.Background()))
	var lag *hub.LaggingError
	require.ErrorAs(t, slow.Err(), &lag)
	assert.Equal(t, 2, lag.Buffered)
	assert.False(t, lag.Position.IsZero(), "where it stopped")
	assert.Equal(t, 1, e.hub.Subscribers())
}

// TestCoalesce: a Coalesce subscription keeps the newest event.
func TestCoalesce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sig := e.subscribe(t, hub.WithBuffer(1), hub.WithPolicy(hub.Coalesce))
	all := e.subscribe(t)
	e.insert(t, 0, 10)
	read(t, all, 10)
	got := read(t, sig, 1)
	assert.Equal(t, []int32{9}, got, "only the newest")
	assert.False(t, sig.TryNext(context.Background()))
}

// TestLateJoin: a subscriber sees the events after it joined.
func TestLateJoin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.subscribe(t)
	e.insert(t, 0, 5)
	read(t, first, 5)
	late := e.subscribe(t)
	e.insert(t, 5, 8)
	assert.Equal(t, seq(5, 8), read(t, late, 3))
	assert.Equal(t, seq(5, 8), read(t, first, 3))
	assert.Equal(t, int32(7), late.Current.Lookup("documentKey", "_id").Int32())
	tok := late.Position().Token
	require.NotNil(t, tok)
	assert.Equal(t, late.Current.Lookup("_id").Document(), tok)
}

// TestResumeUnderFaults: the hub's stream resumes through killed cursors
// and closed connections; every subscriber sees every event once.
func TestResumeUnderFaults(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	subs := []*hub.Subscription{e.subscribe(t), e.subscribe(t), e.subscribe(t, hub.WithFilter(isEven))}
	for i := range 10 {
		e.insert(t, i*10, i*10+10)
		if i%2 == 0 {
			e.killAllCursors()
		} else {
			e.closeClientConnections()
		}
	}
	assert.Equal(t, seq(0, 100), read(t, subs[0], 100))
	assert.Equal(t, seq(0, 100), read(t, subs[1], 100))
	var even []int32
	for n := int32(0); n < 100; n += 2 {
		even = append(even, n)
	}
	assert.Equal(t, even, read(t, subs[2], 50))
}

// TestClose: closing the hub ends every subscription, waiting ones too;
// closing a subscription ends its own Next from another goroutine.
func TestClose(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.subscribe(t), e.subscribe(t)
	var wg sync.WaitGroup
	results := make([]error, 2)
	for i, s := range []*hub.Subscription{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.False(t, s.Next(context.Background()))
			results[i] = s.Err()
		}()
	}
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, b.Close())
	require.NoError(t, e.hub.Close(context.Background()))
	wg.Wait()
	assert.ErrorIs(t, results[0], hub.ErrClosed)
	assert.ErrorIs(t, results[1], hub.ErrClosed)
	_, err := e.hub.Subscribe()
	assert.Error(t, err, "no subscription after Close")
	require.NoError(t, e.hub.Close(context.Background()), "twice")
	require.NoError(t, a.Close(), "twice")
}

// TestInvalidate: the hub's stream invalidated ends every subscription
// after the drop and invalidate events, with no error.
func TestInvalidate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.subscribe(t)
	e.insert(t, 0, 1)
	require.NoError(t, e.coll.Drop(context.Background()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var ops []string
	for s.Next(ctx) {
		ops = append(ops, s.Current.Lookup("operationType").StringValue())
	}
	assert.NoError(t, s.Err())
	assert.Equal(t, []string{"insert", "drop", "invalidate"}, ops)
	assert.False(t, s.Alive())
	_, err := e.hub.Subscribe()
	assert.ErrorContains(t, err, "the stream has ended")
}

// TestEvents: a subscription ranges like a stream, with a context's end
// as its error.
func TestEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.subscribe(t)
	e.insert(t, 0, 3)
	wait := 500 * time.Millisecond
	if e.dep.Cluster != nil {
		// Through mongos an event waits for the idle shard's next no-op
		// and for the router's next getMore to it (up to 1 s).
		wait = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var ids []int32
	var last error
	for ev, err := range hub.Events[bson.M](ctx, s) {
		if err != nil {
			last = err
			break
		}
		ids = append(ids, (*ev.FullDocument)["_id"].(int32))
	}
	assert.Equal(t, seq(0, 3), ids)
	assert.True(t, errors.Is(last, context.DeadlineExceeded), "%v", last)
	assert.True(t, s.Alive(), "a deadline does not end it")
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	_, err := hub.New(nil)
	assert.Error(t, err)
	e := newEnv(t)
	for _, o := range []hub.Option{nil, hub.WithBuffer(0), hub.WithPolicy(7), hub.WithFilter(nil)} {
		_, err := e.hub.Subscribe(o)
		assert.Error(t, err)
	}
	s := e.subscribe(t)
	assert.Error(t, s.Decode(&bson.M{}), "no current event")
}

// TestDropPosition: a dropped subscription's LaggingError.Position is
// that of the last event it returned, the buffered ones included, so that
// a stream opened there repeats nothing and misses nothing. Before, it was
// the position when the hub dropped it: before the buffered events (a
// stream opened there repeated them), or zero for a subscription that had
// returned nothing yet, which WithResumeAfter refuses.
func TestDropPosition(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	fast := e.subscribe(t)
	e.insert(t, 0, 1)
	read(t, fast, 1)
	// Subscribed after event 0 reached the hub, and never read: dropped
	// on the third event it cannot hold.
	never := e.subscribe(t, hub.WithBuffer(2), hub.WithPolicy(hub.Drop))
	slow := e.subscribe(t, hub.WithBuffer(2), hub.WithPolicy(hub.Drop))
	e.insert(t, 1, 2)
	assert.Equal(t, []int32{1}, read(t, slow, 1))
	e.insert(t, 2, 10)
	read(t, fast, 9)
	assert.Equal(t, []int32{2, 3}, read(t, slow, 2), "the buffered events come first")
	assert.Equal(t, []int32{1, 2}, read(t, never, 2))

	for name, tc := range map[string]struct {
		s    *hub.Subscription
		next int32 // the first event a stream opened at Position must return
	}{"read before the drop": {slow, 4}, "read nothing before the drop": {never, 3}} {
		assert.False(t, tc.s.Next(context.Background()), name)
		var lag *hub.LaggingError
		require.ErrorAs(t, tc.s.Err(), &lag, name)
		require.NotNil(t, lag.Position.Token, name)
		cs, err := changestream.WatchCollection(context.Background(), e.coll, nil, changestream.WithResumeAfter(lag.Position.Token))
		require.NoError(t, err, name)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var got []int32
		for len(got) < int(10-tc.next) && cs.Next(ctx) {
			got = append(got, cs.Current.Lookup("documentKey", "_id").Int32())
		}
		cancel()
		require.NoError(t, cs.Close(context.Background()))
		assert.Equal(t, seq(int(tc.next), 10), got, "%s: carries on where the subscriber stopped", name)
	}
}

// TestSubscriptionStartPosition: before its first event, a subscription's
// Position is where the hub stood when it joined.
func TestSubscriptionStartPosition(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.subscribe(t)
	assert.Equal(t, e.hub.Position().Token, first.Position().Token, "joined before any event: the stream's start")
	e.insert(t, 0, 3)
	read(t, first, 3)
	late := e.subscribe(t)
	assert.Equal(t, first.Position(), late.Position(), "joined after event 2: at event 2")

	// Closed after the drop, before taking what it held: the error
	// carries on from where it joined.
	dropped := e.subscribe(t, hub.WithBuffer(1), hub.WithPolicy(hub.Drop))
	e.insert(t, 3, 5)
	read(t, first, 2)
	require.Eventually(t, func() bool { return e.hub.Subscribers() == 2 }, 10*time.Second, time.Millisecond, "dropped")
	require.NoError(t, dropped.Close())
	assert.False(t, dropped.Next(context.Background()))
	var lag *hub.LaggingError
	require.ErrorAs(t, dropped.Err(), &lag)
	assert.Equal(t, late.Position(), lag.Position)
}
