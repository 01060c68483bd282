package query

import (
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Update kinds.
const (
	updOperators = iota
	UpdReplacement
	UpdPipeline
)

// UpdateSpec is a parsed update statement's u field.
type UpdateSpec struct {
	Kind        int
	ops         []updateOp
	Replacement bson.D
	pipeline    []bson.D
}

// updateOp is one field of one update operator ({$inc: {a: 1}} gives one).
type updateOp struct {
	op    string
	path  string
	parts []string
	arg   any
	to    []string // $rename target
}

var updateOperators = []string{"$set", "$unset", "$inc", "$mul", "$min", "$max", "$push", "$addToSet",
	"$pop", "$pull", "$pullAll", "$rename", "$currentDate", "$setOnInsert"}

// ParseUpdate parses u: an operator document, a replacement document or a
// pipeline (array).
func ParseUpdate(u any) (*UpdateSpec, error) {
	switch x := u.(type) {
	case bson.A:
		spec := &UpdateSpec{Kind: UpdPipeline}
		for _, st := range x {
			d, ok := st.(bson.D)
			if !ok || len(d) != 1 {
				return nil, cmdErr(codeFailedToParse, "A pipeline stage specification object must contain exactly one field.")
			}
			switch d[0].Key {
			case "$set", "$addFields", "$unset", "$project", "$replaceRoot", "$replaceWith":
			default:
				return nil, cmdErr(codeInvalidOptions, "%s is not allowed to be used within an update", d[0].Key)
			}
			spec.pipeline = append(spec.pipeline, d)
		}
		return spec, nil
	case bson.D:
		if len(x) == 0 || !strings.HasPrefix(x[0].Key, "$") {
			for _, e := range x {
				if strings.HasPrefix(e.Key, "$") {
					return nil, cmdErr(codeDollarPrefixedFieldName,
						"The dollar ($) prefixed field '%s' in '%s' is not allowed in the context of an update's replacement document. Consider using an aggregation pipeline with $replaceWith.",
						e.Key, e.Key)
				}
			}
			return &UpdateSpec{Kind: UpdReplacement, Replacement: x}, nil
		}
		spec := &UpdateSpec{Kind: updOperators}
		for _, e := range x {
			if !slices.Contains(updateOperators, e.Key) {
				return nil, cmdErr(codeFailedToParse,
					"Unknown modifier: %s. Expected a valid update modifier or pipeline-style update specified as an array", e.Key)
			}
			fields, ok := e.Value.(bson.D)
			if !ok {
				return nil, cmdErr(codeFailedToParse,
					"Modifiers operate on fields but we found type %s instead. For example: {$mod: {<field>: ...}} not {%s: %s}",
					TypeName(e.Value), e.Key, FormatValue(e.Value))
			}
			for _, f := range fields {
				op := updateOp{op: e.Key, path: f.Key, arg: f.Value}
				var err error
				if op.parts, err = splitUpdatePath(f.Key); err != nil {
					return nil, err
				}
				if e.Key == "$rename" {
					to, ok := f.Value.(string)
					if !ok {
						return nil, cmdErr(codeBadValue, "The 'to' field for $rename must be a string: %s: %s", f.Key, FormatValue(f.Value))
					}
					if to == f.Key {
						return nil, cmdErr(codeBadValue, "The source and target field for $rename must differ: %s: %s", f.Key, FormatValue(f.Value))
					}
					if op.to, err = splitUpdatePath(to); err != nil {
						return nil, err
					}
				}
				if err := checkOpArg(op); err != nil {
					return nil, err
				}
				spec.ops = append(spec.ops, op)
			}
		}
		if err := checkConflicts(spec.ops); err != nil {
			return nil, err
		}
		return spec, nil
	}
	return nil, cmdErr(codeFailedToParse, "Update argument must be either an object or an array")
}

// TypeName is the server's name of v's BSON type, for error messages.
func TypeName(v any) string { return TypeAlias(bsoncore.Type(bsonTypeOf(v))) }

func splitUpdatePath(p string) ([]string, error) {
	if p == "" {
		return nil, cmdErr(56, "An update path '' contains an empty field name, which is not allowed.")
	}
	parts := strings.Split(p, ".")
	for _, c := range parts {
		if c == "" {
			return nil, cmdErr(56, "The update path '%s' contains an empty field name, which is not allowed.", p)
		}
	}
	return parts, nil
}

// checkOpArg validates what can be checked before a document is seen.
func checkOpArg(op updateOp) error {
	switch op.op {
	case "$inc", "$mul":
		if !IsNumber(op.arg) {
			verb := "increment"
			if op.op == "$mul" {
				verb = "multiply"
			}
			return cmdErr(codeTypeMismatch, "Cannot %s with non-numeric argument: {%s: %s}", verb, op.path, FormatValue(op.arg))
		}
	case "$pop":
		if !IsNumber(op.arg) || (NumberFloat(op.arg) != 1 && NumberFloat(op.arg) != -1) {
			return cmdErr(codeFailedToParse, "$pop expects 1 or -1, found: %s", FormatValue(op.arg))
		}
	case "$pullAll":
		if _, ok := op.arg.(bson.A); !ok {
			return cmdErr(codeBadValue, "$pullAll requires an array argument but was given a %s", TypeName(op.arg))
		}
	case "$currentDate":
		if _, ok := op.arg.(bool); ok {
			return nil
		}
		if d, ok := op.arg.(bson.D); ok && len(d) == 1 && d[0].Key == "$type" && (d[0].Value == "date" || d[0].Value == "timestamp") {
			return nil
		}
		return cmdErr(codeBadValue, "The '$type' string field is required to be 'date' or 'timestamp': {$currentDate: {field : {$type: 'date'}}}")
	case "$push", "$addToSet":
		d, ok := op.arg.(bson.D)
		if !ok || !HasKey(d, "$each") {
			return nil
		}
		if _, ok := MustLookup(d, "$each").(bson.A); !ok {
			return cmdErr(codeBadValue, "The argument to $each in %s must be an array but it was of type: %s", op.op, TypeName(MustLookup(d, "$each")))
		}
		for _, e := range d {
			switch {
			case e.Key == "$each":
			case op.op == "$push" && (e.Key == "$slice" || e.Key == "$position"):
				if _, ok := numberAsInt(e.Value); !ok {
					return cmdErr(codeBadValue, "The value for %s must be an integer value but found %s of type %s",
						e.Key, FormatValue(e.Value), TypeName(e.Value))
				}
			case op.op == "$push" && e.Key == "$sort":
			default:
				return cmdErr(codeBadValue, "Unrecognized clause in %s: %s", op.op, e.Key)
			}
		}
	}
	return nil
}

// HasKey reports whether d has a top-level field k.
func HasKey(d bson.D, k string) bool { _, ok := Lookup(d, k); return ok }

// MustLookup returns the value of field k of d, nil when it is absent.
func MustLookup(d bson.D, k string) any { v, _ := Lookup(d, k); return v }

func numberAsInt(v any) (int64, bool) {
	if !IsNumber(v) {
		return 0, false
	}
	f := NumberFloat(v)
	if f != math.Trunc(f) {
		return 0, false
	}
	if n, ok := v.(int64); ok {
		return n, true
	}
	return int64(f), true
}

// checkConflicts rejects two operators touching the same path or a path
// and its prefix, as the server's update tree does.
func checkConflicts(ops []updateOp) error {
	var all [][]string
	for _, op := range ops {
		all = append(all, op.parts)
		if op.to != nil {
			all = append(all, op.to)
		}
	}
	for i := range all {
		for j := range i {
			a, b := all[j], all[i]
			n := min(len(a), len(b))
			if slices.Equal(a[:n], b[:n]) {
				return cmdErr(codeConflictingUpdateOperators, "Updating the path '%s' would create a conflict at '%s'",
					strings.Join(b, "."), strings.Join(b[:n], "."))
			}
		}
	}
	return nil
}

// UpdateContext is what applying an update needs besides the document.
type UpdateContext struct {
	Inserting    bool // an upsert inserting a new document ($setOnInsert applies)
	ArrayFilters map[string]Matcher
	Now          time.Time
	TS           bson.Timestamp // for $currentDate {$type: "timestamp"}
	// Log, when set, collects what each operator changed, for the
	// change event's updateDescription.
	Log *UpdateLog
}

// Apply returns the updated copy of old; old is not modified.
func (s *UpdateSpec) Apply(old bson.D, uc *UpdateContext) (bson.D, error) {
	switch s.Kind {
	case UpdReplacement:
		out := make(bson.D, 0, len(s.Replacement)+1)
		if id, ok := Lookup(old, "_id"); ok {
			if rid, has := Lookup(s.Replacement, "_id"); has && !Identical(id, rid) {
				return nil, cmdErr(codeImmutableField,
					"After applying the update, the (immutable) field '_id' was found to have been altered to _id: %s", FormatValue(rid))
			}
			out = append(out, bson.E{Key: "_id", Value: id})
		}
		for _, e := range s.Replacement {
			if e.Key != "_id" || len(out) == 0 {
				out = append(out, bson.E{Key: e.Key, Value: CloneValue(e.Value)})
			}
		}
		return out, nil
	case UpdPipeline:
		var env *exprEnv // without the command's time, $$NOW is refused
		if !uc.Now.IsZero() {
			env = &exprEnv{now: bson.NewDateTimeFromTime(uc.Now)}
		}
		return applyPipelineUpdate(old, s.pipeline, env)
	}
	doc := CloneDoc(old)
	if doc == nil {
		doc = bson.D{}
	}
	for _, op := range s.ops {
		if op.op == "$setOnInsert" && !uc.Inserting {
			continue
		}
		paths, err := expandPositional(doc, op.parts, uc)
		if err != nil {
			return nil, err
		}
		for _, parts := range paths {
			if parts[0] == "_id" && !uc.Inserting && op.op != "$set" && op.op != "$setOnInsert" && op.op != "$min" && op.op != "$max" {
				if _, had := Lookup(old, "_id"); had && op.op != "$rename" {
					return nil, immutableID()
				}
			}
			var v any
			if v, err = applyOp(doc, op, parts, uc); err != nil {
				return nil, err
			}
			if uc.Log != nil {
				// old, which apply never modifies, is the state before
				// this operator: the operators of one update touch
				// disjoint paths (checkConflicts).
				uc.Log.record(op, parts, old, v.(bson.D))
			}
			doc = v.(bson.D)
		}
	}
	if id, ok := Lookup(old, "_id"); ok && !uc.Inserting {
		nid, has := Lookup(doc, "_id")
		if !has || !Identical(id, nid) {
			return nil, immutableID()
		}
	}
	return doc, nil
}

func immutableID() error {
	return cmdErr(codeImmutableField, "Performing an update on the path '_id' would modify the immutable field '_id'")
}

// expandPositional turns a path with $[] or $[<id>] into the concrete
// paths it names in doc. The plain positional $ needs the query's match
// position, which the simulator does not track.
func expandPositional(doc bson.D, parts []string, uc *UpdateContext) ([][]string, error) {
	pos := -1
	for i, c := range parts {
		if strings.HasPrefix(c, "$") {
			pos = i
			break
		}
	}
	if pos < 0 {
		return [][]string{parts}, nil
	}
	c := parts[pos]
	if c == "$" {
		// The server resolves $ to the array position the query matched;
		// the matcher here does not report positions.
		return nil, notImplemented("the positional $ update operator (use $[] or $[<identifier>] with arrayFilters)")
	}
	if !strings.HasPrefix(c, "$[") || !strings.HasSuffix(c, "]") {
		return [][]string{parts}, nil
	}
	id := c[2 : len(c)-1]
	var filter Matcher
	if id != "" {
		filter = uc.ArrayFilters[id]
		if filter == nil {
			return nil, cmdErr(codeBadValue, "No array filter found for identifier '%s' in path '%s'", id, strings.Join(parts, "."))
		}
	}
	leaves := CollectLeaves(doc, parts[:pos], nil)
	var arr bson.A
	if len(leaves) == 1 && leaves[0].ok {
		arr, _ = leaves[0].v.(bson.A)
	}
	if arr == nil {
		if uc.Inserting {
			return nil, cmdErr(2, "The path '%s' must exist in the document in order to apply array updates.", strings.Join(parts[:pos], "."))
		}
		return nil, cmdErr(2, "The path '%s' must exist in the document in order to apply array updates.", strings.Join(parts[:pos], "."))
	}
	var out [][]string
	for i, e := range arr {
		if filter != nil && !filter(bson.D{{Key: id, Value: e}}) {
			continue
		}
		concrete := append(slices.Clone(parts[:pos]), strconv.Itoa(i))
		rest, err := expandPositional(doc, append(concrete, parts[pos+1:]...), uc)
		if err != nil {
			return nil, err
		}
		out = append(out, rest...)
	}
	return out, nil
}

// leafAction tells modifyPath what to do with the field it reached.
type leafAction int

const (
	actKeep leafAction = iota
	actSet
	actRemove
)

type leafFunc func(cur any, exists bool) (any, leafAction, error)

// modifyPath returns container c with fn applied at parts. Containers on
// the way are copied, never modified, except those freshly cloned by the
// caller. Missing parents are created when create is set.
func modifyPath(c any, parts []string, create bool, fn leafFunc) (any, error) {
	switch x := c.(type) {
	case bson.D:
		i := slices.IndexFunc(x, func(e bson.E) bool { return e.Key == parts[0] })
		var cur any
		if i >= 0 {
			cur = x[i].Value
		}
		nv, act, err := descend(cur, i >= 0, parts, create, fn)
		if err != nil {
			return nil, err
		}
		switch act {
		case actSet:
			if i >= 0 {
				x[i].Value = nv
			} else {
				x = append(x, bson.E{Key: parts[0], Value: nv})
			}
		case actRemove:
			if i >= 0 {
				x = slices.Delete(x, i, i+1)
			}
		}
		return x, nil
	case bson.A:
		idx, ok := arrayIndex(parts[0])
		if !ok {
			if create {
				return nil, cmdErr(28, "Cannot create field '%s' in element {%s}", parts[0], FormatValue(x))
			}
			return x, nil
		}
		var cur any
		exists := idx < len(x)
		if exists {
			cur = x[idx]
		}
		nv, act, err := descend(cur, exists, parts, create, fn)
		if err != nil {
			return nil, err
		}
		switch act {
		case actSet:
			for len(x) <= idx {
				x = append(x, nil)
			}
			x[idx] = nv
		case actRemove:
			if exists {
				x[idx] = nil // $unset on an array element leaves null
			}
		}
		return x, nil
	}
	return c, nil
}

func descend(cur any, exists bool, parts []string, create bool, fn leafFunc) (any, leafAction, error) {
	if len(parts) == 1 {
		return fn(cur, exists)
	}
	if !exists {
		if !create {
			return nil, actKeep, nil
		}
		nv, err := modifyPath(bson.D{}, parts[1:], create, fn)
		if err != nil {
			return nil, actKeep, err
		}
		if d, ok := nv.(bson.D); ok && len(d) == 0 {
			return nil, actKeep, nil
		}
		return nv, actSet, nil
	}
	switch cur.(type) {
	case bson.D, bson.A:
		nv, err := modifyPath(cur, parts[1:], create, fn)
		if err != nil {
			return nil, actKeep, err
		}
		return nv, actSet, nil
	}
	if create {
		return nil, actKeep, cmdErr(28, "Cannot create field '%s' in element {%s: %s}", parts[1], parts[0], FormatValue(cur))
	}
	return nil, actKeep, nil
}

// DocPathValue returns the value at a dotted path, through array
// indexes, as an update addresses it.
func DocPathValue(doc bson.D, parts []string) (any, bool) {
	var cur any = doc
	for _, p := range parts {
		switch x := cur.(type) {
		case bson.D:
			v, ok := Lookup(x, p)
			if !ok {
				return nil, false
			}
			cur = v
		case bson.A:
			i, ok := arrayIndex(p)
			if !ok || i >= len(x) {
				return nil, false
			}
			cur = x[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

func idString(doc bson.D) string {
	id, _ := Lookup(doc, "_id")
	return "{_id: " + FormatValue(id) + "}"
}

// applyOp applies one operator at one concrete path of doc.
func applyOp(doc bson.D, op updateOp, parts []string, uc *UpdateContext) (any, error) {
	path := strings.Join(parts, ".")
	switch op.op {
	case "$set", "$setOnInsert":
		return modifyPath(doc, parts, true, func(any, bool) (any, leafAction, error) {
			return CloneValue(op.arg), actSet, nil
		})
	case "$unset":
		return modifyPath(doc, parts, false, func(_ any, exists bool) (any, leafAction, error) {
			if !exists {
				return nil, actKeep, nil
			}
			return nil, actRemove, nil
		})
	case "$inc", "$mul":
		return modifyPath(doc, parts, true, func(cur any, exists bool) (any, leafAction, error) {
			if !exists {
				if op.op == "$mul" {
					return arith("$mul", zeroOf(op.arg), op.arg), actSet, nil
				}
				return op.arg, actSet, nil
			}
			if !IsNumber(cur) {
				return nil, actKeep, cmdErr(codeTypeMismatch,
					"Cannot apply %s to a value of non-numeric type. %s has the field '%s' of non-numeric type %s",
					op.op, idString(doc), parts[len(parts)-1], TypeName(cur))
			}
			return arith(op.op, cur, op.arg), actSet, nil
		})
	case "$min", "$max":
		return modifyPath(doc, parts, true, func(cur any, exists bool) (any, leafAction, error) {
			c := CompareValues(op.arg, cur)
			if !exists || (op.op == "$min" && c < 0) || (op.op == "$max" && c > 0) {
				return CloneValue(op.arg), actSet, nil
			}
			return nil, actKeep, nil
		})
	case "$currentDate":
		var v any = bson.NewDateTimeFromTime(uc.Now)
		if d, ok := op.arg.(bson.D); ok && d[0].Value == "timestamp" {
			v = uc.TS
		}
		return modifyPath(doc, parts, true, func(any, bool) (any, leafAction, error) { return v, actSet, nil })
	case "$rename":
		v, ok := DocPathValue(doc, parts)
		if !ok {
			return doc, nil
		}
		if _, isArr := getPathParentArray(doc, parts); isArr {
			return nil, cmdErr(codeBadValue, "The source field cannot be an array element, '%s' in doc with _id: %s has an array field called '%s'",
				path, FormatValue(MustLookup(doc, "_id")), parts[0])
		}
		removed, err := modifyPath(doc, parts, false, func(any, bool) (any, leafAction, error) { return nil, actRemove, nil })
		if err != nil {
			return nil, err
		}
		return modifyPath(removed, op.to, true, func(any, bool) (any, leafAction, error) { return v, actSet, nil })
	case "$push", "$addToSet":
		return modifyPath(doc, parts, true, func(cur any, exists bool) (any, leafAction, error) {
			var arr bson.A
			if exists {
				a, ok := cur.(bson.A)
				if !ok {
					return nil, actKeep, cmdErr(codeBadValue, "The field '%s' must be an array but is of type %s in document %s",
						path, TypeName(cur), idString(doc))
				}
				arr = a
			} else {
				arr = bson.A{}
			}
			return pushValues(op, arr)
		})
	case "$pop":
		return modifyPath(doc, parts, false, func(cur any, exists bool) (any, leafAction, error) {
			if !exists {
				return nil, actKeep, nil
			}
			arr, ok := cur.(bson.A)
			if !ok {
				return nil, actKeep, cmdErr(codeTypeMismatch, "Path '%s' contains an element of non-array type '%s'", path, TypeName(cur))
			}
			if len(arr) == 0 {
				return nil, actKeep, nil
			}
			if NumberFloat(op.arg) > 0 {
				return arr[:len(arr)-1], actSet, nil
			}
			return arr[1:], actSet, nil
		})
	case "$pull", "$pullAll":
		match, err := pullMatcher(op)
		if err != nil {
			return nil, err
		}
		return modifyPath(doc, parts, false, func(cur any, exists bool) (any, leafAction, error) {
			if !exists {
				return nil, actKeep, nil
			}
			arr, ok := cur.(bson.A)
			if !ok {
				return nil, actKeep, cmdErr(codeBadValue, "Cannot apply %s to a non-array value", op.op)
			}
			out := make(bson.A, 0, len(arr))
			for _, e := range arr {
				if !match(e) {
					out = append(out, e)
				}
			}
			if len(out) == len(arr) {
				return nil, actKeep, nil
			}
			return out, actSet, nil
		})
	}
	return nil, cmdErr(codeFailedToParse, "Unknown modifier: %s", op.op)
}

func getPathParentArray(doc bson.D, parts []string) (any, bool) {
	if len(parts) < 2 {
		return nil, false
	}
	v, ok := DocPathValue(doc, parts[:len(parts)-1])
	if !ok {
		return nil, false
	}
	_, isArr := v.(bson.A)
	return v, isArr
}

func pullMatcher(op updateOp) (func(any) bool, error) {
	if op.op == "$pullAll" {
		vals := op.arg.(bson.A)
		return func(e any) bool {
			for _, v := range vals {
				if valuesEqual(e, v) {
					return true
				}
			}
			return false
		}, nil
	}
	switch x := op.arg.(type) {
	case bson.D:
		if len(x) > 0 && strings.HasPrefix(x[0].Key, "$") && x[0].Key != "$and" && x[0].Key != "$or" && x[0].Key != "$nor" {
			p, err := compileOperators(x)
			if err != nil {
				return nil, err
			}
			return func(e any) bool { return p([]leaf{{v: e, ok: true}}) }, nil
		}
		m, err := CompileFilter(x)
		if err != nil {
			return nil, err
		}
		return func(e any) bool {
			d, ok := e.(bson.D)
			return ok && m(d)
		}, nil
	case bson.Regex:
		p, err := compileRegexPred(x.Pattern, x.Options)
		if err != nil {
			return nil, err
		}
		return func(e any) bool { return p([]leaf{{v: e, ok: true}}) }, nil
	}
	return func(e any) bool { return valuesEqual(e, op.arg) }, nil
}

// pushValues implements $push (with $each, $position, $slice, $sort) and
// $addToSet (with $each).
func pushValues(op updateOp, arr bson.A) (any, leafAction, error) {
	each := bson.A{op.arg}
	var mods bson.D
	if d, ok := op.arg.(bson.D); ok && HasKey(d, "$each") {
		each = MustLookup(d, "$each").(bson.A)
		mods = d
	}
	out := slices.Clone(arr)
	if op.op == "$addToSet" {
		changed := false
		for _, v := range each {
			if !slices.ContainsFunc(out, func(e any) bool { return valuesEqual(e, v) }) {
				out = append(out, CloneValue(v))
				changed = true
			}
		}
		if !changed {
			return nil, actKeep, nil
		}
		return out, actSet, nil
	}
	pos := len(out)
	if v, ok := Lookup(mods, "$position"); ok {
		p, _ := numberAsInt(v)
		if p < 0 {
			p = max(int64(len(out))+p, 0)
		}
		pos = int(min(p, int64(len(out))))
	}
	vals := make(bson.A, len(each))
	for i, v := range each {
		vals[i] = CloneValue(v)
	}
	out = slices.Insert(out, pos, vals...)
	if spec, ok := Lookup(mods, "$sort"); ok {
		if err := sortArray(out, spec); err != nil {
			return nil, actKeep, err
		}
	}
	if v, ok := Lookup(mods, "$slice"); ok {
		n, _ := numberAsInt(v)
		switch {
		case n >= 0 && int(n) < len(out):
			out = out[:n]
		case n < 0 && int(-n) < len(out):
			out = out[len(out)+int(n):]
		}
	}
	return out, actSet, nil
}

func sortArray(arr bson.A, spec any) error {
	if IsNumber(spec) {
		dir := NumberFloat(spec)
		if dir != 1 && dir != -1 {
			return cmdErr(codeBadValue, "The $sort element value must be either 1 or -1")
		}
		sort.SliceStable(arr, func(i, j int) bool {
			return CompareValues(arr[i], arr[j])*int(dir) < 0
		})
		return nil
	}
	d, ok := spec.(bson.D)
	if !ok || len(d) == 0 {
		return cmdErr(codeBadValue, "The $sort is invalid: use 1/-1 to sort the whole element, or {field:1/-1} to sort embedded fields")
	}
	cmp, err := CompileSort(d)
	if err != nil {
		return err
	}
	sort.SliceStable(arr, func(i, j int) bool {
		a, _ := arr[i].(bson.D)
		b, _ := arr[j].(bson.D)
		return cmp(a, b) < 0
	})
	return nil
}

// zeroOf returns 0 with the numeric type of v.
func zeroOf(v any) any {
	switch v.(type) {
	case int64:
		return int64(0)
	case float64:
		return float64(0)
	case bson.Decimal128:
		d, _ := bson.ParseDecimal128("0")
		return d
	}
	return int32(0)
}

// arith adds or multiplies two numbers with the server's type promotion:
// int32 widens to int64 on overflow, int64 to double.
func arith(op string, a, b any) any {
	rank := func(v any) int {
		switch v.(type) {
		case int32:
			return 0
		case int64:
			return 1
		case float64:
			return 2
		}
		return 3
	}
	r := max(rank(a), rank(b))
	switch r {
	case 0, 1:
		x, _ := numberAsInt(a)
		y, _ := numberAsInt(b)
		var res int64
		var overflow bool
		if op == "$inc" {
			res = x + y
			overflow = (x > 0 && y > 0 && res < 0) || (x < 0 && y < 0 && res >= 0)
		} else {
			res = x * y
			overflow = x != 0 && (res/x != y || (x == -1 && y == math.MinInt64) || (y == -1 && x == math.MinInt64))
		}
		if overflow {
			if op == "$inc" {
				return float64(x) + float64(y)
			}
			return float64(x) * float64(y)
		}
		if r == 0 && res >= math.MinInt32 && res <= math.MaxInt32 {
			return int32(res)
		}
		return res
	case 2:
		if op == "$inc" {
			return NumberFloat(a) + NumberFloat(b)
		}
		return NumberFloat(a) * NumberFloat(b)
	}
	var f float64
	if op == "$inc" {
		f = NumberFloat(a) + NumberFloat(b)
	} else {
		f = NumberFloat(a) * NumberFloat(b)
	}
	d, err := bson.ParseDecimal128(strconv.FormatFloat(f, 'g', -1, 64))
	if err != nil {
		return f
	}
	return d
}

// applyPipelineUpdate runs an update pipeline, with the expressions evalIn
// evaluates.
func applyPipelineUpdate(old bson.D, pipeline []bson.D, env *exprEnv) (bson.D, error) {
	doc := CloneDoc(old)
	for _, st := range pipeline {
		var err error
		if doc, err = applyDocStage(doc, st[0].Key, st[0].Value, env); err != nil {
			return nil, err
		}
	}
	if id, ok := Lookup(old, "_id"); ok {
		nid, has := Lookup(doc, "_id")
		if !has || !Identical(id, nid) {
			return nil, immutableID()
		}
	}
	return doc, nil
}

// applyDocStage applies a per-document stage ($set, $addFields, $unset,
// $project, $replaceRoot, $replaceWith) to doc, a private copy.
func applyDocStage(doc bson.D, name string, spec any, env *exprEnv) (bson.D, error) {
	switch name {
	case "$set", "$addFields":
		fields, ok := spec.(bson.D)
		if !ok {
			return nil, cmdErr(40272, "%s specification stage must be an object, got %s", name, TypeName(spec))
		}
		root := doc
		for _, f := range fields {
			v, err := evalIn(root, f.Value, env)
			if err != nil {
				return nil, err
			}
			parts := strings.Split(f.Key, ".")
			nv, err := modifyPath(doc, parts, true, func(cur any, exists bool) (any, leafAction, error) {
				if cd, ok := cur.(bson.D); ok && exists {
					if vd, ok := v.(bson.D); ok && isObjectExpr(f.Value) {
						return mergeDocs(cd, vd), actSet, nil
					}
				}
				return v, actSet, nil
			})
			if err != nil {
				return nil, err
			}
			doc = nv.(bson.D)
		}
		return doc, nil
	case "$unset":
		var paths []string
		switch x := spec.(type) {
		case string:
			paths = []string{x}
		case bson.A:
			for _, p := range x {
				s, ok := p.(string)
				if !ok {
					return nil, cmdErr(31120, "$unset specification must be a string or an array containing only string values")
				}
				paths = append(paths, s)
			}
		default:
			return nil, cmdErr(31002, "$unset specification must be a string or an array")
		}
		for _, p := range paths {
			nv, err := modifyPath(doc, strings.Split(p, "."), false, func(_ any, exists bool) (any, leafAction, error) {
				if !exists {
					return nil, actKeep, nil
				}
				return nil, actRemove, nil
			})
			if err != nil {
				return nil, err
			}
			doc = nv.(bson.D)
		}
		return doc, nil
	case "$project":
		d, ok := spec.(bson.D)
		if !ok {
			return nil, cmdErr(15969, "$project specification must be an object")
		}
		proj, err := CompileProjection(d)
		if err != nil {
			return nil, err
		}
		return proj(doc), nil
	case "$replaceRoot", "$replaceWith":
		expr := spec
		if name == "$replaceRoot" {
			d, ok := spec.(bson.D)
			if !ok || !HasKey(d, "newRoot") {
				return nil, cmdErr(40231, "no newRoot specified for the $replaceRoot stage")
			}
			expr = MustLookup(d, "newRoot")
		}
		v, err := evalIn(doc, expr, env)
		if err != nil {
			return nil, err
		}
		nd, ok := v.(bson.D)
		if !ok {
			return nil, cmdErr(40228, "'replacement document' must evaluate to an object, but resulting value was: %s. Type of resulting value: '%s'. Input document: %s",
				FormatValue(v), TypeName(v), FormatDoc(doc))
		}
		return nd, nil
	}
	return nil, cmdErr(codeUnrecognizedPipelineStage, "Unrecognized pipeline stage name: '%s'", name)
}

func isObjectExpr(v any) bool {
	d, ok := v.(bson.D)
	return ok && (len(d) == 0 || !strings.HasPrefix(d[0].Key, "$"))
}

// mergeDocs sets b's fields into a copy of a, as $addFields does with a
// nested object.
func mergeDocs(a, b bson.D) bson.D {
	out := slices.Clone(a)
	for _, e := range b {
		if i := slices.IndexFunc(out, func(x bson.E) bool { return x.Key == e.Key }); i >= 0 {
			if ad, ok := out[i].Value.(bson.D); ok {
				if bd, ok := e.Value.(bson.D); ok {
					out[i].Value = mergeDocs(ad, bd)
					continue
				}
			}
			out[i].Value = e.Value
		} else {
			out = append(out, e)
		}
	}
	return out
}

// missingValue is what a field path evaluates to when nothing is there.
var missingValue = &struct{ missing bool }{true}

// fieldPathValue evaluates a field path the aggregation way: through an
// array it yields the array of the values found in its elements.
func fieldPathValue(v any, parts []string, _ []leaf) any {
	if len(parts) == 0 {
		return CloneValue(v)
	}
	switch x := v.(type) {
	case bson.D:
		f, ok := Lookup(x, parts[0])
		if !ok {
			return missingValue
		}
		return fieldPathValue(f, parts[1:], nil)
	case bson.A:
		out := bson.A{}
		for _, e := range x {
			switch e.(type) {
			case bson.D, bson.A:
				if r := fieldPathValue(e, parts, nil); r != missingValue {
					out = append(out, r)
				}
			}
		}
		return out
	}
	return missingValue
}

// pathComponent is one step of a path in an update description: a field
// name or an array index.
type pathComponent struct {
	name  string
	index int
	isIdx bool
}

type diffBuilder struct {
	ud     UpdateDescription
	disamb bson.D
}

func joinPath(p []pathComponent) string {
	var sb strings.Builder
	for i, c := range p {
		if i > 0 {
			sb.WriteByte('.')
		}
		if c.isIdx {
			sb.WriteString(strconv.Itoa(c.index))
		} else {
			sb.WriteString(c.name)
		}
	}
	return sb.String()
}

// note records disambiguatedPaths for a path whose field names could be
// read as array indexes or path separators.
func (b *diffBuilder) note(p []pathComponent) string {
	s := joinPath(p)
	amb := false
	for _, c := range p {
		if !c.isIdx && (strings.Contains(c.name, ".") || isAllDigits(c.name)) {
			amb = true
			break
		}
	}
	if amb {
		comps := make(bson.A, len(p))
		for i, c := range p {
			if c.isIdx {
				comps[i] = int32(c.index)
			} else {
				comps[i] = c.name
			}
		}
		b.disamb = append(b.disamb, bson.E{Key: s, Value: comps})
	}
	return s
}

func isAllDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (b *diffBuilder) updated(p []pathComponent, v any) {
	b.ud.UpdatedFields = append(b.ud.UpdatedFields, bson.E{Key: b.note(p), Value: v})
}

// DiffUpdate describes how old became new the way a change event's
// updateDescription does (from the server's v2 delta oplog entries). It
// returns nil when nothing changed.
func DiffUpdate(old, new bson.D) *UpdateDescription {
	b := &diffBuilder{}
	b.ud.UpdatedFields = bson.D{}
	b.ud.RemovedFields = []string{}
	b.diffDocs(old, new, nil)
	if len(b.ud.UpdatedFields) == 0 && len(b.ud.RemovedFields) == 0 && len(b.ud.TruncatedArrays) == 0 {
		return nil
	}
	if len(b.disamb) > 0 {
		b.ud.DisambiguatedPaths = b.disamb
	}
	if b.ud.TruncatedArrays == nil {
		b.ud.TruncatedArrays = []TruncatedArray{}
	}
	return &b.ud
}

func child(p []pathComponent, c pathComponent) []pathComponent {
	return append(slices.Clip(p), c)
}

func (b *diffBuilder) diffDocs(old, new bson.D, p []pathComponent) {
	for _, e := range new {
		ov, ok := Lookup(old, e.Key)
		cp := child(p, pathComponent{name: e.Key})
		if !ok {
			b.updated(cp, e.Value)
			continue
		}
		b.diffValue(ov, e.Value, cp)
	}
	for _, e := range old {
		if _, ok := Lookup(new, e.Key); !ok {
			b.ud.RemovedFields = append(b.ud.RemovedFields, b.note(child(p, pathComponent{name: e.Key})))
		}
	}
}

func (b *diffBuilder) diffValue(ov, nv any, p []pathComponent) {
	if Identical(ov, nv) {
		return
	}
	switch n := nv.(type) {
	case bson.D:
		if o, ok := ov.(bson.D); ok && sameKeyOrder(o, n) {
			b.diffDocs(o, n, p)
			return
		}
	case bson.A:
		if o, ok := ov.(bson.A); ok {
			b.diffArrays(o, n, p)
			return
		}
	}
	b.updated(p, nv)
}

// sameKeyOrder reports whether the fields both documents share appear in
// the same order, so that a field-wise diff reproduces new exactly.
func sameKeyOrder(a, b bson.D) bool {
	j := 0
	for _, e := range b {
		if !HasKey(a, e.Key) {
			continue
		}
		for j < len(a) && a[j].Key != e.Key {
			j++
		}
		if j == len(a) {
			return false
		}
	}
	return true
}

// diffArrays reports element changes by index, appended elements by index
// and a shortened array as truncatedArrays. When elements both changed and
// shifted (a $pull, a $pop from the front) the whole array is reported, as
// the server logs such modifiers.
func (b *diffBuilder) diffArrays(o, n bson.A, p []pathComponent) {
	common := min(len(o), len(n))
	changed := false
	for i := 0; i < common; i++ {
		if !Identical(o[i], n[i]) {
			changed = true
			break
		}
	}
	if changed && len(o) != len(n) {
		b.updated(p, n)
		return
	}
	for i := 0; i < common; i++ {
		b.diffValue(o[i], n[i], child(p, pathComponent{index: i, isIdx: true}))
	}
	for i := common; i < len(n); i++ {
		b.updated(child(p, pathComponent{index: i, isIdx: true}), n[i])
	}
	if len(n) < len(o) {
		b.ud.TruncatedArrays = append(b.ud.TruncatedArrays, TruncatedArray{Field: b.note(p), NewSize: int32(len(n))})
	}
}

// UpsertSeed builds the document an upsert starts from: the query's
// equality conditions ({a: 1}, {a: {$eq: 1}}, inside $and), with dotted
// paths expanded into sub-documents.
func UpsertSeed(query bson.D) (bson.D, error) {
	doc := bson.D{}
	var walk func(q bson.D) error
	walk = func(q bson.D) error {
		for _, e := range q {
			if e.Key == "$and" {
				if arr, ok := e.Value.(bson.A); ok {
					for _, x := range arr {
						if d, ok := x.(bson.D); ok {
							if err := walk(d); err != nil {
								return err
							}
						}
					}
				}
				continue
			}
			if strings.HasPrefix(e.Key, "$") {
				continue
			}
			v := e.Value
			if d, ok := v.(bson.D); ok && len(d) > 0 && strings.HasPrefix(d[0].Key, "$") {
				eq, ok := Lookup(d, "$eq")
				if !ok {
					continue
				}
				v = eq
			}
			if _, ok := v.(bson.Regex); ok {
				continue
			}
			parts := strings.Split(e.Key, ".")
			if _, ok := DocPathValue(doc, parts); ok {
				return cmdErr(54, "cannot infer query fields to set, path '%s' is matched twice", e.Key)
			}
			nv, err := modifyPath(doc, parts, true, func(any, bool) (any, leafAction, error) {
				return CloneValue(v), actSet, nil
			})
			if err != nil {
				return err
			}
			doc = nv.(bson.D)
		}
		return nil
	}
	if err := walk(query); err != nil {
		return nil, err
	}
	return doc, nil
}

// WithIDFirst returns doc with its _id as the first field, generating an
// ObjectID when it has none, as the server stores inserted documents.
func WithIDFirst(doc bson.D) bson.D {
	i := slices.IndexFunc(doc, func(e bson.E) bool { return e.Key == "_id" })
	if i == 0 {
		return doc
	}
	out := make(bson.D, 0, len(doc)+1)
	if i < 0 {
		out = append(out, bson.E{Key: "_id", Value: bson.NewObjectID()})
		return append(out, doc...)
	}
	out = append(out, doc[i])
	out = append(out, doc[:i]...)
	return append(out, doc[i+1:]...)
}
