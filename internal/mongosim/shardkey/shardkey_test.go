package shardkey

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestOf(t *testing.T) {
	t.Parallel()
	pattern := bson.D{{Key: "a", Value: 1}, {Key: "b.c", Value: 1}}
	for _, tc := range []struct {
		name string
		doc  bson.D
		want bson.D
		err  bool
	}{
		{"both", bson.D{{Key: "b", Value: bson.D{{Key: "c", Value: 2}}}, {Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 1}, {Key: "b.c", Value: 2}}, false},
		{"missing is null", bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 1}, {Key: "b.c", Value: nil}}, false},
		{"array refused", bson.D{{Key: "a", Value: bson.A{1}}}, nil, true},
		{"array on the path refused", bson.D{{Key: "a", Value: 1}, {Key: "b", Value: bson.A{bson.D{{Key: "c", Value: 1}}}}}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Of(tc.doc, pattern)
			if tc.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestInRange(t *testing.T) {
	t.Parallel()
	pattern := bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 1}}
	k := func(a, b any) bson.D { return bson.D{{Key: "a", Value: a}, {Key: "b", Value: b}} }
	lo, hi := k(1, 5), k(3, bson.MinKey{})
	for _, tc := range []struct {
		key  bson.D
		want bool
	}{
		{k(1, 5), true}, {k(1, 4), false}, {k(2, "x"), true}, {k(3, bson.MinKey{}), false}, {k(2, bson.MaxKey{}), true},
		{k(nil, 1), false}, // null sorts before numbers
	} {
		assert.Equal(t, tc.want, InRange(tc.key, lo, hi), "%v", tc.key)
	}
	assert.True(t, InRange(k(nil, nil), MinKey(pattern), MaxKey(pattern)))
	assert.NoError(t, Check(k(1, 2), pattern))
	assert.ErrorIs(t, Check(bson.D{{Key: "b", Value: 1}, {Key: "a", Value: 1}}, pattern), ErrNotAKey)
}
