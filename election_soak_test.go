package changestream_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/goleak"
)

// The election soak runs a three-member replica set through elections
// (step-downs, and primaries killed and restarted) mixed with lagging and
// paused secondaries, while a writer inserts a numbered sequence with
// retryable majority writes. Three readers watch the same collection at
// once: a ChangeStream iterated with blocking Next calls, one iterated with
// a 50 ms deadline on every call, and, as a control, the driver's own
// Watch. Every acknowledged write must reach both ChangeStreams exactly
// once and in order; what the driver's Watch did is reported.

// electionSoakElections sizes a run: CHANGESTREAM_SOAK=long (make
// soak-failover) runs 100 elections; every go test run does a few.
func electionSoakElections() int {
	if os.Getenv("CHANGESTREAM_SOAK") == "long" {
		return 100
	}
	return 6
}

// electionTimeout is the set's settings.electionTimeoutMillis: after a
// primary is killed the others elect a new one this much later (10 s on a
// default server; test suites set it low, as here).
const electionTimeout = 300 * time.Millisecond

func TestElectionSoak(t *testing.T) {
	// Not parallel, for goleak; see TestFaultSoak.
	if os.Getenv("MONGODB_URI") != "" {
		t.Skip("the soak drives elections from Go, which only the simulator allows")
	}
	if testing.Short() {
		t.Skip("soak skipped in -short mode")
	}
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { verifyNoLeaks(t, before) })

	rs, err := mongosim.NewReplicaSet(3, nil, mongosim.WithElectionTimeout(electionTimeout))
	require.NoError(t, err)
	var clients []*mongo.Client
	connect := func() *mongo.Client {
		c, err := mongo.Connect(options.Client().ApplyURI(rs.URI()))
		require.NoError(t, err)
		clients = append(clients, c)
		return c
	}
	// The set closes before the clients disconnect: a driver monitor
	// blocked in an awaitable hello then ends with its connection.
	t.Cleanup(func() {
		_ = rs.Close()
		for _, c := range clients {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = c.Disconnect(ctx)
			cancel()
		}
	})
	collOf := func(c *mongo.Client) *mongo.Collection { return c.Database("soak").Collection("seq") }
	writerColl := collOf(connect())
	openCtx, cancelOpen := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelOpen()
	_, err = writerColl.InsertOne(openCtx, bson.D{{Key: "_id", Value: int32(-1)}})
	require.NoError(t, err)

	blocking, err := changestream.WatchCollection(openCtx, collOf(connect()), nil)
	require.NoError(t, err)
	deadlined, err := changestream.WatchCollection(openCtx, collOf(connect()), nil)
	require.NoError(t, err)
	driverWatch, err := collOf(connect()).Watch(openCtx, mongo.Pipeline{})
	require.NoError(t, err)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	w := &electionWriter{coll: writerColl}
	readers := []*electionReader{
		{name: "ChangeStream, blocking Next", next: func(ctx context.Context) (bson.Raw, error) { return nextOf(ctx, blocking, 0) }},
		{name: "ChangeStream, 50 ms per Next", next: func(ctx context.Context) (bson.Raw, error) { return nextOf(ctx, deadlined, 50*time.Millisecond) }},
		{name: "driver Watch", control: true, next: func(ctx context.Context) (bson.Raw, error) {
			if driverWatch.Next(ctx) {
				return driverWatch.Current, nil
			}
			return nil, driverWatch.Err()
		}},
	}
	var wg sync.WaitGroup
	wg.Add(1 + len(readers))
	written := make(chan struct{})
	go func() { defer wg.Done(); defer close(written); w.run(ctx) }()
	for _, r := range readers {
		go func() { defer wg.Done(); r.run(ctx, w) }()
	}

	f := runElectionFaults(t, rs, w, electionSoakElections())
	w.stop.Store(true)
	// The write in flight when the writer is told to stop may still be
	// acknowledged: the readers are waited for once it has returned.
	select {
	case <-written:
	case <-time.After(2 * time.Minute): // a hang guard, not a timing bound
		t.Fatal("the writer did not stop")
	}
	// Every acknowledged write must arrive; the hang guard is not a
	// timing bound, it keeps a stream that stopped from holding the run.
	guard := time.Now().Add(2 * time.Minute)
	for _, r := range readers {
		for !r.control && r.count() < w.acked.Load() && time.Now().Before(guard) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	stop()
	wg.Wait()
	require.NoError(t, blocking.Close(context.Background()))
	require.NoError(t, deadlined.Close(context.Background()))
	_ = driverWatch.Close(context.Background())

	acked := int(w.acked.Load())
	t.Logf("election soak: %d elections (%d step-downs, %d kills), %d lag or pause spells, %d rollbacks, %d writes acknowledged (%d writer retries)",
		rs.Elections()-1, f.stepDowns, f.kills, f.lags, rs.Rollbacks(), acked, w.retries.Load())
	for _, r := range readers {
		res := r.result(acked)
		lat := latencies(f.stepDownTimes, w.startTimes()[:acked], r.arrivals())
		t.Logf("  %-28s seen=%d lost=%d duplicated=%d out-of-order=%d step-down->next event p50=%v p99=%v ended=%v",
			r.name, res.seen, res.lost, res.dup, res.disorder, percentile(lat, 50), percentile(lat, 99), r.endErr)

		if r.control {
			continue
		}
		require.NoError(t, r.endErr, r.name)
		require.Zero(t, res.lost+res.dup+res.disorder, "%s: %s", r.name, res.first)
	}
}

