package mongosim_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
)

// rsClient connects to every member of rs. The set closes before the
// client disconnects, so that a monitor blocked in an awaitable hello ends
// with its connection instead of waiting out maxAwaitTimeMS (the driver's
// Disconnect does not interrupt a heartbeat that has just started); the
// Disconnect's endSessions, finding no server, gives up after a second.
func rsClient(t *testing.T, rs *mongosim.ReplicaSet, opts ...*options.ClientOptions) *mongo.Client {
	t.Helper()
	o := testclient.Options(rs.URI())
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
	c, err := mongo.Connect(testclient.Options("mongodb://" + s.Addr() + "/?directConnection=true"))
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
	assert.Same(t, rs.Member(0), primary, "member 0 is elected first")
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
	c := rsClient(t, rs, options.Client().SetHeartbeatInterval(time.Minute))
	coll := c.Database("db").Collection("c")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)

	old := rs.Primary()
	require.NoError(t, rs.StepDown(ctx, mongosim.StepDownOptions{}))
	now := rs.Primary()
	require.NotNil(t, now)
	assert.NotSame(t, old, now)
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

// An awaitable hello waiting when the server shuts down gets no answer:
// the connection closes. An answer saying the member is still primary,
// sent as it goes away, made the driver take back as selectable a server
// it had just marked Unknown after losing its connection, so an outage
// surfaced as connection refused instead of a server selection timeout
// (TestOutageIsNotTheCallersDeadline failed one run in about thirty). A
// real primary steps down before it shuts down, and a killed one answers
// nothing: neither says it is primary on its way out.
func TestAwaitableHelloCutByShutdownGetsNoAnswer(t *testing.T) {
	t.Parallel()
	s, err := mongosim.NewServer()
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	nc := rbDial(t, s)
	first, err := rbRoundTrip(t, nc, rbOpMsg(1, 0, rbDoc(t, bson.D{{Key: "hello", Value: 1}, {Key: "$db", Value: "admin"}})))
	require.NoError(t, err)
	tv, err := first.body.LookupErr("topologyVersion")
	require.NoError(t, err)
	replies := make(chan error, 1)
	go func() {
		_, err := rbRoundTrip(t, nc, rbOpMsg(2, 0, rbDoc(t, bson.D{
			{Key: "hello", Value: 1}, {Key: "topologyVersion", Value: tv},
			{Key: "maxAwaitTimeMS", Value: int64(10_000)}, {Key: "$db", Value: "admin"},
		})))
		replies <- err
	}()
	// Either the hello is waiting when Close comes, the case this test is
	// for, or it is not read yet: in both, no answer is due.
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, s.Close())
	assert.ErrorIs(t, <-replies, errRBClosed, "an answer came from a server shutting down")
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

// A primary that took writes no secondary had rolls them back when it
// rejoins after an election: they vanish from its data, and no change
// stream ever returned them (jstests/replsets/rollback_*.js).
func TestRollbackOfNonMajorityWrites(t *testing.T) {
	t.Parallel()
	rs := mongosim.StartReplicaSetTB(t, 3, nil, mongosim.WithElectionTimeout(100*time.Millisecond))
	c := rsClient(t, rs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	coll := c.Database("db").Collection("c")
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "kept"}})
	require.NoError(t, err)
	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	require.NoError(t, err)
	before := cs.ResumeToken()
	require.NoError(t, cs.Close(ctx))

	rs.PauseReplication(1)
	rs.PauseReplication(2)
	w1 := c.Database("db").Collection("c", options.Collection().SetWriteConcern(&writeconcern.WriteConcern{W: 1}))
	_, err = w1.InsertOne(ctx, bson.D{{Key: "_id", Value: "lost"}})
	require.NoError(t, err)
	rs.Kill(0)
	rs.ResumeReplication(1)
	rs.ResumeReplication(2)
	p, err := rs.WaitForPrimary(ctx)
	require.NoError(t, err)
	require.NotSame(t, rs.Member(0), p)
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "after"}})
	require.NoError(t, err)
	require.NoError(t, rs.Restart(0))
	for rs.Rollbacks() == 0 {
		require.NoError(t, ctx.Err(), "member 0 never rolled back")
		time.Sleep(5 * time.Millisecond)
	}

	old := directClient(t, rs, rs.Member(0))
	ids := func(cl *mongo.Client) []string {
		cur, err := cl.Database("db").Collection("c").Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
		require.NoError(t, err)
		var docs []struct {
			ID string `bson:"_id"`
		}
		require.NoError(t, cur.All(ctx, &docs))
		out := []string{}
		for _, d := range docs {
			out = append(out, d.ID)
		}
		return out
	}
	assert.Equal(t, []string{"after", "kept"}, ids(old), "the rolled-back member")
	assert.Equal(t, []string{"after", "kept"}, ids(c), "the set")

	cs, err = coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(before))
	require.NoError(t, err)
	defer cs.Close(context.Background())
	require.True(t, cs.Next(ctx), "%v", cs.Err())
	assert.Equal(t, "after", cs.Current.Lookup("documentKey", "_id").StringValue(), "the history holds no lost write")
}

