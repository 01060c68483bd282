package mongosim_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// Fail points are configured through the driver, as the specification's
// tests do, and observed through the driver's errors. Where the exact reply
// matters (which labels it carries) it is read off a raw socket as well,
// because the driver may add labels of its own. The error codes used with
// the driver avoid the "not primary"/"node is recovering" family, which
// makes the driver clear its pool and rediscover the server: a different
// test. Helper names start with fp.

// fpCtx returns a context bounded far above what any step needs.
func fpCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*rbTimeout)
	t.Cleanup(cancel)
	return ctx
}

// fpConfigure runs configureFailPoint on admin and requires it to succeed.
func fpConfigure(t *testing.T, c *mongo.Client, name string, mode any, data bson.D) {
	t.Helper()
	cmd := bson.D{{Key: "configureFailPoint", Value: name}, {Key: "mode", Value: mode}}
	if data != nil {
		cmd = append(cmd, bson.E{Key: "data", Value: data})
	}
	require.NoError(t, c.Database("admin").RunCommand(fpCtx(t), cmd).Err())
}

// fpCommandError requires err to be a server error and returns it.
func fpCommandError(t *testing.T, err error) mongo.CommandError {
	t.Helper()
	require.Error(t, err)
	var ce mongo.CommandError
	require.True(t, errors.As(err, &ce), "want a server error, got %T: %v", err, err)
	return ce
}

// fpPingCodes pings n times and returns the error code of each attempt,
// 0 for success.
func fpPingCodes(t *testing.T, c *mongo.Client, n int) []int32 {
	t.Helper()
	codes := make([]int32, n)
	for i := range codes {
		if err := c.Ping(fpCtx(t), nil); err != nil {
			codes[i] = fpCommandError(t, err).Code
		}
	}
	return codes
}

func fpFailPing(code int32) bson.D {
	return bson.D{{Key: "failCommands", Value: bson.A{"ping"}}, {Key: "errorCode", Value: code}}
}

func TestFailCommandTimes(t *testing.T) {
	t.Parallel()
	s := mongosim.StartTB(t)
	c := rbClient(t, s, "")
	fpConfigure(t, c, "failCommand", bson.D{{Key: "times", Value: 2}}, fpFailPing(2))
	assert.Equal(t, []int32{2, 2, 0, 0}, fpPingCodes(t, c, 4))

	// times: 0 is configured but never fires.
	fpConfigure(t, c, "failCommand", bson.D{{Key: "times", Value: 0}}, fpFailPing(2))
	assert.Equal(t, []int32{0}, fpPingCodes(t, c, 1))
}

func TestFailCommandSkip(t *testing.T) {
	t.Parallel()
	s := mongosim.StartTB(t)
	c := rbClient(t, s, "")
	fpConfigure(t, c, "failCommand", bson.D{{Key: "skip", Value: 2}}, fpFailPing(2))
	assert.Equal(t, []int32{0, 0, 2, 2, 2}, fpPingCodes(t, c, 5), "skip n lets n commands through, then fails every one")
	fpConfigure(t, c, "failCommand", "off", nil)
	assert.Equal(t, []int32{0, 0}, fpPingCodes(t, c, 2))
}

func TestFailCommandAlwaysOnAndOff(t *testing.T) {
	t.Parallel()
	s := mongosim.StartTB(t)
	c := rbClient(t, s, "")
	fpConfigure(t, c, "failCommand", "off", nil) // turning off what is not on is fine
	fpConfigure(t, c, "failCommand", "alwaysOn", fpFailPing(2))
	assert.Equal(t, []int32{2, 2, 2, 2, 2}, fpPingCodes(t, c, 5))
	// A new configuration replaces the old one.
	fpConfigure(t, c, "failCommand", "alwaysOn", fpFailPing(72))
	assert.Equal(t, []int32{72}, fpPingCodes(t, c, 1))
	fpConfigure(t, c, "failCommand", "off", nil)
	assert.Equal(t, []int32{0, 0}, fpPingCodes(t, c, 2))
}

