package mongosim_test

import (
	"testing"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestExpandedRenameDescribesDroppedTarget: a rename over an existing
// collection reports the dropped target's UUID in operationDescription,
// as the oplog entry of a real server's rename carries it.
func TestExpandedRenameDescribesDroppedTarget(t *testing.T) {
	_, c, ctx := csSetup(t)
	db := c.Database("db")
	require.NoError(t, db.CreateCollection(ctx, "src"))
	require.NoError(t, db.CreateCollection(ctx, "dst"))
	cs, err := db.Collection("src").Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetShowExpandedEvents(true))
	require.NoError(t, err)
	defer cs.Close(ctx)
	require.NoError(t, c.Database("admin").RunCommand(ctx, bson.D{
		{Key: "renameCollection", Value: "db.src"}, {Key: "to", Value: "db.dst"}, {Key: "dropTarget", Value: true}}).Err())
	ev := nextN(t, ctx, cs, 1)[0]
	desc := ev.Lookup("operationDescription").Document()
	assert.Equal(t, []string{"to", "dropTarget"}, keysOf(desc))
	assert.Equal(t, "dst", desc.Lookup("to", "coll").StringValue())
	sub, _ := desc.Lookup("dropTarget").Binary()
	assert.EqualValues(t, 4, sub, "a UUID")
}

// TestExpandedCreateOfView: a view has no UUID, so its create event has no
// collectionUUID; its description is the view definition, without idIndex.
// Servers before 8.0.5 report no nsType.
func TestExpandedCreateOfView(t *testing.T) {
	_, c, ctx := csSetup(t)
	db := c.Database("db")
	cs, err := db.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetShowExpandedEvents(true))
	require.NoError(t, err)
	defer cs.Close(ctx)
	require.NoError(t, db.CreateView(ctx, "v", "base", mongo.Pipeline{}))
	require.NoError(t, db.CreateCollection(ctx, "coll"))
	evs := nextN(t, ctx, cs, 2)

	view, coll := evs[0], evs[1]
	assert.Equal(t, "create", view.Lookup("operationType").StringValue())
	assert.Zero(t, view.Lookup("collectionUUID").Type, "a view has no UUID")
	assert.ElementsMatch(t, []string{"viewOn", "pipeline"}, keysOf(view.Lookup("operationDescription").Document()))
	assert.NotZero(t, coll.Lookup("collectionUUID").Type)
	assert.Equal(t, []string{"idIndex"}, keysOf(coll.Lookup("operationDescription").Document()))
	if mongosim.ServerVersion == "8.0.4" {
		assert.Zero(t, view.Lookup("nsType").Type, "nsType is new in 8.0.5")
	}
}

// TestStandalone: a standalone names no replica set, gossips no cluster
// time, and refuses $changeStream with the server's own error.
func TestStandalone(t *testing.T) {
	_, c, ctx := csSetup(t, mongosim.WithStandalone())
	hello, err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Raw()
	require.NoError(t, err)
	assert.Zero(t, hello.Lookup("setName").Type)
	assert.Zero(t, hello.Lookup("$clusterTime").Type)
	assert.True(t, hello.Lookup("isWritablePrimary").Boolean())

	_, err = c.Database("db").Collection("c").InsertOne(ctx, bson.D{{Key: "x", Value: 1}})
	require.NoError(t, err, "CRUD works on a standalone")
	_, err = c.Database("db").Collection("c").Watch(ctx, mongo.Pipeline{})
	ce := cmdErrOf(t, err)
	assert.EqualValues(t, 40573, ce.Code)
	assert.Equal(t, "Location40573", ce.Name)
	assert.Equal(t, "The $changeStream stage is only supported on replica sets", ce.Message)
}

// TestExpandedModifyStateBeforeChange: a modify event carries what the
// change replaced (the manual's "modify" event: stateBeforeChange with
// collectionOptions, and indexOptions for an index change).
func TestExpandedModifyStateBeforeChange(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	db := c.Database("db")
	coll := db.Collection("c")
	_, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "age", Value: 1}}})
	require.NoError(t, err)
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetShowExpandedEvents(true))
	require.NoError(t, err)
	defer cs.Close(ctx)
	require.NoError(t, db.RunCommand(ctx, bson.D{{Key: "collMod", Value: "c"},
		{Key: "index", Value: bson.D{{Key: "name", Value: "age_1"}, {Key: "hidden", Value: true}}}}).Err())
	require.NoError(t, db.RunCommand(ctx, bson.D{{Key: "collMod", Value: "c"},
		{Key: "changeStreamPreAndPostImages", Value: bson.D{{Key: "enabled", Value: true}}}}).Err())

	evs := nextN(t, ctx, cs, 2)
	idx := evs[0]
	assert.Equal(t, "modify", idx.Lookup("operationType").StringValue())
	assert.Equal(t, true, idx.Lookup("operationDescription", "index", "hidden").Boolean())
	assert.Equal(t, false, idx.Lookup("stateBeforeChange", "indexOptions", "hidden").Boolean())
	sub, _ := idx.Lookup("stateBeforeChange", "collectionOptions", "uuid").Binary()
	assert.EqualValues(t, 4, sub)

	opts := evs[1].Lookup("stateBeforeChange", "collectionOptions").Document()
	_, err = opts.LookupErr("changeStreamPreAndPostImages")
	assert.Error(t, err, "the option was not set before")
	_, err = evs[1].Lookup("stateBeforeChange").Document().LookupErr("indexOptions")
	assert.Error(t, err, "no index changed")
}

// TestExpandedCreateIndexesOneEvent: one createIndexes of two indexes on a
// collection with documents is one event listing both (the server commits
// them together); on an empty collection each index is its own event.
func TestExpandedCreateIndexesOneEvent(t *testing.T) {
	t.Parallel()
	_, c, ctx := csSetup(t)
	db := c.Database("db")
	full, empty := db.Collection("full"), db.Collection("empty")
	_, err := full.InsertOne(ctx, bson.D{{Key: "a", Value: 1}})
	require.NoError(t, err)
	require.NoError(t, db.CreateCollection(ctx, "empty"))
	cs, err := db.Watch(ctx, mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "operationType", Value: "createIndexes"}}}}},
		options.ChangeStream().SetShowExpandedEvents(true))
	require.NoError(t, err)
	defer cs.Close(ctx)
	two := []mongo.IndexModel{{Keys: bson.D{{Key: "a", Value: 1}}}, {Keys: bson.D{{Key: "b", Value: 1}}}}
	_, err = full.Indexes().CreateMany(ctx, two)
	require.NoError(t, err)
	_, err = empty.Indexes().CreateMany(ctx, two)
	require.NoError(t, err)

	evs := nextN(t, ctx, cs, 3)
	count := func(ev bson.Raw) int {
		vals, _ := ev.Lookup("operationDescription", "indexes").Array().Values()
		return len(vals)
	}
	assert.Equal(t, "full", evs[0].Lookup("ns", "coll").StringValue())
	assert.Equal(t, 2, count(evs[0]))
	for _, ev := range evs[1:] {
		assert.Equal(t, "empty", ev.Lookup("ns", "coll").StringValue())
		assert.Equal(t, 1, count(ev))
	}
}
