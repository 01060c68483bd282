package query

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Values are the Go types bson.Unmarshal produces for a bson.D: nested
// documents are bson.D and arrays bson.A. The server orders values of
// different types by a fixed ranking of type brackets, and numbers of every
// width share one bracket, so 1, int64(1) and 1.0 are equal.

// Type brackets in the server's sort order.
const (
	bracketMinKey = 1
	bracketNull   = 5 // null and undefined
	bracketNumber = 10
	bracketString = 15 // string and symbol
	bracketObject = 20
	bracketArray  = 25
	bracketBinary = 30
	bracketOID    = 35
	bracketBool   = 40
	bracketDate   = 45
	bracketTS     = 47
	bracketRegex  = 50
	bracketDBPtr  = 55
	bracketCode   = 60
	bracketCodeWS = 65
	bracketMaxKey = 127
)

// typeBracket returns the sort bracket of v.
func typeBracket(v any) int {
	switch v.(type) {
	case bson.MinKey:
		return bracketMinKey
	case nil, bson.Undefined, bson.Null:
		return bracketNull
	case int, int32, int64, float64, bson.Decimal128:
		return bracketNumber
	case string, bson.Symbol:
		return bracketString
	case bson.D, bson.M, bson.Raw:
		return bracketObject
	case bson.A:
		return bracketArray
	case bson.Binary:
		return bracketBinary
	case bson.ObjectID:
		return bracketOID
	case bool:
		return bracketBool
	case bson.DateTime:
		return bracketDate
	case bson.Timestamp:
		return bracketTS
	case bson.Regex:
		return bracketRegex
	case bson.DBPointer:
		return bracketDBPtr
	case bson.JavaScript:
		return bracketCode
	case bson.CodeWithScope:
		return bracketCodeWS
	case bson.MaxKey:
		return bracketMaxKey
	}
	return bracketMaxKey - 1
}

// CompareValues orders two values as the server does (simple collation):
// first by type bracket, then within the bracket.
func CompareValues(a, b any) int {
	ba, bb := typeBracket(a), typeBracket(b)
	if ba != bb {
		return cmp.Compare(ba, bb)
	}
	switch ba {
	case bracketMinKey, bracketNull, bracketMaxKey:
		return 0
	case bracketNumber:
		return compareNumbers(a, b)
	case bracketString:
		return strings.Compare(stringOf(a), stringOf(b))
	case bracketObject:
		return compareDocs(asDoc(a), asDoc(b))
	case bracketArray:
		return compareArrays(a.(bson.A), b.(bson.A))
	case bracketBinary:
		x, y := a.(bson.Binary), b.(bson.Binary)
		if len(x.Data) != len(y.Data) {
			return cmp.Compare(len(x.Data), len(y.Data))
		}
		if x.Subtype != y.Subtype {
			return cmp.Compare(int(x.Subtype), int(y.Subtype))
		}
		return bytes.Compare(x.Data, y.Data)
	case bracketOID:
		x, y := a.(bson.ObjectID), b.(bson.ObjectID)
		return bytes.Compare(x[:], y[:])
	case bracketBool:
		x, y := a.(bool), b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	case bracketDate:
		return cmp.Compare(int64(a.(bson.DateTime)), int64(b.(bson.DateTime)))
	case bracketTS:
		x, y := a.(bson.Timestamp), b.(bson.Timestamp)
		if x.T != y.T {
			return cmp.Compare(x.T, y.T)
		}
		return cmp.Compare(x.I, y.I)
	case bracketRegex:
		x, y := a.(bson.Regex), b.(bson.Regex)
		if c := strings.Compare(x.Pattern, y.Pattern); c != 0 {
			return c
		}
		return strings.Compare(x.Options, y.Options)
	case bracketDBPtr:
		x, y := a.(bson.DBPointer), b.(bson.DBPointer)
		if c := strings.Compare(x.DB, y.DB); c != 0 {
			return c
		}
		return bytes.Compare(x.Pointer[:], y.Pointer[:])
	case bracketCode:
		return strings.Compare(string(a.(bson.JavaScript)), string(b.(bson.JavaScript)))
	case bracketCodeWS:
		x, y := a.(bson.CodeWithScope), b.(bson.CodeWithScope)
		if c := strings.Compare(string(x.Code), string(y.Code)); c != 0 {
			return c
		}
		return CompareValues(x.Scope, y.Scope)
	}
	return 0
}

// valuesEqual reports whether a and b compare equal (1 equals 1.0).
func valuesEqual(a, b any) bool { return CompareValues(a, b) == 0 }

