package mongosim_test

import (
	"context"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// shardOnSku shards a.c on {sku: 1}, splits it at sku 50 and moves the
// upper chunk to shard1: sku < 50 lives on shard0, the rest on shard1.
func shardOnSku(ctx context.Context, t *testing.T, c *mongo.Client) {
	t.Helper()
	admin := c.Database("admin")
	require.NoError(t, c.Database("a").CreateCollection(ctx, "c"))
	require.NoError(t, admin.RunCommand(ctx, bson.D{{Key: "shardCollection", Value: "a.c"}, {Key: "key", Value: bson.D{{Key: "sku", Value: 1}}}}).Err())
	require.NoError(t, admin.RunCommand(ctx, bson.D{{Key: "split", Value: "a.c"}, {Key: "middle", Value: bson.D{{Key: "sku", Value: 50}}}}).Err())
	require.NoError(t, admin.RunCommand(ctx, bson.D{{Key: "moveChunk", Value: "a.c"}, {Key: "find", Value: bson.D{{Key: "sku", Value: 60}}},
		{Key: "to", Value: "shard1"}, {Key: "_waitForDelete", Value: true}}).Err())
}

// shardDocs reads a.c on shard i's primary directly.
func shardDocs(ctx context.Context, t *testing.T, c *mongo.Client) []bson.M {
	t.Helper()
	cur, err := c.Database("a").Collection("c").Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	require.NoError(t, err)
	var out []bson.M
	require.NoError(t, cur.All(ctx, &out))
	return out
}

// TestShardedRangeKey: a collection sharded on a range key through
// mongos: config.collections and config.chunks describe it (chunks by
// the collection's uuid, which every shard's copy shares); inserts go to
// the shard of their key's chunk; a query with the whole key goes to one
// shard, any other to all, merged and sorted by the router; documentKey
// is the shard key then _id, as of the write; a single-document write
// without the shard key is refused (8.0's write without shard key is not
// modelled); a drop gives one drop then invalidate.
// (The documentKey: src/mongo/s/shard_key_pattern.cpp and the op
// observer; the routing: src/mongo/s/write_ops/ and src/mongo/s/query/;
// the drop: drop_collection_coordinator.cpp; config.chunks keyed by uuid
// since 5.0.)
func TestShardedRangeKey(t *testing.T) {
	t.Parallel()
	sc, c := startSharded(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	shardOnSku(ctx, t, c)
	coll := c.Database("a").Collection("c")

	var chunks []bson.M
	cur, err := c.Database("config").Collection("chunks").Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "min.sku", Value: 1}}))
	require.NoError(t, err)
	require.NoError(t, cur.All(ctx, &chunks))
	require.Len(t, chunks, 2)
	assert.Equal(t, bson.D{{Key: "sku", Value: bson.MinKey{}}}, chunks[0]["min"])
	assert.Equal(t, bson.D{{Key: "sku", Value: int32(50)}}, chunks[0]["max"])
	assert.Equal(t, "shard0", chunks[0]["shard"])
	assert.Equal(t, "shard1", chunks[1]["shard"])
	var meta bson.M
	require.NoError(t, c.Database("config").Collection("collections").FindOne(ctx, bson.D{{Key: "_id", Value: "a.c"}}).Decode(&meta))
	assert.Equal(t, bson.D{{Key: "sku", Value: int32(1)}}, meta["key"])
	assert.Equal(t, meta["uuid"], chunks[0]["uuid"])

	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetFullDocument(options.UpdateLookup))
	require.NoError(t, err)
	defer cs.Close(context.Background())

	_, err = coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: 1}, {Key: "sku", Value: 10}}, bson.D{{Key: "_id", Value: 2}, {Key: "sku", Value: 60}},
		bson.D{{Key: "_id", Value: 3}, {Key: "sku", Value: 70}}})
	require.NoError(t, err)
	shard0, shard1 := connectTo(t, sc.Shard(0).URI()), connectTo(t, sc.Shard(1).URI())
	assert.Equal(t, []bson.M{{"_id": int32(1), "sku": int32(10)}}, shardDocs(ctx, t, shard0))
	assert.Equal(t, []bson.M{{"_id": int32(2), "sku": int32(60)}, {"_id": int32(3), "sku": int32(70)}}, shardDocs(ctx, t, shard1))
	var lists [2][]struct {
		Info struct {
			UUID bson.Binary `bson:"uuid"`
		} `bson:"info"`
	}
	for i, sh := range []*mongo.Client{shard0, shard1} {
		cur, err := sh.Database("a").ListCollections(ctx, bson.D{{Key: "name", Value: "c"}})
		require.NoError(t, err)
		require.NoError(t, cur.All(ctx, &lists[i]))
		require.Len(t, lists[i], 1)
	}
	assert.Equal(t, lists[0][0].Info.UUID, lists[1][0].Info.UUID, "one uuid on every shard")
	assert.Equal(t, meta["uuid"], lists[0][0].Info.UUID)

	res, err := coll.UpdateOne(ctx, bson.D{{Key: "sku", Value: 60}}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}})
	require.NoError(t, err)
	assert.Equal(t, int64(1), res.ModifiedCount)
	_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 2}}}})
	var se mongo.ServerError
	require.ErrorAs(t, err, &se)
	assert.True(t, se.HasErrorCode(238), "no shard key: %v", err)
	_, err = coll.UpdateOne(ctx, bson.D{{Key: "sku", Value: 60}}, bson.D{{Key: "$set", Value: bson.D{{Key: "sku", Value: 5}}}})
	require.ErrorAs(t, err, &se)
	assert.True(t, se.HasErrorCode(238), "changes the shard key: %v", err)
	many, err := coll.UpdateMany(ctx, bson.D{{Key: "sku", Value: bson.D{{Key: "$gte", Value: 10}}}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}})
	require.NoError(t, err)
	assert.Equal(t, int64(3), many.ModifiedCount, "a multi update on every shard")

	var sorted []bson.M
	cur, err = coll.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "sku", Value: -1}}).SetProjection(bson.D{{Key: "sku", Value: 1}}).SetLimit(2))
	require.NoError(t, err)
	require.NoError(t, cur.All(ctx, &sorted))
	assert.Equal(t, []bson.M{{"_id": int32(3), "sku": int32(70)}, {"_id": int32(2), "sku": int32(60)}}, sorted)
	n, err := coll.CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	assert.Equal(t, int64(3), n)
	var one bson.M
	require.NoError(t, coll.FindOne(ctx, bson.D{{Key: "sku", Value: 70}}).Decode(&one))
	assert.Equal(t, int32(3), one["_id"])

	_, err = coll.DeleteOne(ctx, bson.D{{Key: "sku", Value: 10}})
	require.NoError(t, err)
	require.NoError(t, coll.Drop(ctx))

	type event struct {
		Op   string `bson:"operationType"`
		Key  bson.D `bson:"documentKey"`
		Full bson.M `bson:"fullDocument"`
	}
	var got []event
	for cs.Next(ctx) {
		var ev event
		require.NoError(t, cs.Decode(&ev))
		got = append(got, ev)
	}
	require.NoError(t, cs.Err())
	key := func(sku, id int) bson.D {
		return bson.D{{Key: "sku", Value: int32(sku)}, {Key: "_id", Value: int32(id)}}
	}
	want := []event{
		{"insert", key(10, 1), bson.M{"_id": int32(1), "sku": int32(10)}},
		{"insert", key(60, 2), bson.M{"_id": int32(2), "sku": int32(60)}},
		{"insert", key(70, 3), bson.M{"_id": int32(3), "sku": int32(70)}},
		{"update", key(60, 2), nil},
	}
	require.Len(t, got, 10, "%v", got)
	assert.Equal(t, want, got[:4], "the update's fullDocument is looked up when the router reads it: after the drop, so null")
	var updated []bson.D
	for _, ev := range got[4:7] {
		assert.Equal(t, "update", ev.Op)
		updated = append(updated, ev.Key)
	}
	assert.ElementsMatch(t, []bson.D{key(10, 1), key(60, 2), key(70, 3)}, updated)
	assert.Equal(t, event{Op: "delete", Key: key(10, 1)}, got[7])
	assert.Equal(t, "drop", got[8].Op, "one drop")
	assert.Equal(t, "invalidate", got[9].Op)
	assert.Empty(t, shardDocs(ctx, t, shard1), "dropped on every shard")
}

