package mongosim_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// startSharded starts 2 shards of 1 member behind 2 routers, the shards'
// no-op writer at 100 ms so that an idle shard holds a stream back only
// that long, and places database "a" on shard0 and "b" on shard1.
func startSharded(t *testing.T) (*mongosim.ShardedCluster, *mongo.Client) {
	t.Helper()
	sc := mongosim.StartShardedClusterTB(t, 2, 1, 2, []mongosim.Option{mongosim.WithNoopInterval(100 * time.Millisecond)})
	require.NoError(t, sc.Catalog().SetPrimaryShard("a", "shard0"))
	require.NoError(t, sc.Catalog().SetPrimaryShard("b", "shard1"))
	return sc, connectTo(t, sc.URI())
}

func connectTo(t *testing.T, uri string) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(testclient.Options(uri))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

// routerClient connects to mongos i alone.
func routerClient(t *testing.T, sc *mongosim.ShardedCluster, i int) *mongo.Client {
	t.Helper()
	return connectTo(t, "mongodb://"+sc.Router(i).Addr()+"/?directConnection=true")
}

// TestShardedHello: a mongos answers hello as one (msg "isdbgrid", no set
// name, no hosts), so the driver's topology is Sharded; listShards gives
// each shard's host as "rsName/host,...". (src/mongo/s/commands/
// cluster_hello_cmd.cpp; cluster_list_shards_cmd.cpp.)
func TestShardedHello(t *testing.T) {
	t.Parallel()
	sc, c := startSharded(t)
	ctx := context.Background()
	var hello bson.M
	require.NoError(t, c.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello))
	assert.Equal(t, "isdbgrid", hello["msg"])
	assert.Equal(t, true, hello["isWritablePrimary"])
	assert.NotContains(t, hello, "setName")
	assert.NotContains(t, hello, "hosts")
	assert.True(t, strings.HasPrefix(sc.URI(), "mongodb://") && !strings.Contains(sc.URI(), "replicaSet"))

	var shards struct {
		Shards []struct {
			ID   string `bson:"_id"`
			Host string `bson:"host"`
		} `bson:"shards"`
	}
	require.NoError(t, c.Database("admin").RunCommand(ctx, bson.D{{Key: "listShards", Value: 1}}).Decode(&shards))
	require.Len(t, shards.Shards, 2)
	for i, s := range shards.Shards {
		assert.Equal(t, fmt.Sprintf("shard%d", i), s.ID)
		assert.Equal(t, fmt.Sprintf("shard%d/%s", i, sc.Shard(i).Member(0).Addr()), s.Host)
	}
}

// TestShardedCRUD: an unsharded collection lives on its database's
// primary shard, where the router sends its reads and writes; the
// shard's own data shows it.
func TestShardedCRUD(t *testing.T) {
	t.Parallel()
	sc, c := startSharded(t)
	ctx := context.Background()
	for _, db := range []string{"a", "b"} {
		coll := c.Database(db).Collection("c")
		for i := range 5 {
			_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}, {Key: "db", Value: db}})
			require.NoError(t, err)
		}
		_, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}})
		require.NoError(t, err)
		_, err = coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: 4}})
		require.NoError(t, err)
		n, err := coll.CountDocuments(ctx, bson.D{})
		require.NoError(t, err)
		assert.EqualValues(t, 4, n, db)
	}
	for i, db := range []string{"a", "b"} {
		direct := connectTo(t, sc.Shard(i).URI())
		n, err := direct.Database(db).Collection("c").CountDocuments(ctx, bson.D{})
		require.NoError(t, err)
		assert.EqualValues(t, 4, n, "%s is on shard%d", db, i)
		other := connectTo(t, sc.Shard(1-i).URI())
		n, err = other.Database(db).Collection("c").CountDocuments(ctx, bson.D{})
		require.NoError(t, err)
		assert.Zero(t, n, "%s is not on shard%d", db, 1-i)
	}
}

