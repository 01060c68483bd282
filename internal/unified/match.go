package unified

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// This file implements the Unified Test Format's "Evaluating Matches"
// rules, written from the specification's text: an expected value matches
// an actual one when they are equal, except that numbers compare by value
// across int, long and double; root-level documents may carry keys the
// expectation does not name (nested ones may not); arrays match element by
// element; and a document whose only key starts with "$$" is an operator.

// matcher compares expectations with actual values. It needs the entity map
// for $$matchesEntity and $$sessionLsid.
type matcher struct {
	entities *entityMap
}

// missing is the actual value of a key that is absent.
var missing = bson.RawValue{}

// matchRoot matches a root-level expectation (an operation's expectResult,
// an event's command or reply): extra keys in the actual document are allowed
// at this level only.
func (m *matcher) matchRoot(exp, act bson.RawValue) error {
	return m.match("", exp, act, true)
}

// matchValue matches an expectation in which no document is root-level, as
// the outcome's documents are.
func (m *matcher) matchValue(exp, act bson.RawValue) error {
	return m.match("", exp, act, false)
}

// match compares exp with act at path. act.Type is 0 when the value is
// absent; only operators accept that.
func (m *matcher) match(path string, exp, act bson.RawValue, root bool) error {
	if op, arg, ok := operator(exp); ok {
		return m.matchOperator(path, op, arg, act, root)
	}
	if act.Type == 0 {
		return fmt.Errorf("%s: expected %s, but the value is absent", where(path), show(exp))
	}
	switch exp.Type {
	case bson.TypeEmbeddedDocument:
		if act.Type != bson.TypeEmbeddedDocument {
			return fmt.Errorf("%s: expected a document %s, got %s %s", where(path), show(exp), act.Type, show(act))
		}
		return m.matchDocument(path, exp.Document(), act.Document(), root)
	case bson.TypeArray:
		if act.Type != bson.TypeArray {
			return fmt.Errorf("%s: expected an array %s, got %s %s", where(path), show(exp), act.Type, show(act))
		}
		ev, err := exp.Array().Values()
		if err != nil {
			return fmt.Errorf("%s: expectation: %w", where(path), err)
		}
		av, err := act.Array().Values()
		if err != nil {
			return fmt.Errorf("%s: actual value: %w", where(path), err)
		}
		if len(ev) != len(av) {
			return fmt.Errorf("%s: expected an array of %d elements %s, got %d %s", where(path), len(ev), show(exp), len(av), show(act))
		}
		for i := range ev {
			if err := m.match(fmt.Sprintf("%s.%d", path, i), ev[i], av[i], false); err != nil {
				return err
			}
		}
		return nil
	}
	if isNumber(exp.Type) && isNumber(act.Type) {
		if numbersEqual(exp, act) {
			return nil
		}
		return fmt.Errorf("%s: expected %s, got %s", where(path), show(exp), show(act))
	}
	if exp.Type != act.Type || !bytes.Equal(exp.Value, act.Value) {
		return fmt.Errorf("%s: expected %s %s, got %s %s", where(path), exp.Type, show(exp), act.Type, show(act))
	}
	return nil
}

// matchDocument matches each key of exp against act; unless root, act may
// hold no other key.
func (m *matcher) matchDocument(path string, exp, act bson.Raw, root bool) error {
	elems, err := exp.Elements()
	if err != nil {
		return fmt.Errorf("%s: expectation: %w", where(path), err)
	}
	want := make([]string, 0, len(elems))
	for _, e := range elems {
		key := e.Key()
		want = append(want, key)
		av, err := act.LookupErr(key)
		if err != nil {
			av = missing
		}
		if err := m.match(join(path, key), e.Value(), av, false); err != nil {
			return err
		}
	}
	if root {
		return nil
	}
	aelems, err := act.Elements()
	if err != nil {
		return fmt.Errorf("%s: actual value: %w", where(path), err)
	}
	for _, e := range aelems {
		if !slices.Contains(want, e.Key()) {
			return fmt.Errorf("%s: unexpected key %q in %s (expected %s)", where(path), e.Key(), act, exp)
		}
	}
	return nil
}

// operator reports whether v is a special operator: a document with exactly
// one key, starting with "$$".
func operator(v bson.RawValue) (string, bson.RawValue, bool) {
	if v.Type != bson.TypeEmbeddedDocument {
		return "", bson.RawValue{}, false
	}
	elems, err := v.Document().Elements()
	if err != nil || len(elems) != 1 || !strings.HasPrefix(elems[0].Key(), "$$") {
		return "", bson.RawValue{}, false
	}
	return elems[0].Key(), elems[0].Value(), true
}

