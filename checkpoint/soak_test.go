package checkpoint

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/proctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The soaks run the consumer as a separate process (internal/soakconsumer)
// against cmd/mongosim, also a process of its own, and hurt it while a
// writer inserts documents: SIGKILL at random (TestRestartSoak), or, with
// two consumers sharing a key, SIGKILL or SIGSTOP of the lease holder
// (TestFailoverSoak). Afterwards they check the effects the handler wrote.
// Short versions run with the tests; CHANGESTREAM_SOAK=long runs the
// issue's sizes (make soak-restart, make soak-lease).

func soakLong() bool { return os.Getenv("CHANGESTREAM_SOAK") == "long" }

// soakBinaries builds the simulator and the consumer.
func soakBinaries(t *testing.T) (sim, consumer string) {
	t.Helper()
	return proctest.Build(t, "./cmd/mongosim"), proctest.Build(t, "./checkpoint/internal/soakconsumer")
}

// startSim runs cmd/mongosim and returns its connection string.
func startSim(t *testing.T, bin string) string {
	t.Helper()
	return proctest.StartSim(t, bin, "-noop-interval", "200ms")
}

// writeSource inserts n documents {n: i}, ten at a time, spread over
// about spread.
func writeSource(ctx context.Context, coll *mongo.Collection, n int, spread time.Duration) error {
	pause := spread / time.Duration(n/10)
	for i := 0; i < n; i += 10 {
		docs := make([]any, 0, 10)
		for j := i; j < min(i+10, n); j++ {
			docs = append(docs, bson.D{{Key: "n", Value: int32(j)}})
		}
		if _, err := coll.InsertMany(ctx, docs); err != nil {
			return err
		}
		time.Sleep(pause)
	}
	return nil
}

// effectCounts returns how many effects each n has.
func effectCounts(ctx context.Context, t *testing.T, coll *mongo.Collection) map[int32]int {
	t.Helper()
	cur, err := coll.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "n", Value: 1}}))
	require.NoError(t, err)
	var docs []struct {
		N int32 `bson:"n"`
	}
	require.NoError(t, cur.All(ctx, &docs))
	out := map[int32]int{}
	for _, d := range docs {
		out[d.N]++
	}
	return out
}

// TestRestartSoak: one consumer with a FileStore, killed with SIGKILL at
// random while a writer inserts documents: no event is lost, and the
// repeated ones stay within the in-flight bound of each crash.
func TestRestartSoak(t *testing.T) {
	docs, kills, bound := 2000, 10, 50
	if soakLong() {
		docs, kills = 20000, 100
	}
	simBin, consumerBin := soakBinaries(t)
	uri := startSim(t, simBin)
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	require.NoError(t, err)
	defer func() { _ = client.Disconnect(context.Background()) }()
	db := client.Database("soak")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	began := time.Now()
	dir := t.TempDir()
	// The default commit interval (1s): MaxInFlight alone bounds what a
	// crash repeats.
	p := &proctest.Proc{Bin: consumerBin, Args: []string{"-uri", uri, "-dir", dir,
		"-max-in-flight", fmt.Sprint(bound), "-commit", "0"}}
	p.Start(t)
	// The first incarnation saves its starting point; the writer waits
	// for it, since a stream from now would not see earlier documents.
	require.Eventually(t, func() bool { return fileCheckpointExists(dir) }, 20*time.Second, 10*time.Millisecond)

	wrote := make(chan error, 1)
	spread := time.Duration(kills) * 120 * time.Millisecond
	go func() { wrote <- writeSource(ctx, db.Collection("source"), docs, spread) }()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for range kills {
		time.Sleep(time.Duration(30+rng.IntN(170)) * time.Millisecond)
		p.Kill()
		p.Start(t)
	}
	require.NoError(t, <-wrote)
	require.Eventually(t, func() bool {
		return len(effectCounts(ctx, t, db.Collection("effects"))) == docs
	}, 5*time.Minute, 50*time.Millisecond, "every document's effect")
	p.Stop()

	counts := effectCounts(ctx, t, db.Collection("effects"))
	lost, dups := 0, 0
	for n := range int32(docs) {
		switch c := counts[n]; {
		case c == 0:
			lost++
		case c > 1:
			dups += c - 1
		}
	}
	t.Logf("restart soak: %d documents, %d SIGKILLs, in-flight bound %d: %d lost, %d repeated (at most %d allowed), %.1f s",
		docs, kills, bound, lost, dups, kills*bound, time.Since(began).Seconds())
	assert.Zero(t, lost)
	assert.LessOrEqual(t, dups, kills*bound)
}

func fileCheckpointExists(dir string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, "checkpoint-*.json"))
	return len(m) > 0
}