// A change-stream getMore waiting on a primary that steps down fails with
// InterruptedDueToReplStateChange (11602), labelled resumable, and the
// driver's Watch resumes on the new primary without losing the event.
func TestStepDownInterruptsChangeStreamGetMore(t *testing.T) {
	t.Parallel()
	rs := mongosim.StartReplicaSetTB(t, 3, nil)
	var mu sync.Mutex
	var failed []*event.CommandFailedEvent
	mon := &event.CommandMonitor{Failed: func(_ context.Context, e *event.CommandFailedEvent) {
		mu.Lock()
		failed = append(failed, e)
		mu.Unlock()
	}}
	c := rsClient(t, rs, options.Client().SetMonitor(mon))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	coll := c.Database("db").Collection("c")
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(20*time.Second))
	require.NoError(t, err)
	defer cs.Close(context.Background())
	old := rs.Primary()
	got := make(chan bool)
	go func() { got <- cs.Next(ctx) }()
	for old.AwaitingGetMores() == 0 {
		time.Sleep(time.Millisecond)
	}
	require.NoError(t, rs.StepDown(ctx, mongosim.StepDownOptions{}))
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}})
	require.NoError(t, err)
	require.True(t, <-got, "%v", cs.Err())
	assert.EqualValues(t, 2, cs.Current.Lookup("documentKey", "_id").Int32())

	mu.Lock()
	defer mu.Unlock()
	i := slices.IndexFunc(failed, func(e *event.CommandFailedEvent) bool { return e.CommandName == "getMore" })
	require.GreaterOrEqual(t, i, 0, "a failed getMore")
	var ce driver.Error
	require.ErrorAs(t, failed[i].Failure, &ce)
	assert.Equal(t, int32(11602), ce.Code)
	assert.True(t, ce.HasErrorLabel("ResumableChangeStreamError"))
}

// On a member that is not primary, a write fails with NotWritablePrimary
// (labelled RetryableWriteError for a retryable write) and a read without
// secondaryOk with NotPrimaryNoSecondaryOk; a read that allows a secondary
// runs.
func TestSecondaryRefusesWritesAndPrimaryReads(t *testing.T) {
	t.Parallel()
	rs := mongosim.StartReplicaSetTB(t, 3, nil)
	sec := rs.Member(1)
	nc := rbDial(t, sec)
	for _, tc := range []struct {
		name string
		cmd  bson.D
		code int32
	}{
		{"write", bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: 1}}}}, {Key: "$db", Value: "db"}}, 10107},
		{"primary read", bson.D{{Key: "find", Value: "c"}, {Key: "$db", Value: "db"}}, 13435},
		{"secondary read", bson.D{{Key: "find", Value: "c"}, {Key: "$db", Value: "db"},
			{Key: "$readPreference", Value: bson.D{{Key: "mode", Value: "secondaryPreferred"}}}}, 0},
	} {
		reply, err := rbRoundTrip(t, nc, rbOpMsg(1, 0, rbDoc(t, tc.cmd)))
		require.NoError(t, err, tc.name)
		if tc.code == 0 {
			assert.EqualValues(t, 1, reply.body.Lookup("ok").Double(), tc.name)
			continue
		}
		e := rbRequireFailed(t, reply.body)
		assert.Equal(t, tc.code, e.Code, tc.name)
	}
}

