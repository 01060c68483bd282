package changestream_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
	"go.uber.org/goleak"
)

// The fault soak streams a numbered sequence of inserts through one
// ChangeStream while faults of every kind the stream must survive arrive at
// random moments, and checks the only property that matters to a consumer:
// every event is seen exactly once, in order. Unit tests pin each fault to
// one getMore; the soak finds what they cannot, the interleavings (a fault
// that strikes the resume of the previous one, a per-call deadline that
// ends during a blocked getMore, events arriving in bursts after a stall).

// soakFault is one kind of fault the injector causes.
type soakFault int

const (
	faultCloseConns  soakFault = iota // every client socket dropped: network errors
	faultResumable                    // getMore fails with 10107 + ResumableChangeStreamError
	faultKillCursors                  // every server cursor killed: CursorNotFound
	faultBlock                        // getMore blocked longer than a short per-call deadline
	faultCheckout                     // failGetMoreAfterCursorCheckout code 6, labelled by the server
	numFaults
)

var faultNames = [numFaults]string{"closeConnections", "resumableError", "killCursors", "blockGetMore", "checkoutError"}

// soakConfig sizes a run. The CI default is short enough for every `go test`
// run; `make soak` sets CHANGESTREAM_SOAK=long.
type soakConfig struct {
	events   int           // the writer stops after this many inserts...
	duration time.Duration // ...or after this long, whichever comes first
}

func soakSettings() soakConfig {
	if os.Getenv("CHANGESTREAM_SOAK") == "long" {
		return soakConfig{events: 50_000, duration: 60 * time.Second}
	}
	return soakConfig{events: 2_000, duration: 8 * time.Second}
}

// soakCloseEvery spaces out the dropping of every connection. A dropped
// connection makes the driver mark the server unknown and pause its pool
// until the next heartbeat succeeds, about a second later, so every client
// (the writer's too) stalls that long; dropped more often, the soak would
// spend its time waiting instead of streaming.
const soakCloseEvery = 2 * time.Second

// soakBlockTime is how long a blocked getMore stalls on the server: longer
// than any short per-call deadline of the reader, so those calls end
// mid-getMore and the next call must replace the abandoned cursor.
const soakBlockTime = 250 * time.Millisecond

func TestFaultSoak(t *testing.T) {
	// Not parallel: goleak inspects every goroutine of the process, and Go
	// runs the serial tests before it releases the parallel ones.
	if os.Getenv("MONGODB_URI") != "" {
		t.Skip("the soak needs Go-level faults (dropping sockets, killing cursors) that only the simulator can inject")
	}
	if testing.Short() {
		t.Skip("soak skipped in -short mode")
	}
	cfg := soakSettings()

	// Goroutines that exist now (parked parallel tests, the runtime's) are
	// not ours. Cleanups run last-registered first, so this check runs after
	// newEnv's cleanups have disconnected the clients and closed the server.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { verifyNoLeaks(t, before) })

	e := newEnv(t)
	e.needMember(t) // drops a member's sockets and kills its cursors; the sharded soak is TestShardedSoak
	// The reader gets a client of its own, whose monitor feeds the test
	// env's command log and also counts the stream's getMores, so the
	// injector can tell when an armed fail point has been used. The writer
	// and the injector share the env's client.
	rc := &soakCounters{}
	readerClient := rc.connect(t, e)
	coll := readerClient.Database(e.db.Name()).Collection(e.coll.Name())

	openCtx, cancelOpen := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelOpen()
	cs, err := changestream.WatchCollection(openCtx, coll, nil, changestream.WithBatchSize(10))
	require.NoError(t, err)

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	w := &soakWriter{coll: e.coll, max: cfg.events, until: time.Now().Add(cfg.duration), total: make(chan int, 1)}
	inj := &soakInjector{env: e, admin: e.client.Database("admin"), getMores: &rc.getMores}

	wg.Add(2)
	go func() { defer wg.Done(); w.run(ctx) }()
	go func() { defer wg.Done(); inj.run(ctx) }()

	r := soakRead(t, cs, w, inj)

	// Shut down in dependency order: stop the goroutines, clear any fail
	// point still armed, then close the stream; the environment closes the
	// clients and the server in its cleanups.
	stop()
	wg.Wait()
	inj.clearFailPoints()
	require.NoError(t, cs.Close(context.Background()))

	// Resumes are the aggregates after the first, as the env's command log
	// saw them.
	resumes := len(e.mon.commands("aggregate")) - 1
	var faults strings.Builder
	var totalFaults int64
	for k := range numFaults {
		n := inj.counts[k].Load()
		totalFaults += n
		fmt.Fprintf(&faults, " %s=%d", faultNames[k], n)
	}
	t.Logf("soak: events=%d/%d faults=%d (%s) getMores=%d failed=%d resumes=%d lost=%d duplicated=%d out-of-order=%d next-calls=%d ctx-ends=%d transient=%d",
		r.seen, r.written, totalFaults, strings.TrimSpace(faults.String()), rc.getMores.Load(), rc.getMoreFailures.Load(), resumes,
		r.lost, r.dup, r.disorder, r.calls, r.ctxEnds, r.transient)
	if w.err != nil {
		t.Fatalf("writer: %v", w.err)
	}
	if r.first != "" {
		t.Fatalf("first discrepancy: %s (lost=%d duplicated=%d out-of-order=%d)", r.first, r.lost, r.dup, r.disorder)
	}
}

