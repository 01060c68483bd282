package query

import (
	"sort"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The aggregation stages of pipelines that do not start with
// $changeStream: what runPlainAggregate (and an update pipeline's
// per-document stages, in update.go) run over a collection's documents.

// CheckStage refuses a stage of a pipeline that does not start with
// $changeStream unless the simulator runs it, as the server or as
// NotImplemented (see refusals.go).
func CheckStage(s bson.D) error {
	switch s[0].Key {
	case "$match", "$project", "$sort", "$skip", "$limit", "$count", "$addFields", "$set", "$unset",
		"$replaceRoot", "$replaceWith", "$group":
		return nil
	case "$changeStream":
		return cmdErr(40602, "$changeStream is only valid as the first stage in a pipeline")
	case SplitStageName:
		return splitStageOutsideChangeStream()
	}
	return unsupportedStage(s[0].Key)
}

// RunStages applies the supported pipeline stages to docs, which it does
// not modify.
func RunStages(docs []bson.D, stages []bson.D) ([]bson.D, error) {
	out := docs
	copied := false
	for _, s := range stages {
		name, spec := s[0].Key, s[0].Value
		if err := CheckStage(s); err != nil {
			return nil, err
		}
		switch name {
		case "$match":
			f, ok := spec.(bson.D)
			if !ok {
				return nil, cmdErr(15959, "the match filter must be an expression in an object")
			}
			m, err := CompileFilter(f)
			if err != nil {
				return nil, err
			}
			next := make([]bson.D, 0, len(out))
			for _, d := range out {
				if m(d) {
					next = append(next, d)
				}
			}
			out, copied = next, true
		case "$sort":
			f, ok := spec.(bson.D)
			if !ok || len(f) == 0 {
				return nil, cmdErr(15973, "the $sort key specification must be an object")
			}
			less, err := CompileSort(f)
			if err != nil {
				return nil, err
			}
			if !copied {
				out, copied = append([]bson.D(nil), out...), true
			}
			sort.SliceStable(out, func(i, j int) bool { return less(out[i], out[j]) < 0 })
		case "$skip", "$limit":
			n, ok := numberAsInt(spec)
			if !ok {
				if name == "$skip" {
					return nil, cmdErr(15972, "Argument to $skip must be a number")
				}
				return nil, cmdErr(15957, "the limit must be specified as a number")
			}
			if name == "$skip" {
				if n < 0 {
					return nil, cmdErr(15956, "Argument to $skip cannot be negative")
				}
				out = out[min(int(n), len(out)):]
			} else {
				if n <= 0 {
					return nil, cmdErr(15958, "the limit must be positive")
				}
				out = out[:min(int(n), len(out))]
			}
		case "$count":
			field, ok := spec.(string)
			if !ok || field == "" || strings.HasPrefix(field, "$") || strings.Contains(field, ".") {
				return nil, cmdErr(40156, "the count field must be a non-empty string")
			}
			if len(out) == 0 {
				out = nil
			} else {
				out, copied = []bson.D{{{Key: field, Value: int32(len(out))}}}, true
			}
		case "$group":
			grouped, err := groupStage(out, spec)
			if err != nil {
				return nil, err
			}
			out, copied = grouped, true
		default:
			next := make([]bson.D, len(out))
			for i, d := range out {
				var err error
				if next[i], err = applyDocStage(CloneDoc(d), name, spec, nil); err != nil {
					return nil, err
				}
			}
			out, copied = next, true
		}
	}
	return out, nil
}

// groupStage implements $group with the accumulators $sum, $avg, $min,
// $max, $first, $last, $push and $count, enough for countDocuments and
// simple reports.
func groupStage(docs []bson.D, spec any) ([]bson.D, error) {
	d, ok := spec.(bson.D)
	if !ok {
		return nil, cmdErr(15947, "a group's fields must be specified in an object")
	}
	idExpr, ok := Lookup(d, "_id")
	if !ok {
		return nil, cmdErr(15955, "a group specification must include an _id")
	}
	type acc struct {
		name, op string
		arg      any
	}
	var accs []acc
	for _, e := range d {
		if e.Key == "_id" {
			continue
		}
		ad, ok := e.Value.(bson.D)
		if !ok || len(ad) != 1 {
			return nil, cmdErr(40234, "The field '%s' must be an accumulator object", e.Key)
		}
		switch ad[0].Key {
		case "$sum", "$avg", "$min", "$max", "$first", "$last", "$push", "$count":
		default:
			return nil, unsupportedAccumulator(ad[0].Key)
		}
		accs = append(accs, acc{name: e.Key, op: ad[0].Key, arg: ad[0].Value})
	}
	type group struct {
		id   any
		vals [][]any
	}
	var groups []*group
	for _, doc := range docs {
		id, err := evalAggExpr(doc, idExpr)
		if err != nil {
			return nil, err
		}
		if id == missingValue {
			id = nil
		}
		var g *group
		for _, x := range groups {
			if valuesEqual(x.id, id) {
				g = x
				break
			}
		}
		if g == nil {
			g = &group{id: id, vals: make([][]any, len(accs))}
			groups = append(groups, g)
		}
		for i, a := range accs {
			arg := a.arg
			if a.op == "$count" {
				arg = int32(1)
			}
			v, err := evalAggExpr(doc, arg)
			if err != nil {
				return nil, err
			}
			g.vals[i] = append(g.vals[i], v)
		}
	}
	out := make([]bson.D, 0, len(groups))
	for _, g := range groups {
		row := bson.D{{Key: "_id", Value: g.id}}
		for i, a := range accs {
			row = append(row, bson.E{Key: a.name, Value: accumulate(a.op, g.vals[i])})
		}
		out = append(out, row)
	}
	return out, nil
}

func accumulate(op string, vals []any) any {
	switch op {
	case "$sum", "$count", "$avg":
		var sum any = int32(0)
		n := 0
		for _, v := range vals {
			if IsNumber(v) {
				sum = arith("$inc", sum, v)
				n++
			}
		}
		if op != "$avg" {
			return sum
		}
		if n == 0 {
			return nil
		}
		return NumberFloat(sum) / float64(n)
	case "$min", "$max":
		var best any
		found := false
		for _, v := range vals {
			if v == missingValue || isNullish(v) {
				continue
			}
			c := CompareValues(v, best)
			if !found || (op == "$min" && c < 0) || (op == "$max" && c > 0) {
				best, found = v, true
			}
		}
		return best
	case "$first", "$last":
		if len(vals) == 0 {
			return nil
		}
		v := vals[0]
		if op == "$last" {
			v = vals[len(vals)-1]
		}
		if v == missingValue {
			return nil
		}
		return v
	}
	arr := bson.A{}
	for _, v := range vals {
		if v != missingValue {
			arr = append(arr, v)
		}
	}
	return arr
}

// CompileSort compiles a sort specification into a document comparison.
// An array field sorts by its smallest element ascending and its largest
// descending, as on the server.
func CompileSort(spec bson.D) (func(a, b bson.D) int, error) {
	type key struct {
		parts []string
		dir   int
	}
	keys := make([]key, 0, len(spec))
	for _, e := range spec {
		if e.Key == "" {
			return nil, cmdErr(codeBadValue, "Empty field name in $sort")
		}
		if d, ok := e.Value.(bson.D); ok && len(d) > 0 && d[0].Key == "$meta" {
			return nil, cmdErr(codeBadValue, "mongosim: $meta sort is not supported")
		}
		if !IsNumber(e.Value) {
			return nil, cmdErr(15974, "Illegal key in $sort specification: %s: %s", e.Key, FormatValue(e.Value))
		}
		f := NumberFloat(e.Value)
		if f != 1 && f != -1 {
			return nil, cmdErr(15975, "$sort key ordering must be 1 (for ascending) or -1 (for descending)")
		}
		keys = append(keys, key{parts: strings.Split(e.Key, "."), dir: int(f)})
	}
	sortKey := func(d bson.D, k key) any {
		var best any
		found := false
		for _, l := range CollectLeaves(d, k.parts, nil) {
			vals := []any{l.v}
			if !l.ok {
				vals = []any{nil}
			} else if arr, ok := l.v.(bson.A); ok {
				vals = arr
				if len(arr) == 0 {
					vals = []any{bson.Undefined{}}
				}
			}
			for _, v := range vals {
				if !found || CompareValues(v, best)*k.dir < 0 {
					best, found = v, true
				}
			}
		}
		return best
	}
	return func(a, b bson.D) int {
		for _, k := range keys {
			if c := CompareValues(sortKey(a, k), sortKey(b, k)); c != 0 {
				return c * k.dir
			}
		}
		return 0
	}, nil
}

// AllowedStreamStages are the stages a real server accepts after
// $changeStream.
var AllowedStreamStages = map[string]bool{
	"$match": true, "$project": true, "$addFields": true, "$set": true, "$unset": true,
	"$replaceRoot": true, "$replaceWith": true, "$redact": true, "$changeStreamSplitLargeEvent": true,
}

// KnownStages are the other stage names a real server parses; any of them
// after $changeStream is refused as not permitted rather than unrecognized.
var KnownStages = map[string]bool{
	"$bucket": true, "$bucketAuto": true, "$changeStream": true, "$collStats": true, "$count": true,
	"$currentOp": true, "$densify": true, "$documents": true, "$facet": true, "$fill": true,
	"$geoNear": true, "$graphLookup": true, "$group": true, "$indexStats": true, "$limit": true,
	"$listLocalSessions": true, "$listSessions": true, "$lookup": true, "$merge": true, "$out": true,
	"$planCacheStats": true, "$sample": true, "$search": true, "$searchMeta": true,
	"$setWindowFields": true, "$skip": true, "$sort": true, "$sortByCount": true, "$unionWith": true,
	"$unwind": true, "$vectorSearch": true, "$listSearchIndexes": true, "$querySettings": true,
	"$queryStats": true, "$shardedDataDistribution": true, "$listSampledQueries": true,
}

// SplitStageName is the stage that splits events over 16 MiB into
// fragments (MongoDB 7.0 and 6.0.9+; document_source_change_stream_split_large_event.cpp).
const SplitStageName = "$changeStreamSplitLargeEvent"

// splitStageOutsideChangeStream is the server's refusal of the stage in a
// pipeline that does not start with $changeStream.
func splitStageOutsideChangeStream() error {
	return cmdErr(7182801, "$changeStreamSplitLargeEvent can only be used in a $changeStream pipeline")
}
