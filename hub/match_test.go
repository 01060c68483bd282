package hub

import (
	"math"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/matchcases"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestWithMatch(t *testing.T) {
	t.Parallel()
	when := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	ev, err := bson.Marshal(bson.D{
		{Key: "operationType", Value: "update"},
		{Key: "ns", Value: bson.D{{Key: "db", Value: "shop"}, {Key: "coll", Value: "orders"}}},
		{Key: "fullDocument", Value: bson.D{
			{Key: "_id", Value: int32(7)},
			{Key: "tenant", Value: "acme"},
			{Key: "total", Value: 12.5},
			{Key: "qty", Value: int64(3)},
			{Key: "big", Value: int64(1<<53 + 1)},
			{Key: "max", Value: int64(math.MaxInt64)},
			{Key: "tags", Value: bson.A{"gift", "rush"}},
			{Key: "lines", Value: bson.A{bson.D{{Key: "sku", Value: "a"}}, bson.D{{Key: "sku", Value: "b"}}}},
			{Key: "at", Value: bson.NewDateTimeFromTime(when)},
			{Key: "note", Value: nil},
		}},
	})
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		filter bson.D
		want   bool
	}{
		{"equality", bson.D{{Key: "operationType", Value: "update"}}, true},
		{"equality fails", bson.D{{Key: "operationType", Value: "insert"}}, false},
		{"dotted path", bson.D{{Key: "fullDocument.tenant", Value: "acme"}}, true},
		{"embedded document", bson.D{{Key: "ns", Value: bson.D{{Key: "db", Value: "shop"}, {Key: "coll", Value: "orders"}}}}, true},
		{"embedded document in another order", bson.D{{Key: "ns", Value: bson.D{{Key: "coll", Value: "orders"}, {Key: "db", Value: "shop"}}}}, false},
		{"numbers across types", bson.D{{Key: "fullDocument._id", Value: 7.0}}, true},
		{"int64 against int32", bson.D{{Key: "fullDocument.qty", Value: int32(3)}}, true},
		{"int64 beyond 2^53, exactly", bson.D{{Key: "fullDocument.big", Value: int64(1<<53 + 1)}}, true},
		{"int64 beyond 2^53, its neighbour", bson.D{{Key: "fullDocument.big", Value: int64(1 << 53)}}, false},
		{"int64 beyond 2^53, ordered", bson.D{{Key: "fullDocument.big", Value: bson.D{{Key: "$gt", Value: int64(1 << 53)}}}}, true},
		{"int64 beyond 2^53 against the double that rounds to it", bson.D{{Key: "fullDocument.big", Value: float64(1 << 53)}}, false},
		{"int64 above that double", bson.D{{Key: "fullDocument.big", Value: bson.D{{Key: "$gt", Value: float64(1 << 53)}}}}, true},
		{"int64 against a fraction", bson.D{{Key: "fullDocument.qty", Value: bson.D{{Key: "$lt", Value: 3.5}, {Key: "$gt", Value: 2.5}}}}, true},
		{"the largest int64 below 2^63 as a double", bson.D{{Key: "fullDocument.max", Value: bson.D{{Key: "$lt", Value: float64(1 << 63)}}}}, true},
		{"array contains", bson.D{{Key: "fullDocument.tags", Value: "rush"}}, true},
		{"array whole", bson.D{{Key: "fullDocument.tags", Value: bson.A{"gift", "rush"}}}, true},
		{"through an array of documents", bson.D{{Key: "fullDocument.lines.sku", Value: "b"}}, true},
		{"array index", bson.D{{Key: "fullDocument.lines.0.sku", Value: "b"}}, false},
		{"null matches null", bson.D{{Key: "fullDocument.note", Value: nil}}, true},
		{"null matches missing", bson.D{{Key: "fullDocument.missing", Value: nil}}, true},
		{"$eq", bson.D{{Key: "fullDocument.tenant", Value: bson.D{{Key: "$eq", Value: "acme"}}}}, true},
		{"$ne", bson.D{{Key: "fullDocument.tenant", Value: bson.D{{Key: "$ne", Value: "acme"}}}}, false},
		{"$ne missing", bson.D{{Key: "fullDocument.missing", Value: bson.D{{Key: "$ne", Value: 1}}}}, true},
		{"$gt and $lte", bson.D{{Key: "fullDocument.total", Value: bson.D{{Key: "$gt", Value: 10}, {Key: "$lte", Value: 12.5}}}}, true},
		{"$lt fails", bson.D{{Key: "fullDocument.total", Value: bson.D{{Key: "$lt", Value: 12.5}}}}, false},
		{"ordering across kinds never matches", bson.D{{Key: "fullDocument.tenant", Value: bson.D{{Key: "$gt", Value: 1}}}}, false},
		{"string ordering", bson.D{{Key: "fullDocument.tenant", Value: bson.D{{Key: "$gte", Value: "acme"}}}}, true},
		{"dates", bson.D{{Key: "fullDocument.at", Value: bson.D{{Key: "$gt", Value: when.Add(-time.Hour)}}}}, true},
		{"$in", bson.D{{Key: "operationType", Value: bson.D{{Key: "$in", Value: bson.A{"insert", "update"}}}}}, true},
		{"$nin", bson.D{{Key: "operationType", Value: bson.D{{Key: "$nin", Value: bson.A{"insert", "update"}}}}}, false},
		{"$exists", bson.D{{Key: "fullDocument.note", Value: bson.D{{Key: "$exists", Value: true}}}}, true},
		{"$exists false", bson.D{{Key: "fullDocument.missing", Value: bson.D{{Key: "$exists", Value: false}}}}, true},
		{"$not", bson.D{{Key: "fullDocument.total", Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$gt", Value: 100}}}}}}, true},
		{"$or", bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: "operationType", Value: "insert"}}, bson.D{{Key: "fullDocument.tenant", Value: "acme"}},
		}}}, true},
		{"$and", bson.D{{Key: "$and", Value: bson.A{
			bson.D{{Key: "operationType", Value: "update"}}, bson.D{{Key: "fullDocument.tenant", Value: "other"}},
		}}}, false},
		{"$nor", bson.D{{Key: "$nor", Value: bson.A{bson.D{{Key: "operationType", Value: "delete"}}}}}, true},
		{"all fields must match", bson.D{{Key: "operationType", Value: "update"}, {Key: "fullDocument.tenant", Value: "x"}}, false},
		{"empty filter", bson.D{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := compileMatch(tc.filter)
			require.NoError(t, err)
			assert.Equal(t, tc.want, m.match(ev))
		})
	}
}

func TestWithMatchRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		filter any
		want   string
	}{
		{"nil", nil, "nil filter"},
		{"not a document", 42, "not a document"},
		{"$regex", bson.D{{Key: "a", Value: bson.D{{Key: "$regex", Value: "x"}}}}, "unsupported operator $regex"},
		{"$expr", bson.D{{Key: "$expr", Value: true}}, "unsupported top-level operator $expr"},
		{"$elemMatch", bson.D{{Key: "a", Value: bson.D{{Key: "$elemMatch", Value: bson.D{}}}}}, "unsupported operator $elemMatch"},
		{"$in not an array", bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: 1}}}}, "$in of a needs an array"},
		{"$or not an array", bson.D{{Key: "$or", Value: 1}}, "$or needs an array"},
		{"$or empty", bson.D{{Key: "$or", Value: bson.A{}}}, "$or needs a nonempty array"},
		{"$not of a value", bson.D{{Key: "a", Value: bson.D{{Key: "$not", Value: 1}}}}, "$not of a needs an operator document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compileMatch(tc.filter)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "hub: WithMatch")
		})
	}
}

// BenchmarkMatch is the cost WithMatch adds to each event for each
// subscriber it is given to:
//
//	go test -run '^$' -bench Match -benchmem ./hub
func BenchmarkMatch(b *testing.B) {
	ev, err := bson.Marshal(bson.D{
		{Key: "_id", Value: bson.D{{Key: "_data", Value: "8266F0A1B2000000012B042C0100296E5A1004"}}},
		{Key: "operationType", Value: "insert"},
		{Key: "clusterTime", Value: bson.Timestamp{T: 1, I: 1}},
		{Key: "ns", Value: bson.D{{Key: "db", Value: "shop"}, {Key: "coll", Value: "orders"}}},
		{Key: "documentKey", Value: bson.D{{Key: "_id", Value: int32(7)}}},
		{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: int32(7)}, {Key: "tenant", Value: "acme"}, {Key: "total", Value: 250.5}}},
	})
	require.NoError(b, err)
	m, err := compileMatch(bson.D{
		{Key: "operationType", Value: bson.D{{Key: "$in", Value: bson.A{"insert", "update"}}}},
		{Key: "fullDocument.tenant", Value: "acme"},
		{Key: "fullDocument.total", Value: bson.D{{Key: "$gte", Value: 100}}},
	})
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if !m.match(ev) {
			b.Fatal("no match")
		}
	}
}

// TestWithMatchAgreesWithTheServer runs the shared table of matcher cases
// (internal/matchcases, taken from the server's own matcher tests, and
// run against the simulator and a real server too) through WithMatch.
func TestWithMatchAgreesWithTheServer(t *testing.T) {
	t.Parallel()
	for _, tc := range matchcases.Cases() {
		m, err := compileMatch(tc.Filter)
		require.NoError(t, err, tc.Name)
		doc, err := bson.Marshal(tc.Doc)
		require.NoError(t, err)
		assert.Equal(t, tc.Want, m.match(doc), "%s: %v against %v", tc.Name, tc.Filter, tc.Doc)
	}
}