// soakWriter inserts {_id: n, n: n} for n = 0, 1, ... one at a time, each
// insert confirmed before the next, so the oplog holds the sequence in order.
type soakWriter struct {
	coll    *mongo.Collection
	max     int
	until   time.Time
	total   chan int // receives the number of documents written, once
	written atomic.Int64
	err     error // read after total has been received or the wait group is done
}

func (w *soakWriter) run(ctx context.Context) {
	start := time.Now()
	pace := time.Until(w.until) * 7 / 10 / time.Duration(w.max)
	n := 0
	defer func() { w.total <- n }()
	for n < w.max && time.Now().Before(w.until) {
		if err := w.insert(ctx, n); err != nil {
			if ctx.Err() == nil {
				w.err = err
			}
			return
		}
		n++
		w.written.Store(int64(n))
		// Unpaced, the writer would finish before the injector had struck
		// a dozen times. Document n is due at start + n*pace, so the
		// sequence spreads over most of the run; after a stall (a dropped
		// connection pauses every client for about a second) the writer
		// catches up in a burst, which fills batches, while in between
		// batches hold one or two events.
		if wait := time.Until(start.Add(time.Duration(n) * pace)); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

// insert writes document n, retrying through the injected faults. A fault
// can break the connection after the server applied the insert; the retry
// then meets a duplicate key, which proves the document is there. The
// unique _id also guarantees that n enters the oplog at most once, so any
// duplicate the reader sees is the stream's doing.
func (w *soakWriter) insert(ctx context.Context, n int) error {
	doc := bson.D{{Key: "_id", Value: int32(n)}, {Key: "n", Value: int32(n)}}
	var last error
	for attempt := 0; attempt < 100; attempt++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := w.coll.InsertOne(opCtx, doc)
		cancel()
		if err == nil || mongo.IsDuplicateKeyError(err) {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return fmt.Errorf("insert %d: gave up after 100 attempts: %w", n, last)
}

// soakInjector causes a random fault at random intervals until ctx ends.
type soakInjector struct {
	env      *testEnv
	admin    *mongo.Database
	getMores *atomic.Int64 // the stream's getMores so far
	counts   [numFaults]atomic.Int64

	// killRequested asks the reader to kill every server cursor before its
	// next call. Killing them from here could strike while the stream's
	// getMore waits on the server, which then answers CursorKilled (237):
	// not resumable by the specification's rules (no label, not 43), so the
	// stream would rightly end. Between calls no getMore of the stream is in
	// flight, and the next one meets CursorNotFound (43), the fault a cursor
	// timeout or a failover causes, which the stream must survive.
	killRequested atomic.Bool
}

// killIfRequested runs a kill the injector asked for; the reader calls it
// between Next calls.
func (inj *soakInjector) killIfRequested() {
	if inj.killRequested.CompareAndSwap(true, false) {
		inj.env.sim.KillAllCursors()
		inj.counts[faultKillCursors].Add(1)
	}
}

func (inj *soakInjector) run(ctx context.Context) {
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	var lastClose time.Time
	for {
		// Mostly a few milliseconds apart, sometimes back to back, so that
		// faults also strike during the resume that the previous one caused.
		pause := time.Duration(rng.IntN(10)) * time.Millisecond
		if rng.IntN(5) == 0 {
			pause = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		k := soakFault(rng.IntN(int(numFaults)))
		if k == faultCloseConns {
			if time.Since(lastClose) < soakCloseEvery {
				continue
			}
			lastClose = time.Now()
		}
		inj.inject(ctx, k)
	}
}

// inject causes one fault of kind k and counts it once it has struck.
func (inj *soakInjector) inject(ctx context.Context, k soakFault) {
	switch k {
	case faultCloseConns:
		inj.env.sim.CloseClientConnections()
		inj.counts[k].Add(1)
	case faultKillCursors:
		// Deferred to the reader, between two Next calls; see killRequested.
		inj.killRequested.Store(true)
	case faultResumable:
		inj.failNextGetMore(ctx, k, "failCommand", bson.D{
			{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "errorCode", Value: 10107},
			{Key: "errorLabels", Value: bson.A{"ResumableChangeStreamError"}},
		})
	case faultBlock:
		inj.failNextGetMore(ctx, k, "failCommand", bson.D{
			{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "blockConnection", Value: true},
			{Key: "blockTimeMS", Value: int32(soakBlockTime / time.Millisecond)},
		})
	case faultCheckout:
		inj.failNextGetMore(ctx, k, "failGetMoreAfterCursorCheckout", bson.D{{Key: "errorCode", Value: 6}})
	}
}

// failNextGetMore arms the fail point name for one getMore and waits until
// the stream has sent one. Only the stream sends getMores, so that one met
// the fault; arming the next fault earlier would replace this one unused.
func (inj *soakInjector) failNextGetMore(ctx context.Context, k soakFault, name string, data bson.D) {
	before := inj.getMores.Load()
	if inj.failPoint(ctx, name, data) != nil {
		return // the command met a dropped connection: no fault this time
	}
	for inj.getMores.Load() == before {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Millisecond):
		}
	}
	inj.counts[k].Add(1)
}

// failPoint arms name for one occurrence.
func (inj *soakInjector) failPoint(ctx context.Context, name string, data bson.D) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return inj.admin.RunCommand(ctx, bson.D{
		{Key: "configureFailPoint", Value: name},
		{Key: "mode", Value: bson.D{{Key: "times", Value: 1}}},
		{Key: "data", Value: data},
	}).Err()
}

// clearFailPoints turns off what the injector may have left armed.
func (inj *soakInjector) clearFailPoints() {
	for _, name := range []string{"failCommand", "failGetMoreAfterCursorCheckout"} {
		for range 3 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := inj.admin.RunCommand(ctx, bson.D{{Key: "configureFailPoint", Value: name}, {Key: "mode", Value: "off"}}).Err()
			cancel()
			if err == nil {
				break
			}
		}
	}
}