// A change stream opened with secondaryPreferred runs on a secondary and,
// when that member dies, resumes on another with nothing lost.
func TestChangeStreamOnSecondaryResumesElsewhere(t *testing.T) {
	t.Parallel()
	rs := mongosim.StartReplicaSetTB(t, 3, nil, mongosim.WithElectionTimeout(100*time.Millisecond))
	c := rsClient(t, rs)
	reader := rsClient(t, rs, options.Client().SetReadPreference(readpref.SecondaryPreferred()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	coll := c.Database("db").Collection("c")
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 0}})
	require.NoError(t, err)
	// secondaryPreferred takes the primary while the client knows no
	// secondary yet (a loaded host can be slow to discover them): wait
	// until one is selectable.
	require.NoError(t, reader.Ping(ctx, readpref.Secondary()))
	cs, err := reader.Database("db").Collection("c").Watch(ctx, mongo.Pipeline{})
	require.NoError(t, err)
	defer cs.Close(context.Background())
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)
	require.True(t, cs.Next(ctx), "%v", cs.Err())
	assert.EqualValues(t, 1, cs.Current.Lookup("documentKey", "_id").Int32())

	serving := -1
	for i, s := range rs.Members() {
		if s.OpenCursors() > 0 {
			serving = i
		}
	}
	require.NotEqual(t, -1, serving, "some member holds the stream's cursor")
	require.NotSame(t, rs.Primary(), rs.Member(serving), "the stream runs on a secondary")
	rs.Kill(serving)
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}})
	require.NoError(t, err)
	if !cs.Next(ctx) {
		// The driver's Watch resumes once, and that attempt may still
		// pick the dead member before its monitor has marked it
		// unknown; reopen from the stream's token, as an application
		// would.
		t.Logf("the driver's resume failed: %v", cs.Err())
		cs, err = reader.Database("db").Collection("c").Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(cs.ResumeToken()))
		require.NoError(t, err)
		defer cs.Close(context.Background())
		require.True(t, cs.Next(ctx), "%v", cs.Err())
	}
	assert.EqualValues(t, 2, cs.Current.Lookup("documentKey", "_id").Int32())
	for i, s := range rs.Members() {
		if s.OpenCursors() > 0 {
			assert.NotEqual(t, serving, i, "the stream moved to another member")
		}
	}
}

// A retryable write sent again, on the same primary or on the next one
// after an election, is not applied twice: the statement's record
// replicates with its oplog entry.
func TestRetryableWriteRecordSurvivesFailover(t *testing.T) {
	t.Parallel()
	rs := mongosim.StartReplicaSetTB(t, 3, nil)
	lsid := bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: []byte("0123456789abcdef")}}}
	insert := func(s *mongosim.Server, txn int64) bson.Raw {
		nc := rbDial(t, s)
		reply, err := rbRoundTrip(t, nc, rbOpMsg(1, 0, rbDoc(t, bson.D{
			{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}}}},
			{Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: txn}, {Key: "$db", Value: "db"},
		})))
		require.NoError(t, err)
		return reply.body
	}
	first := rs.Primary()
	for range 2 {
		r := insert(first, 7)
		assert.EqualValues(t, 2, r.Lookup("n").Int32(), "%v", r)
		_, noErrors := r.LookupErr("writeErrors")
		assert.Error(t, noErrors, "%v", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, rs.StepDown(ctx, mongosim.StepDownOptions{}))
	r := insert(rs.Primary(), 7)
	assert.EqualValues(t, 2, r.Lookup("n").Int32(), "the retry on the new primary: %v", r)
	_, noErrors := r.LookupErr("writeErrors")
	assert.Error(t, noErrors, "%v", r)

	old := insert(rs.Primary(), 6)
	e := rbRequireFailed(t, old)
	assert.Equal(t, int32(225), e.Code, "an older txnNumber")
}

// A majority read waits for the member's applied writes to commit; when
// they cannot (no secondary replicates), it is refused rather than
// answered with uncommitted data.
func TestMajorityReadWaitsOrRefuses(t *testing.T) {
	t.Parallel()
	rs := mongosim.StartReplicaSetTB(t, 3, nil)
	c := rsClient(t, rs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	majority := c.Database("db").Collection("c", options.Collection().SetReadConcern(readconcern.Majority()))
	_, err := majority.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)
	n, err := majority.CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	assert.EqualValues(t, 1, n)

	rs.PauseReplication(1)
	rs.PauseReplication(2)
	w1 := c.Database("db").Collection("c", options.Collection().SetWriteConcern(&writeconcern.WriteConcern{W: 1}))
	_, err = w1.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}})
	require.NoError(t, err)
	_, err = majority.CountDocuments(ctx, bson.D{})
	var ce mongo.CommandError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, int32(238), ce.Code, "%v", err)

	done := make(chan error, 1)
	go func() {
		n, err := majority.CountDocuments(ctx, bson.D{})
		if err == nil && n != 2 {
			err = fmt.Errorf("counted %d", n)
		}
		done <- err
	}()
	rs.ResumeReplication(1)
	require.NoError(t, <-done)
}

