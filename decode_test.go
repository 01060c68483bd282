package changestream_test

import (
	"context"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/internal/testclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestDecodeMatchesRegistry: Decode into an Event reads the envelope from
// the raw bytes; for every kind of event it must give exactly what the
// registry gives (bson.Unmarshal into the same type).
func TestDecodeMatchesRegistry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxTimeout(t, 20*time.Second)
	require.NoError(t, e.db.CreateCollection(ctx, "images",
		options.CreateCollection().SetChangeStreamPreAndPostImages(bson.D{{Key: "enabled", Value: true}})))
	coll := e.db.Collection("images")
	cs, err := changestream.WatchDatabase(ctx, e.db, nil,
		changestream.WithShowExpandedEvents(true),
		changestream.WithFullDocument(changestream.FullDocumentUpdateLookup),
		changestream.WithFullDocumentBeforeChange(changestream.FullDocumentBeforeChangeWhenAvailable))
	require.NoError(t, err)
	defer cs.Close(context.Background())

	must := func(err error) {
		t.Helper()
		require.NoError(t, err)
	}
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "item", Value: "apple"}, {Key: "qty", Value: 3}, {Key: "tags", Value: bson.A{"a", "b", "c"}}})
	must(err)
	_, err = coll.InsertOne(ctx, bson.D{{Key: "item", Value: "pear"}})
	must(err)
	_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{
		{Key: "$set", Value: bson.D{{Key: "qty", Value: 4}}}, {Key: "$unset", Value: bson.D{{Key: "item", Value: ""}}},
		{Key: "$push", Value: bson.D{{Key: "tags", Value: "d"}}}})
	must(err)
	_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, mongo.Pipeline{
		{{Key: "$set", Value: bson.D{{Key: "tags", Value: bson.D{{Key: "$literal", Value: bson.A{"a"}}}}}}}})
	must(err)
	_, err = coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "item", Value: "plum"}, {Key: "qty", Value: 9}})
	must(err)
	_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "qty", Value: 1}}}})
	must(err)
	_, err = coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: 1}})
	must(err)
	_, err = coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "item", Value: 1}}})
	must(err)
	must(e.db.RunCommand(ctx, bson.D{{Key: "collMod", Value: "images"}, {Key: "index", Value: bson.D{{Key: "name", Value: "item_1"}, {Key: "hidden", Value: true}}}}).Err())
	sess, err := e.client.StartSession()
	must(err)
	defer sess.EndSession(ctx)
	_, err = sess.WithTransaction(ctx, func(sc context.Context) (any, error) {
		return coll.InsertOne(sc, bson.D{{Key: "_id", Value: 7}})
	})
	must(err)
	must(e.client.Database("admin").RunCommand(ctx, bson.D{{Key: "renameCollection", Value: e.db.Name() + ".images"}, {Key: "to", Value: e.db.Name() + ".renamed"}}).Err())
	must(e.db.Collection("renamed").Drop(ctx))

	type item struct {
		ID   any    `bson:"_id"`
		Item string `bson:"item,omitempty"`
		Qty  int32  `bson:"qty"`
	}
	kinds := map[string]bool{}
	for !kinds["drop"] {
		require.True(t, cs.Next(ctx), "%v (kinds so far %v)", cs.Err(), kinds)
		kinds[cs.Current.Lookup("operationType").StringValue()] = true

		var fast, slow changestream.Event[bson.M]
		require.NoError(t, cs.Decode(&fast))
		require.NoError(t, bson.Unmarshal(cs.Current, &slow))
		assert.Equal(t, slow, fast, "%s", cs.Current)

		var fastItem, slowItem changestream.Event[item]
		require.NoError(t, cs.Decode(&fastItem))
		require.NoError(t, bson.Unmarshal(cs.Current, &slowItem))
		assert.Equal(t, slowItem, fastItem, "%s", cs.Current)
	}
	assert.Len(t, kinds, 8, "insert, update, replace, delete, createIndexes, modify, rename, drop: %v", kinds)
}