// soakResult is what the reader saw.
type soakResult struct {
	written, seen       int
	lost, dup, disorder int
	first               string // the first discrepancy, "" when none
	calls, ctxEnds      int
	transient           int
}

// soakRead iterates cs with random per-call deadlines until it has seen the
// last document the writer wrote. Most deadlines are a few milliseconds,
// shorter than a getMore takes to fill, so calls routinely end mid-getMore;
// the rest are long enough to span resumes and blocked getMores.
func soakRead(t *testing.T, cs *changestream.ChangeStream, w *soakWriter, inj *soakInjector) soakResult {
	t.Helper()
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	var r soakResult
	seen := make([]bool, w.max)
	next := 0 // the n expected next
	total := -1
	// A hang guard, not a timing bound: a stream that stops delivering
	// would otherwise hold the test until the go test timeout.
	giveUp := w.until.Add(2 * time.Minute)
	note := func(format string, args ...any) {
		if r.first == "" {
			r.first = fmt.Sprintf(format, args...)
		}
	}
	for total < 0 || next < total {
		if total < 0 {
			select {
			case total = <-w.total:
				r.written = total
				if next >= total {
					continue
				}
			default:
			}
		}
		if time.Now().After(giveUp) {
			note("stalled: expected n=%d, writer wrote %d, stream alive=%v err=%v", next, w.written.Load(), cs.Alive(), cs.Err())
			break
		}
		var d time.Duration
		if rng.IntN(4) == 0 {
			d = time.Duration(100+rng.IntN(1900)) * time.Millisecond
		} else {
			d = time.Duration(1+rng.IntN(40)) * time.Millisecond
		}
		inj.killIfRequested()
		ctx, cancel := context.WithTimeout(context.Background(), d)
		ok := cs.Next(ctx)
		cancel()
		r.calls++
		if !ok {
			err := cs.Err()
			if !cs.Alive() {
				note("stream ended: expected n=%d: %v", next, err)
				break
			}
			switch {
			case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
				r.ctxEnds++
			case isTransientSoakError(err):
				r.transient++
			default:
				note("Next failed with a non-transient error while alive, expected n=%d: %v", next, err)
				return finishSoak(r, seen, total)
			}
			continue
		}
		v, err := cs.Current.LookupErr("fullDocument", "n")
		if err != nil {
			note("event without fullDocument.n: %s", cs.Current)
			break
		}
		n := int(v.Int32())
		switch {
		case n < 0 || n >= len(seen):
			note("unexpected n=%d", n)
		case seen[n]:
			r.dup++
			note("duplicate: n=%d again, expected n=%d", n, next)
		case n != next:
			r.disorder++
			note("out of order: got n=%d, expected n=%d", n, next)
			seen[n] = true
			r.seen++
		default:
			seen[n] = true
			r.seen++
		}
		if n >= next {
			next = n + 1
		}
	}
	return finishSoak(r, seen, total)
}

