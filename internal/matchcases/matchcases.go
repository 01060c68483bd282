// Package matchcases holds one table of query-matcher cases, run against
// both matchers of this repository (the hub's WithMatch and the
// simulator's) and, where MONGODB_URI is set, against a real server, so
// that the two answer as the server's $match does and never drift apart.
//
// The null cases follow the server's own matcher tests, in mongodb/mongo
// src/mongo/db/matcher/expression_leaf_test.cpp: EqOp MatchesNull and
// MatchesNestedNull, GteOp MatchesNull, LteOp MatchesNull, and the
// behaviour they document (a path through an array reaches the array's
// documents only; a document without the field, or a scalar where the
// path goes on, is a missing value, which null matches).
package matchcases

import "go.mongodb.org/mongo-driver/v2/bson"

// Case is one filter applied to one document.
type Case struct {
	Name   string
	Filter bson.D
	Doc    bson.D
	Want   bool
}

func op(name string, v any) bson.D { return bson.D{{Key: name, Value: v}} }

// Cases returns the table. Each document has an _id, so that a test can
// insert them into a collection as they are.
func Cases() []Case {
	eqNull := bson.D{{Key: "a", Value: nil}}
	nestedNull := bson.D{{Key: "a.b", Value: nil}}
	var out []Case
	add := func(name string, filter bson.D, want bool, doc bson.D) {
		out = append(out, Case{Name: name, Filter: filter, Doc: append(bson.D{{Key: "_id", Value: int32(len(out))}}, doc...), Want: want})
	}
	// EqOp MatchesNull: {a: null}.
	add("a null: empty document", eqNull, true, bson.D{})
	add("a null: a is null", eqNull, true, bson.D{{Key: "a", Value: nil}})
	add("a null: a is 4", eqNull, false, bson.D{{Key: "a", Value: int32(4)}})
	add("a null: only b", eqNull, true, bson.D{{Key: "b", Value: int32(4)}})
	add("a null: an array holding null", eqNull, true, bson.D{{Key: "a", Value: bson.A{int32(1), nil}}})
	add("a null: an empty array", eqNull, false, bson.D{{Key: "a", Value: bson.A{}}})
	add("a null: an array of numbers", eqNull, false, bson.D{{Key: "a", Value: bson.A{int32(1), int32(2)}}})

	// EqOp MatchesNestedNull: {"a.b": null}.
	add("a.b null: empty document", nestedNull, true, bson.D{})
	add("a.b null: a is {}", nestedNull, true, bson.D{{Key: "a", Value: bson.D{}}})
	add("a.b null: a is [{}]", nestedNull, true, bson.D{{Key: "a", Value: bson.A{bson.D{}}}})
	add("a.b null: b is null", nestedNull, true, bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: nil}}}})
	add("a.b null: a is []", nestedNull, false, bson.D{{Key: "a", Value: bson.A{}}})
	add("a.b null: a is [null]", nestedNull, false, bson.D{{Key: "a", Value: bson.A{nil}}})
	add("a.b null: a is [1, 2]", nestedNull, false, bson.D{{Key: "a", Value: bson.A{int32(1), int32(2)}}})
	add("a.b null: b is 4", nestedNull, false, bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: int32(4)}}}})
	add("a.b null: b is {}", nestedNull, false, bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: bson.D{}}}}})
	add("a.b null: only b", nestedNull, true, bson.D{{Key: "b", Value: int32(4)}})
	add("a.b null: a is a scalar", nestedNull, true, bson.D{{Key: "a", Value: int32(5)}})
	add("a.b null: one document of the array lacks b", nestedNull, true, bson.D{{Key: "a", Value: bson.A{bson.D{{Key: "b", Value: int32(4)}}, bson.D{}}}})
	add("a.b null: the array's other element is a number", nestedNull, false, bson.D{{Key: "a", Value: bson.A{bson.D{{Key: "b", Value: int32(4)}}, int32(5)}}})
	add("a.b null: b holds null in an array", nestedNull, true, bson.D{{Key: "a", Value: bson.A{bson.D{{Key: "b", Value: bson.A{int32(1), nil}}}}}})

	// GteOp and LteOp MatchesNull, and their strict neighbours.
	for _, o := range []string{"$gte", "$lte"} {
		f := bson.D{{Key: "a", Value: op(o, nil)}}
		add("a "+o+" null: empty document", f, true, bson.D{})
		add("a "+o+" null: a is null", f, true, bson.D{{Key: "a", Value: nil}})
		add("a "+o+" null: a is 4", f, false, bson.D{{Key: "a", Value: int32(4)}})
		add("a "+o+" null: only b", f, true, bson.D{{Key: "b", Value: int32(4)}})
		nf := bson.D{{Key: "a.b", Value: op(o, nil)}}
		add("a.b "+o+" null: a is [1, 2]", nf, false, bson.D{{Key: "a", Value: bson.A{int32(1), int32(2)}}})
		add("a.b "+o+" null: a is [{}]", nf, true, bson.D{{Key: "a", Value: bson.A{bson.D{}}}})
	}
	for _, o := range []string{"$gt", "$lt"} {
		f := bson.D{{Key: "a", Value: op(o, nil)}}
		add("a "+o+" null: empty document", f, false, bson.D{})
		add("a "+o+" null: a is null", f, false, bson.D{{Key: "a", Value: nil}})
		add("a "+o+" null: a is 4", f, false, bson.D{{Key: "a", Value: int32(4)}})
	}

	// The operators built on equality, and $exists, through the same paths.
	ne := bson.D{{Key: "a.b", Value: op("$ne", nil)}}
	add("a.b $ne null: a is [1, 2]", ne, true, bson.D{{Key: "a", Value: bson.A{int32(1), int32(2)}}})
	add("a.b $ne null: one document of the array lacks b", ne, false, bson.D{{Key: "a", Value: bson.A{bson.D{{Key: "b", Value: int32(4)}}, bson.D{}}}})
	add("a $ne null: a is 4", bson.D{{Key: "a", Value: op("$ne", nil)}}, true, bson.D{{Key: "a", Value: int32(4)}})
	add("a $ne null: empty document", bson.D{{Key: "a", Value: op("$ne", nil)}}, false, bson.D{})
	in := bson.D{{Key: "a.b", Value: op("$in", bson.A{nil})}}
	add("a.b $in [null]: empty document", in, true, bson.D{})
	add("a.b $in [null]: a is [1, 2]", in, false, bson.D{{Key: "a", Value: bson.A{int32(1), int32(2)}}})
	add("a.b $nin [null]: a is [1, 2]", bson.D{{Key: "a.b", Value: op("$nin", bson.A{nil})}}, true, bson.D{{Key: "a", Value: bson.A{int32(1), int32(2)}}})
	notExists := bson.D{{Key: "a.b", Value: op("$exists", false)}}
	add("a.b $exists false: a is [1, 2]", notExists, true, bson.D{{Key: "a", Value: bson.A{int32(1), int32(2)}}})
	add("a.b $exists false: a is [{}]", notExists, true, bson.D{{Key: "a", Value: bson.A{bson.D{}}}})
	add("a.b $exists false: one document of the array has b", notExists, false, bson.D{{Key: "a", Value: bson.A{bson.D{{Key: "b", Value: int32(1)}}, bson.D{}}}})
	add("a.b $exists true: a is a scalar", bson.D{{Key: "a.b", Value: op("$exists", true)}}, false, bson.D{{Key: "a", Value: int32(5)}})
	return out
}
