package keystring

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestValueRoundTrip: every value the Builder writes, Value reads back
// (numbers as int64, their type living in the type bits).
func TestValueRoundTrip(t *testing.T) {
	t.Parallel()
	oid, err := bson.ObjectIDFromHex("635019A078BE67426D7CF4D2")
	require.NoError(t, err)
	doc := bson.D{
		{Key: "s", Value: "a\x00b"}, {Key: "i", Value: int32(-7)}, {Key: "l", Value: int64(1) << 40}, {Key: "d", Value: 3.0},
		{Key: "o", Value: oid}, {Key: "t", Value: true}, {Key: "f", Value: false}, {Key: "n", Value: nil},
		{Key: "dt", Value: bson.DateTime(-5)}, {Key: "ts", Value: bson.Timestamp{T: 9, I: 2}},
		{Key: "b", Value: bson.Binary{Subtype: 4, Data: make([]byte, 16)}}, {Key: "r", Value: bson.Regex{Pattern: "^a", Options: "i"}},
		{Key: "sub", Value: bson.D{{Key: "x", Value: bson.A{int32(1), "y", bson.A{}}}}}, {Key: "min", Value: bson.MinKey{}}, {Key: "max", Value: bson.MaxKey{}},
	}
	raw, err := bson.Marshal(doc)
	require.NoError(t, err)
	var b Builder
	require.NoError(t, b.AppendDocument(raw))
	key, _, err := b.Key()
	require.NoError(t, err)
	r := NewReader(key)
	got, err := r.Value()
	require.NoError(t, err)
	require.NoError(t, r.Done())
	want := bson.D{
		{Key: "s", Value: "a\x00b"}, {Key: "i", Value: int64(-7)}, {Key: "l", Value: int64(1) << 40}, {Key: "d", Value: int64(3)},
		{Key: "o", Value: oid}, {Key: "t", Value: true}, {Key: "f", Value: false}, {Key: "n", Value: nil},
		{Key: "dt", Value: bson.DateTime(-5)}, {Key: "ts", Value: bson.Timestamp{T: 9, I: 2}},
		{Key: "b", Value: bson.Binary{Subtype: 4, Data: make([]byte, 16)}}, {Key: "r", Value: bson.Regex{Pattern: "^a", Options: "i"}},
		{Key: "sub", Value: bson.D{{Key: "x", Value: bson.A{int64(1), "y", bson.A{}}}}}, {Key: "min", Value: bson.MinKey{}}, {Key: "max", Value: bson.MaxKey{}},
	}
	assert.Equal(t, want, got)

	_, err = NewReader([]byte{70, 60}).Value()
	assert.ErrorIs(t, err, ErrFormat, "truncated")
}