// TestShardedMigrationIsNoEvent: a chunk's migration writes on both
// shards, and none of it is an event: not through mongos (where the
// donor's note of a new shard is swallowed), not on a shard's own
// stream; a document that moved is found by updateLookup where it lives
// now. (jstests/sharding/change_stream_chunk_migration.js;
// migration_source_manager.cpp writes migrateChunkToNewShard.)
func TestShardedMigrationIsNoEvent(t *testing.T) {
	t.Parallel()
	sc, c := startSharded(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	coll := c.Database("a").Collection("c")
	admin := c.Database("admin")
	require.NoError(t, c.Database("a").CreateCollection(ctx, "c"))
	require.NoError(t, admin.RunCommand(ctx, bson.D{{Key: "shardCollection", Value: "a.c"}, {Key: "key", Value: bson.D{{Key: "sku", Value: 1}}}}).Err())
	_, err := coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: 1}, {Key: "sku", Value: 10}}, bson.D{{Key: "_id", Value: 2}, {Key: "sku", Value: 60}}})
	require.NoError(t, err)

	routed, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetFullDocument(options.UpdateLookup).SetShowExpandedEvents(true))
	require.NoError(t, err)
	defer routed.Close(context.Background())
	shard0 := connectTo(t, sc.Shard(0).URI())
	shard1 := connectTo(t, sc.Shard(1).URI())
	direct := make([]*mongo.ChangeStream, 2)
	for i, sh := range []*mongo.Client{shard0, shard1} {
		direct[i], err = sh.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetShowExpandedEvents(true))
		require.NoError(t, err)
		defer direct[i].Close(context.Background())
	}

	require.NoError(t, admin.RunCommand(ctx, bson.D{{Key: "split", Value: "a.c"}, {Key: "middle", Value: bson.D{{Key: "sku", Value: 50}}}}).Err())
	require.NoError(t, admin.RunCommand(ctx, bson.D{{Key: "moveChunk", Value: "a.c"}, {Key: "bounds", Value: bson.A{bson.D{{Key: "sku", Value: 50}}, bson.D{{Key: "sku", Value: bson.MaxKey{}}}}},
		{Key: "to", Value: "shard1"}}).Err())
	assert.Equal(t, []bson.M{{"_id": int32(2), "sku": int32(60)}}, shardDocs(ctx, t, shard1), "moved")
	assert.Equal(t, []bson.M{{"_id": int32(1), "sku": int32(10)}}, shardDocs(ctx, t, shard0), "deleted from the donor")

	_, err = coll.UpdateOne(ctx, bson.D{{Key: "sku", Value: 60}}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}})
	require.NoError(t, err)
	require.True(t, routed.Next(ctx), "%v", routed.Err())
	var ev struct {
		Op   string `bson:"operationType"`
		Full bson.M `bson:"fullDocument"`
	}
	require.NoError(t, routed.Decode(&ev))
	assert.Equal(t, "update", ev.Op, "the first event after the migration is the update: %s", routed.Current)
	assert.Equal(t, bson.M{"_id": int32(2), "sku": int32(60), "x": int32(1)}, ev.Full, "looked up on the shard that owns it now")

	for i, ds := range direct {
		_, err := []*mongo.Client{shard0, shard1}[i].Database("z").Collection("marker").InsertOne(ctx, bson.D{{Key: "_id", Value: i}})
		require.NoError(t, err)
		for ds.Next(ctx) {
			op := ds.Current.Lookup("operationType").StringValue()
			if op == "create" && ds.Current.Lookup("ns", "coll").StringValue() == "marker" {
				continue
			}
			if i == 1 && op == "update" {
				continue // the update after the migration, on its new shard
			}
			assert.Equal(t, "insert", op, "shard%d: only the marker: %s", i, ds.Current)
			assert.Equal(t, "marker", ds.Current.Lookup("ns", "coll").StringValue())
			break
		}
		require.NoError(t, ds.Err())
	}
}

