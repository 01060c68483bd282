package query

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestCompileFilter(t *testing.T) {
	t.Parallel()
	doc := bson.D{
		{Key: "_id", Value: int32(1)},
		{Key: "a", Value: bson.A{int32(1), int32(5), bson.D{{Key: "b", Value: "x"}}}},
		{Key: "n", Value: 2.5},
		{Key: "s", Value: "hello"},
		{Key: "sub", Value: bson.D{{Key: "x", Value: int64(3)}, {Key: "y", Value: nil}}},
		{Key: "1", Value: "numeric name"},
	}
	cases := []struct {
		filter bson.D
		want   bool
	}{
		{bson.D{}, true},
		{bson.D{{Key: "_id", Value: 1.0}}, true},
		{bson.D{{Key: "_id", Value: int64(2)}}, false},
		{bson.D{{Key: "a", Value: int32(5)}}, true},
		{bson.D{{Key: "a.b", Value: "x"}}, true},
		{bson.D{{Key: "a.2.b", Value: "x"}}, true},
		{bson.D{{Key: "a.0", Value: int32(1)}}, true},
		{bson.D{{Key: "a", Value: bson.D{{Key: "$size", Value: 3}}}}, true},
		{bson.D{{Key: "a", Value: bson.D{{Key: "$all", Value: bson.A{1, 5}}}}}, true},
		{bson.D{{Key: "a", Value: bson.D{{Key: "$all", Value: bson.A{1, 6}}}}}, false},
		{bson.D{{Key: "a", Value: bson.D{{Key: "$elemMatch", Value: bson.D{{Key: "$gt", Value: 2}, {Key: "$lt", Value: 6}}}}}}, true},
		{bson.D{{Key: "a", Value: bson.D{{Key: "$elemMatch", Value: bson.D{{Key: "b", Value: "x"}}}}}}, true},
		{bson.D{{Key: "n", Value: bson.D{{Key: "$gt", Value: 2}, {Key: "$lte", Value: int64(3)}}}}, true},
		{bson.D{{Key: "n", Value: bson.D{{Key: "$gt", Value: "a"}}}}, false}, // other bracket
		{bson.D{{Key: "s", Value: bson.D{{Key: "$gt", Value: "a"}}}}, true},
		{bson.D{{Key: "s", Value: bson.D{{Key: "$in", Value: bson.A{"x", "hello"}}}}}, true},
		{bson.D{{Key: "s", Value: bson.D{{Key: "$nin", Value: bson.A{"hello"}}}}}, false},
		{bson.D{{Key: "s", Value: bson.Regex{Pattern: "^HEL", Options: "i"}}}, true},
		{bson.D{{Key: "s", Value: bson.D{{Key: "$regex", Value: "lo$"}}}}, true},
		{bson.D{{Key: "s", Value: bson.D{{Key: "$not", Value: bson.Regex{Pattern: "lo$"}}}}}, false},
		{bson.D{{Key: "missing", Value: nil}}, true},
		{bson.D{{Key: "sub.y", Value: nil}}, true},
		{bson.D{{Key: "sub.x", Value: bson.D{{Key: "$exists", Value: true}}}}, true},
		{bson.D{{Key: "missing", Value: bson.D{{Key: "$exists", Value: true}}}}, false},
		{bson.D{{Key: "sub", Value: bson.D{{Key: "x", Value: int64(3)}, {Key: "y", Value: nil}}}}, true},
		{bson.D{{Key: "sub", Value: bson.D{{Key: "y", Value: nil}, {Key: "x", Value: int64(3)}}}}, false}, // order matters
		{bson.D{{Key: "n", Value: bson.D{{Key: "$type", Value: "double"}}}}, true},
		{bson.D{{Key: "a", Value: bson.D{{Key: "$type", Value: "array"}}}}, true},
		{bson.D{{Key: "n", Value: bson.D{{Key: "$ne", Value: 2.5}}}}, false},
		{bson.D{{Key: "$or", Value: bson.A{bson.D{{Key: "n", Value: 1}}, bson.D{{Key: "s", Value: "hello"}}}}}, true},
		{bson.D{{Key: "$nor", Value: bson.A{bson.D{{Key: "n", Value: 2.5}}}}}, false},
		{bson.D{{Key: "$and", Value: bson.A{bson.D{{Key: "n", Value: 2.5}}, bson.D{{Key: "_id", Value: 1}}}}}, true},
		{bson.D{{Key: "1", Value: "numeric name"}}, true},
	}
	for _, c := range cases {
		m, err := CompileFilter(c.filter)
		require.NoError(t, err, "%v", c.filter)
		require.Equal(t, c.want, m(doc), "%v", c.filter)
	}
}

func TestCompileFilterErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		filter bson.D
		code   int32
		msg    string
	}{
		{bson.D{{Key: "a", Value: bson.D{{Key: "$foo", Value: 1}}}}, codeBadValue, "unknown operator: $foo"},
		{bson.D{{Key: "$foo", Value: 1}}, codeBadValue, "unknown top level operator: $foo. If you have a field name that starts with a '$' symbol, consider using $getField or $setField."},
		{bson.D{{Key: "$or", Value: bson.A{}}}, codeBadValue, "$or must be a nonempty array"},
		{bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: 1}}}}, codeBadValue, "$in needs an array"},
	}
	for _, c := range cases {
		_, err := CompileFilter(c.filter)
		var ce *CommandError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, c.code, ce.Code)
		require.Equal(t, c.msg, ce.Message)
	}
}

func TestCompareValues(t *testing.T) {
	t.Parallel()
	require.Equal(t, 0, CompareValues(int32(1), 1.0))
	require.Equal(t, 0, CompareValues(int64(1<<60), int64(1<<60)))
	require.Equal(t, -1, CompareValues(int64(1<<60), float64(1<<61)))
	require.Equal(t, 1, CompareValues(int64(1<<53+1), float64(1<<53)))
	require.Equal(t, -1, CompareValues(nil, int32(0)))
	require.Equal(t, -1, CompareValues(int32(5), "a"))
	require.Equal(t, -1, CompareValues(bson.MinKey{}, nil))
	require.Equal(t, 1, CompareValues(bson.MaxKey{}, bson.D{}))
	require.False(t, Identical(int32(1), 1.0))
}