func TestFailCommandOnlyListedCommands(t *testing.T) {
	t.Parallel()
	s := mongosim.StartTB(t)
	c := rbClient(t, s, "")
	fpConfigure(t, c, "failCommand", "alwaysOn", bson.D{
		{Key: "failCommands", Value: bson.A{"buildInfo"}},
		{Key: "errorCode", Value: 2},
	})
	t.Cleanup(func() { fpConfigure(t, c, "failCommand", "off", nil) })
	assert.Equal(t, []int32{0, 0}, fpPingCodes(t, c, 2))
	err := c.Database("admin").RunCommand(fpCtx(t), bson.D{{Key: "buildInfo", Value: 1}}).Err()
	assert.Equal(t, int32(2), fpCommandError(t, err).Code)
	// Command names match exactly, as on a real server.
	require.NoError(t, c.Database("admin").RunCommand(fpCtx(t), bson.D{{Key: "buildinfo", Value: 1}}).Err())
}

func TestFailCommandErrorLabels(t *testing.T) {
	t.Parallel()
	s := mongosim.StartTB(t)
	c := rbClient(t, s, "")
	nc := rbDial(t, s)
	ping := rbDoc(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})

	for i, tc := range []struct {
		name   string
		code   int32
		labels bson.A // nil: errorLabels not configured
		want   []string
	}{
		{name: "no labels configured", code: 2},
		{name: "a retryable code gets no label of its own", code: 6},
		{name: "a resumable code gets no label of its own", code: 234},
		{name: "empty labels", code: 2, labels: bson.A{}},
		{name: "one label", code: 112, labels: bson.A{"TransientTransactionError"}, want: []string{"TransientTransactionError"}},
		{name: "labels in order", code: 2, labels: bson.A{"B", "A", "ResumableChangeStreamError"}, want: []string{"B", "A", "ResumableChangeStreamError"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := fpFailPing(tc.code)
			if tc.labels != nil {
				data = append(data, bson.E{Key: "errorLabels", Value: tc.labels})
			}

			// Through the driver.
			fpConfigure(t, c, "failCommand", bson.D{{Key: "times", Value: 1}}, data)
			ce := fpCommandError(t, c.Ping(fpCtx(t), nil))
			assert.Equal(t, tc.code, ce.Code)
			assert.ElementsMatch(t, tc.want, ce.Labels)

			// On the wire: exactly the configured labels, in order, and no
			// errorLabels field at all when there are none.
			fpConfigure(t, c, "failCommand", bson.D{{Key: "times", Value: 1}}, data)
			reply, err := rbRoundTrip(t, nc, rbOpMsg(int32(i+1), wiremessage.MsgFlag(0), ping))
			require.NoError(t, err)
			e := rbRequireFailed(t, reply.body)
			assert.Equal(t, tc.code, e.Code)
			if len(tc.want) == 0 {
				_, err := reply.body.LookupErr("errorLabels")
				assert.Error(t, err, "reply must carry no errorLabels: %v", reply.body)
			} else {
				assert.Equal(t, tc.want, e.Labels)
			}
			assert.Equal(t, []int32{0}, fpPingCodes(t, c, 1), "times: 1 is used up")
		})
	}
}

func TestFailCommandCloseConnection(t *testing.T) {
	t.Parallel()
	s := mongosim.StartTB(t)
	c := rbClient(t, s, "")
	fpConfigure(t, c, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"ping"}},
		{Key: "closeConnection", Value: true},
	})
	err := c.Ping(fpCtx(t), nil)
	require.Error(t, err)
	assert.True(t, mongo.IsNetworkError(err), "want a network error, got %v", err)
	// The driver reconnects; the fail point is used up.
	require.NoError(t, c.Ping(fpCtx(t), nil))

	// On the wire: no reply, the socket is closed.
	fpConfigure(t, c, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"ping"}},
		{Key: "closeConnection", Value: true},
	})
	nc := rbDial(t, s)
	_, err = rbRoundTrip(t, nc, rbOpMsg(1, 0, rbDoc(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})))
	assert.ErrorIs(t, err, errRBClosed)
}