// TestShardedCursorsBelongToTheirRouter: a cursor opened through one
// mongos can be iterated there only; on the other, and on the same one
// after a restart, its getMore fails with CursorNotFound (43).
func TestShardedCursorsBelongToTheirRouter(t *testing.T) {
	t.Parallel()
	sc, c := startSharded(t)
	ctx := context.Background()
	docs := make([]any, 10)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: i}}
	}
	_, err := c.Database("a").Collection("c").InsertMany(ctx, docs)
	require.NoError(t, err)

	find := bson.D{{Key: "find", Value: "c"}, {Key: "batchSize", Value: 2}}
	var first struct {
		Cursor struct {
			ID int64 `bson:"id"`
		} `bson:"cursor"`
	}
	r0, r1 := routerClient(t, sc, 0), routerClient(t, sc, 1)
	require.NoError(t, r0.Database("a").RunCommand(ctx, find).Decode(&first))
	require.NotZero(t, first.Cursor.ID)
	getMore := bson.D{{Key: "getMore", Value: first.Cursor.ID}, {Key: "collection", Value: "c"}, {Key: "batchSize", Value: 2}}
	err = r1.Database("a").RunCommand(ctx, getMore).Err()
	var se mongo.ServerError
	require.ErrorAs(t, err, &se)
	assert.True(t, se.HasErrorCode(43), "another mongos: %v", err)
	require.NoError(t, r0.Database("a").RunCommand(ctx, getMore).Err(), "its own mongos")

	sc.Router(0).Stop()
	require.NoError(t, sc.Router(0).Restart())
	// The client's pooled connections died with the router: its first
	// commands fail with a network error, or with "pool cleared" once its
	// monitor has seen the restart, which a getMore does not retry; the
	// router's own answer comes next.
	for range 10 {
		err = r0.Database("a").RunCommand(ctx, getMore).Err()
		if errors.As(err, &se) && se.HasErrorCode(43) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.ErrorAs(t, err, &se)
	assert.True(t, se.HasErrorCode(43), "after a restart: %v", err)
}

// TestShardedChangeStream: a cluster-wide stream through mongos merges
// both shards' events in cluster-time order, its first batch is always
// empty with a postBatchResumeToken, and a token from one mongos resumes
// on the other with exactly the remaining events.
// (jstests/sharding/change_stream_shard_failover.js' merge, and
// change_streams_unsharded_becomes_sharded.js' first batch; the resume
// across routers: change_stream_resume_from_different_mongos.js.)
func TestShardedChangeStream(t *testing.T) {
	t.Parallel()
	sc, c := startSharded(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var opened struct {
		Cursor struct {
			FirstBatch []bson.Raw `bson:"firstBatch"`
			PBRT       bson.Raw   `bson:"postBatchResumeToken"`
			ID         int64      `bson:"id"`
		} `bson:"cursor"`
	}
	require.NoError(t, c.Database("admin").RunCommand(ctx, bson.D{{Key: "aggregate", Value: 1},
		{Key: "pipeline", Value: bson.A{bson.D{{Key: "$changeStream", Value: bson.D{{Key: "allChangesForCluster", Value: true}}}}}},
		{Key: "cursor", Value: bson.D{{Key: "batchSize", Value: 10}}}}).Decode(&opened))
	assert.Empty(t, opened.Cursor.FirstBatch, "the first batch is empty")
	assert.NotNil(t, opened.Cursor.PBRT)
	assert.NotZero(t, opened.Cursor.ID)

	cs, err := c.Watch(ctx, mongo.Pipeline{})
	require.NoError(t, err)
	defer cs.Close(context.Background())
	for i := range 10 {
		db := []string{"a", "b"}[i%2]
		_, err := c.Database(db).Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: i}})
		require.NoError(t, err)
	}
	var got []int32
	var times []bson.Timestamp
	var tokens []bson.Raw
	for len(got) < 10 && cs.Next(ctx) {
		got = append(got, cs.Current.Lookup("documentKey", "_id").Int32())
		t, i := cs.Current.Lookup("clusterTime").Timestamp()
		times = append(times, bson.Timestamp{T: t, I: i})
		tokens = append(tokens, append(bson.Raw(nil), cs.ResumeToken()...))
	}
	require.NoError(t, cs.Err())
	assert.Equal(t, []int32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, got, "both shards' events, in the order written")
	for i := 1; i < len(times); i++ {
		assert.False(t, times[i].Before(times[i-1]), "in cluster-time order")
	}

	other := routerClient(t, sc, 1)
	resumed, err := other.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(tokens[3]))
	require.NoError(t, err)
	defer resumed.Close(context.Background())
	var rest []int32
	for len(rest) < 6 && resumed.Next(ctx) {
		rest = append(rest, resumed.Current.Lookup("documentKey", "_id").Int32())
	}
	require.NoError(t, resumed.Err())
	assert.Equal(t, []int32{4, 5, 6, 7, 8, 9}, rest, "exactly the remaining events, on another mongos")
}

