package mongosim

import (
	"slices"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// findBounds are a find's hint, min and max, as the server takes them
// (src/mongo/db/query/query_request_helper.cpp and the planner's min/max
// handling): min and max need a hint of the index they bound, and keep the
// index keys k with min <= k < max, in index order. The simulator has one
// index it can scan, _id's: a hint of any other index is refused.
type findBounds struct {
	hinted   bool
	dir      int // 1 or -1: the _id index's direction as hinted
	min, max *bson.D
}

// parseFindBounds reads hint, min and max.
func parseFindBounds(cc *cmdCtx) (findBounds, error) {
	var b findBounds
	if v, ok := cc.field("hint"); ok {
		switch v.Type {
		case bsoncore.TypeString:
			if v.StringValue() != "_id_" {
				return b, notImplemented("a find hinting an index other than _id's (%q)", v.StringValue())
			}
			b.hinted, b.dir = true, 1
		case bsoncore.TypeEmbeddedDocument:
			d, err := decodeDoc(v.Document())
			if err != nil {
				return b, err
			}
			if len(d) != 1 || d[0].Key != "_id" {
				return b, notImplemented("a find hinting an index other than _id's (%s)", query.FormatDoc(d))
			}
			n, ok := d[0].Value.(int32)
			if f, isF := d[0].Value.(float64); isF {
				n, ok = int32(f), f == 1 || f == -1
			} else if l, isL := d[0].Value.(int64); isL {
				n, ok = int32(l), true
			}
			if !ok || (n != 1 && n != -1) {
				return b, notImplemented("a find hinting an index other than _id's (%s)", query.FormatDoc(d))
			}
			b.hinted, b.dir = true, int(n)
		default:
			return b, cmdErr(codeFailedToParse, "hint must be either a string or nested object")
		}
	}
	for _, name := range []string{"min", "max"} {
		d, ok, err := cc.docFieldD(name)
		if err != nil {
			return b, err
		}
		if !ok || len(d) == 0 {
			continue
		}
		if !b.hinted {
			return b, cmdErr(51173, "When using min()/max() a hint of which index to use must be provided")
		}
		if len(d) != 1 || d[0].Key != "_id" {
			return b, cmdErr(51174, "The index implied by min() / max() does not match the hint()")
		}
		if name == "min" {
			b.min = &d
		} else {
			b.max = &d
		}
	}
	return b, nil
}

// apply keeps the documents within the bounds, in the hinted index's
// order, when there was a hint; docs must not be shared.
func (b findBounds) apply(docs []bson.D) []bson.D {
	if !b.hinted {
		return docs
	}
	key := func(d bson.D) any { v, _ := query.Lookup(d, "_id"); return v }
	out := docs[:0]
	for _, d := range docs {
		k := key(d)
		// Bounds are in the index's own order: for a descending index,
		// min is the larger _id.
		if b.min != nil && b.dir*query.CompareValues(k, (*b.min)[0].Value) < 0 {
			continue
		}
		if b.max != nil && b.dir*query.CompareValues(k, (*b.max)[0].Value) >= 0 {
			continue
		}
		out = append(out, d)
	}
	slices.SortStableFunc(out, func(x, y bson.D) int { return b.dir * query.CompareValues(key(x), key(y)) })
	return out
}