// leaseHolder returns the owner and epoch of the key's live lease, waiting
// for one (after a kill, until the standby has taken over).
func leaseHolder(ctx context.Context, t *testing.T, coll *mongo.Collection) (string, int64) {
	t.Helper()
	var d storedDoc
	require.Eventually(t, func() bool {
		err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "soak"}}).Decode(&d)
		return err == nil && d.Owner != "" && d.LeaseUntil.After(time.Now())
	}, time.Minute, 5*time.Millisecond, "a live lease")
	return d.Owner, d.Epoch
}

// TestFailoverSoak: two consumers share a key with a lease; the holder is
// killed (SIGKILL) or paused (SIGSTOP, longer than the lease) again and
// again while a writer inserts documents. Nothing is lost; the sink, which
// each effect's transaction fences with the lease's epoch, receives
// effects in epoch order only (one consumer active at a time); and every
// paused holder, once resumed, finds its lease lost: its saves, renewals
// and effects are refused.
func TestFailoverSoak(t *testing.T) {
	docs, actions := 1000, 6
	if soakLong() {
		docs, actions = 10000, 30
	}
	const ttl = 400 * time.Millisecond
	simBin, consumerBin := soakBinaries(t)
	uri := startSim(t, simBin)
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	require.NoError(t, err)
	defer func() { _ = client.Disconnect(context.Background()) }()
	db := client.Database("soak")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	_, err = db.Collection("fence").InsertOne(ctx, bson.D{{Key: "_id", Value: "soak"}, {Key: "epoch", Value: int64(0)}, {Key: "seq", Value: int64(0)}})
	require.NoError(t, err)
	// A consumer killed inside its sink transaction leaves it open, holding
	// the fence, until the server aborts it: after a minute by default.
	// It is a shard's parameter: through mongos, set on every shard.
	require.NoError(t, onEveryShard(ctx, client, bson.D{{Key: "setParameter", Value: 1}, {Key: "transactionLifetimeLimitSeconds", Value: 1}}))

	began := time.Now()
	procs := map[string]*proctest.Proc{}
	for _, owner := range []string{"c1", "c2"} {
		procs[owner] = &proctest.Proc{Bin: consumerBin, Args: []string{"-uri", uri, "-ttl", ttl.String(), "-owner", owner,
			"-max-in-flight", "50", "-commit", "20ms"}}
		procs[owner].Start(t)
	}
	defer func() {
		for _, p := range procs {
			p.Stop()
		}
	}()
	checkpoints := db.Collection("checkpoints")
	require.Eventually(t, func() bool {
		var d storedDoc
		return checkpoints.FindOne(ctx, bson.D{{Key: "_id", Value: "soak"}}).Decode(&d) == nil && d.Token != nil
	}, 20*time.Second, 10*time.Millisecond, "the first holder saved its starting point")

	wrote := make(chan error, 1)
	go func() {
		wrote <- writeSource(ctx, db.Collection("source"), docs, time.Duration(actions)*(2*ttl+500*time.Millisecond))
	}()
	restartExited := func() {
		for _, p := range procs {
			if p.Exited() {
				p.Start(t)
			}
		}
	}
	kills, pauses, lostReports := 0, 0, 0
	for i := range actions {
		time.Sleep(300 * time.Millisecond)
		restartExited()
		owner, epoch := leaseHolder(ctx, t, checkpoints)
		p := procs[owner]
		if i%2 == 0 {
			p.Kill()
			kills++
			p.Start(t)
			continue
		}
		before := p.Count("lease lost") + p.Count("stale effect refused")
		require.NoError(t, p.Signal(syscall.SIGSTOP))
		pauses++
		_, next := leaseHolder(ctx, t, checkpoints)
		require.Eventually(t, func() bool { _, e := leaseHolder(ctx, t, checkpoints); next = e; return e > epoch },
			time.Minute, 5*time.Millisecond, "the standby takes over from the paused holder")
		require.NoError(t, p.Signal(syscall.SIGCONT))
		require.Eventually(t, func() bool {
			return p.Count("lease lost")+p.Count("stale effect refused") > before
		}, time.Minute, 5*time.Millisecond, "the resumed holder (epoch %d, now %d) finds its lease lost", epoch, next)
		lostReports++
	}
	require.NoError(t, <-wrote)
	require.Eventually(t, func() bool {
		restartExited()
		return len(effectCounts(ctx, t, db.Collection("effects"))) == docs
	}, 5*time.Minute, 50*time.Millisecond, "every document's effect")

	cur, err := db.Collection("effects").Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "seq", Value: 1}}))
	require.NoError(t, err)
	var effects []struct {
		N     int32 `bson:"n"`
		Epoch int64 `bson:"epoch"`
		Seq   int64 `bson:"seq"`
	}
	require.NoError(t, cur.All(ctx, &effects))
	outOfOrder, dups := 0, 0
	seen := map[int32]bool{}
	for i, e := range effects {
		if i > 0 && e.Epoch < effects[i-1].Epoch {
			outOfOrder++
		}
		if seen[e.N] {
			dups++
		}
		seen[e.N] = true
	}
	stale := 0
	for _, p := range procs {
		stale += p.Count("stale effect refused")
	}
	t.Logf("failover soak: %d documents, %d SIGKILLs and %d SIGSTOPs of the holder (lease %v): %d lost, %d repeated, "+
		"%d effects from an older epoch after a newer one, %d of %d resumed holders found their lease lost (%d stale effects refused), %.1f s",
		docs, kills, pauses, ttl, docs-len(seen), dups, outOfOrder, lostReports, pauses, stale, time.Since(began).Seconds())
	assert.Equal(t, docs, len(seen), "nothing lost")
	assert.Zero(t, outOfOrder, "one consumer active at a time")
	assert.Equal(t, pauses, lostReports)
}