// Identical reports whether a and b are equal and of the same BSON types
// throughout: the test an update uses to decide that nothing changed, since
// replacing 1 by 1.0 does change the stored bytes.
func Identical(a, b any) bool {
	switch x := a.(type) {
	case bson.D:
		y, ok := b.(bson.D)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if x[i].Key != y[i].Key || !Identical(x[i].Value, y[i].Value) {
				return false
			}
		}
		return true
	case bson.A:
		y, ok := b.(bson.A)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !Identical(x[i], y[i]) {
				return false
			}
		}
		return true
	case float64:
		y, ok := b.(float64)
		return ok && (x == y && math.Signbit(x) == math.Signbit(y) || math.IsNaN(x) && math.IsNaN(y))
	}
	if bsonTypeOf(a) != bsonTypeOf(b) {
		return false
	}
	return valuesEqual(a, b)
}

func stringOf(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case bson.Symbol:
		return string(s)
	}
	return ""
}

func asDoc(v any) bson.D {
	switch d := v.(type) {
	case bson.D:
		return d
	case bson.M:
		out := make(bson.D, 0, len(d))
		for k, x := range d {
			out = append(out, bson.E{Key: k, Value: x})
		}
		return out
	case bson.Raw:
		var out bson.D
		_ = bson.Unmarshal(d, &out)
		return out
	}
	return nil
}

// compareDocs compares documents element by element: the type bracket of
// the values first, then the field names, then the values, so field order
// matters as it does on the server.
func compareDocs(a, b bson.D) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := cmp.Compare(typeBracket(a[i].Value), typeBracket(b[i].Value)); c != 0 {
			return c
		}
		if c := strings.Compare(a[i].Key, b[i].Key); c != 0 {
			return c
		}
		if c := CompareValues(a[i].Value, b[i].Value); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