func TestFailCommandBlockConnection(t *testing.T) {
	t.Parallel()
	s := mongosim.StartTB(t)
	c := rbClient(t, s, "")
	const block = 300 * time.Millisecond

	// Block, then succeed.
	fpConfigure(t, c, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"ping"}},
		{Key: "blockConnection", Value: true},
		{Key: "blockTimeMS", Value: block.Milliseconds()},
	})
	start := time.Now()
	require.NoError(t, c.Ping(fpCtx(t), nil))
	assert.GreaterOrEqual(t, time.Since(start), block, "the command must be held for blockTimeMS")

	// Block, then fail.
	fpConfigure(t, c, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"ping"}},
		{Key: "blockConnection", Value: true},
		{Key: "blockTimeMS", Value: block.Milliseconds()},
		{Key: "errorCode", Value: 2},
	})
	start = time.Now()
	assert.Equal(t, int32(2), fpCommandError(t, c.Ping(fpCtx(t), nil)).Code)
	assert.GreaterOrEqual(t, time.Since(start), block)

	// A client that gives up first sees its own timeout, and the server
	// stays healthy for the next command.
	fpConfigure(t, c, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"ping"}},
		{Key: "blockConnection", Value: true},
		{Key: "blockTimeMS", Value: 60_000},
	})
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := c.Ping(short, nil)
	require.Error(t, err)
	assert.True(t, mongo.IsTimeout(err), "want a timeout, got %v", err)
	require.NoError(t, c.Ping(fpCtx(t), nil))

	// blockConnection without blockTimeMS is refused.
	err = c.Database("admin").RunCommand(fpCtx(t), bson.D{
		{Key: "configureFailPoint", Value: "failCommand"},
		{Key: "mode", Value: "alwaysOn"},
		{Key: "data", Value: bson.D{{Key: "failCommands", Value: bson.A{"ping"}}, {Key: "blockConnection", Value: true}}},
	}).Err()
	assert.Equal(t, int32(2), fpCommandError(t, err).Code)
}

func TestFailCommandAppName(t *testing.T) {
	t.Parallel()
	s := mongosim.StartTB(t)
	a := rbClient(t, s, "appA")
	b := rbClient(t, s, "appB")
	fpConfigure(t, b, "failCommand", "alwaysOn", append(fpFailPing(2), bson.E{Key: "appName", Value: "appA"}))
	t.Cleanup(func() { fpConfigure(t, b, "failCommand", "off", nil) })
	for range 3 {
		assert.Equal(t, []int32{2}, fpPingCodes(t, a, 1), "appA is targeted")
		assert.Equal(t, []int32{0}, fpPingCodes(t, b, 1), "appB is not")
	}

	// times counts only the commands the fail point applies to.
	fpConfigure(t, b, "failCommand", bson.D{{Key: "times", Value: 1}}, append(fpFailPing(2), bson.E{Key: "appName", Value: "appA"}))
	assert.Equal(t, []int32{0, 0}, fpPingCodes(t, b, 2))
	assert.Equal(t, []int32{2, 0}, fpPingCodes(t, a, 2))
}

// fpRawCommand runs cmd on db over nc and returns the reply body.
func fpRawCommand(t *testing.T, nc net.Conn, db string, cmd bson.D) bson.Raw {
	t.Helper()
	cmd = append(cmd, bson.E{Key: "$db", Value: db})
	reply, err := rbRoundTrip(t, nc, rbOpMsg(1, 0, rbDoc(t, cmd)))
	require.NoError(t, err)
	return reply.body
}

// fpOpenRaw runs a cursor-opening command over nc and returns the cursor
// id, failing the test when the command fails.
func fpOpenRaw(t *testing.T, nc net.Conn, db string, cmd bson.D) int64 {
	t.Helper()
	body := fpRawCommand(t, nc, db, cmd)
	if body.Lookup("ok").Double() != 1 {
		t.Fatalf("%v failed: %v", cmd, body)
	}
	id := body.Lookup("cursor", "id").Int64()
	require.NotZero(t, id, "the cursor must stay open: %v", body)
	return id
}