// TestShardedRefusals: what the router does not implement is refused with
// NotImplemented (238), naming it, never accepted and ignored.
func TestShardedRefusals(t *testing.T) {
	t.Parallel()
	_, c := startSharded(t)
	ctx := context.Background()
	for _, cmd := range []bson.D{
		{{Key: "shardCollection", Value: "a.c"}, {Key: "key", Value: bson.D{{Key: "sku", Value: "hashed"}, {Key: "x", Value: 1}}}},
		{{Key: "moveRange", Value: "a.c"}, {Key: "min", Value: bson.D{{Key: "_id", Value: 0}}}, {Key: "toShard", Value: "shard1"}},
		{{Key: "mergeChunks", Value: "a.c"}, {Key: "bounds", Value: bson.A{}}},
		{{Key: "addShard", Value: "x/127.0.0.1:1"}},
		{{Key: "balancerStart", Value: 1}},
	} {
		err := c.Database("admin").RunCommand(ctx, cmd).Err()
		var se mongo.ServerError
		require.ErrorAs(t, err, &se, cmd[0].Key)
		assert.True(t, se.HasErrorCode(238), "%s: %v", cmd[0].Key, err)
		assert.Contains(t, err.Error(), "the simulated mongos does not implement")
	}
	require.NoError(t, c.Database("admin").RunCommand(ctx, bson.D{{Key: "enableSharding", Value: "a"}}).Err(), "accepted, as since 6.0")
}

// streamCmd runs a change-stream command through c and returns the
// cursor's batch, postBatchResumeToken and id.
type streamBatch struct {
	Cursor struct {
		FirstBatch []bson.Raw `bson:"firstBatch"`
		NextBatch  []bson.Raw `bson:"nextBatch"`
		PBRT       bson.Raw   `bson:"postBatchResumeToken"`
		ID         int64      `bson:"id"`
	} `bson:"cursor"`
}

func openClusterStream(ctx context.Context, t *testing.T, c *mongo.Client) (streamBatch, error) {
	t.Helper()
	var b streamBatch
	err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "aggregate", Value: 1},
		{Key: "pipeline", Value: bson.A{bson.D{{Key: "$changeStream", Value: bson.D{{Key: "allChangesForCluster", Value: true}}}}}},
		{Key: "cursor", Value: bson.D{}}}).Decode(&b)
	return b, err
}

func getMoreStream(ctx context.Context, c *mongo.Client, id int64, wait time.Duration) (streamBatch, error) {
	var b streamBatch
	err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "$cmd.aggregate"},
		{Key: "maxTimeMS", Value: wait.Milliseconds()}}).Decode(&b)
	return b, err
}

// TestShardedIdleShardHoldsBack: with the shards' no-op writers off, an
// event on one shard is not returned while the other shard has promised
// nothing past it (its postBatchResumeToken does not move without a
// write), however long the getMore waits; the idle shard's next write
// releases the held event, and its own waits for the first shard's next
// write in turn. This is the merge's rule, and why an idle
// shard delays a busy one by up to its no-op interval
// (async_results_merger.cpp; jstests/sharding/
// change_stream_no_shards_writes_delay.js' premise, SERVER-126545).
func TestShardedIdleShardHoldsBack(t *testing.T) {
	t.Parallel()
	sc := mongosim.StartShardedClusterTB(t, 2, 1, 1, []mongosim.Option{mongosim.WithNoopInterval(0)})
	require.NoError(t, sc.Catalog().SetPrimaryShard("a", "shard0"))
	require.NoError(t, sc.Catalog().SetPrimaryShard("b", "shard1"))
	c := connectTo(t, sc.URI())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opened, err := openClusterStream(ctx, t, c)
	require.NoError(t, err)
	_, err = c.Database("a").Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: "busy"}})
	require.NoError(t, err)
	held, err := getMoreStream(ctx, c, opened.Cursor.ID, 300*time.Millisecond)
	require.NoError(t, err)
	assert.Empty(t, held.Cursor.NextBatch, "held back by the idle shard")
	assert.Equal(t, opened.Cursor.PBRT, held.Cursor.PBRT, "the stream's position waits too")

	// shard1's write promises past "busy", which comes out; its own
	// event then waits for shard0 to promise past it, in turn.
	next := func() string {
		for {
			b, err := getMoreStream(ctx, c, opened.Cursor.ID, 300*time.Millisecond)
			require.NoError(t, err)
			if n := len(b.Cursor.NextBatch); n > 0 {
				require.Equal(t, 1, n)
				return b.Cursor.NextBatch[0].Lookup("documentKey", "_id").StringValue()
			}
		}
	}
	_, err = c.Database("b").Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: "idle"}})
	require.NoError(t, err)
	assert.Equal(t, "busy", next())
	held, err = getMoreStream(ctx, c, opened.Cursor.ID, 300*time.Millisecond)
	require.NoError(t, err)
	assert.Empty(t, held.Cursor.NextBatch, "shard1's event waits for shard0 now")
	_, err = c.Database("a").Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: "busy again"}})
	require.NoError(t, err)
	assert.Equal(t, "idle", next())
}

