package checkpoint

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// sink mirrors what a handler is told: snapshot documents and changes,
// applied idempotently, keyed by namespace and _id.
type sink struct {
	mu       sync.Mutex
	docs     map[string]string // ns + " " + documentKey -> fullDocument (canonical JSON)
	snapshot int
}

func newSink() *sink { return &sink{docs: map[string]string{}} }

func (s *sink) handle(_ context.Context, ev changestream.Event[bson.Raw]) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := ev.Namespace.DB + "." + ev.Namespace.Coll + " " + ev.DocumentKey.String()
	switch ev.OperationType {
	case OperationSnapshotStart:
		// The snapshot delivers every document again: what it does not
		// deliver was deleted, perhaps while history was lost.
		clear(s.docs)
	case OperationSnapshot, changestream.OperationInsert, changestream.OperationReplace, changestream.OperationUpdate:
		if ev.OperationType == OperationSnapshot {
			s.snapshot++
		}
		if ev.FullDocument == nil {
			return nil // deleted since: its delete follows
		}
		s.docs[key] = ev.FullDocument.String()
	case changestream.OperationDelete:
		delete(s.docs, key)
	}
	return nil
}

func (s *sink) snapshotted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshot
}

// equals reports whether the sink holds exactly the documents of colls.
func (s *sink) equals(t *testing.T, colls ...*mongo.Collection) (bool, string) {
	t.Helper()
	want := map[string]string{}
	for _, c := range colls {
		for key, doc := range readDocs(t, c) {
			want[c.Database().Name()+"."+c.Name()+" "+key] = doc
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return sameDocs(s.docs, want)
}

// readDocs returns coll's documents by their key, {_id: v}, as text.
func readDocs(t *testing.T, coll *mongo.Collection) map[string]string {
	t.Helper()
	cur, err := coll.Find(context.Background(), bson.D{})
	require.NoError(t, err)
	var docs []bson.Raw
	require.NoError(t, cur.All(context.Background(), &docs))
	m := make(map[string]string, len(docs))
	for _, d := range docs {
		key, err := bson.Marshal(bson.D{{Key: "_id", Value: d.Lookup("_id")}})
		require.NoError(t, err)
		m[bson.Raw(key).String()] = d.String()
	}
	return m
}

// sameDocs reports whether got holds exactly want, and if not, a
// difference.
func sameDocs(got, want map[string]string) (bool, string) {
	if len(got) != len(want) {
		return false, fmt.Sprintf("%d documents, %d wanted", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			return false, fmt.Sprintf("%s: %s, %s wanted", k, got[k], v)
		}
	}
	return true, ""
}

// fill inserts n documents {_id: i, v: 0} into coll.
func fill(t *testing.T, coll *mongo.Collection, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i += 1000 {
		docs := make([]any, 0, 1000)
		for j := i; j < min(i+1000, n); j++ {
			docs = append(docs, bson.D{{Key: "_id", Value: int32(j)}, {Key: "v", Value: int32(0)}})
		}
		_, err := coll.InsertMany(ctx, docs)
		require.NoError(t, err)
	}
}

// churn inserts, updates and deletes documents of colls (ids below n and
// new ones) until stop is closed; it returns how many writes it made.
func churn(colls []*mongo.Collection, n int, stop <-chan struct{}, rng *rand.Rand) (int, error) {
	ctx := context.Background()
	writes := 0
	for next := int32(n); ; writes++ {
		select {
		case <-stop:
			return writes, nil
		default:
		}
		c := colls[rng.IntN(len(colls))]
		id := int32(rng.IntN(n))
		var err error
		switch rng.IntN(4) {
		case 0:
			_, err = c.InsertOne(ctx, bson.D{{Key: "_id", Value: next}, {Key: "v", Value: int32(1)}})
			next++
		case 1:
			_, err = c.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
		case 2:
			_, err = c.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "v", Value: int32(2)}, {Key: "r", Value: true}})
		default:
			_, err = c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "v", Value: int32(1)}}}})
		}
		if err != nil {
			return writes, err
		}
	}
}