// TestShardedTransaction: a transaction through mongos on one shard runs
// there as on a replica set, its events carrying lsid and txnNumber
// through the merged stream; a statement on a second shard is refused
// with NotImplemented (8.0's two-phase commit is not modelled), and the
// transaction aborts with nothing written. (transaction_router.cpp.)
func TestShardedTransaction(t *testing.T) {
	t.Parallel()
	_, c := startSharded(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, db := range []string{"a", "b"} {
		require.NoError(t, c.Database(db).CreateCollection(ctx, "c"))
	}
	cs, err := c.Watch(ctx, mongo.Pipeline{})
	require.NoError(t, err)
	defer cs.Close(context.Background())

	sess, err := c.StartSession()
	require.NoError(t, err)
	defer sess.EndSession(context.Background())
	a, b := c.Database("a").Collection("c"), c.Database("b").Collection("c")
	_, err = sess.WithTransaction(ctx, func(ctx context.Context) (any, error) {
		if _, err := a.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
			return nil, err
		}
		return a.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}})
	})
	require.NoError(t, err)

	require.NoError(t, sess.StartTransaction())
	sctx := mongo.NewSessionContext(ctx, sess)
	_, err = a.InsertOne(sctx, bson.D{{Key: "_id", Value: 3}})
	require.NoError(t, err)
	_, err = b.InsertOne(sctx, bson.D{{Key: "_id", Value: 4}})
	var se mongo.ServerError
	require.ErrorAs(t, err, &se)
	assert.True(t, se.HasErrorCode(238), "a second shard: %v", err)
	require.NoError(t, sess.AbortTransaction(ctx))
	_, err = a.InsertOne(ctx, bson.D{{Key: "_id", Value: 5}})
	require.NoError(t, err)

	var ids []int32
	var txn []bool
	for len(ids) < 3 && cs.Next(ctx) {
		ids = append(ids, cs.Current.Lookup("documentKey", "_id").Int32())
		_, inTxn := cs.Current.Lookup("txnNumber").Int64OK()
		txn = append(txn, inTxn)
	}
	require.NoError(t, cs.Err())
	assert.Equal(t, []int32{1, 2, 5}, ids, "the committed transaction, then the write after the aborted one")
	assert.Equal(t, []bool{true, true, false}, txn)
	n, err := a.CountDocuments(ctx, bson.D{{Key: "_id", Value: 3}})
	require.NoError(t, err)
	assert.Zero(t, n, "aborted")
}

