package hub

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// WithMatch gives the subscription only the events that match filter, a
// query document in the form of a $match stage's (bson.D, bson.M, a struct
// or raw BSON), evaluated in process on each raw event:
//
//	hub.WithMatch(bson.D{
//		{Key: "operationType", Value: bson.D{{Key: "$in", Value: bson.A{"insert", "update"}}}},
//		{Key: "fullDocument.tenant", Value: "acme"},
//	})
//
// It supports what a per-subscriber filter of change events needs: field
// paths with dots (through embedded documents and arrays, as a query
// does), equality with a value (an array field matches when an element
// equals it; null matches a missing field), $eq, $ne, $gt, $gte, $lt,
// $lte, $in, $nin, $exists, $not, and $and, $or and $nor. Numbers compare
// by value across int32, int64 and double; strings compare bytewise (the
// simple collation); ordering compares only values of the same kind, as
// a query does. Any other operator ($regex, $expr, $elemMatch, ...) is
// refused when the subscription is made, never silently ignored. Combine
// with WithFilter for anything else: both must keep an event.
func WithMatch(filter any) Option {
	return func(s *Subscription) error {
		m, err := compileMatch(filter)
		if err != nil {
			return err
		}
		s.match = m
		return nil
	}
}

// matcher decides whether a raw event matches.
type matcher interface {
	match(doc bson.Raw) bool
}

type andMatcher []matcher
type orMatcher []matcher
type norMatcher []matcher

func (a andMatcher) match(doc bson.Raw) bool {
	for _, m := range a {
		if !m.match(doc) {
			return false
		}
	}
	return true
}

func (o orMatcher) match(doc bson.Raw) bool {
	for _, m := range o {
		if m.match(doc) {
			return true
		}
	}
	return false
}

func (n norMatcher) match(doc bson.Raw) bool { return !orMatcher(n).match(doc) }

// fieldMatcher applies conditions to the values at one path.
type fieldMatcher struct {
	path  []string
	conds []condition
}

func (f fieldMatcher) match(doc bson.Raw) bool {
	// Most paths hold one value: found without allocating.
	var buf [4]bson.RawValue
	vals := lookupPath(bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: doc}, f.path, buf[:0])
	for i := range f.conds {
		if !f.conds[i].test(vals) {
			return false
		}
	}
	return true
}

// opKind is a condition's operator.
type opKind int

const (
	opEq opKind = iota
	opNe
	opGt
	opGte
	opLt
	opLte
	opIn
	opNin
	opExists
	opNot
)

// condition tests the values found at a path (none when it is missing).
type condition struct {
	op   opKind
	arg  bson.RawValue   // $eq, $ne and the orderings
	list []bson.RawValue // $in, $nin
	want bool            // $exists
	not  []condition     // $not
}

func (c *condition) test(vals []bson.RawValue) bool {
	switch c.op {
	case opEq:
		return equals(vals, c.arg)
	case opNe:
		return !equals(vals, c.arg)
	case opIn, opNin:
		in := false
		for _, v := range c.list {
			if equals(vals, v) {
				in = true
				break
			}
		}
		return in == (c.op == opIn)
	case opExists:
		return present(vals) == c.want
	case opNot:
		for i := range c.not {
			if !c.not[i].test(vals) {
				return true
			}
		}
		return false
	}
	return orders(vals, c.op, c.arg)
}

func compileMatch(filter any) (matcher, error) {
	if filter == nil {
		return nil, errors.New("hub: WithMatch: nil filter")
	}
	raw, ok := filter.(bson.Raw)
	if !ok {
		b, err := bson.Marshal(filter)
		if err != nil {
			return nil, fmt.Errorf("hub: WithMatch: the filter is not a document: %w", err)
		}
		raw = b
	}
	m, err := compileDoc(raw)
	if err != nil {
		return nil, fmt.Errorf("hub: WithMatch: %w", err)
	}
	return m, nil
}

