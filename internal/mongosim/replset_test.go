package mongosim_test

import (
	"context"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

// rsClient connects to every member of rs. The set closes before the
// client disconnects, so that a monitor blocked in an awaitable hello ends
// with its connection instead of waiting out maxAwaitTimeMS (the driver's
// Disconnect does not interrupt a heartbeat that has just started); the
// Disconnect's endSessions, finding no server, gives up after a second.
func rsClient(t *testing.T, rs *mongosim.ReplicaSet, opts ...*options.ClientOptions) *mongo.Client {
	t.Helper()
	o := options.Client().ApplyURI(rs.URI())
	c, err := mongo.Connect(append([]*options.ClientOptions{o}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { closeThenDisconnect(rs, c) })
	return c
}

func closeThenDisconnect(rs *mongosim.ReplicaSet, c *mongo.Client) {
	_ = rs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.Disconnect(ctx)
}

// directClient connects to one member alone.
func directClient(t *testing.T, rs *mongosim.ReplicaSet, s *mongosim.Server) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + s.Addr() + "/?directConnection=true"))
	require.NoError(t, err)
	t.Cleanup(func() { closeThenDisconnect(rs, c) })
	return c
}

func hello(t *testing.T, c *mongo.Client) bson.Raw {
	t.Helper()
	out, err := c.Database("admin").RunCommand(context.Background(), bson.D{{Key: "hello", Value: 1}}).Raw()
	require.NoError(t, err)
	return out
}

func TestNewReplicaSetRefusesBadSizes(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 2, 4, 7} {
		_, err := mongosim.NewReplicaSet(n, nil)
		assert.ErrorContains(t, err, "not supported", n)
	}
	_, err := mongosim.NewReplicaSet(3, []mongosim.Option{mongosim.WithAddr("127.0.0.1:27017")})
	assert.ErrorContains(t, err, "WithAddr")
	_, err = mongosim.NewReplicaSet(3, []mongosim.Option{mongosim.WithStandalone()})
	assert.ErrorContains(t, err, "standalone")
}

// Each member's hello says what a real member's does: the same hosts and
// primary, its own me, secondary or isWritablePrimary, electionId on the
// primary only, and a topologyVersion.
func TestReplicaSetHello(t *testing.T) {
	t.Parallel()
	rs := mongosim.StartReplicaSetTB(t, 3, nil)
	primary := rs.Primary()
	require.NotNil(t, primary)
	assert.Equal(t, rs.Member(0), primary, "member 0 is elected first")
	for i, s := range rs.Members() {
		h := hello(t, directClient(t, rs, s))
		assert.Equal(t, "rs0", h.Lookup("setName").StringValue())
		hosts, _ := h.Lookup("hosts").Array().Values()
		assert.Len(t, hosts, 3)
		assert.Equal(t, primary.Addr(), h.Lookup("primary").StringValue())
		assert.Equal(t, s.Addr(), h.Lookup("me").StringValue())
		assert.Equal(t, i == 0, h.Lookup("isWritablePrimary").Boolean(), i)
		assert.Equal(t, i != 0, h.Lookup("secondary").Boolean(), i)
		_, err := h.LookupErr("electionId")
		assert.Equal(t, i == 0, err == nil, "electionId on member %d", i)
		_, err = h.LookupErr("topologyVersion", "processId")
		assert.NoError(t, err)
		_, err = h.LookupErr("lastWrite", "majorityOpTime")
		assert.NoError(t, err)
	}
}

// After a step-down the driver finds the new primary through the streaming
// hello, not by polling: its heartbeat is a minute, and the write after the
// step-down succeeds well inside it.
func TestStepDownDriverFindsNewPrimary(t *testing.T) {
	t.Parallel()
	rs := mongosim.StartReplicaSetTB(t, 3, nil)
	var heartbeats, awaited int
	mon := &event.ServerMonitor{ServerHeartbeatSucceeded: func(e *event.ServerHeartbeatSucceededEvent) {
		heartbeats++
		if e.Awaited {
			awaited++
		}
	}}
	c := rsClient(t, rs, options.Client().SetHeartbeatInterval(time.Minute).SetServerMonitor(mon))
	coll := c.Database("db").Collection("c")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)

	old := rs.Primary()
	require.NoError(t, rs.StepDown(ctx, mongosim.StepDownOptions{}))
	now := rs.Primary()
	require.NotNil(t, now)
	assert.NotEqual(t, old, now)
	assert.Equal(t, 2, rs.Elections())

	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}})
	require.NoError(t, err, "the write after the step-down")
	n, err := coll.CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	assert.EqualValues(t, 2, n)
}