func (m *matcher) matchOperator(path, op string, arg, act bson.RawValue, root bool) error {
	switch op {
	case "$$exists":
		want, ok := arg.BooleanOK()
		if !ok {
			return fmt.Errorf("%s: $$exists takes a boolean, got %s", where(path), arg.Type)
		}
		if want != (act.Type != 0) {
			if want {
				return fmt.Errorf("%s: expected the key to exist", where(path))
			}
			return fmt.Errorf("%s: expected the key to be absent, got %s", where(path), show(act))
		}
		return nil
	case "$$type":
		if act.Type == 0 {
			return fmt.Errorf("%s: expected a value of type %s, but the value is absent", where(path), show(arg))
		}
		var names []string
		switch arg.Type {
		case bson.TypeString:
			names = []string{arg.StringValue()}
		case bson.TypeArray:
			vals, _ := arg.Array().Values()
			for _, v := range vals {
				names = append(names, v.StringValue())
			}
		default:
			return fmt.Errorf("%s: $$type takes a string or an array of strings", where(path))
		}
		for _, n := range names {
			if typeMatches(n, act.Type) {
				return nil
			}
		}
		return fmt.Errorf("%s: expected type %v, got %s %s", where(path), names, act.Type, show(act))
	case "$$unsetOrMatches":
		if act.Type == 0 {
			return nil
		}
		return m.match(path, arg, act, root)
	case "$$matchesEntity":
		id, ok := arg.StringValueOK()
		if !ok {
			return fmt.Errorf("%s: $$matchesEntity takes an entity name", where(path))
		}
		v, err := m.entities.value(id)
		if err != nil {
			return fmt.Errorf("%s: %w", where(path), err)
		}
		return m.match(path, v, act, root)
	case "$$matchesHexBytes":
		want, err := hex.DecodeString(arg.StringValue())
		if err != nil {
			return fmt.Errorf("%s: $$matchesHexBytes: %w", where(path), err)
		}
		_, data, ok := act.BinaryOK()
		if !ok || !bytes.Equal(data, want) {
			return fmt.Errorf("%s: expected binary %x, got %s", where(path), want, show(act))
		}
		return nil
	case "$$sessionLsid":
		id, _ := arg.StringValueOK()
		lsid, err := m.entities.sessionLsid(id)
		if err != nil {
			return fmt.Errorf("%s: %w", where(path), err)
		}
		return m.match(path, bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: lsid}, act, false)
	case "$$lte":
		if act.Type == 0 || !isNumber(act.Type) || !isNumber(arg.Type) {
			return fmt.Errorf("%s: $$lte %s: expected a number, got %s", where(path), show(arg), show(act))
		}
		if asFloat(act) > asFloat(arg) {
			return fmt.Errorf("%s: expected a number <= %s, got %s", where(path), show(arg), show(act))
		}
		return nil
	case "$$matchAsDocument":
		s, ok := act.StringValueOK()
		if !ok {
			return fmt.Errorf("%s: $$matchAsDocument: expected a string of JSON, got %s", where(path), show(act))
		}
		var d bson.D
		if err := bson.UnmarshalExtJSON([]byte(s), false, &d); err != nil {
			return fmt.Errorf("%s: $$matchAsDocument: %w", where(path), err)
		}
		raw, err := bson.Marshal(d)
		if err != nil {
			return err
		}
		return m.match(path, arg, bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: raw}, false)
	case "$$matchAsRoot":
		return m.match(path, arg, act, true)
	}
	return fmt.Errorf("%s: unsupported operator %s", where(path), op)
}

// typeAliases maps the $type aliases the format uses to BSON types.
var typeAliases = map[string]bson.Type{
	"double": bson.TypeDouble, "string": bson.TypeString, "object": bson.TypeEmbeddedDocument,
	"array": bson.TypeArray, "binData": bson.TypeBinary, "undefined": bson.TypeUndefined,
	"objectId": bson.TypeObjectID, "bool": bson.TypeBoolean, "date": bson.TypeDateTime,
	"null": bson.TypeNull, "regex": bson.TypeRegex, "dbPointer": bson.TypeDBPointer,
	"javascript": bson.TypeJavaScript, "symbol": bson.TypeSymbol,
	"javascriptWithScope": bson.TypeCodeWithScope, "int": bson.TypeInt32,
	"timestamp": bson.TypeTimestamp, "long": bson.TypeInt64, "decimal": bson.TypeDecimal128,
	"minKey": bson.TypeMinKey, "maxKey": bson.TypeMaxKey,
}

func typeMatches(alias string, t bson.Type) bool {
	if alias == "number" {
		return isNumber(t) || t == bson.TypeDecimal128
	}
	want, ok := typeAliases[alias]
	return ok && want == t
}

func isNumber(t bson.Type) bool {
	return t == bson.TypeInt32 || t == bson.TypeInt64 || t == bson.TypeDouble
}

// numbersEqual compares int, long and double by value; two integers compare
// exactly, whatever their width.
func numbersEqual(a, b bson.RawValue) bool {
	if a.Type != bson.TypeDouble && b.Type != bson.TypeDouble {
		ai, _ := a.AsInt64OK()
		bi, _ := b.AsInt64OK()
		return ai == bi
	}
	af, bf := asFloat(a), asFloat(b)
	return af == bf || (math.IsNaN(af) && math.IsNaN(bf))
}

func asFloat(v bson.RawValue) float64 {
	switch v.Type {
	case bson.TypeDouble:
		return v.Double()
	case bson.TypeInt32:
		return float64(v.Int32())
	case bson.TypeInt64:
		return float64(v.Int64())
	}
	return math.NaN()
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func where(path string) string {
	if path == "" {
		return "(root)"
	}
	return path
}

// show renders a value as relaxed extended JSON for messages.
func show(v bson.RawValue) string {
	if v.Type == 0 {
		return "(absent)"
	}
	return v.String()
}