// TestSnapshotHandover: a collection, a database's collections and a
// deployment's are snapshotted while a writer inserts, updates and
// deletes; afterwards the sink equals the target exactly.
func TestSnapshotHandover(t *testing.T) {
	t.Parallel()
	const docs = 50000
	for _, target := range []string{"collection", "database", "cluster"} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			d := newDeployment(t)
			var colls []*mongo.Collection
			cfg := Config{Key: "k", Snapshot: SnapshotInitial, FullDocument: changestream.FullDocumentUpdateLookup, CommitInterval: 20 * time.Millisecond}
			switch target {
			case "collection":
				colls = []*mongo.Collection{d.db.Collection("a")}
				cfg.Collection = colls[0]
			case "database":
				colls = []*mongo.Collection{d.db.Collection("a"), d.db.Collection("b")}
				cfg.Database = d.db
			case "cluster":
				other := d.client.Database(d.db.Name() + "_2")
				colls = []*mongo.Collection{d.db.Collection("a"), other.Collection("b")}
				cfg.Client = d.client
			}
			for _, c := range colls {
				fill(t, c, docs/len(colls))
			}
			store, err := NewFileStore(t.TempDir())
			require.NoError(t, err)
			cfg.Store = store
			s := newSink()
			finished := make(chan struct{})
			cfg.OnSnapshot = func(r SnapshotReport) {
				if r.Done {
					close(finished)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- Run(ctx, cfg, func(ctx context.Context, ev changestream.Event[bson.Raw]) error {
					if ev.OperationType == OperationSnapshot && ev.DocumentKey.Lookup("_id").Int32()%1000 == 0 {
						time.Sleep(5 * time.Millisecond) // leave the writer time to write during the snapshot
					}
					return s.handle(ctx, ev)
				})
			}()

			stop := make(chan struct{})
			wrote := make(chan error, 1)
			var writes int
			go func() {
				var err error
				writes, err = churn(colls, docs/len(colls), stop, rand.New(rand.NewPCG(1, 2)))
				wrote <- err
			}()
			select {
			case <-finished:
			case <-time.After(time.Minute):
				t.Fatal("the snapshot did not finish")
			}
			close(stop)
			require.NoError(t, <-wrote)
			var why string
			require.Eventually(t, func() bool {
				var ok bool
				ok, why = s.equals(t, colls...)
				return ok
			}, time.Minute, 20*time.Millisecond, "the sink equals the target: %s", why)
			cancel()
			require.NoError(t, <-done)
			t.Logf("%s: %d documents snapshotted, %d writes during the snapshot", target, s.snapshotted(), writes)
			assert.GreaterOrEqual(t, s.snapshotted(), docs/2)
			cp, _, err := store.Load(context.Background(), "k")
			require.NoError(t, err)
			assert.Nil(t, cp.Snapshot, "the snapshot finished")
		})
	}
}

// TestSnapshotResume: a Run stopped in the middle of a snapshot resumes it
// from the last saved batch, not from the start.
func TestSnapshotResume(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	coll := d.db.Collection("a")
	fill(t, coll, 5000)
	store, err := NewFileStore(t.TempDir())
	require.NoError(t, err)
	cfg := Config{Key: "k", Collection: coll, Store: store, Snapshot: SnapshotInitial, SnapshotBatch: 100}
	s := newSink()
	gate := make(chan struct{})
	var calls int
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, func(ctx context.Context, ev changestream.Event[bson.Raw]) error {
			calls++
			if calls == 1050 {
				close(gate)
				<-ctx.Done()
				return ctx.Err()
			}
			return s.handle(ctx, ev)
		})
	}()
	<-gate
	cancel()
	<-done
	cp, ok, err := store.Load(context.Background(), "k")
	require.NoError(t, err)
	require.True(t, ok)
	require.NotNil(t, cp.Snapshot, "stopped mid-snapshot")
	assert.Equal(t, d.db.Name()+".a", cp.Snapshot.Namespace)
	assert.Equal(t, int32(999), cp.Snapshot.After.Lookup("_id").Int32(), "the last full batch")

	second := newSink()
	second.docs = s.docs
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- Run(ctx, cfg, second.handle) }()
	require.Eventually(t, func() bool { ok, _ := second.equals(t, coll); return ok }, time.Minute, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	assert.Equal(t, 4000, second.snapshotted(), "resumed after _id 999")
}