// A write waiting for a majority when its primary steps down is answered
// with writeConcernError PrimarySteppedDown (189), labelled
// RetryableWriteError for a retryable write, and the member's
// topologyVersion.
func TestStepDownFailsWriteConcernWait(t *testing.T) {
	t.Parallel()
	rs := mongosim.StartReplicaSetTB(t, 3, nil)
	p := rs.Primary()
	rs.PauseReplication(1)
	rs.PauseReplication(2)
	nc := rbDial(t, p)
	replies := make(chan rbReply, 1)
	go func() {
		lsid := bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: []byte("fedcba9876543210")}}}
		r, err := rbRoundTrip(t, nc, rbOpMsg(1, 0, rbDoc(t, bson.D{
			{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: 1}}}},
			{Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: int64(1)}, {Key: "$db", Value: "db"},
		})))
		if err != nil {
			t.Error(err)
		}
		replies <- r
	}()
	for p.AwaitingWriteConcern() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, rs.StepDown(ctx, mongosim.StepDownOptions{Force: true}))
	r := <-replies
	assert.EqualValues(t, 1, r.body.Lookup("ok").Double())
	assert.EqualValues(t, 1, r.body.Lookup("n").Int32())
	assert.EqualValues(t, 189, r.body.Lookup("writeConcernError", "code").Int32(), "%v", r.body)
	_, err := r.body.LookupErr("writeConcernError", "topologyVersion")
	assert.NoError(t, err)
	labels, _ := r.body.Lookup("errorLabels").Array().Values()
	require.Len(t, labels, 1)
	assert.Equal(t, "RetryableWriteError", labels[0].StringValue())
}

// replSetFreeze keeps a secondary from standing; with every secondary
// frozen a step-down finds no electable member and fails with
// ExceededTimeLimit (262), and a primary cannot be frozen (95).
// replSetGetStatus names each member's state.
func TestFreezeAndStatus(t *testing.T) {
	t.Parallel()
	rs := mongosim.StartReplicaSetTB(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clients := map[*mongosim.Server]*mongo.Client{}
	admin := func(s *mongosim.Server) *mongo.Database {
		if clients[s] == nil {
			clients[s] = directClient(t, rs, s)
		}
		return clients[s].Database("admin")
	}
	for _, i := range []int{1, 2} {
		require.NoError(t, admin(rs.Member(i)).RunCommand(ctx, bson.D{{Key: "replSetFreeze", Value: 60}}).Err())
	}
	err := admin(rs.Member(0)).RunCommand(ctx, bson.D{{Key: "replSetFreeze", Value: 60}}).Err()
	var ce mongo.CommandError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, int32(95), ce.Code)

	err = admin(rs.Member(0)).RunCommand(ctx, bson.D{{Key: "replSetStepDown", Value: 10}, {Key: "secondaryCatchUpPeriodSecs", Value: 1}}).Err()
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, int32(262), ce.Code, "%v", err)
	assert.Same(t, rs.Member(0), rs.Primary())

	require.NoError(t, admin(rs.Member(2)).RunCommand(ctx, bson.D{{Key: "replSetFreeze", Value: 0}}).Err())
	require.NoError(t, admin(rs.Member(0)).RunCommand(ctx, bson.D{{Key: "replSetStepDown", Value: 10}}).Err())
	assert.Same(t, rs.Member(2), rs.Primary(), "the one member not frozen")

	rs.Kill(1)
	status, err := admin(rs.Member(0)).RunCommand(ctx, bson.D{{Key: "replSetGetStatus", Value: 1}}).Raw()
	require.NoError(t, err)
	members, _ := status.Lookup("members").Array().Values()
	require.Len(t, members, 3)
	var states []string
	for _, m := range members {
		states = append(states, m.Document().Lookup("stateStr").StringValue())
	}
	assert.Equal(t, []string{"SECONDARY", "(not reachable/healthy)", "PRIMARY"}, states)
	assert.EqualValues(t, 2, status.Lookup("myState").Int32())
}

// A step-down that finds every secondary frozen does not fail for that
// alone: a secondary that thaws within the catch-up period becomes its
// target.
func TestStepDownWaitsForAThaw(t *testing.T) {
	t.Parallel()
	rs := mongosim.StartReplicaSetTB(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, rs.Freeze(1, time.Hour))
	require.NoError(t, rs.Freeze(2, 200*time.Millisecond))
	require.NoError(t, rs.StepDown(ctx, mongosim.StepDownOptions{CatchUpPeriod: 20 * time.Second, StepDownPeriod: time.Minute}))
	assert.Same(t, rs.Member(2), rs.Primary())
}