// TestSnapshotSIGKILL: a consumer process killed with SIGKILL in the
// middle of its initial snapshot, while a writer changes the collection,
// resumes the snapshot from its checkpointed _id when restarted, and its
// mirror ends equal to the collection.
func TestSnapshotSIGKILL(t *testing.T) {
	simBin, consumerBin := soakBinaries(t)
	uri := startSim(t, simBin)
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	require.NoError(t, err)
	defer func() { _ = client.Disconnect(context.Background()) }()
	db := client.Database("soak")
	source, mirror := db.Collection("source"), db.Collection("mirror")
	docs := 10000
	if soakLong() {
		docs = 50000
	}
	fill(t, source, docs)

	dir := t.TempDir()
	p := &proctest.Proc{Bin: consumerBin, Args: []string{"-uri", uri, "-dir", dir, "-mirror", "-commit", "20ms"}}
	p.Start(t)
	store, err := NewFileStore(dir)
	require.NoError(t, err)
	var during Checkpoint
	require.Eventually(t, func() bool {
		cp, ok, _ := store.Load(context.Background(), "soak")
		during = cp
		return ok && cp.Snapshot != nil && cp.Snapshot.After != nil && cp.Snapshot.After.Lookup("_id").Int32() > int32(docs/10)
	}, time.Minute, time.Millisecond, "the snapshot is under way")
	stop := make(chan struct{})
	wrote := make(chan error, 1)
	go func() {
		_, err := churn([]*mongo.Collection{source}, docs, stop, rand.New(rand.NewPCG(3, 4)))
		wrote <- err
	}()
	p.Kill()
	killedAt, _, err := store.Load(context.Background(), "soak")
	require.NoError(t, err)
	require.NotNil(t, killedAt.Snapshot, "killed before the snapshot finished")
	mirrored, err := mirror.CountDocuments(context.Background(), bson.D{})
	require.NoError(t, err)

	p.Start(t)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	require.NoError(t, <-wrote)
	var why string
	require.Eventually(t, func() bool {
		same, w := sameDocs(readDocs(t, mirror), readDocs(t, source))
		why = w
		return same
	}, 5*time.Minute, 500*time.Millisecond, "the mirror equals the source: %s", why)
	p.Stop()
	t.Logf("snapshot SIGKILL: %d documents; killed with %d mirrored, the checkpoint at _id %v (seen during: %v); the restart carried on from the checkpoint and the mirror equals the source",
		docs, mirrored, killedAt.Snapshot.After.Lookup("_id"), during.Snapshot.After.Lookup("_id"))
}

// onEveryShard runs an admin command on the deployment, or through mongos
// on each shard's primary (found with listShards), for what a shard
// keeps, not the router.
func onEveryShard(ctx context.Context, client *mongo.Client, cmd bson.D) error {
	var shards struct {
		Shards []struct {
			Host string `bson:"host"`
		} `bson:"shards"`
	}
	if err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "listShards", Value: 1}}).Decode(&shards); err != nil {
		return client.Database("admin").RunCommand(ctx, cmd).Err() // not a mongos
	}
	for _, s := range shards.Shards {
		set, hosts, _ := strings.Cut(s.Host, "/")
		c, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + hosts + "/?replicaSet=" + set))
		if err != nil {
			return err
		}
		err = c.Database("admin").RunCommand(ctx, cmd).Err()
		_ = c.Disconnect(ctx)
		if err != nil {
			return fmt.Errorf("shard %s: %w", set, err)
		}
	}
	return nil
}