// TestShardedShardFailover: a shard's primary steps down, or is killed,
// under a stream through mongos; the shard's error reaches the driver
// labelled resumable (or the router's HostUnreachable does), the driver
// resumes through the router, which finds the shard's new primary, and
// every write arrives once and in order.
// (jstests/sharding/change_stream_shard_failover.js.)
func TestShardedShardFailover(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		times int // a killed member stays down: of three, one may go
		fail  func(ctx context.Context, rs *mongosim.ReplicaSet) error
	}{
		{"step down", 2, func(ctx context.Context, rs *mongosim.ReplicaSet) error {
			return rs.StepDown(ctx, mongosim.StepDownOptions{StepDownPeriod: 30 * time.Second})
		}},
		{"kill", 1, func(ctx context.Context, rs *mongosim.ReplicaSet) error {
			for i, m := range rs.Members() {
				if m == rs.Primary() {
					rs.Kill(i)
				}
			}
			_, err := rs.WaitForPrimary(ctx)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sc := mongosim.StartShardedClusterTB(t, 2, 3, 1, []mongosim.Option{mongosim.WithNoopInterval(100 * time.Millisecond)},
				mongosim.WithElectionTimeout(200*time.Millisecond))
			require.NoError(t, sc.Catalog().SetPrimaryShard("a", "shard0"))
			c := connectTo(t, sc.URI())
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			coll := c.Database("a").Collection("c")
			cs, err := coll.Watch(ctx, mongo.Pipeline{})
			require.NoError(t, err)
			defer cs.Close(context.Background())
			var got []int32
			next := func() {
				t.Helper()
				require.True(t, cs.Next(ctx), "%v", cs.Err())
				got = append(got, cs.Current.Lookup("documentKey", "_id").Int32())
			}
			for i := range 6 {
				_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}})
				require.NoError(t, err)
				if i == 1 || (i == 3 && tc.times == 2) {
					// A stepped-down primary sits out its stepDownSecs, so
					// a third step-down would find no electable member.
					next()
					next()
					require.NoError(t, tc.fail(ctx, sc.Shard(0)))
				}
			}
			for len(got) < 6 {
				next()
			}
			assert.Equal(t, []int32{0, 1, 2, 3, 4, 5}, got)
			assert.GreaterOrEqual(t, sc.Shard(0).Elections(), 1+tc.times)
		})
	}
}

// TestShardedMigrationUnderWrites: chunks moved back and forth while a
// writer inserts lose no document and count none twice: the router holds
// a collection's commands while its migration copies, places and deletes
// (the server's critical section and orphan filtering, in one step).
// (The invariant of migration_source_manager.cpp's critical section.)
func TestShardedMigrationUnderWrites(t *testing.T) {
	t.Parallel()
	sc, c := startSharded(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	shardOnSku(ctx, t, c)
	coll := c.Database("a").Collection("c")
	const writers, each = 4, 250
	const n = writers * each
	wrote := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := w * each; i < (w+1)*each; i++ {
				if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}, {Key: "sku", Value: i % 100}}); err != nil {
					wrote <- err
					return
				}
			}
			wrote <- nil
		}()
	}
	for i := range 20 {
		to := []string{"shard0", "shard1"}[i%2]
		require.NoError(t, c.Database("admin").RunCommand(ctx, bson.D{{Key: "moveChunk", Value: "a.c"}, {Key: "find", Value: bson.D{{Key: "sku", Value: 60}}},
			{Key: "to", Value: to}}).Err())
	}
	for range writers {
		require.NoError(t, <-wrote)
	}
	got, err := coll.CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	assert.EqualValues(t, n, got, "through mongos")
	total := 0
	for i := range 2 {
		total += len(shardDocs(ctx, t, connectTo(t, sc.Shard(i).URI())))
	}
	assert.Equal(t, n, total, "on the shards, each document once")
}
