package query

import (
	"testing"

	"github.com/changestream-go/changestream/internal/mongosim/mongoerr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// stageSpec encodes a stage's specification as the command carries it.
func stageSpec(t *testing.T, v any) bsoncore.Value {
	t.Helper()
	typ, data, err := bson.MarshalValue(v)
	require.NoError(t, err)
	return bsoncore.Value{Type: bsoncore.Type(typ), Data: data}
}

// The stages after $changeStream evaluate expressions with the
// aggregation evaluator (evalIn): field paths, variables and the
// operators it implements, as a server's change-stream pipeline does.
func TestEventStageExpressions(t *testing.T) {
	t.Parallel()
	ev := bson.D{
		{Key: "operationType", Value: "insert"},
		{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: int32(1)}, {Key: "qty", Value: int32(3)}, {Key: "tags", Value: bson.A{bson.D{{Key: "k", Value: "a"}}, bson.A{bson.D{{Key: "k", Value: "b"}}}}}}},
	}
	cases := []struct {
		name, stage string
		spec        any
		want        bson.D
	}{
		{"field path and $literal", "$replaceWith",
			bson.D{{Key: "q", Value: "$fullDocument.qty"}, {Key: "l", Value: bson.D{{Key: "$literal", Value: "$x"}}}},
			bson.D{{Key: "q", Value: int32(3)}, {Key: "l", Value: "$x"}}},
		{"operators", "$replaceWith",
			bson.D{{Key: "more", Value: bson.D{{Key: "$add", Value: bson.A{"$fullDocument.qty", int32(2)}}}},
				{Key: "big", Value: bson.D{{Key: "$cond", Value: bson.A{bson.D{{Key: "$gt", Value: bson.A{"$fullDocument.qty", int32(2)}}}, "yes", "no"}}}}},
			bson.D{{Key: "more", Value: int32(5)}, {Key: "big", Value: "yes"}}},
		{"a missing path leaves the field out; $$REMOVE removes it", "$replaceWith",
			bson.D{{Key: "gone", Value: "$fullDocument.nothing"}, {Key: "removed", Value: "$$REMOVE"}, {Key: "op", Value: "$$ROOT.operationType"}},
			bson.D{{Key: "op", Value: "insert"}}},
		{"paths through nested arrays", "$replaceWith",
			bson.D{{Key: "k", Value: "$fullDocument.tags.k"}},
			bson.D{{Key: "k", Value: bson.A{"a", bson.A{"b"}}}}},
	}
	for _, c := range cases {
		stage, err := CompileEventStage(c.stage, stageSpec(t, c.spec))
		require.NoError(t, err, c.name)
		out, keep, err := stage(ev)
		require.NoError(t, err, c.name)
		assert.True(t, keep, c.name)
		assert.Equal(t, c.want, out, c.name)
	}

	set, err := CompileEventStage("$set", stageSpec(t, bson.D{{Key: "fullDocument.double", Value: bson.D{{Key: "$add", Value: bson.A{"$fullDocument.qty", "$fullDocument.qty"}}}}}))
	require.NoError(t, err)
	out, _, err := set(ev)
	require.NoError(t, err)
	v, _ := Lookup(out, "fullDocument")
	double, _ := Lookup(v.(bson.D), "double")
	assert.Equal(t, int32(6), double)

	// An operator failing on an event fails the stream, as on a server.
	bad, err := CompileEventStage("$set", stageSpec(t, bson.D{{Key: "x", Value: bson.D{{Key: "$add", Value: bson.A{"$operationType", int32(1)}}}}}))
	require.NoError(t, err)
	_, _, err = bad(ev)
	var ce *CommandError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, int32(16554), ce.Code)
}

// What the stages cannot evaluate is refused when the stream opens:
// $$NOW (no command time), an operator the simulator does not implement,
// and an undefined variable; a projection takes no operator, since its
// evaluation cannot report an error.
func TestEventStageRefusals(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, stage string
		spec        any
		code        int32
	}{
		{"$$NOW", "$set", bson.D{{Key: "t", Value: "$$NOW"}}, mongoerr.CodeNotImplemented},
		{"an operator not implemented", "$set", bson.D{{Key: "t", Value: bson.D{{Key: "$concat", Value: bson.A{"a", "b"}}}}}, mongoerr.CodeNotImplemented},
		{"an unknown operator", "$replaceWith", bson.D{{Key: "t", Value: bson.D{{Key: "$nope", Value: 1}}}}, 168},
		{"an undefined variable", "$set", bson.D{{Key: "t", Value: "$$nope"}}, 17276},
		{"an operator in a projection", "$project", bson.D{{Key: "t", Value: bson.D{{Key: "$add", Value: bson.A{1, 2}}}}}, mongoerr.CodeNotImplemented},
	}
	for _, c := range cases {
		_, err := CompileEventStage(c.stage, stageSpec(t, c.spec))
		var ce *CommandError
		require.ErrorAs(t, err, &ce, c.name)
		assert.Equal(t, c.code, ce.Code, "%s: %v", c.name, err)
	}
}
