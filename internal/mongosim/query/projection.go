package query

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// projector applies a compiled projection and returns a new document.
type projector func(doc bson.D) bson.D

// projNode is one level of a projection: what to do with each field name.
type projNode struct {
	names  []string
	fields map[string]*projField
}

type projField struct {
	include bool // inclusion projection keeps it; exclusion drops it
	child   *projNode
	expr    any // a computed field (inclusion mode only)
	hasExpr bool
}

func (n *projNode) get(name string) *projField {
	if n.fields == nil {
		n.fields = make(map[string]*projField)
	}
	f := n.fields[name]
	if f == nil {
		f = &projField{}
		n.fields[name] = f
		n.names = append(n.names, name)
	}
	return f
}

// CompileProjection compiles a find or $project projection ({a: 1, _id: 0}).
// Values may be flags (numbers, booleans), field paths ("$a"), {$literal}
// or other literals, which add a computed field.
func CompileProjection(spec bson.D) (projector, error) {
	if len(spec) == 0 {
		return func(d bson.D) bson.D { return d }, nil
	}
	root := &projNode{}
	mode := 0 // 1 inclusion, -1 exclusion
	idMode := 0
	var add func(n *projNode, prefix string, spec bson.D) error
	add = func(n *projNode, prefix string, spec bson.D) error {
		for _, e := range spec {
			full := prefix + e.Key
			if strings.HasPrefix(e.Key, "$") {
				return notImplemented("the projection operator %s", e.Key)
			}
			parts := strings.Split(e.Key, ".")
			node := n
			for _, p := range parts[:len(parts)-1] {
				f := node.get(p)
				if f.child == nil {
					f.child = &projNode{}
				}
				node = f.child
			}
			last := parts[len(parts)-1]
			var m int
			switch v := e.Value.(type) {
			case bool, int32, int64, float64, bson.Decimal128:
				if Truthy(v) {
					m = 1
				} else {
					m = -1
				}
				node.get(last).include = m == 1
			case bson.D:
				if len(v) > 0 && !strings.HasPrefix(v[0].Key, "$") {
					f := node.get(last)
					if f.child == nil {
						f.child = &projNode{}
					}
					if err := add(f.child, full+".", v); err != nil {
						return err
					}
					continue
				}
				if len(v) > 0 && (v[0].Key == "$slice" || v[0].Key == "$elemMatch") {
					return notImplemented("the projection operator %s", v[0].Key)
				}
				if err := checkExpr(v, projectionExpr); err != nil {
					return err
				}
				m = 1
				f := node.get(last)
				f.expr, f.hasExpr = v, true
			default:
				if err := checkExpr(v, projectionExpr); err != nil {
					return err
				}
				m = 1
				f := node.get(last)
				f.expr, f.hasExpr = v, true
			}
			if full == "_id" {
				idMode = m
				continue
			}
			if mode != 0 && mode != m {
				if m == -1 {
					return cmdErr(31254, "Cannot do exclusion on field %s in inclusion projection", full)
				}
				return cmdErr(31253, "Cannot do inclusion on field %s in exclusion projection", full)
			}
			mode = m
		}
		return nil
	}
	if err := add(root, "", spec); err != nil {
		return nil, err
	}
	if mode == 0 {
		mode = idMode
	}
	if mode == -1 {
		return func(d bson.D) bson.D { return excludeDoc(d, root) }, nil
	}
	if idMode == 0 {
		root.get("_id").include = true
	}
	return func(d bson.D) bson.D { return includeDoc(d, d, root) }, nil
}

func includeDoc(root, d bson.D, n *projNode) bson.D {
	out := bson.D{}
	for _, e := range d {
		f := n.fields[e.Key]
		if f == nil || f.hasExpr {
			continue
		}
		switch {
		case f.include:
			out = append(out, e)
		case f.child != nil:
			if v, ok := includeValue(root, e.Value, f.child); ok {
				out = append(out, bson.E{Key: e.Key, Value: v})
			}
		}
	}
	for _, name := range n.names {
		f := n.fields[name]
		if f.hasExpr {
			v, err := evalAggExpr(root, f.expr)
			if err == nil && v != missingValue {
				out = SetOrAppend(out, name, v)
			}
		} else if f.child != nil && hasComputed(f.child) && !HasKey(out, name) {
			if v := includeDoc(root, bson.D{}, f.child); len(v) > 0 {
				out = append(out, bson.E{Key: name, Value: v})
			}
		}
	}
	return out
}

// projectionExpr is what a computed projection field may use: its
// evaluation has no way to report an error, so only expressions that
// cannot fail (field paths, $literal, documents and arrays of them), and
// no $$NOW, which needs the command's time.
var projectionExpr = exprRules{}

func hasComputed(n *projNode) bool {
	for _, f := range n.fields {
		if f.hasExpr || (f.child != nil && hasComputed(f.child)) {
			return true
		}
	}
	return false
}

// SetOrAppend returns d with field k set to v, in place when it exists,
// appended otherwise.
func SetOrAppend(d bson.D, k string, v any) bson.D {
	for i := range d {
		if d[i].Key == k {
			d[i].Value = v
			return d
		}
	}
	return append(d, bson.E{Key: k, Value: v})
}

// includeValue applies a nested inclusion: documents are projected,
// arrays element-wise, and scalars are dropped.
func includeValue(root bson.D, v any, n *projNode) (any, bool) {
	switch x := v.(type) {
	case bson.D:
		return includeDoc(root, x, n), true
	case bson.A:
		out := bson.A{}
		for _, e := range x {
			if r, ok := includeValue(root, e, n); ok {
				out = append(out, r)
			}
		}
		return out, true
	}
	return nil, false
}

func excludeDoc(d bson.D, n *projNode) bson.D {
	out := make(bson.D, 0, len(d))
	for _, e := range d {
		f := n.fields[e.Key]
		switch {
		case f == nil:
			out = append(out, e)
		case f.child != nil:
			out = append(out, bson.E{Key: e.Key, Value: excludeValue(e.Value, f.child)})
		case f.include:
			out = append(out, e) // _id: 1 in an exclusion projection
		}
	}
	return out
}

func excludeValue(v any, n *projNode) any {
	switch x := v.(type) {
	case bson.D:
		return excludeDoc(x, n)
	case bson.A:
		out := make(bson.A, len(x))
		for i, e := range x {
			out[i] = excludeValue(e, n)
		}
		return out
	}
	return v
}
