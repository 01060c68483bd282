package changestream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/proctest"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// leaseReaders is the sharded soak's checkpoint.Run reader: two consumer
// processes (checkpoint/internal/soakconsumer) share one key with a
// lease in a MongoStore, and write each event's effect in a transaction
// fenced by the lease's epoch. The soak SIGKILLs the holder at random
// while the cluster's own faults go on; the standby takes over from the
// saved checkpoint.
type leaseReaders struct {
	db    *mongo.Database
	procs map[string]*proctest.Proc
	kills int
}

// leaseTTL is how long a SIGKILLed holder keeps the key from its
// standby. A renewal that a shard's election holds up for longer loses
// the lease to the standby, which the fencing makes safe.
const leaseTTL = time.Second

// startLeaseReaders starts both consumers of ns's collection and waits
// until the first holder has saved its starting point: the writer must
// not start before it, since a stream from now misses earlier writes.
func startLeaseReaders(t *testing.T, sc *mongosim.ShardedCluster, client *mongo.Client, db, coll string) *leaseReaders {
	t.Helper()
	bin := proctest.Build(t, "./checkpoint/internal/soakconsumer")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A consumer killed inside its sink transaction leaves it open, holding
	// the fence, until the server aborts it: after a minute by default.
	// The parameter is each member's own, as it is a mongod's.
	for _, rs := range sc.Shards() {
		for _, m := range rs.Members() {
			c, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + m.Addr() + "/?directConnection=true"))
			require.NoError(t, err)
			err = c.Database("admin").RunCommand(ctx, bson.D{{Key: "setParameter", Value: 1}, {Key: "transactionLifetimeLimitSeconds", Value: 1}}).Err()
			_ = c.Disconnect(ctx)
			require.NoError(t, err, m.Addr())
		}
	}
	l := &leaseReaders{db: client.Database(db), procs: map[string]*proctest.Proc{}}
	_, err := l.db.Collection("fence").InsertOne(ctx, bson.D{{Key: "_id", Value: "soak"}, {Key: "epoch", Value: int64(0)}, {Key: "seq", Value: int64(0)}})
	require.NoError(t, err)
	for _, owner := range []string{"c1", "c2"} {
		l.procs[owner] = &proctest.Proc{Bin: bin, Args: []string{"-uri", sc.URI(), "-db", db, "-source", coll,
			"-ttl", leaseTTL.String(), "-owner", owner, "-trace", "-max-in-flight", "50", "-commit", "20ms"}}
		l.procs[owner].Start(t)
	}
	t.Cleanup(func() {
		for _, p := range l.procs {
			p.Stop()
		}
	})
	require.Eventually(t, func() bool {
		var d struct {
			Token bson.Raw `bson:"token"`
		}
		return l.db.Collection("checkpoints").FindOne(ctx, bson.D{{Key: "_id", Value: "soak"}}).Decode(&d) == nil && d.Token != nil
	}, 30*time.Second, 10*time.Millisecond, "the first holder saved its starting point")
	return l
}

// restartExited starts again a consumer that has exited by itself: a
// handler error ends checkpoint.Run (its default policy), as a sink
// transaction cut by a failover can.
func (l *leaseReaders) restartExited(t *testing.T) {
	for _, p := range l.procs {
		if p.Exited() {
			if err := p.Launch(); err != nil {
				t.Error(err)
			}
		}
	}
}

// killAtRandom SIGKILLs the lease holder every 1 to 5 seconds (each kill
// stops the consumer for a lease's ttl) and starts it again, until ctx
// ends. A holder it cannot read (the shard
// holding the lease is failing over) skips a round.
func (l *leaseReaders) killAtRandom(ctx context.Context, t *testing.T) {
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	var killed int64 // the epoch of the last holder killed, whose lease outlives it
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(1000+rng.IntN(4000)) * time.Millisecond):
		}
		l.restartExited(t)
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		var d struct {
			Owner      string    `bson:"owner"`
			Epoch      int64     `bson:"epoch"`
			LeaseUntil time.Time `bson:"leaseUntil"`
		}
		err := l.db.Collection("checkpoints").FindOne(rctx, bson.D{{Key: "_id", Value: "soak"}}).Decode(&d)
		cancel()
		p := l.procs[d.Owner]
		if err != nil || p == nil || p.Exited() || !d.LeaseUntil.After(time.Now()) || d.Epoch == killed {
			continue
		}
		p.Kill()
		killed = d.Epoch
		l.kills++
		if err := p.Launch(); err != nil {
			t.Error(err)
		}
	}
}