// TestFailGetMoreAfterCursorCheckout checks the server's own labelling: a
// change-stream getMore that fails with a resumable code carries
// ResumableChangeStreamError; other codes, and other cursors, do not.
func TestFailGetMoreAfterCursorCheckout(t *testing.T) {
	t.Parallel()
	resumable := []int32{6, 7, 63, 89, 91, 133, 150, 189, 234, 262, 9001, 10107, 11600, 11602, 13388, 13435, 13436}
	notResumable := []int32{2, 11601, 50, 237, 280, 286, 43, 136}
	check := func(t *testing.T, open func(t *testing.T, nc net.Conn) (id int64, coll string), code int32, wantLabel bool) {
		s := mongosim.StartTB(t)
		c := rbClient(t, s, "")
		nc := rbDial(t, s)
		id, coll := open(t, nc)
		fpConfigure(t, c, "failGetMoreAfterCursorCheckout", bson.D{{Key: "times", Value: 1}}, bson.D{{Key: "errorCode", Value: code}})
		body := fpRawCommand(t, nc, "test", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: coll}, {Key: "maxTimeMS", Value: 10}})
		e := rbRequireFailed(t, body)
		assert.Equal(t, code, e.Code)
		if wantLabel {
			assert.Equal(t, []string{"ResumableChangeStreamError"}, e.Labels)
		} else {
			assert.Empty(t, e.Labels)
		}
		// The failed getMore destroyed the cursor, as on a real server.
		body = fpRawCommand(t, nc, "test", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: coll}, {Key: "maxTimeMS", Value: 10}})
		assert.Equal(t, int32(43), rbRequireFailed(t, body).Code)
	}
	openStream := func(t *testing.T, nc net.Conn) (int64, string) {
		return fpOpenRaw(t, nc, "test", bson.D{
			{Key: "aggregate", Value: "c"},
			{Key: "pipeline", Value: bson.A{bson.D{{Key: "$changeStream", Value: bson.D{}}}}},
			{Key: "cursor", Value: bson.D{}},
		}), "c"
	}
	openFind := func(t *testing.T, nc net.Conn) (int64, string) {
		body := fpRawCommand(t, nc, "test", bson.D{{Key: "insert", Value: "f"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "_id", Value: 3}}}}})
		require.Equal(t, 1.0, body.Lookup("ok").Double(), "insert: %v", body)
		return fpOpenRaw(t, nc, "test", bson.D{{Key: "find", Value: "f"}, {Key: "batchSize", Value: 1}}), "f"
	}
	for _, code := range resumable {
		t.Run(fmt.Sprintf("change stream/%d labelled", code), func(t *testing.T) {
			t.Parallel()
			check(t, openStream, code, true)
		})
		t.Run(fmt.Sprintf("find/%d not labelled", code), func(t *testing.T) {
			t.Parallel()
			check(t, openFind, code, false)
		})
	}
	for _, code := range notResumable {
		t.Run(fmt.Sprintf("change stream/%d not labelled", code), func(t *testing.T) {
			t.Parallel()
			check(t, openStream, code, false)
		})
	}
}

// TestFailGetMoreDriverChangeStream runs the same fail point under the
// driver's own change stream: a labelled error is resumed from without the
// caller noticing, an unlabelled one reaches the caller.
func TestFailGetMoreDriverChangeStream(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code       int32
		wantResume bool
	}{
		{code: 6, wantResume: true},
		{code: 234, wantResume: true},
		{code: 2, wantResume: false},
		{code: 280, wantResume: false},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			t.Parallel()
			s := mongosim.StartTB(t)
			c := rbClient(t, s, "")
			ctx := fpCtx(t)
			coll := c.Database("test").Collection("c")
			cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(50*time.Millisecond))
			require.NoError(t, err)
			defer func() { _ = cs.Close(context.Background()) }()
			fpConfigure(t, c, "failGetMoreAfterCursorCheckout", bson.D{{Key: "times", Value: 1}}, bson.D{{Key: "errorCode", Value: tc.code}})
			_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
			require.NoError(t, err)
			s.ResetCommands()

			if !tc.wantResume {
				require.False(t, cs.Next(ctx))
				ce := fpCommandError(t, cs.Err())
				assert.Equal(t, tc.code, ce.Code)
				assert.False(t, ce.HasErrorLabel("ResumableChangeStreamError"))
				return
			}
			require.True(t, cs.Next(ctx), "err: %v", cs.Err())
			assert.Equal(t, "insert", cs.Current.Lookup("operationType").StringValue())
			aggregates := 0
			for _, cmd := range s.Commands() {
				if cmd.Name == "aggregate" {
					aggregates++
				}
			}
			assert.Equal(t, 1, aggregates, "the driver resumes with one new aggregate")
		})
	}
}