// TestSnapshotWhenNeeded: a checkpoint whose history left the oplog leads
// to one new snapshot, then streaming; the sink ends equal to the
// collection.
func TestSnapshotWhenNeeded(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	if d.sim == nil && d.cluster == nil {
		t.Skip("needs the simulator's TruncateOplog")
	}
	coll := d.db.Collection("a")
	fill(t, coll, 300)
	store, err := NewFileStore(t.TempDir())
	require.NoError(t, err)
	var reports []SnapshotReport
	var mu sync.Mutex
	cfg := Config{Key: "k", Collection: coll, Store: store, Snapshot: SnapshotWhenNeeded, FullDocument: changestream.FullDocumentUpdateLookup,
		CommitInterval: 10 * time.Millisecond, SnapshotBatch: 100,
		OnSnapshot: func(r SnapshotReport) { mu.Lock(); reports = append(reports, r); mu.Unlock() }}
	s := newSink()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, s.handle) }()
	dones := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, r := range reports {
			if r.Done {
				n++
			}
		}
		return n
	}
	require.Eventually(t, func() bool { ok, _ := s.equals(t, coll); return ok && dones() == 1 }, time.Minute, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	assert.Equal(t, 300, s.snapshotted(), "the initial snapshot")
	mu.Lock()
	assert.Equal(t, SnapshotReport{Done: true}, reports[len(reports)-1])
	assert.Contains(t, reports, SnapshotReport{Namespace: d.db.Name() + ".a", Read: 300, Estimated: 300})
	mu.Unlock()

	ctxw := context.Background()
	_, err = coll.DeleteOne(ctxw, bson.D{{Key: "_id", Value: 0}})
	require.NoError(t, err)
	_, err = coll.UpdateOne(ctxw, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 9}}}})
	require.NoError(t, err)
	d.truncateOplog(t)
	_, err = coll.InsertOne(ctxw, bson.D{{Key: "_id", Value: 1000}})
	require.NoError(t, err)

	second := newSink()
	second.docs = s.docs // the sink as the first run left it
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- Run(ctx, cfg, second.handle) }()
	var why string
	require.Eventually(t, func() bool { ok, w := second.equals(t, coll); why = w; return ok && dones() == 2 }, time.Minute, 10*time.Millisecond, "snapshots done: %d; %s", dones(), why)
	_, err = coll.InsertOne(ctxw, bson.D{{Key: "_id", Value: 1001}})
	require.NoError(t, err)
	require.Eventually(t, func() bool { ok, _ := second.equals(t, coll); return ok }, time.Minute, 10*time.Millisecond, "and streams after it")
	cancel()
	require.NoError(t, <-done)
	assert.Equal(t, 300, second.snapshotted(), "one new snapshot")
}

// TestSnapshotResumeDatabase: a database's snapshot stopped in its second
// collection resumes there: the collections are read in name order (the
// collections are created out of it), so those before are skipped and
// none is read twice or missed. The simulator lists collections by name
// already; a server need not, which is why the snapshot sorts them.
func TestSnapshotResumeDatabase(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	colls := []*mongo.Collection{d.db.Collection("c"), d.db.Collection("a"), d.db.Collection("b")}
	for _, c := range colls {
		fill(t, c, 300)
	}
	store, err := NewFileStore(t.TempDir())
	require.NoError(t, err)
	cfg := Config{Key: "k", Database: d.db, Store: store, Snapshot: SnapshotInitial, SnapshotBatch: 100}
	s := newSink()
	gate := make(chan struct{})
	calls := 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, func(ctx context.Context, ev changestream.Event[bson.Raw]) error {
			calls++
			if calls == 452 { // the start event, all of a, half of b's second batch
				close(gate)
				<-ctx.Done()
				return ctx.Err()
			}
			return s.handle(ctx, ev)
		})
	}()
	<-gate
	cancel()
	<-done
	cp, _, err := store.Load(context.Background(), "k")
	require.NoError(t, err)
	require.NotNil(t, cp.Snapshot)
	assert.Equal(t, d.db.Name()+".b", cp.Snapshot.Namespace)
	assert.Equal(t, int32(99), cp.Snapshot.After.Lookup("_id").Int32())

	second := newSink()
	second.docs = s.docs
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- Run(ctx, cfg, second.handle) }()
	require.Eventually(t, func() bool { ok, _ := second.equals(t, colls...); return ok }, time.Minute, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	assert.Equal(t, 200+300, second.snapshotted(), "the rest of b, then c")
}
