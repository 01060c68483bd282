package changestream_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// testEnv is one test's deployment: its own simulator, or the real
// deployment named by MONGODB_URI with a database of the test's own.
type testEnv struct {
	sim *mongosim.Server // nil against a real deployment or a sharded cluster
	// cluster is the simulated sharded cluster the test runs on when
	// CHANGESTREAM_TEST_TOPOLOGY=sharded (mongosim.TopologyEnv).
	cluster *mongosim.ShardedCluster
	client  *mongo.Client
	db      *mongo.Database
	coll    *mongo.Collection
	mon     *commandLog
	uri     string
	// appName names this test's client, so that a failCommand fail point on
	// a shared real deployment hits only this test's commands.
	appName string
}

var dbNameUnsafe = regexp.MustCompile(`[^A-Za-z0-9_]`)

// newEnv starts a simulator (or uses MONGODB_URI), connects a client that
// records the commands it sends, and cleans both up when the test ends.
func newEnv(t testing.TB, simOpts ...mongosim.Option) *testEnv {
	t.Helper()
	e := &testEnv{mon: &commandLog{}}
	e.uri = os.Getenv("MONGODB_URI")
	switch {
	case e.uri == "":
		d := mongosim.StartDeploymentTB(t, simOpts...)
		e.uri, e.sim, e.cluster = d.URI, d.Server, d.Cluster
	case len(simOpts) > 0:
		t.Skip("needs simulator options that a real deployment cannot take")
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	e.appName = "cs-" + hex.EncodeToString(suffix[:])
	e.client = e.connect(t, e.appName)
	name := dbNameUnsafe.ReplaceAllString(t.Name(), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	e.db = e.client.Database("cs_" + name + "_" + hex.EncodeToString(suffix[:]))
	e.coll = e.db.Collection("events")
	if e.sim == nil && e.cluster == nil {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = e.db.Drop(ctx)
		})
	}
	return e
}

// connect opens a client with the command monitor, disconnected at cleanup.
func (e *testEnv) connect(t testing.TB, appName string) *mongo.Client {
	t.Helper()
	opts := testclient.Options(e.uri).SetMonitor(e.mon.monitor())
	if appName != "" {
		opts.SetAppName(appName)
	}
	c, err := mongo.Connect(opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Disconnect(ctx)
	})
	return c
}

// needMember skips a test that needs a fault only the simulator can inject
// on the one member it talks to.
func (e *testEnv) needMember(t testing.TB) {
	t.Helper()
	if e.cluster != nil {
		t.Skip("needs a fault injected on the one member a replica-set client talks to; on a sharded cluster the client talks to mongos")
	}
	if e.sim == nil {
		t.Skip("needs the simulator's Go-level fault injection")
	}
}

// needSim skips a test against a real deployment: it needs the
// simulator (its faults, such as killed cursors or a truncated oplog, or
// its answers), on a replica set or a sharded cluster alike.
func (e *testEnv) needSim(t testing.TB) {
	t.Helper()
	if e.sim == nil && e.cluster == nil {
		t.Skip("needs the simulator's Go-level fault injection")
	}
}

// killAllCursors kills every cursor the test's clients hold: the
// member's, or every mongos's (with the shard cursors behind them).
func (e *testEnv) killAllCursors() {
	if e.sim != nil {
		e.sim.KillAllCursors()
		return
	}
	for _, r := range e.cluster.Routers() {
		r.KillAllCursors()
	}
}

// truncateOplog drops the oplog's history: the member's, or on a sharded
// cluster one shard's only (shard1), since a stream through mongos must
// fail when any one shard has lost the point.
func (e *testEnv) truncateOplog() {
	if e.sim != nil {
		e.sim.TruncateOplog()
		return
	}
	if err := e.cluster.LoseHistory(1); err != nil {
		panic(err) // a one-member shard always has a primary
	}
}