// TestShardedPausedNoopWriter: an idle shard whose no-op writer is
// paused (PauseNoopWriter) holds a busy shard's event back for as long as
// it stays paused; resumed, its next no-op releases it. The same
// mechanism as TestShardedIdleShardHoldsBack, switched at run time.
func TestShardedPausedNoopWriter(t *testing.T) {
	t.Parallel()
	sc := mongosim.StartShardedClusterTB(t, 2, 1, 1, []mongosim.Option{mongosim.WithNoopInterval(50 * time.Millisecond)})
	require.NoError(t, sc.Catalog().SetPrimaryShard("a", "shard0"))
	c := connectTo(t, sc.URI())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opened, err := openClusterStream(ctx, t, c)
	require.NoError(t, err)
	sc.Shard(1).Member(0).PauseNoopWriter()
	_, err = c.Database("a").Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: "busy"}})
	require.NoError(t, err)
	for range 3 {
		held, err := getMoreStream(ctx, c, opened.Cursor.ID, 300*time.Millisecond)
		require.NoError(t, err)
		assert.Empty(t, held.Cursor.NextBatch, "held back while shard1's no-op writer is paused")
	}
	sc.Shard(1).Member(0).ResumeNoopWriter()
	for {
		b, err := getMoreStream(ctx, c, opened.Cursor.ID, 300*time.Millisecond)
		require.NoError(t, err)
		if len(b.Cursor.NextBatch) > 0 {
			assert.Equal(t, "busy", b.Cursor.NextBatch[0].Lookup("documentKey", "_id").StringValue())
			return
		}
	}
}

// TestShardedShardDown: with a shard's only member down, a stream's
// getMore through mongos fails with a network error from that shard,
// labelled ResumableChangeStreamError, and a new stream fails with
// FailedToSatisfyReadPreference (133) and the label, as error_labels.cpp
// labels them; once the member is back, a new stream opens.
// (jstests/sharding/change_stream_shard_failover.js,
// change_streams_unsharded_update_resume.js' shard restarts.)
func TestShardedShardDown(t *testing.T) {
	t.Parallel()
	// A short election timeout: the restarted member elects itself
	// sooner than the default 10 s.
	sc := mongosim.StartShardedClusterTB(t, 2, 1, 1, []mongosim.Option{mongosim.WithNoopInterval(100 * time.Millisecond)},
		mongosim.WithElectionTimeout(200*time.Millisecond))
	require.NoError(t, sc.Catalog().SetPrimaryShard("a", "shard0"))
	c := routerClient(t, sc, 0) // a cursor lives on one router
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opened, err := openClusterStream(ctx, t, c)
	require.NoError(t, err)
	sc.Shard(1).Kill(0)

	_, err = getMoreStream(ctx, c, opened.Cursor.ID, 300*time.Millisecond)
	var se mongo.ServerError
	require.ErrorAs(t, err, &se)
	assert.True(t, se.HasErrorCode(6), "HostUnreachable: %v", err)
	assert.True(t, se.HasErrorLabel("ResumableChangeStreamError"), "%v", err)
	assert.Contains(t, err.Error(), "Error on remote shard "+sc.Shard(1).Member(0).Addr())

	_, err = openClusterStream(ctx, t, c)
	require.ErrorAs(t, err, &se)
	assert.True(t, se.HasErrorCode(133), "%v", err)
	assert.True(t, se.HasErrorLabel("ResumableChangeStreamError"), "%v", err)

	require.NoError(t, sc.Shard(1).Restart(0))
	_, err = sc.Shard(1).WaitForPrimary(ctx)
	require.NoError(t, err)
	_, err = openClusterStream(ctx, t, c)
	require.NoError(t, err, "the shard is back")
}

