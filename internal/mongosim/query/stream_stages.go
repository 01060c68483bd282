package query

import (
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// The stages a change-stream pipeline may run after $changeStream, applied
// to each event. Their expressions are checked and evaluated as every
// other aggregation expression is (expr.go), without $$NOW.

// EventStage is one compiled stage after $changeStream. It returns the
// transformed event, or keep=false when the event is filtered out.
type EventStage func(ev bson.D) (out bson.D, keep bool, err error)

// CompileEventStage compiles an allowed stage. It returns nil for a stage
// that changes nothing here.
func CompileEventStage(name string, spec bsoncore.Value) (EventStage, error) {
	switch name {
	case "$match":
		d, ok := RawToD(spec)
		if !ok {
			return nil, cmdErr(15959, "the match filter must be an expression in an object")
		}
		m, err := CompileFilter(d)
		if err != nil {
			return nil, err
		}
		return func(ev bson.D) (bson.D, bool, error) { return ev, m(ev), nil }, nil
	case "$project":
		d, ok := RawToD(spec)
		if !ok {
			return nil, cmdErr(15969, "$project specification must be an object")
		}
		if len(d) == 0 {
			return nil, cmdErr(51272, "Invalid $project :: caused by :: projection specification must have at least one field")
		}
		p, err := CompileProjection(d)
		if err != nil {
			return nil, err
		}
		return func(ev bson.D) (bson.D, bool, error) { return p(ev), true, nil }, nil
	case "$addFields", "$set":
		d, ok := RawToD(spec)
		if !ok {
			return nil, cmdErr(40272, "%s specification stage must be an object, got %s", name, TypeAlias(spec.Type))
		}
		if err := checkExpr(d, stageExpr); err != nil {
			return nil, err
		}
		return docStage(name, d), nil
	case "$unset":
		var paths []string
		if s, ok := spec.StringValueOK(); ok {
			paths = []string{s}
		} else if a, ok := spec.ArrayOK(); ok {
			vals, _ := a.Values()
			for _, v := range vals {
				s, ok := v.StringValueOK()
				if !ok {
					return nil, cmdErr(31120, "$unset specification must be a string or an array containing only string values")
				}
				paths = append(paths, s)
			}
		} else {
			return nil, cmdErr(31002, "$unset specification must be a string or an array")
		}
		if len(paths) == 0 {
			return nil, cmdErr(31119, "$unset specification must be a string or an array with at least one field")
		}
		specAny, err := rawToAny(spec)
		if err != nil {
			return nil, err
		}
		return docStage(name, specAny), nil
	case "$replaceRoot", "$replaceWith":
		var expr any
		if name == "$replaceRoot" {
			d, ok := RawToD(spec)
			if !ok {
				return nil, cmdErr(40228, "expected an object as specification for $replaceRoot stage, got %s", TypeAlias(spec.Type))
			}
			nr, ok := Lookup(d, "newRoot")
			if !ok || len(d) != 1 {
				return nil, cmdErr(40231, "no newRoot specified for the $replaceRoot stage")
			}
			expr = nr
		} else {
			var err error
			if expr, err = rawToAny(spec); err != nil {
				return nil, err
			}
		}
		if err := checkExpr(expr, stageExpr); err != nil {
			return nil, err
		}
		return docStage("$replaceWith", expr), nil
	case "$redact":
		return nil, cmdErr(codeIllegalOperation, "mongosim does not implement $redact in a $changeStream pipeline")
	}
	return nil, cmdErr(40324, "Unrecognized pipeline stage name: '%s'", name)
}

// RawToD decodes a raw document value into a bson.D.
func RawToD(v bsoncore.Value) (bson.D, bool) {
	doc, ok := v.DocumentOK()
	if !ok {
		return nil, false
	}
	var d bson.D
	if err := bson.Unmarshal(doc, &d); err != nil {
		return nil, false
	}
	return d, true
}

func rawToAny(v bsoncore.Value) (any, error) {
	var out any
	if err := bson.UnmarshalValue(bson.Type(v.Type), v.Data, &out); err != nil {
		return nil, cmdErr(codeFailedToParse, "invalid stage specification: %v", err)
	}
	return out, nil
}

// stageExpr is what $addFields, $set, $replaceRoot and $replaceWith may
// use after $changeStream: the operators evalIn evaluates, but not $$NOW,
// for which a stream has no command time.
var stageExpr = exprRules{operators: true}

// docStage runs a document stage on each event as an aggregate or an
// update pipeline runs it (applyDocStage), on a copy of the event.
func docStage(name string, spec any) EventStage {
	return func(ev bson.D) (bson.D, bool, error) {
		out, err := applyDocStage(CloneDoc(ev), name, spec, nil)
		if err != nil {
			return nil, false, err
		}
		return out, true, nil
	}
}
