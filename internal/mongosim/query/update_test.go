package query

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func applyTest(t *testing.T, old bson.D, u any) (bson.D, error) {
	t.Helper()
	spec, err := ParseUpdate(u)
	if err != nil {
		return nil, err
	}
	return spec.Apply(old, &UpdateContext{Now: time.Now()})
}

func TestUpdateOperators(t *testing.T) {
	t.Parallel()
	base := bson.D{{Key: "_id", Value: int32(1)}, {Key: "a", Value: int32(1)}, {Key: "arr", Value: bson.A{int32(1), int32(2), int32(3)}},
		{Key: "sub", Value: bson.D{{Key: "x", Value: "y"}}}}
	cases := []struct {
		name string
		u    bson.D
		want bson.D
	}{
		{"set", bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: int32(2)}, {Key: "sub.z", Value: true}}}},
			bson.D{{Key: "_id", Value: int32(1)}, {Key: "a", Value: int32(2)}, {Key: "arr", Value: bson.A{int32(1), int32(2), int32(3)}},
				{Key: "sub", Value: bson.D{{Key: "x", Value: "y"}, {Key: "z", Value: true}}}}},
		{"unset", bson.D{{Key: "$unset", Value: bson.D{{Key: "sub", Value: ""}, {Key: "nope", Value: ""}}}},
			bson.D{{Key: "_id", Value: int32(1)}, {Key: "a", Value: int32(1)}, {Key: "arr", Value: bson.A{int32(1), int32(2), int32(3)}}}},
		{"inc", bson.D{{Key: "$inc", Value: bson.D{{Key: "a", Value: int64(2)}, {Key: "b", Value: 1.5}}}},
			bson.D{{Key: "_id", Value: int32(1)}, {Key: "a", Value: int64(3)}, {Key: "arr", Value: bson.A{int32(1), int32(2), int32(3)}},
				{Key: "sub", Value: bson.D{{Key: "x", Value: "y"}}}, {Key: "b", Value: 1.5}}},
		{"push each", bson.D{{Key: "$push", Value: bson.D{{Key: "arr", Value: bson.D{{Key: "$each", Value: bson.A{int32(4), int32(5)}}}}}}},
			bson.D{{Key: "_id", Value: int32(1)}, {Key: "a", Value: int32(1)}, {Key: "arr", Value: bson.A{int32(1), int32(2), int32(3), int32(4), int32(5)}},
				{Key: "sub", Value: bson.D{{Key: "x", Value: "y"}}}}},
		{"pull pop", bson.D{{Key: "$pull", Value: bson.D{{Key: "arr", Value: int32(2)}}}, {Key: "$max", Value: bson.D{{Key: "a", Value: int32(9)}}}},
			bson.D{{Key: "_id", Value: int32(1)}, {Key: "a", Value: int32(9)}, {Key: "arr", Value: bson.A{int32(1), int32(3)}},
				{Key: "sub", Value: bson.D{{Key: "x", Value: "y"}}}}},
		{"rename", bson.D{{Key: "$rename", Value: bson.D{{Key: "a", Value: "b"}}}},
			bson.D{{Key: "_id", Value: int32(1)}, {Key: "arr", Value: bson.A{int32(1), int32(2), int32(3)}},
				{Key: "sub", Value: bson.D{{Key: "x", Value: "y"}}}, {Key: "b", Value: int32(1)}}},
	}
	for _, c := range cases {
		got, err := applyTest(t, base, c.u)
		require.NoError(t, err, c.name)
		require.Equal(t, c.want, got, c.name)
	}
	// The stored document is never modified.
	require.Equal(t, int32(1), base[1].Value)
}

