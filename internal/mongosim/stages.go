package mongosim

import (
	"sort"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The aggregation stages of pipelines that do not start with
// $changeStream: what runPlainAggregate (and an update pipeline's
// per-document stages, in update.go) run over a collection's documents.

func checkStage(s bson.D) error {
	switch s[0].Key {
	case "$match", "$project", "$sort", "$skip", "$limit", "$count", "$addFields", "$set", "$unset",
		"$replaceRoot", "$replaceWith", "$group":
		return nil
	case "$changeStream":
		return cmdErr(40602, "$changeStream is only valid as the first stage in a pipeline")
	case splitStageName:
		return splitStageOutsideChangeStream()
	}
	return unsupportedStage(s[0].Key)
}

// runStages applies the supported pipeline stages to docs, which it does
// not modify.
func runStages(docs []bson.D, stages []bson.D) ([]bson.D, error) {
	out := docs
	copied := false
	for _, s := range stages {
		name, spec := s[0].Key, s[0].Value
		if err := checkStage(s); err != nil {
			return nil, err
		}
		switch name {
		case "$match":
			f, ok := spec.(bson.D)
			if !ok {
				return nil, cmdErr(15959, "the match filter must be an expression in an object")
			}
			m, err := compileFilter(f)
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
			less, err := compileSort(f)
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
				if next[i], err = applyDocStage(cloneDoc(d), name, spec); err != nil {
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
	idExpr, ok := lookup(d, "_id")
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
			if isNumber(v) {
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
		return numberFloat(sum) / float64(n)
	case "$min", "$max":
		var best any
		found := false
		for _, v := range vals {
			if v == missingValue || isNullish(v) {
				continue
			}
			c := compareValues(v, best)
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
