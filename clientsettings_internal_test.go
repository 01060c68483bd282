package changestream

import (
	"context"
	"reflect"
	"slices"
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

// TestClientSettingsRead pins what clientSettingsOf reads out of the
// driver's Cursor and Collection: if a driver upgrade renames or retypes
// one of those unexported fields, this fails rather than the stream
// silently decoding with the default registry or ignoring timeoutMS.
func TestClientSettingsRead(t *testing.T) {
	t.Parallel()
	sim := mongosim.StartTB(t)
	clientReg, collReg := bson.NewRegistry(), bson.NewRegistry()
	clientOpts := &options.BSONOptions{DefaultDocumentM: true}
	collOpts := &options.BSONOptions{UseJSONStructTags: true}
	c, err := mongo.Connect(testclient.Options(sim.URI()).
		SetTimeout(3 * time.Second).SetRegistry(clientReg).SetBSONOptions(clientOpts))
	require.NoError(t, err)
	defer c.Disconnect(context.Background())
	ctx := context.Background()
	cur, err := c.Database("d").RunCommandCursor(ctx, bson.D{{Key: "listCollections", Value: 1}})
	require.NoError(t, err)
	defer cur.Close(ctx)

	got := clientSettingsOf(cur)
	require.True(t, got.known, "the driver's Cursor layout changed: see clientsettings.go")
	assert.Same(t, clientReg, got.registry)
	assert.Same(t, clientOpts, got.bsonOpts)
	assert.Equal(t, 3*time.Second, got.timeout)

	coll := c.Database("d").Collection("c", options.Collection().SetRegistry(collReg).SetBSONOptions(collOpts))
	fromColl := got.withCollection(coll)
	require.True(t, fromColl.known, "the driver's Collection layout changed: see clientsettings.go")
	assert.Same(t, collReg, fromColl.registry)
	assert.Same(t, collOpts, fromColl.bsonOpts)
	assert.Equal(t, 3*time.Second, fromColl.timeout)

	assert.False(t, clientSettingsOf(nil).known)
	assert.False(t, clientSettings{}.withCollection(coll).known, "unknown stays unknown")
}

// TestBSONOptionsMirrored fails when the driver adds a BSON option that
// docDecoder does not know of: a decoding option must be mirrored there,
// as the driver's Cursor.Decode applies it.
func TestBSONOptionsMirrored(t *testing.T) {
	t.Parallel()
	mirrored := []string{"AllowTruncatingDoubles", "BinaryAsSlice", "DefaultDocumentM", "DefaultDocumentMap",
		"ObjectIDAsHexString", "UseJSONStructTags", "UseLocalTimeZone", "ZeroMaps", "ZeroStructs"}
	encodingOnly := []string{"ErrorOnInlineDuplicates", "IntMinSize", "NilMapAsEmpty", "NilSliceAsEmpty",
		"NilByteSliceAsEmpty", "OmitZeroStruct", "OmitEmpty", "StringifyMapKeysWithFmt"}
	typ := reflect.TypeFor[options.BSONOptions]()
	for i := range typ.NumField() {
		name := typ.Field(i).Name
		assert.True(t, slices.Contains(mirrored, name) || slices.Contains(encodingOnly, name),
			"options.BSONOptions.%s is new: mirror it in docDecoder.decode if it affects decoding", name)
	}
}

// TestCallTimeout: WithTimeout, even 0, replaces the client's timeoutMS.
func TestCallTimeout(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		opts   []Option
		client time.Duration
		want   time.Duration
	}{
		{"neither", nil, 0, 0},
		{"client timeoutMS", nil, 2 * time.Second, 2 * time.Second},
		{"WithTimeout", []Option{WithTimeout(time.Second)}, 0, time.Second},
		{"WithTimeout over the client's", []Option{WithTimeout(time.Second)}, 2 * time.Second, time.Second},
		{"WithTimeout(0) unbounds", []Option{WithTimeout(0)}, 2 * time.Second, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := newConfig(tc.opts)
			require.NoError(t, err)
			cs := &ChangeStream{cfg: cfg, clientTimeout: tc.client}
			assert.Equal(t, tc.want, cs.callTimeout())
		})
	}
	assert.Zero(t, (&ChangeStream{}).callTimeout(), "a zero ChangeStream")
}