func TestUpdateErrors(t *testing.T) {
	t.Parallel()
	base := bson.D{{Key: "_id", Value: int32(1)}, {Key: "a", Value: "s"}}
	cases := []struct {
		u    any
		code int32
		msg  string
	}{
		{bson.D{{Key: "$set", Value: bson.D{{Key: "_id", Value: 2}}}}, codeImmutableField, "Performing an update on the path '_id' would modify the immutable field '_id'"},
		{bson.D{{Key: "$inc", Value: bson.D{{Key: "a", Value: int32(1)}}}}, codeTypeMismatch, "Cannot apply $inc to a value of non-numeric type. {_id: 1} has the field 'a' of non-numeric type string"},
		{bson.D{{Key: "$foo", Value: bson.D{{Key: "a", Value: 1}}}}, codeFailedToParse, "Unknown modifier: $foo. Expected a valid update modifier or pipeline-style update specified as an array"},
		{bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "$unset", Value: bson.D{{Key: "a", Value: 1}}}}, codeConflictingUpdateOperators, "Updating the path 'a' would create a conflict at 'a'"},
		{bson.D{{Key: "$set", Value: bson.D{{Key: "a.b", Value: 1}}}}, 28, "Cannot create field 'b' in element {a: \"s\"}"},
		{bson.D{{Key: "$push", Value: bson.D{{Key: "a", Value: 1}}}}, codeBadValue, "The field 'a' must be an array but is of type string in document {_id: 1}"},
		{bson.D{{Key: "x", Value: 1}, {Key: "$set", Value: 1}}, codeDollarPrefixedFieldName, "The dollar ($) prefixed field '$set' in '$set' is not allowed in the context of an update's replacement document. Consider using an aggregation pipeline with $replaceWith."},
	}
	for _, c := range cases {
		_, err := applyTest(t, base, c.u)
		var ce *CommandError
		require.ErrorAs(t, err, &ce, "%v", c.u)
		require.Equal(t, c.code, ce.Code, "%v", c.u)
		require.Equal(t, c.msg, ce.Message)
	}
}

func TestDiffUpdate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		old       bson.D
		u         any
		updated   bson.D
		removed   []string
		truncated []TruncatedArray
		disamb    bson.D
	}{
		{"set top", bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 2}}}},
			bson.D{{Key: "x", Value: 2}}, []string{}, []TruncatedArray{}, nil},
		{"nested and removed", bson.D{{Key: "_id", Value: 1}, {Key: "s", Value: bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 1}}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "s.a", Value: 5}}}, {Key: "$unset", Value: bson.D{{Key: "s.b", Value: ""}}}},
			bson.D{{Key: "s.a", Value: 5}}, []string{"s.b"}, []TruncatedArray{}, nil},
		{"push", bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: bson.A{1, 2}}}, bson.D{{Key: "$push", Value: bson.D{{Key: "a", Value: 3}}}},
			bson.D{{Key: "a.2", Value: 3}}, []string{}, []TruncatedArray{}, nil},
		{"truncate", bson.D{{Key: "_id", Value: 1}, {Key: "array", Value: bson.A{"foo", bson.D{{Key: "a", Value: "bar"}}, 1, 2, 3}}},
			bson.A{bson.D{{Key: "$set", Value: bson.D{{Key: "array", Value: bson.A{"foo", bson.D{{Key: "a", Value: "bar"}}}}}}}},
			bson.D{}, []string{}, []TruncatedArray{{Field: "array", NewSize: 2}}, nil},
		{"ambiguous name", bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: bson.D{{Key: "1", Value: 1}}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "a.1", Value: 2}}}},
			bson.D{{Key: "a.1", Value: 2}}, []string{}, []TruncatedArray{}, bson.D{{Key: "a.1", Value: bson.A{"a", "1"}}}},
		{"ambiguous in array", bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: bson.A{bson.D{{Key: "1", Value: 1}}}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "a.0.1", Value: 2}}}},
			bson.D{{Key: "a.0.1", Value: 2}}, []string{}, []TruncatedArray{}, bson.D{{Key: "a.0.1", Value: bson.A{"a", int32(0), "1"}}}},
	}
	for _, c := range cases {
		nd, err := applyTest(t, c.old, c.u)
		require.NoError(t, err, c.name)
		ud := DiffUpdate(c.old, nd)
		require.NotNil(t, ud, c.name)
		require.Equal(t, c.updated, ud.UpdatedFields, c.name)
		require.Equal(t, c.removed, ud.RemovedFields, c.name)
		require.Equal(t, c.truncated, ud.TruncatedArrays, c.name)
		require.Equal(t, c.disamb, ud.DisambiguatedPaths, c.name)
	}
	same := bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: 1}}
	nd, err := applyTest(t, same, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}})
	require.NoError(t, err)
	require.Nil(t, DiffUpdate(same, nd))
}