// nextOf returns cs's next event, each call bounded by perCall when set.
// A call that only ran out of time is not an error.
func nextOf(ctx context.Context, cs *changestream.ChangeStream, perCall time.Duration) (bson.Raw, error) {
	for {
		callCtx, cancel := ctx, context.CancelFunc(func() {})
		if perCall > 0 {
			callCtx, cancel = context.WithTimeout(ctx, perCall)
		}
		ok := cs.Next(callCtx)
		cancel()
		if ok {
			return cs.Current, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !cs.Alive() {
			return nil, cs.Err()
		}
	}
}

// electionWriter inserts {_id: n} for n = 0, 1, ... with retryable
// majority writes, moving on only once n is acknowledged (or a retry finds
// it present), until stop.
type electionWriter struct {
	coll *mongo.Collection
	// doc is the document of n, {_id: n} when nil.
	doc     func(n int32) bson.D
	stop    atomic.Bool
	acked   atomic.Int64
	retries atomic.Int64

	mu     sync.Mutex
	starts []time.Time // when the insert of each n began
}

func (w *electionWriter) run(ctx context.Context) {
	for n := int32(0); !w.stop.Load(); n++ {
		w.mu.Lock()
		w.starts = append(w.starts, time.Now())
		w.mu.Unlock()
		for {
			opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			doc := bson.D{{Key: "_id", Value: n}}
			if w.doc != nil {
				doc = w.doc(n)
			}
			_, err := w.coll.InsertOne(opCtx, doc)
			cancel()
			if err == nil || mongo.IsDuplicateKeyError(err) {
				break
			}
			if ctx.Err() != nil {
				return
			}
			w.retries.Add(1)
			time.Sleep(time.Millisecond)
		}
		w.acked.Store(int64(n) + 1)
	}
}

// electionReader reads one stream, noting when each document arrived.
type electionReader struct {
	name    string
	control bool // the driver's Watch: reported, not required
	next    func(ctx context.Context) (bson.Raw, error)

	mu     sync.Mutex
	ids    []int32
	times  []time.Time
	endErr error
}

func (r *electionReader) run(ctx context.Context, w *electionWriter) {
	for {
		ev, err := r.next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.mu.Lock()
				r.endErr = err
				r.mu.Unlock()
			}
			return
		}
		id, ok := ev.Lookup("documentKey", "_id").Int32OK()
		if !ok || id < 0 {
			continue
		}
		r.mu.Lock()
		r.ids = append(r.ids, id)
		r.times = append(r.times, time.Now())
		r.mu.Unlock()
	}
}

func (r *electionReader) count() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return int64(len(r.ids))
}