// TestShardedShardCollection: shardCollection on a hashed _id shards a
// collection (on its primary shard, whole), and a stream with
// showExpandedEvents reports it with operationDescription {shardKey,
// unique, numInitialChunks, presplitHashedZones}; sharding it again on
// the same key is accepted, on another refused. A hashed collection is
// not split (NotImplemented: its hashes are not computed), an unsharded
// one cannot be (NamespaceNotSharded), and a plain replica set refuses
// the router's internal command.
// (create_collection_coordinator.cpp; jstests/change_streams/
// show_expanded_events.js; the spec's showExpandedEvents test.)
func TestShardedShardCollection(t *testing.T) {
	t.Parallel()
	sc, _ := startSharded(t)
	c := routerClient(t, sc, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	coll := c.Database("a").Collection("c")
	require.NoError(t, c.Database("a").CreateCollection(ctx, "c"))
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetShowExpandedEvents(true))
	require.NoError(t, err)
	defer cs.Close(context.Background())
	shard := bson.D{{Key: "shardCollection", Value: "a.c"}, {Key: "key", Value: bson.D{{Key: "_id", Value: "hashed"}}}}
	var res bson.M
	require.NoError(t, c.Database("admin").RunCommand(ctx, shard).Decode(&res))
	assert.Equal(t, "a.c", res["collectionsharded"])
	require.True(t, cs.Next(ctx), "%v", cs.Err())
	var ev struct {
		OperationType string `bson:"operationType"`
		NS            bson.M `bson:"ns"`
		Desc          bson.D `bson:"operationDescription"`
	}
	require.NoError(t, cs.Decode(&ev))
	assert.Equal(t, "shardCollection", ev.OperationType)
	assert.Equal(t, bson.M{"db": "a", "coll": "c"}, ev.NS)
	assert.Equal(t, bson.D{{Key: "shardKey", Value: bson.D{{Key: "_id", Value: "hashed"}}}, {Key: "unique", Value: false},
		{Key: "numInitialChunks", Value: int64(0)}, {Key: "presplitHashedZones", Value: false}}, ev.Desc)

	require.NoError(t, c.Database("admin").RunCommand(ctx, shard).Err(), "again, on the same key")
	var se mongo.ServerError
	err = c.Database("admin").RunCommand(ctx, bson.D{{Key: "shardCollection", Value: "a.c"}, {Key: "key", Value: bson.D{{Key: "_id", Value: 1}}}}).Err()
	require.ErrorAs(t, err, &se)
	assert.True(t, se.HasErrorCode(23), "another key: %v", err)
	err = c.Database("admin").RunCommand(ctx, bson.D{{Key: "split", Value: "a.c"}, {Key: "middle", Value: bson.D{{Key: "_id", Value: 0}}}}).Err()
	require.ErrorAs(t, err, &se)
	assert.True(t, se.HasErrorCode(238), "a hashed collection is not split: %v", err)
	err = c.Database("admin").RunCommand(ctx, bson.D{{Key: "split", Value: "a.d"}, {Key: "middle", Value: bson.D{{Key: "_id", Value: 0}}}}).Err()
	require.ErrorAs(t, err, &se)
	assert.True(t, se.HasErrorCode(118), "not sharded: %v", err)

	rs := connectTo(t, mongosim.StartTB(t).URI())
	err = rs.Database("a").RunCommand(ctx, bson.D{{Key: "_shardsvrCreateCollection", Value: "c"}, {Key: "shardKey", Value: bson.D{{Key: "_id", Value: 1}}}}).Err()
	require.ErrorAs(t, err, &se)
	assert.True(t, se.HasErrorCode(20), "not a shard server: %v", err)
}

// TestShardedHistoryLostOnOneShard: a stream through mongos from a point
// one shard's oplog no longer holds fails with ChangeStreamHistoryLost
// (286), labelled NonResumableChangeStreamError, though the other shard
// holds it: every shard must resume from the point
// (jstests/sharding/change_stream_resume_from_different_shard.js'
// premise; the shard's DocumentSourceChangeStreamCheckResumability).
func TestShardedHistoryLostOnOneShard(t *testing.T) {
	t.Parallel()
	sc := mongosim.StartShardedClusterTB(t, 2, 1, 1, []mongosim.Option{mongosim.WithNoopInterval(0), mongosim.WithOplogMax(5)})
	require.NoError(t, sc.Catalog().SetPrimaryShard("a", "shard0"))
	c := connectTo(t, sc.URI())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ping struct {
		OperationTime bson.Timestamp `bson:"operationTime"`
	}
	require.NoError(t, c.Database("a").RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Decode(&ping))
	for i := range 20 { // shard0's oplog keeps the last 5 entries
		_, err := c.Database("a").Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: i}})
		require.NoError(t, err)
	}
	_, err := c.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetStartAtOperationTime(&ping.OperationTime))
	var se mongo.ServerError
	require.ErrorAs(t, err, &se)
	assert.True(t, se.HasErrorCode(286), "%v", err)
	assert.True(t, se.HasErrorLabel("NonResumableChangeStreamError"), "%v", err)
}