// TestFailCommandCountsDriverRetries checks that failCommand's times
// counts every attempt the driver makes, and documents how many that is:
// RunCommandCursor (what package changestream opens streams with) makes one
// attempt, so one failure reaches the caller; the driver's own Watch retries
// a retryable error, so only a fail point that outlasts all its attempts
// reaches its caller (with a deadline in the context it retries until the
// deadline).
func TestFailCommandCountsDriverRetries(t *testing.T) {
	t.Parallel()
	s := mongosim.StartTB(t)
	c := rbClient(t, s, "")
	// A context with a deadline makes the driver's Watch retry without
	// limit until the deadline; bound the test by cancellation instead.
	ctx, cancel := context.WithCancel(context.Background())
	defer time.AfterFunc(3*rbTimeout, cancel).Stop()
	defer cancel()
	db := c.Database("test")
	coll := db.Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	require.NoError(t, err)
	require.NoError(t, cs.Close(ctx))

	failAggregate := bson.D{{Key: "failCommands", Value: bson.A{"aggregate"}}, {Key: "errorCode", Value: 6}}
	countAggregates := func() int {
		n := 0
		for _, cmd := range s.Commands() {
			if cmd.Name == "aggregate" {
				n++
			}
		}
		return n
	}

	// RunCommandCursor: one attempt.
	openCmd := bson.D{
		{Key: "aggregate", Value: "c"},
		{Key: "pipeline", Value: bson.A{bson.D{{Key: "$changeStream", Value: bson.D{}}}}},
		{Key: "cursor", Value: bson.D{}},
	}
	fpConfigure(t, c, "failCommand", bson.D{{Key: "times", Value: 1}}, failAggregate)
	s.ResetCommands()
	_, err = db.RunCommandCursor(ctx, openCmd)
	assert.Equal(t, int32(6), fpCommandError(t, err).Code, "RunCommandCursor does not retry")
	assert.Equal(t, 1, countAggregates())
	cur, err := db.RunCommandCursor(ctx, openCmd)
	require.NoError(t, err, "times: 1 is used up")
	require.NoError(t, cur.Close(ctx))

	// Watch: as many attempts as its retry layers allow.
	fpConfigure(t, c, "failCommand", "alwaysOn", failAggregate)
	s.ResetCommands()
	_, err = coll.Watch(ctx, mongo.Pipeline{})
	assert.Equal(t, int32(6), fpCommandError(t, err).Code)
	attempts := countAggregates()
	t.Logf("the driver's Watch makes %d attempts on a retryable error", attempts)
	require.GreaterOrEqual(t, attempts, 2, "the driver retries the opening aggregate")

	fpConfigure(t, c, "failCommand", bson.D{{Key: "times", Value: attempts - 1}}, failAggregate)
	cs, err = coll.Watch(ctx, mongo.Pipeline{})
	require.NoError(t, err, "%d failures are retried away", attempts-1)
	require.NoError(t, cs.Close(ctx))

	fpConfigure(t, c, "failCommand", bson.D{{Key: "times", Value: attempts}}, failAggregate)
	_, err = coll.Watch(ctx, mongo.Pipeline{})
	assert.Equal(t, int32(6), fpCommandError(t, err).Code, "%d failures reach the caller", attempts)
}