func compileDoc(doc bson.Raw) (matcher, error) {
	elems, err := doc.Elements()
	if err != nil {
		return nil, err
	}
	out := make(andMatcher, 0, len(elems))
	for _, e := range elems {
		key, val := e.Key(), e.Value()
		switch key {
		case "$and", "$or", "$nor":
			subs, err := compileList(key, val)
			if err != nil {
				return nil, err
			}
			switch key {
			case "$and":
				out = append(out, andMatcher(subs))
			case "$or":
				out = append(out, orMatcher(subs))
			default:
				out = append(out, norMatcher(subs))
			}
			continue
		}
		if strings.HasPrefix(key, "$") {
			return nil, fmt.Errorf("unsupported top-level operator %s", key)
		}
		conds, err := compileConditions(key, val)
		if err != nil {
			return nil, err
		}
		out = append(out, fieldMatcher{path: strings.Split(key, "."), conds: conds})
	}
	return out, nil
}

func compileList(op string, val bson.RawValue) ([]matcher, error) {
	arr, ok := val.ArrayOK()
	if !ok {
		return nil, fmt.Errorf("%s needs an array", op)
	}
	vals, err := arr.Values()
	if err != nil {
		return nil, err
	}
	if len(vals) == 0 {
		return nil, fmt.Errorf("%s needs a nonempty array", op)
	}
	out := make([]matcher, 0, len(vals))
	for _, v := range vals {
		d, ok := v.DocumentOK()
		if !ok {
			return nil, fmt.Errorf("%s's elements must be documents", op)
		}
		m, err := compileDoc(d)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// compileConditions reads a field's value: an operator document
// ({$gt: 1, $lt: 5}) or a value to equal.
func compileConditions(field string, val bson.RawValue) ([]condition, error) {
	d, isDoc := val.DocumentOK()
	if !isDoc || !isOperatorDoc(d) {
		return []condition{{op: opEq, arg: val}}, nil
	}
	elems, err := d.Elements()
	if err != nil {
		return nil, err
	}
	var out []condition
	for _, e := range elems {
		c, err := compileOperator(field, e.Key(), e.Value())
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// isOperatorDoc reports whether d's first key is an operator: then all
// must be, as in a query.
func isOperatorDoc(d bson.Raw) bool {
	e, err := d.IndexErr(0)
	return err == nil && strings.HasPrefix(e.Key(), "$")
}

// valueOps are the operators that compare with one value.
var valueOps = map[string]opKind{"$eq": opEq, "$ne": opNe, "$gt": opGt, "$gte": opGte, "$lt": opLt, "$lte": opLte}

func compileOperator(field, op string, arg bson.RawValue) (condition, error) {
	if k, ok := valueOps[op]; ok {
		return condition{op: k, arg: arg}, nil
	}
	switch op {
	case "$in", "$nin":
		arr, ok := arg.ArrayOK()
		if !ok {
			return condition{}, fmt.Errorf("%s of %s needs an array", op, field)
		}
		items, err := arr.Values()
		if err != nil {
			return condition{}, err
		}
		for _, it := range items {
			if d, isDoc := it.DocumentOK(); isDoc && isOperatorDoc(d) {
				return condition{}, fmt.Errorf("%s of %s cannot hold an operator", op, field)
			}
		}
		k := opIn
		if op == "$nin" {
			k = opNin
		}
		return condition{op: k, list: items}, nil
	case "$exists":
		return condition{op: opExists, want: truthy(arg)}, nil
	case "$not":
		d, ok := arg.DocumentOK()
		if !ok || !isOperatorDoc(d) {
			return condition{}, fmt.Errorf("$not of %s needs an operator document", field)
		}
		conds, err := compileConditions(field, arg)
		if err != nil {
			return condition{}, err
		}
		return condition{op: opNot, not: conds}, nil
	}
	return condition{}, fmt.Errorf("unsupported operator %s (on %s)", op, field)
}

// truthy is how $exists reads its argument: false, 0 and null are false.
func truthy(v bson.RawValue) bool {
	switch v.Type {
	case bson.TypeBoolean:
		return v.Boolean()
	case bson.TypeNull, bson.TypeUndefined:
		return false
	}
	if f, ok := number(v); ok {
		return f != 0
	}
	return true
}

// missing is what lookupPath records where the path ends without a value:
// a field absent from a document it reached, or a scalar where the path
// goes on. A query's null (equality, $gte and $lte) matches it.
var missing = bson.RawValue{}

func isMissing(v bson.RawValue) bool { return v.Type == 0 }

// anyMissing reports whether the path is missing on some branch.
func anyMissing(vals []bson.RawValue) bool {
	for _, v := range vals {
		if isMissing(v) {
			return true
		}
	}
	return false
}

// present reports whether the path reached a value on some branch, which
// is what $exists tests.
func present(vals []bson.RawValue) bool {
	for _, v := range vals {
		if !isMissing(v) {
			return true
		}
	}
	return false
}

// each calls fn with every value a condition tests: each value found, and
// the elements of one that is an array; it stops when fn returns true.
func each(vals []bson.RawValue, fn func(v bson.RawValue) bool) bool {
	for _, v := range vals {
		if isMissing(v) {
			continue
		}
		if fn(v) {
			return true
		}
		if v.Type == bson.TypeArray {
			elems, _ := v.Array().Values()
			for _, e := range elems {
				if fn(e) {
					return true
				}
			}
		}
	}
	return false
}

// equals reports whether a value at the path, or an element of an array
// there, equals want; a null matches a missing field too.
func equals(vals []bson.RawValue, want bson.RawValue) bool {
	if want.Type == bson.TypeNull && anyMissing(vals) {
		return true
	}
	return each(vals, func(v bson.RawValue) bool {
		c, ok := compareValues(v, want)
		return ok && c == 0
	})
}

// orders reports whether a value of the same kind as bound compares as op.
// $gte and $lte of null also match a missing field, as equality does.
func orders(vals []bson.RawValue, op opKind, bound bson.RawValue) bool {
	if bound.Type == bson.TypeNull && (op == opGte || op == opLte) && anyMissing(vals) {
		return true
	}
	return each(vals, func(v bson.RawValue) bool { return v.Type != bson.TypeArray && compares(v, op, bound) })
}

func compares(v bson.RawValue, op opKind, bound bson.RawValue) bool {
	c, ok := compareValues(v, bound)
	if !ok {
		return false
	}
	switch op {
	case opGt:
		return c > 0
	case opGte:
		return c >= 0
	case opLt:
		return c < 0
	}
	return c <= 0
}

// compareValues orders two values of the same kind; ok is false for
// values a query does not compare (different kinds).
func compareValues(a, b bson.RawValue) (int, bool) {
	if isNumber(a) {
		if !isNumber(b) {
			return 0, false
		}
		return compareNumbers(a, b)
	}
	if a.Type != b.Type {
		return 0, false
	}
	switch a.Type {
	case bson.TypeString:
		// The bytes between the length and the terminating zero.
		return bytes.Compare(a.Value[4:len(a.Value)-1], b.Value[4:len(b.Value)-1]), true
	case bson.TypeDateTime:
		return cmp.Compare(a.DateTime(), b.DateTime()), true
	case bson.TypeTimestamp:
		at, ai := a.Timestamp()
		bt, bi := b.Timestamp()
		if at != bt {
			return cmp.Compare(at, bt), true
		}
		return cmp.Compare(ai, bi), true
	case bson.TypeBoolean:
		return cmp.Compare(boolInt(a.Boolean()), boolInt(b.Boolean())), true
	case bson.TypeNull, bson.TypeUndefined, bson.TypeMinKey, bson.TypeMaxKey:
		return 0, true
	}
	// ObjectIDs, binary, documents and arrays: equal when their bytes are.
	return bytes.Compare(a.Value, b.Value), true
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// isNumber reports an int32, int64 or double.
func isNumber(v bson.RawValue) bool {
	return v.Type == bson.TypeInt32 || v.Type == bson.TypeInt64 || v.Type == bson.TypeDouble
}

// integer reads an int32 or int64.
func integer(v bson.RawValue) (int64, bool) {
	switch v.Type {
	case bson.TypeInt32:
		return int64(v.Int32()), true
	case bson.TypeInt64:
		return v.Int64(), true
	}
	return 0, false
}

// compareNumbers orders two numbers by value, exactly, as the server
// does: integers as integers (a double cannot hold every int64 above
// 2^53), a double against an integer without rounding the integer. NaN
// equals NaN and orders against nothing else.
func compareNumbers(a, b bson.RawValue) (int, bool) {
	x, xInt := integer(a)
	y, yInt := integer(b)
	switch {
	case xInt && yInt:
		return cmp.Compare(x, y), true
	case xInt:
		if math.IsNaN(b.Double()) {
			return 0, false
		}
		return compareIntFloat(x, b.Double()), true
	case yInt:
		if math.IsNaN(a.Double()) {
			return 0, false
		}
		return -compareIntFloat(y, a.Double()), true
	}
	f, g := a.Double(), b.Double()
	if math.IsNaN(f) || math.IsNaN(g) {
		return 0, math.IsNaN(f) && math.IsNaN(g)
	}
	return cmp.Compare(f, g), true
}

// compareIntFloat orders i against f, which is not NaN.
func compareIntFloat(i int64, f float64) int {
	const two63 = 1 << 63 // beyond int64, as a float64 exactly
	switch {
	case f >= two63:
		return -1
	case f < -two63:
		return 1
	}
	whole := math.Trunc(f)
	if c := cmp.Compare(i, int64(whole)); c != 0 {
		return c
	}
	return cmp.Compare(0, f-whole)
}

// number reads an int32, int64 or double as a float64, for $exists's
// truth test.
func number(v bson.RawValue) (float64, bool) {
	switch v.Type {
	case bson.TypeInt32:
		return float64(v.Int32()), true
	case bson.TypeInt64:
		return float64(v.Int64()), true
	case bson.TypeDouble:
		return v.Double(), true
	}
	return 0, false
}

// lookupPath appends to out the values at path below v: through embedded
// documents, through every document of an array met on the way, and by
// index into an array when a component is a number. Where the path ends
// without a value it appends missing: a field absent from a document, a
// scalar where the path goes on, an index past an array's end. An
// array's elements that are not documents add nothing, as in the
// server's matcher: {"a.b": null} matches {a: [{}]} and {a: 1}, not
// {a: [1, 2]} nor {a: []} (expression_leaf_test.cpp, EqOp
// MatchesNestedNull).
func lookupPath(v bson.RawValue, path []string, out []bson.RawValue) []bson.RawValue {
	for len(path) > 0 {
		switch v.Type {
		case bson.TypeEmbeddedDocument:
			next, err := bson.Raw(v.Value).LookupErr(path[0])
			if err != nil {
				return append(out, missing)
			}
			v, path = next, path[1:]
			continue
		case bson.TypeArray:
			arr := bson.RawArray(v.Value)
			if i, err := strconv.Atoi(path[0]); err == nil && i >= 0 {
				e, err := arr.IndexErr(uint(i))
				if err != nil {
					return append(out, missing)
				}
				v, path = e, path[1:]
				continue
			}
			elems, _ := arr.Values()
			for _, e := range elems {
				if e.Type == bson.TypeEmbeddedDocument {
					out = lookupPath(e, path, out)
				}
			}
			return out
		}
		return append(out, missing)
	}
	return append(out, v)
}
