package query

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Matcher reports whether a document matches a compiled query filter.
type Matcher func(doc bson.D) bool

// CompileFilter compiles a query filter ({a: 1, b: {$gt: 2}, $or: [...]}).
// A bad filter is a *CommandError with the real server's code, so a client
// sees the same failure it would get from a server.
//
// $expr is refused: its expressions need the command's $$NOW and may fail
// while matching, which only CompileFilterAt's caller can report.
func CompileFilter(filter bson.D) (Matcher, error) {
	return (&compiler{}).compile(filter)
}

// CompileFilterAt compiles a query filter of a command that runs at now
// ($$NOW), with $expr. An expression that fails while a document is
// matched (an $add of a string, say) makes the document not match and is
// kept: failed returns the first such error, with which the command must
// fail, as the server's does.
func CompileFilterAt(filter bson.D, now time.Time) (m Matcher, failed func() error, err error) {
	c := &compiler{env: &exprEnv{now: bson.NewDateTimeFromTime(now)}}
	m, err = c.compile(filter)
	return m, func() error { return c.failure }, err
}

// compiler compiles one filter; env is nil where $expr is refused.
type compiler struct {
	env     *exprEnv
	failure error
}

func (c *compiler) compile(filter bson.D) (Matcher, error) {
	preds, err := c.compileAnd(filter)
	if err != nil {
		return nil, err
	}
	return func(doc bson.D) bool { return allOf(preds, doc) }, nil
}

func allOf(preds []Matcher, doc bson.D) bool {
	for _, p := range preds {
		if !p(doc) {
			return false
		}
	}
	return true
}

// compileAnd compiles every clause of a filter document.
func (c *compiler) compileAnd(filter bson.D) ([]Matcher, error) {
	preds := make([]Matcher, 0, len(filter))
	for _, e := range filter {
		if strings.HasPrefix(e.Key, "$") {
			p, err := c.compileTopLevel(e.Key, e.Value)
			if err != nil {
				return nil, err
			}
			if p != nil {
				preds = append(preds, p)
			}
			continue
		}
		lp, err := compileFieldValue(e.Value)
		if err != nil {
			return nil, err
		}
		parts := strings.Split(e.Key, ".")
		preds = append(preds, func(doc bson.D) bool { return lp(CollectLeaves(doc, parts, nil)) })
	}
	return preds, nil
}

func (c *compiler) compileTopLevel(op string, v any) (Matcher, error) {
	switch op {
	case "$and", "$or", "$nor":
		arr, ok := v.(bson.A)
		if !ok || len(arr) == 0 {
			return nil, cmdErr(codeBadValue, "%s must be a nonempty array", op)
		}
		subs := make([]Matcher, 0, len(arr))
		for _, x := range arr {
			d, ok := x.(bson.D)
			if !ok {
				return nil, cmdErr(codeBadValue, "$or/$and/$nor entries need to be full objects")
			}
			m, err := c.compile(d)
			if err != nil {
				return nil, err
			}
			subs = append(subs, m)
		}
		switch op {
		case "$and":
			return func(doc bson.D) bool { return allOf(subs, doc) }, nil
		case "$or":
			return func(doc bson.D) bool {
				for _, m := range subs {
					if m(doc) {
						return true
					}
				}
				return false
			}, nil
		default:
			return func(doc bson.D) bool {
				for _, m := range subs {
					if m(doc) {
						return false
					}
				}
				return true
			}, nil
		}
	case "$comment":
		return nil, nil
	case "$expr":
		if c.env == nil {
			return nil, notImplemented("$expr here (only in the filter of find, update, delete and findAndModify)")
		}
		if err := CheckExpr(v); err != nil {
			return nil, err
		}
		return func(doc bson.D) bool {
			r, err := evalIn(doc, v, c.env)
			if err != nil {
				if c.failure == nil {
					c.failure = err
				}
				return false
			}
			return coerceToBool(r)
		}, nil
	case "$where", "$text", "$jsonSchema", "$sampleRate":
		return nil, cmdErr(codeBadValue, "mongosim: %s is not supported", op)
	}
	return nil, cmdErr(codeBadValue,
		"unknown top level operator: %s. If you have a field name that starts with a '$' symbol, consider using $getField or $setField.", op)
}

