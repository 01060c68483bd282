package hub

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/internal/mongosim"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// BenchmarkFanout delivers each insert to N subscribers in one process,
// all reading through one client, three ways: one hub with N
// subscriptions, N streams of this package, and N driver Watch streams.
// The writer has a client of its own, as an application's writes come
// from elsewhere: sharing the subscribers' pool, each insert would first
// wait for one of their parked getMores to give a connection back. Each
// op inserts one document and waits until every subscriber has it; it
// reports the latency from the insert to the last subscriber (p50, p99),
// the memory and goroutines per subscriber, the connections the readers'
// client opened until the last op, and how many subscribers still lacked the event 10 s
// after its insert (late/op).
//
//	go test -run '^$' -bench Fanout -benchtime 50x -timeout 60m ./hub
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("hub/%d", n), func(b *testing.B) { benchFanout(b, n, "hub") })
		b.Run(fmt.Sprintf("changestream/%d", n), func(b *testing.B) { benchFanout(b, n, "changestream") })
		b.Run(fmt.Sprintf("watch/%d", n), func(b *testing.B) { benchFanout(b, n, "watch") })
	}
}

func benchFanout(b *testing.B, n int, kind string) {
	sim := mongosim.StartTB(b)
	var conns atomic.Int64
	client, err := mongo.Connect(options.Client().ApplyURI(sim.URI()).SetPoolMonitor(&event.PoolMonitor{Event: func(e *event.PoolEvent) {
		switch e.Type {
		case event.ConnectionCreated:
			conns.Add(1)
		}
	}}))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	coll := client.Database("d").Collection("c")
	writer, err := mongo.Connect(options.Client().ApplyURI(sim.URI()))
	if err != nil {
		b.Fatal(err)
	}
	defer writer.Disconnect(context.Background())
	writes := writer.Database("d").Collection("c")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Every subscriber sees every insert once, in order: its k-th event
	// is op k's. Counting them, instead of parsing each event's _id, keeps
	// the bookkeeping off the path being timed (a lookup cost 0.5 µs a
	// subscriber, 5 ms of CPU an op at 10,000); the last op's _id is still
	// checked by every subscriber, which catches a lost or repeated event.
	final := int64(b.N - 1)
	var wrong atomic.Int64 // subscribers whose last event was not the last insert
	var arr arrivals
	arrive := func(k int64, ev bson.Raw) {
		if k == final && arr.timing(k) {
			if id, ok := ev.Lookup("documentKey", "_id").AsInt64OK(); !ok || id != k {
				wrong.Add(1)
			}
		}
		arr.arrive(k, n)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutinesBefore := runtime.NumGoroutine()

	var wg sync.WaitGroup
	var h *Hub
	switch kind {
	case "hub":
		cs, err := changestream.WatchCollection(ctx, coll, nil)
		if err != nil {
			b.Fatal(err)
		}
		if h, err = New(cs); err != nil {
			b.Fatal(err)
		}
		for range n {
			s, err := h.Subscribe()
			if err != nil {
				b.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := int64(0); s.Next(ctx); k++ {
					arrive(k, s.Current)
				}
			}()
		}
	case "changestream":
		// Every stream is opened before any is read: once streams wait in
		// getMore, each holding a pooled connection for up to a second,
		// every further open queues behind them.
		streams := make([]*changestream.ChangeStream, n)
		for i := range n {
			if streams[i], err = changestream.WatchCollection(ctx, coll, nil); err != nil {
				b.Fatal(err)
			}
		}
		for _, cs := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer cs.Close(context.Background())
				for k := int64(0); ctx.Err() == nil; {
					if cs.Next(ctx) {
						arrive(k, cs.Current)
						k++
					}
				}
			}()
		}
	case "watch":
		streams := make([]*mongo.ChangeStream, n)
		for i := range n {
			if streams[i], err = coll.Watch(ctx, mongo.Pipeline{}); err != nil {
				b.Fatal(err)
			}
		}
		for _, cs := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer cs.Close(context.Background())
				for k := int64(0); cs.Next(ctx); k++ {
					arrive(k, cs.Current)
				}
			}()
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	perSub := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
	goroutines := float64(runtime.NumGoroutine()-goroutinesBefore) / float64(n)

	var lat []time.Duration
	var late int64 // deliveries missing after lateAfter
	b.ResetTimer()
	for i := range b.N {
		arr.start(int64(i))
		start := time.Now()
		if _, err := writes.InsertOne(ctx, bson.D{{Key: "_id", Value: i}}); err != nil {
			b.Fatal(err)
		}
		last, ok := arr.wait(lateAfter)
		if !ok {
			// Separate streams on one client wait for pooled connections:
			// count who lacked the event after lateAfter, and measure on.
			late += int64(n) - arr.received.Load()
			lat = append(lat, lateAfter)
			continue
		}
		lat = append(lat, last.Sub(start))
	}
	b.StopTimer()
	// Connections opened while streaming, before the teardown's
	// killCursors need more.
	opened := conns.Load()
	cancel()
	if w := wrong.Load(); w > 0 {
		b.Errorf("%d subscribers' last event was not the last insert", w)
	}
	if h != nil {
		_ = h.Close(context.Background())
	}
	wg.Wait()
	reportLatency(b, lat)
	b.ReportMetric(perSub, "B/sub")
	b.ReportMetric(goroutines, "goroutines/sub")
	b.ReportMetric(float64(opened), "conns")
	b.ReportMetric(float64(late)/float64(b.N), "late/op")
}