// leaseResult is what the consumers' effects say.
type leaseResult struct {
	effects, lost, repeated, disorder, epochs int
	sinkLost                                  int           // committed by a handler, missing from the sink
	catchUp                                   time.Duration // from wait's call to the last effect it needed
	first                                     string        // the first loss or disorder, for the failure message
}

// wait waits until every acknowledged write has an effect (a hang guard:
// a minute without a new one), and reads the effects in the sink's order (the fence's
// sequence): nothing may be lost; within an epoch (one holder's tenure)
// the numbers must rise, and epochs must never go back. Repeats are the
// events a SIGKILLed holder had handled but not yet saved, handled again
// by its successor: at-least-once, bounded by MaxInFlight per kill.
func (l *leaseReaders) wait(t *testing.T, acked int) leaseResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	began := time.Now()
	progress, last := began, 0
	type effect struct {
		N     int32 `bson:"n"`
		Epoch int64 `bson:"epoch"`
		Seq   int64 `bson:"seq"`
	}
	var effects []effect
	for {
		l.restartExited(t)
		cur, err := l.db.Collection("effects").Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "seq", Value: 1}}))
		if err == nil {
			effects = effects[:0]
			err = cur.All(ctx, &effects)
		}
		distinct := map[int32]bool{}
		for _, e := range effects {
			if e.N < int32(acked) {
				distinct[e.N] = true
			}
		}
		if len(distinct) > last {
			progress, last = time.Now(), len(distinct)
		}
		if err == nil && len(distinct) >= acked || ctx.Err() != nil || time.Since(progress) > time.Minute {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var r leaseResult
	var why strings.Builder
	seen := map[int32]bool{}
	var focus int32 = -1 // the first lost or disordered number, for the failure message
	for i, e := range effects {
		switch {
		case i == 0 || e.Epoch != effects[i-1].Epoch:
			r.epochs++
			if i > 0 && e.Epoch < effects[i-1].Epoch {
				r.disorder++
				fmt.Fprintf(&why, "epoch %d after %d at seq %d; ", e.Epoch, effects[i-1].Epoch, e.Seq)
			}
		case e.N <= effects[i-1].N:
			r.disorder++
			fmt.Fprintf(&why, "%d after %d in epoch %d; ", e.N, effects[i-1].N, e.Epoch)
			if focus < 0 {
				focus = e.N
			}
		}
		if seen[e.N] {
			r.repeated++
		}
		seen[e.N] = true
	}
	// A number the handler committed (it logged the effect) that the sink
	// lacks is a commit the deployment acknowledged and then lost: a
	// fault of the simulator's transactions, not of checkpoint.Run, which
	// handed the event over. It is counted apart (sinkLost); lost counts
	// what no handler was ever given.
	logs := map[string][]string{}
	handled := map[int32]bool{}
	for name, p := range l.procs {
		logs[name] = strings.Split(strings.TrimSpace(p.Logs()), "\n")
		for _, line := range logs[name] {
			if n, ok := effectLogged(line); ok {
				handled[n] = true
			}
		}
	}
	for n := range int32(acked) {
		if seen[n] {
			continue
		}
		if r.lost+r.sinkLost == 0 {
			focus = n
		}
		if handled[n] {
			r.sinkLost++
			continue
		}
		if r.lost == 0 {
			fmt.Fprintf(&why, "%d lost; ", n)
		}
		r.lost++
	}
	if r.lost+r.disorder+r.sinkLost > 0 {
		// The effects around the first loss (or disorder), and what each
		// consumer said: every line but the effects of other numbers.
		near := func(n int32) bool { return n >= focus-3 && n <= focus+3 }
		for _, e := range effects {
			if near(e.N) {
				fmt.Fprintf(&why, "\neffect n=%d epoch=%d seq=%d", e.N, e.Epoch, e.Seq)
			}
		}
		for name, p := range l.procs {
			fmt.Fprintf(&why, "\n%s exited %d times; its lines near the loss:", name, p.Count("soakconsumer: exiting"))
			for _, line := range logs[name] {
				if n, ok := effectLogged(line); ok && !near(n) {
					continue
				}
				why.WriteString("\n" + line)
			}
		}
	}
	r.effects, r.first, r.catchUp = len(effects), why.String(), progress.Sub(began)
	return r
}

// effectLogged returns the number of a consumer's "effect" log line (the
// handler's transaction committed), with -trace.
func effectLogged(line string) (int32, bool) {
	var rec struct {
		Msg string `json:"msg"`
		N   *int32 `json:"n"`
	}
	if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "soakconsumer: effect" || rec.N == nil {
		return 0, false
	}
	return *rec.N, true
}