// leaf is one value reached by a dotted path. A path that runs through
// arrays reaches several; ok is false for a branch where the field is
// missing, which matters to {a: null} and $exists.
type leaf struct {
	v  any
	ok bool
}

// CollectLeaves follows parts from v. Arrays met on the way are searched
// element by element, and a numeric component also indexes the array, as
// the server's path traversal does. A path that ends without a value adds
// a missing leaf: a field absent from a document reached, a scalar where
// the path goes on, an index past an array's end. An array's elements
// that are not documents add nothing: {"a.b": null} matches {a: [{}]},
// not {a: [1, 2]}, {a: [null]} nor {a: []} (the server's
// expression_leaf_test.cpp, EqOp MatchesNestedNull; the shared table in
// internal/matchcases).
func CollectLeaves(v any, parts []string, out []leaf) []leaf {
	switch x := v.(type) {
	case bson.D:
		val, found := Lookup(x, parts[0])
		if !found {
			return append(out, leaf{})
		}
		if len(parts) == 1 {
			return append(out, leaf{v: val, ok: true})
		}
		return CollectLeaves(val, parts[1:], out)
	case bson.A:
		n := len(out)
		i, isIndex := arrayIndex(parts[0])
		if isIndex && i < len(x) {
			if len(parts) == 1 {
				out = append(out, leaf{v: x[i], ok: true})
			} else {
				out = CollectLeaves(x[i], parts[1:], out)
			}
		}
		for _, e := range x {
			if d, ok := e.(bson.D); ok {
				out = CollectLeaves(d, parts, out)
			}
		}
		if len(out) == n && isIndex {
			out = append(out, leaf{}) // past the array's end
		}
		return out
	}
	return append(out, leaf{})
}