func compareArrays(a, b bson.A) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := cmp.Compare(typeBracket(a[i]), typeBracket(b[i])); c != 0 {
			return c
		}
		if c := CompareValues(a[i], b[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

// compareNumbers compares numbers of any width exactly: int64 values beyond
// 2^53 are not rounded through float64. NaN sorts below every number.
func compareNumbers(a, b any) int {
	a, b = widenInt(a), widenInt(b)
	ia, aInt := a.(int64)
	ib, bInt := b.(int64)
	if aInt && bInt {
		return cmp.Compare(ia, ib)
	}
	fa, fb := NumberFloat(a), NumberFloat(b)
	naA, naB := math.IsNaN(fa), math.IsNaN(fb)
	switch {
	case naA && naB:
		return 0
	case naA:
		return -1
	case naB:
		return 1
	}
	if aInt {
		return -compareFloatInt(fb, ia)
	}
	if bInt {
		return compareFloatInt(fa, ib)
	}
	switch {
	case fa < fb:
		return -1
	case fa > fb:
		return 1
	}
	return 0
}

// widenInt turns int32 (and Go int, which tests use) into int64.
func widenInt(v any) any {
	switch n := v.(type) {
	case int32:
		return int64(n)
	case int:
		return int64(n)
	}
	return v
}

// compareFloatInt compares a float (not NaN) with an int64 exactly.
func compareFloatInt(f float64, i int64) int {
	if f >= 0x1p63 {
		return 1
	}
	if f < -0x1p63 {
		return -1
	}
	t := math.Trunc(f)
	if c := cmp.Compare(int64(t), i); c != 0 {
		return c
	}
	switch {
	case f > t:
		return 1
	case f < t:
		return -1
	}
	return 0
}

// NumberFloat converts any number to float64 (decimals approximately).
func NumberFloat(v any) float64 {
	switch n := v.(type) {
	case int32:
		return float64(n)
	case int:
		return float64(n)
	case int64:
		return float64(n)
	case float64:
		return n
	case bson.Decimal128:
		s := n.String()
		switch s {
		case "NaN", "-NaN":
			return math.NaN()
		case "Infinity":
			return math.Inf(1)
		case "-Infinity":
			return math.Inf(-1)
		}
		f, _, err := big.ParseFloat(s, 10, 64, big.ToNearestEven)
		if err != nil {
			return math.NaN()
		}
		x, _ := f.Float64()
		return x
	}
	return math.NaN()
}

// IsNumber reports whether v is a BSON number of any type.
func IsNumber(v any) bool { return typeBracket(v) == bracketNumber }

// bsonTypeOf returns the BSON type byte of a value.
func bsonTypeOf(v any) bson.Type {
	switch v.(type) {
	case float64:
		return bson.TypeDouble
	case string:
		return bson.TypeString
	case bson.D, bson.M, bson.Raw:
		return bson.TypeEmbeddedDocument
	case bson.A:
		return bson.TypeArray
	case bson.Binary:
		return bson.TypeBinary
	case bson.Undefined:
		return bson.TypeUndefined
	case bson.ObjectID:
		return bson.TypeObjectID
	case bool:
		return bson.TypeBoolean
	case bson.DateTime:
		return bson.TypeDateTime
	case nil, bson.Null:
		return bson.TypeNull
	case bson.Regex:
		return bson.TypeRegex
	case bson.DBPointer:
		return bson.TypeDBPointer
	case bson.JavaScript:
		return bson.TypeJavaScript
	case bson.Symbol:
		return bson.TypeSymbol
	case bson.CodeWithScope:
		return bson.TypeCodeWithScope
	case int32:
		return bson.TypeInt32
	case bson.Timestamp:
		return bson.TypeTimestamp
	case int64, int:
		return bson.TypeInt64
	case bson.Decimal128:
		return bson.TypeDecimal128
	case bson.MinKey:
		return bson.TypeMinKey
	case bson.MaxKey:
		return bson.TypeMaxKey
	}
	return 0
}

// CloneValue deep-copies documents and arrays so that an update can modify
// the copy of a stored, immutable document.
func CloneValue(v any) any {
	switch x := v.(type) {
	case bson.D:
		return CloneDoc(x)
	case bson.A:
		out := make(bson.A, len(x))
		for i, e := range x {
			out[i] = CloneValue(e)
		}
		return out
	}
	return v
}

// CloneDoc deep-copies a document (CloneValue).
func CloneDoc(d bson.D) bson.D {
	if d == nil {
		return nil
	}
	out := make(bson.D, len(d))
	for i, e := range d {
		out[i] = bson.E{Key: e.Key, Value: CloneValue(e.Value)}
	}
	return out
}

// FormatDoc renders a document the way the server writes one into error
// messages ("{ _id: 1, a: "x" }"), so that errmsg strings match.
func FormatDoc(d bson.D) string {
	var sb strings.Builder
	writeDoc(&sb, d)
	return sb.String()
}

// FormatValue renders a value as FormatDoc renders documents.
func FormatValue(v any) string {
	var sb strings.Builder
	writeValue(&sb, v)
	return sb.String()
}

func writeDoc(sb *strings.Builder, d bson.D) {
	if len(d) == 0 {
		sb.WriteString("{}")
		return
	}
	sb.WriteString("{ ")
	for i, e := range d {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(e.Key)
		sb.WriteString(": ")
		writeValue(sb, e.Value)
	}
	sb.WriteString(" }")
}

func writeValue(sb *strings.Builder, v any) {
	switch x := v.(type) {
	case nil, bson.Null:
		sb.WriteString("null")
	case bson.Undefined:
		sb.WriteString("undefined")
	case bson.MinKey:
		sb.WriteString("MinKey")
	case bson.MaxKey:
		sb.WriteString("MaxKey")
	case int32, int64, bool:
		fmt.Fprint(sb, x)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			fmt.Fprintf(sb, "%.1f", x)
		} else {
			sb.WriteString(strconv.FormatFloat(x, 'g', -1, 64))
		}
	case bson.Decimal128:
		fmt.Fprintf(sb, "NumberDecimal(\"%s\")", x.String())
	case string:
		sb.WriteString(strconv.Quote(x))
	case bson.Symbol:
		sb.WriteString(strconv.Quote(string(x)))
	case bson.ObjectID:
		fmt.Fprintf(sb, "ObjectId('%s')", x.Hex())
	case bson.DateTime:
		fmt.Fprintf(sb, "new Date(%d)", int64(x))
	case bson.Timestamp:
		fmt.Fprintf(sb, "Timestamp(%d, %d)", x.T, x.I)
	case bson.Binary:
		fmt.Fprintf(sb, "BinData(%d, %X)", x.Subtype, x.Data)
	case bson.Regex:
		fmt.Fprintf(sb, "/%s/%s", x.Pattern, x.Options)
	case bson.D:
		writeDoc(sb, x)
	case bson.A:
		if len(x) == 0 {
			sb.WriteString("[]")
			return
		}
		sb.WriteString("[ ")
		for i, e := range x {
			if i > 0 {
				sb.WriteString(", ")
			}
			writeValue(sb, e)
		}
		sb.WriteString(" ]")
	default:
		fmt.Fprint(sb, x)
	}
}

// Lookup returns the value of a top-level field of d.
func Lookup(d bson.D, key string) (any, bool) {
	for _, e := range d {
		if e.Key == key {
			return e.Value, true
		}
	}
	return nil, false
}

// TypeAlias is the server's name for a BSON type in error messages.
func TypeAlias(t bsoncore.Type) string {
	switch t {
	case bsoncore.TypeDouble:
		return "double"
	case bsoncore.TypeString:
		return "string"
	case bsoncore.TypeEmbeddedDocument:
		return "object"
	case bsoncore.TypeArray:
		return "array"
	case bsoncore.TypeBinary:
		return "binData"
	case bsoncore.TypeObjectID:
		return "objectId"
	case bsoncore.TypeBoolean:
		return "bool"
	case bsoncore.TypeDateTime:
		return "date"
	case bsoncore.TypeNull:
		return "null"
	case bsoncore.TypeRegex:
		return "regex"
	case bsoncore.TypeInt32:
		return "int"
	case bsoncore.TypeTimestamp:
		return "timestamp"
	case bsoncore.TypeInt64:
		return "long"
	case bsoncore.TypeDecimal128:
		return "decimal"
	default:
		return t.String()
	}
}