// finishSoak counts the documents written but never seen.
func finishSoak(r soakResult, seen []bool, total int) soakResult {
	if total < 0 {
		return r
	}
	for n := range total {
		if !seen[n] {
			r.lost++
		}
	}
	return r
}

// isTransientSoakError reports whether a false Next on a live stream failed
// for a reason the next call may not meet: the network, server selection,
// or a resumable server error that struck again right after a resume.
func isTransientSoakError(err error) bool {
	var sse topology.ServerSelectionError
	if mongo.IsNetworkError(err) || mongo.IsTimeout(err) || errors.As(err, &sse) {
		return true
	}
	var le mongo.LabeledError
	if errors.As(err, &le) && le.HasErrorLabel("ResumableChangeStreamError") {
		return true
	}
	var ce mongo.CommandError
	return errors.As(err, &ce) && ce.Code == 43 // CursorNotFound
}

// soakCounters counts the reader client's getMores.
type soakCounters struct {
	getMores        atomic.Int64 // started
	getMoreFailures atomic.Int64 // failed: a fault, a killed cursor, a dropped or abandoned connection
}

// connect opens the reader's client on e's deployment, with a monitor that
// counts getMores and passes every event on to e's command log.
func (c *soakCounters) connect(t *testing.T, e *testEnv) *mongo.Client {
	t.Helper()
	log := e.mon.monitor()
	mon := &event.CommandMonitor{
		Started: func(ctx context.Context, ev *event.CommandStartedEvent) {
			if ev.CommandName == "getMore" {
				c.getMores.Add(1)
			}
			log.Started(ctx, ev)
		},
		Succeeded: log.Succeeded,
		Failed: func(_ context.Context, ev *event.CommandFailedEvent) {
			if ev.CommandName == "getMore" {
				c.getMoreFailures.Add(1)
			}
		},
	}
	client, err := mongo.Connect(options.Client().ApplyURI(e.uri).SetMonitor(mon))
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = client.Disconnect(ctx)
	})
	return client
}

// verifyNoLeaks waits for the driver's goroutines, which notice a
// Disconnect asynchronously, and then lets goleak report whatever is left.
func verifyNoLeaks(t *testing.T, opts ...goleak.Option) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for goleak.Find(opts...) != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	goleak.VerifyNone(t, opts...)
}