// arrayIndex parses a path component that names an array position.
func arrayIndex(s string) (int, bool) {
	if s == "" || len(s) > 9 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// leafPred tests the values a path reached.
type leafPred func(leaves []leaf) bool

// valPred tests one value.
type valPred func(v any) bool

// anyValue reports whether f holds for some value reached, or for an
// element of an array reached: {a: 1} matches {a: [1, 2]}.
func anyValue(leaves []leaf, f valPred) bool {
	for _, l := range leaves {
		if !l.ok {
			continue
		}
		if f(l.v) {
			return true
		}
		if arr, ok := l.v.(bson.A); ok {
			for _, e := range arr {
				if f(e) {
					return true
				}
			}
		}
	}
	return false
}

func anyMissing(leaves []leaf) bool {
	for _, l := range leaves {
		if !l.ok {
			return true
		}
	}
	return false
}

// compileFieldValue compiles the value given for a field: an operator
// document, a regular expression or a value to compare with.
func compileFieldValue(v any) (leafPred, error) {
	if d, ok := v.(bson.D); ok && len(d) > 0 && strings.HasPrefix(d[0].Key, "$") {
		return compileOperators(d)
	}
	if re, ok := v.(bson.Regex); ok {
		return compileRegexPred(re.Pattern, re.Options)
	}
	return eqPred(v), nil
}

func isNullish(v any) bool {
	switch v.(type) {
	case nil, bson.Null, bson.Undefined:
		return true
	}
	return false
}

// eqPred matches a value equal to x; null also matches a missing field.
func eqPred(x any) leafPred {
	if isNullish(x) {
		return func(leaves []leaf) bool {
			return anyMissing(leaves) || anyValue(leaves, isNullish)
		}
	}
	return func(leaves []leaf) bool {
		return anyValue(leaves, func(v any) bool { return valuesEqual(v, x) })
	}
}

// comparePred implements $gt, $gte, $lt and $lte: values compare only
// within x's type bracket, except that MinKey and MaxKey bound everything.
func comparePred(op string, x any) leafPred {
	ok := func(c int) bool {
		switch op {
		case "$gt":
			return c > 0
		case "$gte":
			return c >= 0
		case "$lt":
			return c < 0
		}
		return c <= 0
	}
	bx := typeBracket(x)
	pred := func(v any) bool {
		if bx != bracketMinKey && bx != bracketMaxKey && typeBracket(v) != bx {
			return false
		}
		if f, isF := v.(float64); isF && math.IsNaN(f) {
			// NaN equals only NaN for these operators.
			if g, isG := x.(float64); isG && math.IsNaN(g) {
				return op == "$gte" || op == "$lte"
			}
			return false
		}
		return ok(CompareValues(v, x))
	}
	if isNullish(x) && (op == "$gte" || op == "$lte") {
		return func(leaves []leaf) bool { return anyMissing(leaves) || anyValue(leaves, pred) }
	}
	return func(leaves []leaf) bool { return anyValue(leaves, pred) }
}

func notPred(p leafPred) leafPred { return func(l []leaf) bool { return !p(l) } }

// compileOperators compiles {$gt: 1, $lt: 5, ...}; all must hold.
func compileOperators(d bson.D) (leafPred, error) {
	var preds []leafPred
	var regex, options *string
	for _, e := range d {
		if e.Key == "$regex" || e.Key == "$options" {
			s, isStr := e.Value.(string)
			re, isRe := e.Value.(bson.Regex)
			switch {
			case e.Key == "$options" && isStr:
				options = &s
			case e.Key == "$options":
				return nil, cmdErr(codeBadValue, "$options has to be a string")
			case isStr:
				regex = &s
			case isRe:
				p := re.Pattern
				regex = &p
				if re.Options != "" {
					if options != nil {
						return nil, cmdErr(codeBadValue, "options set in both $regex and $options")
					}
					o := re.Options
					options = &o
				}
			default:
				return nil, cmdErr(codeBadValue, "$regex has to be a string")
			}
			continue
		}
		p, err := compileOperator(e.Key, e.Value)
		if err != nil {
			return nil, err
		}
		preds = append(preds, p)
	}
	if options != nil && regex == nil {
		return nil, cmdErr(codeBadValue, "$options needs a $regex")
	}
	if regex != nil {
		opts := ""
		if options != nil {
			opts = *options
		}
		p, err := compileRegexPred(*regex, opts)
		if err != nil {
			return nil, err
		}
		preds = append(preds, p)
	}
	return func(l []leaf) bool {
		for _, p := range preds {
			if !p(l) {
				return false
			}
		}
		return true
	}, nil
}

func compileOperator(op string, x any) (leafPred, error) {
	switch op {
	case "$eq":
		return eqPred(x), nil
	case "$ne":
		return notPred(eqPred(x)), nil
	case "$gt", "$gte", "$lt", "$lte":
		return comparePred(op, x), nil
	case "$in", "$nin":
		arr, ok := x.(bson.A)
		if !ok {
			return nil, cmdErr(codeBadValue, "%s needs an array", op)
		}
		alts := make([]leafPred, 0, len(arr))
		for _, v := range arr {
			if d, ok := v.(bson.D); ok && len(d) > 0 && strings.HasPrefix(d[0].Key, "$") {
				return nil, cmdErr(codeBadValue, "cannot nest $ under %s", op)
			}
			if re, ok := v.(bson.Regex); ok {
				p, err := compileRegexPred(re.Pattern, re.Options)
				if err != nil {
					return nil, err
				}
				alts = append(alts, p)
				continue
			}
			alts = append(alts, eqPred(v))
		}
		in := func(l []leaf) bool {
			for _, p := range alts {
				if p(l) {
					return true
				}
			}
			return false
		}
		if op == "$nin" {
			return notPred(in), nil
		}
		return in, nil
	case "$exists":
		want := Truthy(x)
		return func(l []leaf) bool {
			for _, lf := range l {
				if lf.ok {
					return want
				}
			}
			return !want
		}, nil
	case "$type":
		return compileType(x)
	case "$not":
		switch v := x.(type) {
		case bson.Regex:
			p, err := compileRegexPred(v.Pattern, v.Options)
			if err != nil {
				return nil, err
			}
			return notPred(p), nil
		case bson.D:
			if len(v) == 0 {
				return nil, cmdErr(codeBadValue, "$not cannot be empty")
			}
			if !strings.HasPrefix(v[0].Key, "$") {
				return nil, cmdErr(codeBadValue, "unknown operator: %s", v[0].Key)
			}
			p, err := compileOperators(v)
			if err != nil {
				return nil, err
			}
			return notPred(p), nil
		}
		return nil, cmdErr(codeBadValue, "$not needs a regex or a document")
	case "$size":
		if !IsNumber(x) {
			return nil, cmdErr(codeBadValue, "$size needs a number")
		}
		size, ok := numberAsInt(x)
		if !ok {
			return nil, cmdErr(codeBadValue, "$size must be a whole number")
		}
		if size < 0 {
			return nil, cmdErr(codeBadValue, "$size may not be negative")
		}
		return func(l []leaf) bool {
			for _, lf := range l {
				if arr, ok := lf.v.(bson.A); ok && lf.ok && int64(len(arr)) == size {
					return true
				}
			}
			return false
		}, nil
	case "$elemMatch":
		return compileElemMatch(x)
	case "$all":
		arr, ok := x.(bson.A)
		if !ok {
			return nil, cmdErr(codeBadValue, "$all needs an array")
		}
		preds := make([]leafPred, 0, len(arr))
		for _, v := range arr {
			if d, ok := v.(bson.D); ok && len(d) > 0 && d[0].Key == "$elemMatch" {
				p, err := compileElemMatch(d[0].Value)
				if err != nil {
					return nil, err
				}
				preds = append(preds, p)
				continue
			}
			if d, ok := v.(bson.D); ok && len(d) > 0 && strings.HasPrefix(d[0].Key, "$") {
				return nil, cmdErr(codeBadValue, "no $ expressions in $all")
			}
			if re, ok := v.(bson.Regex); ok {
				p, err := compileRegexPred(re.Pattern, re.Options)
				if err != nil {
					return nil, err
				}
				preds = append(preds, p)
				continue
			}
			preds = append(preds, eqPred(v))
		}
		return func(l []leaf) bool {
			if len(preds) == 0 {
				return false
			}
			for _, p := range preds {
				if !p(l) {
					return false
				}
			}
			return true
		}, nil
	case "$mod":
		arr, ok := x.(bson.A)
		if !ok || len(arr) != 2 {
			if ok && len(arr) < 2 {
				return nil, cmdErr(codeBadValue, "malformed mod, not enough elements")
			}
			if ok {
				return nil, cmdErr(codeBadValue, "malformed mod, too many elements")
			}
			return nil, cmdErr(codeBadValue, "malformed mod, needs to be an array")
		}
		if !IsNumber(arr[0]) {
			return nil, cmdErr(codeBadValue, "malformed mod, divisor not a number")
		}
		if !IsNumber(arr[1]) {
			return nil, cmdErr(codeBadValue, "malformed mod, remainder not a number")
		}
		div, rem := int64(NumberFloat(arr[0])), int64(NumberFloat(arr[1]))
		if div == 0 {
			return nil, cmdErr(codeBadValue, "divisor cannot be 0")
		}
		return func(l []leaf) bool {
			return anyValue(l, func(v any) bool {
				if !IsNumber(v) {
					return false
				}
				f := NumberFloat(v)
				if math.IsNaN(f) || math.IsInf(f, 0) {
					return false
				}
				return int64(f)%div == rem
			})
		}, nil
	case "$comment":
		return func([]leaf) bool { return true }, nil
	}
	return nil, cmdErr(codeBadValue, "unknown operator: %s", op)
}

// Truthy reports whether a value counts as true, as in a projection
// ({a: 1}) or an index option: false, null, 0 and missing do not.
func Truthy(x any) bool {
	switch v := x.(type) {
	case bool:
		return v
	case nil, bson.Null, bson.Undefined:
		return false
	}
	if IsNumber(x) {
		return NumberFloat(x) != 0
	}
	return true
}

func compileElemMatch(x any) (leafPred, error) {
	d, ok := x.(bson.D)
	if !ok {
		return nil, cmdErr(codeBadValue, "$elemMatch needs an Object")
	}
	var elem func(e any) bool
	if len(d) > 0 && strings.HasPrefix(d[0].Key, "$") && d[0].Key != "$and" && d[0].Key != "$or" && d[0].Key != "$nor" {
		p, err := compileOperators(d)
		if err != nil {
			return nil, err
		}
		elem = func(e any) bool { return p([]leaf{{v: e, ok: true}}) }
	} else {
		m, err := CompileFilter(d)
		if err != nil {
			return nil, err
		}
		elem = func(e any) bool {
			doc, ok := e.(bson.D)
			return ok && m(doc)
		}
	}
	return func(l []leaf) bool {
		for _, lf := range l {
			arr, ok := lf.v.(bson.A)
			if !ok || !lf.ok {
				continue
			}
			for _, e := range arr {
				if elem(e) {
					return true
				}
			}
		}
		return false
	}, nil
}

// compileRegex translates the server's (PCRE) options to Go syntax. The
// server accepts i, m, s, x and u; x is applied by dropping unescaped
// whitespace and comments, which covers the common use.
func compileRegex(pattern, options string) (*regexp.Regexp, error) {
	flags := ""
	for _, o := range options {
		switch o {
		case 'i', 'm', 's':
			if !strings.ContainsRune(flags, o) {
				flags += string(o)
			}
		case 'x':
			pattern = stripExtended(pattern)
		case 'u':
		default:
			return nil, cmdErr(51108, "invalid flag in regex options: %c", o)
		}
	}
	if flags != "" {
		pattern = "(?" + flags + ")" + pattern
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, cmdErr(51091, "Regular expression is invalid: %v", err)
	}
	return re, nil
}

func stripExtended(p string) string {
	var sb strings.Builder
	inClass, comment := false, false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case comment:
			if c == '\n' {
				comment = false
			}
		case c == '\\' && i+1 < len(p):
			sb.WriteByte(c)
			i++
			sb.WriteByte(p[i])
		case c == '[':
			inClass = true
			sb.WriteByte(c)
		case c == ']':
			inClass = false
			sb.WriteByte(c)
		case !inClass && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
		case !inClass && c == '#':
			comment = true
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// compileRegexPred matches strings and symbols against a pattern; a
// stored regex value matches when it is the same regex.
func compileRegexPred(pattern, options string) (leafPred, error) {
	re, err := compileRegex(pattern, options)
	if err != nil {
		return nil, err
	}
	self := bson.Regex{Pattern: pattern, Options: options}
	return func(l []leaf) bool {
		return anyValue(l, func(v any) bool {
			switch s := v.(type) {
			case string:
				return re.MatchString(s)
			case bson.Symbol:
				return re.MatchString(string(s))
			case bson.Regex:
				return s == self
			}
			return false
		})
	}, nil
}

// typeAliases maps $type names to BSON type numbers.
var typeAliases = map[string]int32{
	"double": 1, "string": 2, "object": 3, "array": 4, "binData": 5, "undefined": 6,
	"objectId": 7, "bool": 8, "date": 9, "null": 10, "regex": 11, "dbPointer": 12,
	"javascript": 13, "symbol": 14, "javascriptWithScope": 15, "int": 16,
	"timestamp": 17, "long": 18, "decimal": 19, "minKey": -1, "maxKey": 127,
}

const typeNumber = 1000 // "number": any numeric type

func parseTypeCode(x any) (int32, error) {
	if s, ok := x.(string); ok {
		if s == "number" {
			return typeNumber, nil
		}
		if c, ok := typeAliases[s]; ok {
			return c, nil
		}
		return 0, cmdErr(codeBadValue, "Unknown type name alias: %s", s)
	}
	if !IsNumber(x) {
		return 0, cmdErr(codeTypeMismatch, "type must be represented as a number or a string")
	}
	f := NumberFloat(x)
	if f != math.Trunc(f) {
		return 0, cmdErr(codeBadValue, "Invalid numerical type code: %s", strconv.FormatFloat(f, 'g', -1, 64))
	}
	c := int32(f)
	if (c < 1 || c > 19) && c != -1 && c != 127 {
		return 0, cmdErr(codeBadValue, "Invalid numerical type code: %d", c)
	}
	return c, nil
}

func compileType(x any) (leafPred, error) {
	var codes []int32
	if arr, ok := x.(bson.A); ok {
		for _, v := range arr {
			c, err := parseTypeCode(v)
			if err != nil {
				return nil, err
			}
			codes = append(codes, c)
		}
	} else {
		c, err := parseTypeCode(x)
		if err != nil {
			return nil, err
		}
		codes = []int32{c}
	}
	has := func(v any) bool {
		t := int32(int8(bsonTypeOf(v)))
		if bsonTypeOf(v) == bson.TypeMaxKey {
			t = 127
		}
		for _, c := range codes {
			if c == t || c == typeNumber && IsNumber(v) {
				return true
			}
		}
		return false
	}
	return func(l []leaf) bool { return anyValue(l, has) }, nil
}