// failPoint configures failCommand (or another fail point) and turns it off
// when the test ends. failCommand is limited to this test's client; other
// fail points act on every client, so on a shared real deployment, where
// parallel tests would trip over them, the test is skipped.
func (e *testEnv) failPoint(t testing.TB, name string, mode any, data bson.D) {
	t.Helper()
	if name == "failCommand" {
		data = append(data, bson.E{Key: "appName", Value: e.appName})
	} else {
		e.needMember(t)
	}
	ctx := context.Background()
	admin := e.client.Database("admin")
	err := admin.RunCommand(ctx, bson.D{{Key: "configureFailPoint", Value: name}, {Key: "mode", Value: mode}, {Key: "data", Value: data}}).Err()
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = admin.RunCommand(context.Background(), bson.D{{Key: "configureFailPoint", Value: name}, {Key: "mode", Value: "off"}}).Err()
	})
}

// insert writes documents {_id: n, n: n} for each n.
func (e *testEnv) insert(t testing.TB, ns ...int) {
	t.Helper()
	docs := make([]any, len(ns))
	for i, n := range ns {
		docs[i] = bson.D{{Key: "_id", Value: int32(n)}, {Key: "n", Value: int32(n)}}
	}
	_, err := e.coll.InsertMany(context.Background(), docs)
	require.NoError(t, err)
}

// startedCommand is a command the client sent.
type startedCommand struct {
	name string
	cmd  bson.Raw
}

// commandLog records the commands a client sends, and the replies to
// aggregate and getMore.
type commandLog struct {
	mu      sync.Mutex
	started []startedCommand
	replies []startedCommand
}

func (l *commandLog) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{
		Started: func(_ context.Context, ev *event.CommandStartedEvent) {
			switch ev.CommandName {
			case "hello", "isMaster", "endSessions", "ping", "buildInfo":
				return
			}
			l.mu.Lock()
			l.started = append(l.started, startedCommand{ev.CommandName, append(bson.Raw(nil), ev.Command...)})
			l.mu.Unlock()
		},
		Succeeded: func(_ context.Context, ev *event.CommandSucceededEvent) {
			if ev.CommandName != "aggregate" && ev.CommandName != "getMore" {
				return
			}
			l.mu.Lock()
			l.replies = append(l.replies, startedCommand{ev.CommandName, append(bson.Raw(nil), ev.Reply...)})
			l.mu.Unlock()
		},
	}
}

// commands returns the sent commands named name (all when name is "").
func (l *commandLog) commands(name string) []bson.Raw {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []bson.Raw
	for _, c := range l.started {
		if name == "" || c.name == name {
			out = append(out, c.cmd)
		}
	}
	return out
}

// lastReply returns the newest aggregate or getMore reply.
func (l *commandLog) lastReply() bson.Raw {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.replies) == 0 {
		return nil
	}
	return l.replies[len(l.replies)-1].cmd
}

func (l *commandLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.started, l.replies = nil, nil
}

// changeStreamStage returns the $changeStream stage of an aggregate command.
func changeStreamStage(t testing.TB, cmd bson.Raw) bson.Raw {
	t.Helper()
	stage, err := cmd.LookupErr("pipeline", "0", "$changeStream")
	require.NoError(t, err, "aggregate without $changeStream: %s", cmd)
	return stage.Document()
}

// eventN returns the n field of the current event's full document.
func eventN(t testing.TB, ev bson.Raw) int32 {
	t.Helper()
	v, err := ev.LookupErr("fullDocument", "n")
	require.NoError(t, err, "event without fullDocument.n: %s", ev)
	return v.Int32()
}

// ctxTimeout returns a context that ends after d, cancelled at cleanup.
func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mongosimOplogMax(n int) mongosim.Option { return mongosim.WithOplogMax(n) }

// cancelMidGetMore cancels ctx once a getMore is waiting on the server: on
// the simulator exactly then, on a real deployment after a pause long
// enough for the getMore to have been sent. It returns a function that
// waits for the canceller to finish.
func (e *testEnv) cancelMidGetMore(cancel context.CancelFunc) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel()
		if e.sim == nil {
			time.Sleep(100 * time.Millisecond)
			return
		}
		for e.sim.AwaitingGetMores() == 0 {
			time.Sleep(time.Millisecond)
		}
	}()
	return func() { <-done }
}