// BenchmarkDecodeEnvelope decodes one update event (with its looked-up
// document) into changestream.Event[benchDoc] two ways: through the
// registry, as the driver's Decode does, and with the stream's Decode,
// which reads the envelope from the bytes. No server work is measured.
//
//	go test -run '^$' -bench DecodeEnvelope -benchmem .
func BenchmarkDecodeEnvelope(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	cs, err := changestream.WatchCollection(ctx, e.coll, nil, changestream.WithFullDocument(changestream.FullDocumentUpdateLookup))
	if err != nil {
		b.Fatal(err)
	}
	defer cs.Close(ctx)
	if _, err := e.coll.InsertOne(ctx, benchDoc{ID: 1, N: 1, Name: "payload"}); err != nil {
		b.Fatal(err)
	}
	if _, err := e.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 2}}}}); err != nil {
		b.Fatal(err)
	}
	for range 2 { // the insert, then the update
		if !cs.Next(ctx) {
			b.Fatal(cs.Err())
		}
	}
	raw := append(bson.Raw(nil), cs.Current...)
	b.Run("driver", func(b *testing.B) {
		// The driver's ChangeStream.Decode and Cursor.Decode build the
		// same decoder over the current document.
		cur, err := mongo.NewCursorFromDocuments([]any{raw}, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		if !cur.Next(ctx) {
			b.Fatal(cur.Err())
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			var ev changestream.Event[benchDoc]
			if err := cur.Decode(&ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var ev changestream.Event[benchDoc]
			if err := bson.Unmarshal(raw, &ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("changestream", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var ev changestream.Event[benchDoc]
			if err := cs.Decode(&ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestDecodeFollowsClientBSONOptions: Decode uses the registry and BSON
// options of the client, and those of the collection where it sets its
// own, exactly as the driver's Watch on the same collection decodes.
func TestDecodeFollowsClientBSONOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c, err := mongo.Connect(testclient.Options(e.uri).
		SetBSONOptions(&options.BSONOptions{DefaultDocumentM: true, ObjectIDAsHexString: true}))
	require.NoError(t, err)
	defer c.Disconnect(context.Background())
	ctx := ctxTimeout(t, 20*time.Second)

	type jsonTagged struct {
		ID   string         `bson:"_id" json:"_id"`
		Name string         `json:"title"`
		Sub  any            `json:"sub"`
		Rest map[string]any `bson:",inline"`
	}
	for _, tc := range []struct {
		name string
		coll *mongo.Collection
	}{
		{"client options", c.Database(e.db.Name()).Collection("client")},
		{"collection options", c.Database(e.db.Name()).Collection("coll",
			options.Collection().SetBSONOptions(&options.BSONOptions{UseJSONStructTags: true, DefaultDocumentMap: true, ObjectIDAsHexString: true}))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ours, err := changestream.WatchCollection(ctx, tc.coll, nil)
			require.NoError(t, err)
			defer ours.Close(context.Background())
			theirs, err := tc.coll.Watch(ctx, mongo.Pipeline{})
			require.NoError(t, err)
			defer theirs.Close(context.Background())

			_, err = tc.coll.InsertOne(ctx, bson.D{{Key: "title", Value: "t"},
				{Key: "sub", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "x", Value: bson.D{{Key: "b", Value: 2}}}})
			require.NoError(t, err)
			require.True(t, ours.Next(ctx), "%v", ours.Err())
			require.True(t, theirs.Next(ctx), "%v", theirs.Err())

			var a, b changestream.Event[jsonTagged]
			require.NoError(t, ours.Decode(&a))
			require.NoError(t, theirs.Decode(&b))
			assert.Equal(t, b, a)
			require.NotNil(t, a.FullDocument)
			assert.Len(t, a.FullDocument.ID, 24, "ObjectIDAsHexString")
			var x, y any
			require.NoError(t, ours.Decode(&x))
			require.NoError(t, theirs.Decode(&y))
			assert.Equal(t, y, x)
		})
	}
}
