package keystring

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

func value(t *testing.T, v any) bsoncore.Value {
	t.Helper()
	if v == nil {
		return bsoncore.Value{Type: bsoncore.TypeNull}
	}
	typ, data, err := bson.MarshalValue(v)
	require.NoError(t, err)
	return bsoncore.Value{Type: bsoncore.Type(typ), Data: data}
}

func encode(t *testing.T, vals ...any) (string, []byte) {
	t.Helper()
	var b Builder
	for _, v := range vals {
		require.NoError(t, b.AppendValue(value(t, v)))
	}
	key, bits, err := b.Key()
	require.NoError(t, err)
	return strings.ToUpper(hex.EncodeToString(key)), bits
}

// TestEncoding pins single values to the bytes key_string.h writes, each
// of which MongoDB's own decoder (mongodb-resumetoken-decoder) reads back.
func TestEncoding(t *testing.T) {
	t.Parallel()
	oid, _ := bson.ObjectIDFromHex("635019A078BE67426D7CF4D2")
	cases := []struct {
		name string
		v    any
		hex  string
	}{
		{"zero", int32(0), "2904"},
		{"one", int32(1), "2B0204"},
		{"two, the version of a token", int32(2), "2B0404"},
		{"128, the event token type", int32(128), "2C010004"},
		{"minus one", int32(-1), "27FD04"},
		{"int64", int64(1) << 40, "3002000000000004"},
		{"integral double", 3.0, "2B0604"},
		{"string", "insert", "3C696E736572740004"},
		{"string with a NUL", "a\x00b", "3C6100FF620004"},
		{"ObjectId", oid, "64635019A078BE67426D7CF4D204"},
		{"true", true, "6F04"},
		{"false", false, "6E04"},
		{"null", nil, "1404"},
		{"document", bson.D{{Key: "_id", Value: oid}}, "46645F69640064635019A078BE67426D7CF4D20004"},
		{"array", bson.A{int32(6), "x"}, "502B0C3C78000004"},
		{"date", bson.DateTime(0), "78800000000000000004"},
		{"timestamp", bson.Timestamp{T: 1, I: 2}, "82000000010000000204"},
		{"binData", bson.Binary{Subtype: 4, Data: []byte{1, 2}}, "5A0204010204"},
		{"MinKey", bson.MinKey{}, "0A04"},
		{"MaxKey", bson.MaxKey{}, "F004"},
	}
	for _, tc := range cases {
		got, _ := encode(t, tc.v)
		assert.Equal(t, tc.hex, got, tc.name)
		raw, _ := hex.DecodeString(got)
		r := NewReader(raw)
		skipped, err := r.Skip()
		require.NoError(t, err, tc.name)
		assert.Equal(t, raw[:len(raw)-1], skipped, tc.name)
		assert.NoError(t, r.Done(), tc.name)
	}
}

// TestOrder checks that byte order is the server's BSON order for the
// values the simulator puts in tokens.
func TestOrder(t *testing.T) {
	t.Parallel()
	ordered := []any{
		bson.MinKey{}, nil, int64(-1) << 40, int32(-300), int32(-1), int32(0), int32(1), 2.0, int64(3), int32(255), int32(256),
		int64(1) << 50, "", "a", "a\x00", "ab", "b",
		// Fields compare by the kind of their value first, then by name.
		bson.D{}, bson.D{{Key: "a", Value: int32(1)}}, bson.D{{Key: "b", Value: int32(0)}}, bson.D{{Key: "a", Value: "x"}},
		bson.A{}, bson.A{int32(1)}, bson.Binary{Subtype: 0, Data: []byte{9}}, bson.Binary{Subtype: 4, Data: []byte{1, 2}},
		bson.ObjectID{1}, false, true, bson.DateTime(-1), bson.DateTime(0), bson.Timestamp{T: 1}, bson.MaxKey{},
	}
	keys := make([]string, len(ordered))
	for i, v := range ordered {
		keys[i], _ = encode(t, v)
	}
	for i := 1; i < len(keys); i++ {
		a, _ := hex.DecodeString(keys[i-1])
		b, _ := hex.DecodeString(keys[i])
		assert.Negative(t, bytes.Compare(a, b), "%v < %v", ordered[i-1], ordered[i])
	}
	assert.True(t, sort.StringsAreSorted(keys), "upper-case hex keeps byte order")
}

func TestTypeBits(t *testing.T) {
	t.Parallel()
	_, bits := encode(t, int32(1), "s", bson.D{{Key: "x", Value: int32(2)}})
	assert.Nil(t, bits, "all zero: none")
	_, bits = encode(t, 1.0)
	assert.Equal(t, []byte{0x02}, bits, "a double alone: bits 0,1 → one short byte")
	_, bits = encode(t, int64(1))
	assert.Equal(t, []byte{0x01}, bits)
	_, bits = encode(t, int32(1), int32(1), int32(1), "s", int64(1))
	assert.Equal(t, []byte{0x82, 0x80, 0x00}, bits, "bit 7 set: long form")
}

func TestUnsupported(t *testing.T) {
	t.Parallel()
	for _, v := range []any{0.5, math.Inf(1), 0.0, float64(1 << 60), int64(math.MinInt64), bson.Decimal128{},
		bson.CodeWithScope{Code: "x", Scope: bson.D{}}, bson.Binary{Subtype: 2, Data: []byte{1}}} {
		var b Builder
		err := b.AppendValue(value(t, v))
		assert.True(t, errors.Is(err, ErrUnsupported), "%T %v: %v", v, v, err)
	}
}

func TestReaderRejectsGarbage(t *testing.T) {
	t.Parallel()
	for _, h := range []string{"", "82", "820000", "2B", "3C6162", "46", "50", "5AFF", "C804", "2B0304"} {
		raw, _ := hex.DecodeString(h)
		r := NewReader(raw)
		if _, err := r.Skip(); err == nil {
			assert.Error(t, r.Done(), h)
		}
	}
	// An odd shifted integer carries a fraction: not an integer.
	raw, _ := hex.DecodeString("2B0304")
	_, err := NewReader(raw).Integer()
	assert.ErrorIs(t, err, ErrFormat)
}
