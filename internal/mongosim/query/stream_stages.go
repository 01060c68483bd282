package query

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// The stages a change-stream pipeline may run after $changeStream, applied
// to each event, and the small expression language they evaluate.

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
		if err := CheckExpr(d); err != nil {
			return nil, err
		}
		return func(ev bson.D) (bson.D, bool, error) {
			out := cloneD(ev)
			for _, f := range d {
				out = addField(out, ev, strings.Split(f.Key, "."), f.Value)
			}
			return out, true, nil
		}, nil
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
		return func(ev bson.D) (bson.D, bool, error) {
			out := cloneD(ev)
			for _, p := range paths {
				out = removePath(out, strings.Split(p, "."))
			}
			return out, true, nil
		}, nil
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
		if err := CheckExpr(expr); err != nil {
			return nil, err
		}
		return func(ev bson.D) (bson.D, bool, error) {
			v, ok := evalExpr(expr, ev)
			d, isDoc := v.(bson.D)
			if !ok || !isDoc {
				return nil, false, cmdErr(40228, "'replacement document' must evaluate to an object, but resulting value was: %v. Type of resulting value: '%s'", v, goTypeAlias(v, ok))
			}
			return d, true, nil
		}, nil
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

// The expression language is the small part of aggregation expressions a
// change-stream pipeline usually needs: literals, field paths ("$a.b"),
// $$ROOT/$$CURRENT/$$REMOVE, $literal, and documents and arrays of these.

// CheckExpr refuses operators the simulator does not evaluate, at parse
// time as the server refuses unknown ones.
func CheckExpr(v any) error {
	switch x := v.(type) {
	case string:
		if strings.HasPrefix(x, "$$") {
			name, _, _ := strings.Cut(x[2:], ".")
			if name != "ROOT" && name != "CURRENT" && name != "REMOVE" {
				return undefinedVariable(name)
			}
		}
	case bson.D:
		if len(x) > 0 && strings.HasPrefix(x[0].Key, "$") {
			if x[0].Key == "$literal" && len(x) == 1 {
				return nil
			}
			return unsupportedExpression(x[0].Key)
		}
		for _, f := range x {
			if err := CheckExpr(f.Value); err != nil {
				return err
			}
		}
	case bson.A:
		for _, e := range x {
			if err := CheckExpr(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// evalExpr evaluates a checked expression against root; ok=false means the
// value is missing.
func evalExpr(v any, root bson.D) (any, bool) {
	switch x := v.(type) {
	case string:
		if strings.HasPrefix(x, "$$") {
			name, rest, dotted := strings.Cut(x[2:], ".")
			if name == "REMOVE" {
				return nil, false
			}
			if !dotted {
				return root, true
			}
			return getPath(root, strings.Split(rest, "."))
		}
		if strings.HasPrefix(x, "$") {
			return getPath(root, strings.Split(x[1:], "."))
		}
		return x, true
	case bson.D:
		if len(x) == 1 && x[0].Key == "$literal" {
			return x[0].Value, true
		}
		out := make(bson.D, 0, len(x))
		for _, f := range x {
			if fv, ok := evalExpr(f.Value, root); ok {
				out = append(out, bson.E{Key: f.Key, Value: fv})
			}
		}
		return out, true
	case bson.A:
		out := make(bson.A, len(x))
		for i, e := range x {
			fv, ok := evalExpr(e, root)
			if !ok {
				fv = nil
			}
			out[i] = fv
		}
		return out, true
	}
	return v, true
}

// getPath reads a dotted path, mapping over arrays as field paths do.
func getPath(v any, path []string) (any, bool) {
	if len(path) == 0 {
		return v, true
	}
	switch x := v.(type) {
	case bson.D:
		fv, ok := Lookup(x, path[0])
		if !ok {
			return nil, false
		}
		return getPath(fv, path[1:])
	case bson.A:
		out := bson.A{}
		for _, e := range x {
			if _, isDoc := e.(bson.D); !isDoc {
				continue
			}
			if ev, ok := getPath(e, path); ok {
				out = append(out, ev)
			}
		}
		return out, true
	}
	return nil, false
}

// addField sets path to the value of expr ($addFields semantics: an
// embedded document spec merges into an existing embedded document).
func addField(doc bson.D, root bson.D, path []string, expr any) bson.D {
	if len(path) == 1 {
		if sub, isDoc := expr.(bson.D); isDoc && !(len(sub) > 0 && strings.HasPrefix(sub[0].Key, "$")) {
			cur, _ := Lookup(doc, path[0])
			curDoc, _ := cur.(bson.D)
			merged := cloneD(curDoc)
			for _, f := range sub {
				merged = addField(merged, root, strings.Split(f.Key, "."), f.Value)
			}
			return setField(doc, path[0], merged)
		}
		v, ok := evalExpr(expr, root)
		if !ok {
			return removePath(doc, path)
		}
		return setField(doc, path[0], v)
	}
	cur, _ := Lookup(doc, path[0])
	curDoc, _ := cur.(bson.D)
	return setField(doc, path[0], addField(cloneD(curDoc), root, path[1:], expr))
}

func setField(doc bson.D, key string, v any) bson.D {
	for i := range doc {
		if doc[i].Key == key {
			doc[i].Value = v
			return doc
		}
	}
	return append(doc, bson.E{Key: key, Value: v})
}

// removePath deletes a dotted path, copying the documents it changes.
func removePath(doc bson.D, path []string) bson.D {
	for i, f := range doc {
		if f.Key != path[0] {
			continue
		}
		if len(path) == 1 {
			out := make(bson.D, 0, len(doc)-1)
			out = append(out, doc[:i]...)
			return append(out, doc[i+1:]...)
		}
		if sub, ok := f.Value.(bson.D); ok {
			out := cloneD(doc)
			out[i].Value = removePath(cloneD(sub), path[1:])
			return out
		}
		return doc
	}
	return doc
}

func cloneD(d bson.D) bson.D {
	if d == nil {
		return bson.D{}
	}
	return append(bson.D(nil), d...)
}

func goTypeAlias(v any, ok bool) string {
	if !ok {
		return "missing"
	}
	t, _, err := bson.MarshalValue(v)
	if err != nil {
		return "unknown"
	}
	return TypeAlias(bsoncore.Type(t))
}