// arrivals tells when the last of n subscribers got the op being timed,
// with no lock, timer or poll on the subscribers' path.
type arrivals struct {
	current atomic.Int64 // the op being timed
	// Every subscriber reads current and adds to received: on one cache
	// line, each addition would make the other core's next read miss.
	_        [56]byte
	received atomic.Int64 // subscribers that have op current
	_        [56]byte
	last     atomic.Int64 // when the last of them got it (Unix ns)
	all      chan int64   // the op whose last subscriber just arrived
}

// start times op.
func (a *arrivals) start(op int64) {
	if a.all == nil {
		a.all = make(chan int64, 1)
	}
	a.received.Store(0)
	a.current.Store(op)
}

// timing reports whether op is the one being timed.
func (a *arrivals) timing(op int64) bool { return a.current.Load() == op }

// arrive counts a subscriber that got op, one of n: a late delivery of an
// earlier op is not counted.
func (a *arrivals) arrive(op int64, n int) {
	if a.current.Load() != op {
		return
	}
	if a.received.Add(1) == int64(n) {
		a.last.Store(time.Now().UnixNano())
		select {
		case a.all <- op:
		default:
		}
	}
}

// wait returns when the last subscriber got the op being timed, or false
// after timeout.
func (a *arrivals) wait(timeout time.Duration) (time.Time, bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case op := <-a.all:
			if op == a.current.Load() {
				return time.Unix(0, a.last.Load()), true
			}
			// The end of an op that timed out earlier.
		case <-timer.C:
			return time.Time{}, false
		}
	}
}

// reportLatency reports the median and 99th percentile of lat.
func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// lateAfter bounds the wait for one event to reach every subscriber.
const lateAfter = 10 * time.Second

// BenchmarkSubscribe is the cost of one Subscribe and Close on a hub that
// already serves 10,000 subscriptions:
//
//	go test -run '^$' -bench Subscribe -benchmem ./hub
func BenchmarkSubscribe(b *testing.B) {
	sim := mongosim.StartTB(b)
	client, err := mongo.Connect(options.Client().ApplyURI(sim.URI()))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	cs, err := changestream.WatchCollection(context.Background(), client.Database("d").Collection("c"), nil)
	if err != nil {
		b.Fatal(err)
	}
	h, err := New(cs)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close(context.Background())
	for range 10_000 {
		if _, err := h.Subscribe(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		s, err := h.Subscribe()
		if err != nil {
			b.Fatal(err)
		}
		_ = s.Close()
	}
}

// BenchmarkWakeFloor is what waking N waiting goroutines costs on this
// machine before any hub, driver or simulator work: N goroutines parked
// each on a channel of its own, as a waiting Subscription.Next is, and one
// goroutine sending to each in turn and yielding every yieldEvery, as the
// hub's does. It reports the latency from the first send to the last
// goroutine's wake-up (p50, p99), counted as BenchmarkFanout counts
// arrivals, so that the three can be read side by side:
//
//	go test -run '^$' -bench 'WakeFloor|Deliver|Fanout/hub' -benchtime 300x ./hub
func BenchmarkWakeFloor(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var stop atomic.Bool
			wake := make([]chan struct{}, n)
			for i := range wake {
				wake[i] = make(chan struct{}, 1)
			}
			sendAll := func() {
				for i, ch := range wake {
					ch <- struct{}{}
					if i%yieldEvery == yieldEvery-1 {
						runtime.Gosched()
					}
				}
			}
			benchWakeups(b, n, func(i int) bool {
				<-wake[i]
				return !stop.Load()
			}, sendAll, func() {
				stop.Store(true)
				sendAll()
			})
		})
	}
}

// BenchmarkDeliver is the hub's own share of a fan-out: N subscriptions,
// each read by a goroutine waiting in Next, and the hub's delivery of one
// event to all of them (filters, buffers, wake-ups, yields), with no
// stream, driver or simulator. Between BenchmarkWakeFloor and
// BenchmarkFanout/hub, it tells the hub's cost from the stream's.
func BenchmarkDeliver(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			h := &Hub{ctx: ctx}
			subs := make([]*Subscription, n)
			for i := range subs {
				subs[i] = &Subscription{hub: h, capacity: DefaultBuffer, notify: make(chan struct{}, 1), room: make(chan struct{}, 1)}
			}
			ev, err := bson.Marshal(bson.D{{Key: "_id", Value: bson.D{{Key: "_data", Value: "00"}}}})
			if err != nil {
				b.Fatal(err)
			}
			benchWakeups(b, n, func(i int) bool { return subs[i].Next(ctx) }, func() {
				h.deliver(subs, &entry{ev: bson.Raw(ev), pos: positionOf(ev)})
			}, func() {
				for _, s := range subs {
					s.finish(nil)
				}
			})
		})
	}
}

// benchWakeups times rounds in which wake makes each of n goroutines,
// each looping on wait(i) until it returns false, return once; stop makes
// them all return false.
func benchWakeups(b *testing.B, n int, wait func(i int) bool, wake, stop func()) {
	var arr arrivals
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := int64(0); wait(i); k++ {
				arr.arrive(k, n)
			}
		}()
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		// As long as an insert takes to reach the hub: every goroutine is
		// waiting again before the next round.
		time.Sleep(time.Millisecond)
		arr.start(int64(i))
		start := time.Now()
		wake()
		last, ok := arr.wait(lateAfter)
		if !ok {
			b.Fatalf("round %d: %d of %d goroutines woke in %v", i, arr.received.Load(), n, lateAfter)
		}
		lat = append(lat, last.Sub(start))
	}
	b.StopTimer()
	stop()
	wg.Wait()
	reportLatency(b, lat)
}
