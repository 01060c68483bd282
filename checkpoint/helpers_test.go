package checkpoint

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// pos returns the position of the i-th event of a made-up stream, with a
// token shaped as a server's (its _data starts with the cluster time).
func pos(i int) changestream.Position {
	ts := bson.Timestamp{T: 1_700_000_000 + uint32(i/3), I: uint32(i%3 + 1)}
	token, _ := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("82%08X%08X2B0229", ts.T, ts.I)}})
	return changestream.Position{Token: token, ClusterTime: ts}
}

// memStore is a Store in memory that records every save.
type memStore struct {
	mu    sync.Mutex
	cps   map[string]Checkpoint
	saves []changestream.Position
	err   error // returned by every Save when set
}

func newMemStore() *memStore { return &memStore{cps: map[string]Checkpoint{}} }

func (m *memStore) Load(_ context.Context, key string) (Checkpoint, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cp, ok := m.cps[key]
	return cp, ok, nil
}

func (m *memStore) Save(_ context.Context, key string, cp Checkpoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	if old, ok := m.cps[key]; ok {
		if c := Compare(old.Position, cp.Position); c > 0 || (c == 0 && sameSnapshot(old.Snapshot, cp.Snapshot)) {
			return nil
		}
	}
	m.cps[key] = cp
	m.saves = append(m.saves, cp.Position)
	return nil
}

func (m *memStore) saved(key string) changestream.Position {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cps[key].Position
}

// testDeployment is a deployment for one test: the simulator, or the one
// MONGODB_URI names.
type testDeployment struct {
	uri string
	sim *mongosim.Server // nil against a real deployment or a sharded cluster
	// cluster is the simulated sharded cluster, when
	// CHANGESTREAM_TEST_TOPOLOGY=sharded (mongosim.TopologyEnv).
	cluster *mongosim.ShardedCluster
	client  *mongo.Client
	db      *mongo.Database
}

// newDeployment starts a simulator (or connects to MONGODB_URI) and opens
// a database of the test's own, dropped at cleanup on a real deployment.
func newDeployment(t testing.TB, simOpts ...mongosim.Option) *testDeployment {
	t.Helper()
	d := &testDeployment{uri: os.Getenv("MONGODB_URI")}
	if d.uri == "" {
		dep := mongosim.StartDeploymentTB(t, simOpts...)
		d.uri, d.sim, d.cluster = dep.URI, dep.Server, dep.Cluster
	} else if len(simOpts) > 0 {
		t.Skip("needs simulator options that a real deployment cannot take")
	}
	d.client = d.connect(t)
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	name := strings.NewReplacer("/", "_", " ", "_", ".", "_").Replace(t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	d.db = d.client.Database("cp_" + name + "_" + hex.EncodeToString(suffix[:]))
	if d.sim == nil && d.cluster == nil {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = d.db.Drop(ctx)
		})
	}
	return d
}

// truncateOplog drops the oplog's history, skipping the test against a
// real deployment: the member's, or on a sharded cluster one shard's only
// (shard1, with LoseHistory), since a stream through mongos must fail
// when any one shard has lost the point.
func (d *testDeployment) truncateOplog(t testing.TB) {
	t.Helper()
	switch {
	case d.sim != nil:
		d.sim.TruncateOplog()
	case d.cluster != nil:
		require.NoError(t, d.cluster.LoseHistory(1))
	default:
		t.Skip("needs the simulator's TruncateOplog")
	}
}

// connect opens another client to the deployment, disconnected at cleanup.
func (d *testDeployment) connect(t testing.TB) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(testclient.Options(d.uri))
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Disconnect(ctx)
	})
	return c
}

func (d *testDeployment) store(t testing.TB) *MongoStore {
	t.Helper()
	s, err := NewMongoStore(d.db.Collection("checkpoints"))
	require.NoError(t, err)
	return s
}