// The driver's monitor sends one awaitable hello and then reads the
// streamed answers; with a heartbeat of 500 ms, hello requests per
// connection stay at the heartbeat rate (the RTT monitor's), instead of the
// flood an immediate answer to every awaitable hello would cause.
func TestAwaitableHelloDoesNotFlood(t *testing.T) {
	t.Parallel()
	rs := mongosim.StartReplicaSetTB(t, 3, nil)
	const heartbeat = 500 * time.Millisecond // the driver's minimum
	c := rsClient(t, rs, options.Client().SetHeartbeatInterval(heartbeat).SetAppName("flood"))
	require.NoError(t, c.Ping(context.Background(), readpref.Primary()))
	p := rs.Primary()
	p.ResetCommands()
	start := time.Now()
	// Let the monitors run for 8 heartbeats.
	time.Sleep(8 * heartbeat)
	elapsed := time.Since(start)
	perConn := map[int64]int{}
	for _, cmd := range p.Commands() {
		if cmd.Name == "hello" || cmd.Name == "isMaster" {
			perConn[cmd.ConnectionID]++
		}
	}
	require.NotEmpty(t, perConn, "the monitors talk to the primary")
	limit := int(elapsed/heartbeat) + 3
	for id, n := range perConn {
		assert.LessOrEqual(t, n, limit, "hello requests on connection %d in %v", id, elapsed)
	}
}

// A change stream returns only majority-committed events: a write that
// only the primary has stays invisible until a secondary applies it, and a
// majority write waits for it (WriteConcernFailed after wtimeout).
func TestChangeStreamSeesOnlyMajorityCommitted(t *testing.T) {
	t.Parallel()
	rs := mongosim.StartReplicaSetTB(t, 3, nil)
	c := rsClient(t, rs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	coll := c.Database("db").Collection("c")
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 0}})
	require.NoError(t, err)
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(50*time.Millisecond))
	require.NoError(t, err)
	defer cs.Close(context.Background())

	rs.PauseReplication(1)
	rs.PauseReplication(2)
	w1 := c.Database("db").Collection("c", options.Collection().SetWriteConcern(&writeconcern.WriteConcern{W: 1}))
	_, err = w1.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)
	for range 5 {
		assert.False(t, cs.TryNext(ctx), "an event not yet on a majority")
		require.NoError(t, cs.Err())
	}
	// A majority write waits for a secondary (the default write concern
	// since 5.0 is majority too).
	majorityDone := make(chan error, 1)
	go func() {
		_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}})
		majorityDone <- err
	}()
	for rs.Primary().AwaitingWriteConcern() == 0 {
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-majorityDone:
		t.Fatalf("a majority write returned while no secondary replicates: %v", err)
	default:
	}

	rs.ResumeReplication(1)
	require.NoError(t, <-majorityDone)
	for _, id := range []int32{1, 2} {
		require.True(t, cs.Next(ctx), "event %d once a secondary has it: %v", id, cs.Err())
		assert.Equal(t, id, cs.Current.Lookup("documentKey", "_id").Int32())
	}
}

// A majority write with wtimeout fails with a writeConcernError (64) when
// no secondary applies it in time; the write itself stays on the primary.
func TestMajorityWriteTimesOut(t *testing.T) {
	t.Parallel()
	rs := mongosim.StartReplicaSetTB(t, 3, nil)
	c := rsClient(t, rs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rs.PauseReplication(1)
	rs.PauseReplication(2)
	// The v2 driver has no wtimeout; the command carries it.
	var out bson.M
	err := c.Database("db").RunCommand(ctx, bson.D{
		{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: 1}}}},
		{Key: "writeConcern", Value: bson.D{{Key: "w", Value: "majority"}, {Key: "wtimeout", Value: 100}}},
	}).Decode(&out)
	var we mongo.WriteException
	require.ErrorAs(t, err, &we)
	require.NotNil(t, we.WriteConcernError)
	assert.Equal(t, 64, we.WriteConcernError.Code)
	assert.Equal(t, "WriteConcernFailed", we.WriteConcernError.Name)
	n, err := c.Database("db").Collection("c").CountDocuments(ctx, bson.D{}, options.Count())
	require.NoError(t, err)
	assert.EqualValues(t, 1, n, "the write stays on the primary")
}