// arrivals maps each document to when the stream delivered it.
func (r *electionReader) arrivals() map[int32]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[int32]time.Time, len(r.ids))
	for i, id := range r.ids {
		if _, ok := out[id]; !ok {
			out[id] = r.times[i]
		}
	}
	return out
}

func (w *electionWriter) startTimes() []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.starts)
}

type electionResult struct {
	seen, lost, dup, disorder int
	first                     string
}

func (r *electionReader) result(acked int) electionResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	var res electionResult
	seen := map[int32]bool{}
	next := int32(0)
	for _, id := range r.ids {
		switch {
		case seen[id]:
			res.dup++
			if res.first == "" {
				res.first = fmt.Sprintf("duplicate %d", id)
			}
		case id != next:
			res.disorder++
			if res.first == "" {
				res.first = fmt.Sprintf("got %d, expected %d", id, next)
			}
		}
		seen[id] = true
		next = max(next, id+1)
	}
	res.seen = len(seen)
	for n := range int32(acked) {
		if !seen[n] {
			res.lost++
			if res.first == "" {
				res.first = fmt.Sprintf("lost %d", n)
			}
		}
	}
	return res
}

// electionFaults is what the fault loop did.
type electionFaults struct {
	stepDowns, kills, lags int
	stepDownTimes          []time.Time
}

// runElectionFaults holds elections until the set has had n more: mostly
// step-downs, sometimes a killed primary restarted after the others elect
// a new one, with lagging or paused secondaries in between. Each fault
// waits for the writer to get a few writes through first, so that every
// election falls on a stream with traffic.
func runElectionFaults(t *testing.T, rs *mongosim.ReplicaSet, w *electionWriter, n int) electionFaults {
	t.Helper()
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	var f electionFaults
	target := rs.Elections() + n
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(n)*20*time.Second)
	defer cancel()
	for rs.Elections() < target {
		require.NoError(t, ctx.Err(), "the fault loop stalled after %d elections", rs.Elections()-1)
		from := w.acked.Load()
		for w.acked.Load() < from+5 && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		p, err := rs.WaitForPrimary(ctx)
		require.NoError(t, err)
		pi := slices.Index(rs.Members(), p)
		other := (pi + 1 + rng.IntN(2)) % 3
		switch k := rng.IntN(10); {
		case k < 6:
			err := rs.StepDown(ctx, mongosim.StepDownOptions{StepDownPeriod: 2 * time.Second, CatchUpPeriod: time.Second})
			var ce *mongosim.CommandError
			if err != nil && !(errors.As(err, &ce) && (ce.Code == 262 || ce.Code == 10107)) {
				require.NoError(t, err)
			}
			if err == nil {
				f.stepDowns++
				f.stepDownTimes = append(f.stepDownTimes, time.Now())
			}
		case k < 8:
			rs.Kill(pi)
			f.kills++
			_, err := rs.WaitForPrimary(ctx)
			require.NoError(t, err)
			time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
			require.NoError(t, rs.Restart(pi))
		case k < 9:
			rs.SetLag(other, time.Duration(10+rng.IntN(90))*time.Millisecond)
			time.Sleep(time.Duration(50+rng.IntN(200)) * time.Millisecond)
			rs.SetLag(other, 0)
			f.lags++
		default:
			rs.PauseReplication(other)
			time.Sleep(time.Duration(50+rng.IntN(200)) * time.Millisecond)
			rs.ResumeReplication(other)
			f.lags++
		}
	}
	return f
}

// latencies returns, for each step-down, how long until the stream
// delivered the first write begun after it: the writer's failover, the
// write's replication to a majority and the stream's resume, end to end.
func latencies(stepDowns, starts []time.Time, arrivals map[int32]time.Time) []time.Duration {
	var out []time.Duration
	for _, sd := range stepDowns {
		n, _ := slices.BinarySearchFunc(starts, sd, func(a, b time.Time) int { return a.Compare(b) })
		if n == len(starts) {
			continue // the run ended before another write
		}
		if at, ok := arrivals[int32(n)]; ok {
			out = append(out, at.Sub(sd))
		}
	}
	return out
}

// percentile returns the p-th percentile of ds (nearest rank), 0 for none.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)].Round(100 * time.Microsecond)
}