// TestShardedFailCommand: a mongos keeps fail points of its own;
// failCommand fails the commands it names, with the code's codeName as a
// server sends it (the router once sent an empty one for codes outside
// its own few), and only for the appName configured.
func TestShardedFailCommand(t *testing.T) {
	t.Parallel()
	sc, _ := startSharded(t)
	c := routerClient(t, sc, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, c.Database("admin").RunCommand(ctx, bson.D{{Key: "configureFailPoint", Value: "failCommand"},
		{Key: "mode", Value: bson.D{{Key: "times", Value: 1}}},
		{Key: "data", Value: bson.D{{Key: "failCommands", Value: bson.A{"count"}}, {Key: "errorCode", Value: 216}}}}).Err())
	err := c.Database("a").RunCommand(ctx, bson.D{{Key: "count", Value: "c"}}).Err()
	var ce mongo.CommandError
	require.ErrorAs(t, err, &ce)
	assert.EqualValues(t, 216, ce.Code)
	assert.Equal(t, "ElectionInProgress", ce.Name)
	require.NoError(t, c.Database("a").RunCommand(ctx, bson.D{{Key: "count", Value: "c"}}).Err(), "times: 1")

	require.NoError(t, c.Database("admin").RunCommand(ctx, bson.D{{Key: "configureFailPoint", Value: "failCommand"},
		{Key: "mode", Value: "alwaysOn"},
		{Key: "data", Value: bson.D{{Key: "failCommands", Value: bson.A{"count"}}, {Key: "errorCode", Value: 216}, {Key: "appName", Value: "someone else"}}}}).Err())
	require.NoError(t, c.Database("a").RunCommand(ctx, bson.D{{Key: "count", Value: "c"}}).Err(), "another appName")
}

// TestShardedConfigServer: getShardMap names every shard and the config
// server as "rsName/hosts" (cluster_get_shard_map_cmd.cpp), as the Go
// driver's test harness reads it to reach the config server, where
// appendOplogNote writes a no-op that moves its cluster time on
// (oplog_note.cpp); the config server's own config database is refused,
// since the catalog, read through mongos, stands in for it.
func TestShardedConfigServer(t *testing.T) {
	t.Parallel()
	sc, c := startSharded(t)
	ctx := context.Background()
	var m struct {
		Map bson.M `bson:"map"`
	}
	require.NoError(t, c.Database("admin").RunCommand(ctx, bson.D{{Key: "getShardMap", Value: 1}}).Decode(&m))
	cfgHost := sc.ConfigServer().Member(0).Addr()
	assert.Equal(t, "configRepl/"+cfgHost, m.Map["config"])
	assert.Equal(t, "shard1/"+sc.Shard(1).Member(0).Addr(), m.Map["shard1"])

	cfg := connectTo(t, "mongodb://"+cfgHost+"/?directConnection=true")
	var hello bson.M
	require.NoError(t, cfg.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello))
	assert.Equal(t, int32(2), hello["configsvr"])
	note := func() bson.Timestamp {
		raw, err := cfg.Database("admin").RunCommand(ctx, bson.D{{Key: "appendOplogNote", Value: 1}, {Key: "data", Value: bson.D{{Key: "x", Value: 1}}}}).Raw()
		require.NoError(t, err)
		tt, i := raw.Lookup("$clusterTime", "clusterTime").Timestamp()
		return bson.Timestamp{T: tt, I: i}
	}
	first := note()
	assert.True(t, first.Before(note()), "each note moves the cluster time on")
	var se mongo.ServerError
	err := cfg.Database("admin").RunCommand(ctx, bson.D{{Key: "appendOplogNote", Value: 1}}).Err()
	require.ErrorAs(t, err, &se)
	assert.True(t, se.HasErrorCode(4), "no data: %v", err)
	err = cfg.Database("config").Collection("chunks").FindOne(ctx, bson.D{}).Err()
	require.ErrorAs(t, err, &se)
	assert.True(t, se.HasErrorCode(238), "%v", err)
}
