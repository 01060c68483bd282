package query

import (
	"math"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The aggregation expressions the simulator evaluates, after the server's
// src/mongo/db/pipeline/expression.cpp (ExpressionAdd, ExpressionIfNull,
// ExpressionCond, ExpressionCompare, ExpressionAnd, ExpressionOr,
// ExpressionNot) and Value::coerceToBool and canonicalizeBSONType in
// src/mongo/db/exec/document_value/value.cpp: literals, field paths,
// $$ROOT, $$CURRENT, $$REMOVE and $$NOW, and the operators below. Any
// other operator the server knows is refused with NotImplemented.

// exprEnv holds the variables of one command: $$NOW, the same for every
// document and stage of the command, as on the server.
type exprEnv struct {
	now bson.DateTime
}

// evaluatedOperators are the operators evalIn implements.
var evaluatedOperators = setOf("$literal", "$add", "$ifNull", "$cond",
	"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$cmp", "$and", "$or", "$not")

// evalAggExpr evaluates expr where no command time is known ($$NOW is
// refused there).
func evalAggExpr(root bson.D, expr any) (any, error) { return evalIn(root, expr, nil) }

// evalIn evaluates expr against root; a missing result is missingValue.
func evalIn(root bson.D, expr any, env *exprEnv) (any, error) {
	switch x := expr.(type) {
	case string:
		if strings.HasPrefix(x, "$$") {
			name, rest, dotted := strings.Cut(x[2:], ".")
			var base any
			switch name {
			case "ROOT", "CURRENT":
				base = CloneDoc(root)
			case "REMOVE":
				return missingValue, nil
			case "NOW":
				if env == nil {
					return nil, notImplemented("$$NOW outside the filter or update pipeline of a write or find")
				}
				base = env.now
			default:
				return nil, undefinedVariable(name)
			}
			if !dotted {
				return base, nil
			}
			if d, ok := base.(bson.D); ok {
				return fieldPathValue(d, strings.Split(rest, "."), nil), nil
			}
			return missingValue, nil
		}
		if strings.HasPrefix(x, "$") {
			return fieldPathValue(root, strings.Split(x[1:], "."), nil), nil
		}
		return x, nil
	case bson.D:
		if len(x) > 0 && strings.HasPrefix(x[0].Key, "$") {
			if len(x) != 1 {
				return nil, cmdErr(15983, "An object representing an expression must have exactly one field: %s", FormatDoc(x))
			}
			return evalOperator(root, x[0].Key, x[0].Value, env)
		}
		out := make(bson.D, 0, len(x))
		for _, e := range x {
			v, err := evalIn(root, e.Value, env)
			if err != nil {
				return nil, err
			}
			if v == missingValue {
				continue
			}
			out = append(out, bson.E{Key: e.Key, Value: v})
		}
		return out, nil
	case bson.A:
		out := make(bson.A, 0, len(x))
		for _, e := range x {
			v, err := evalIn(root, e, env)
			if err != nil {
				return nil, err
			}
			if v == missingValue {
				v = nil
			}
			out = append(out, v)
		}
		return out, nil
	}
	return CloneValue(expr), nil
}

// systemVariables are the variables a server defines that the simulator
// evaluates only where noted (NOW in writes and finds), or not at all.
var systemVariables = setOf("NOW", "CLUSTER_TIME", "USER_ROLES", "SEARCH_META", "DESCEND", "PRUNE", "KEEP")

// undefinedVariable refuses a $$ variable other than ROOT, CURRENT,
// REMOVE and (where evaluated) NOW.
func undefinedVariable(name string) error {
	if systemVariables[name] {
		return notImplemented("the variable $$%s here", name)
	}
	return cmdErr(17276, "Use of undefined variable: %s", name)
}

// CheckExpr refuses, before anything runs, an operator the simulator
// does not evaluate or the server does not know, and a variable other
// than $$ROOT, $$CURRENT, $$REMOVE and $$NOW, as the server refuses an
// undefined one when it parses the expression. It is the check for a
// filter's $expr, which evalIn then evaluates with the command's time.
func CheckExpr(expr any) error { return checkExpr(expr, exprRules{operators: true, now: true}) }

// exprRules are what an expression may use where it is checked: operators
// (only where the evaluation can report an error, as a projection's cannot)
// and $$NOW (only where the command's time is known).
type exprRules struct {
	operators bool
	now       bool
}

// checkExpr is CheckExpr under rules: what a place does not allow is
// refused as not implemented there.
func checkExpr(expr any, rules exprRules) error {
	switch x := expr.(type) {
	case string:
		if strings.HasPrefix(x, "$$") {
			switch name, _, _ := strings.Cut(x[2:], "."); name {
			case "ROOT", "CURRENT", "REMOVE":
			case "NOW":
				if !rules.now {
					return undefinedVariable(name)
				}
			default:
				return undefinedVariable(name)
			}
		}
	case bson.D:
		if len(x) > 0 && strings.HasPrefix(x[0].Key, "$") {
			op := x[0].Key
			if op == "$literal" && len(x) == 1 {
				return nil
			}
			if !evaluatedOperators[op] {
				return unsupportedExpression(op)
			}
			if !rules.operators {
				return notImplemented("the aggregation expression %s here (only field paths and $literal)", op)
			}
			return checkExpr(x[0].Value, rules)
		}
		for _, e := range x {
			if err := checkExpr(e.Value, rules); err != nil {
				return err
			}
		}
	case bson.A:
		for _, e := range x {
			if err := checkExpr(e, rules); err != nil {
				return err
			}
		}
	}
	return nil
}

// operands returns an operator's arguments: the elements of an array, or
// the one value otherwise.
func operands(arg any) []any {
	if a, ok := arg.(bson.A); ok {
		return a
	}
	return []any{arg}
}

func evalOperator(root bson.D, op string, arg any, env *exprEnv) (any, error) {
	if op == "$literal" {
		return CloneValue(arg), nil
	}
	if !evaluatedOperators[op] {
		return nil, unsupportedExpression(op)
	}
	if op == "$cond" {
		return evalCond(root, arg, env)
	}
	args := operands(arg)
	eval := func(i int) (any, error) { return evalIn(root, args[i], env) }
	switch op {
	case "$add":
		return evalAdd(args, eval)
	case "$ifNull":
		if len(args) < 2 {
			return nil, cmdErr(1257, "$ifNull needs at least two arguments, had: %d", len(args))
		}
		for i := range args {
			v, err := eval(i)
			if err != nil {
				return nil, err
			}
			if !isNullishValue(v) || i == len(args)-1 {
				return v, nil
			}
		}
	case "$and", "$or":
		for i := range args {
			v, err := eval(i)
			if err != nil {
				return nil, err
			}
			if b := coerceToBool(v); b == (op == "$or") {
				return b, nil
			}
		}
		return op == "$and", nil
	case "$not":
		if len(args) != 1 {
			return nil, argCount(op, 1, len(args))
		}
		v, err := eval(0)
		if err != nil {
			return nil, err
		}
		return !coerceToBool(v), nil
	default: // the comparisons
		if len(args) != 2 {
			return nil, argCount(op, 2, len(args))
		}
		a, err := eval(0)
		if err != nil {
			return nil, err
		}
		b, err := eval(1)
		if err != nil {
			return nil, err
		}
		c := compareExprValues(a, b)
		switch op {
		case "$cmp":
			return int32(c), nil
		case "$eq":
			return c == 0, nil
		case "$ne":
			return c != 0, nil
		case "$gt":
			return c > 0, nil
		case "$gte":
			return c >= 0, nil
		case "$lt":
			return c < 0, nil
		case "$lte":
			return c <= 0, nil
		}
	}
	return nil, unsupportedExpression(op)
}

func argCount(op string, want, got int) error {
	return cmdErr(16020, "Expression %s takes exactly %d arguments. %d were passed in.", op, want, got)
}

// evalCond evaluates $cond in its array ([if, then, else]) or object form.
func evalCond(root bson.D, arg any, env *exprEnv) (any, error) {
	var ifE, thenE, elseE any
	switch x := arg.(type) {
	case bson.A:
		if len(x) != 3 {
			return nil, argCount("$cond", 3, len(x))
		}
		ifE, thenE, elseE = x[0], x[1], x[2]
	case bson.D:
		var seen [3]bool
		for _, e := range x {
			switch e.Key {
			case "if":
				ifE, seen[0] = e.Value, true
			case "then":
				thenE, seen[1] = e.Value, true
			case "else":
				elseE, seen[2] = e.Value, true
			default:
				return nil, cmdErr(17083, "Unrecognized parameter to $cond: %s", e.Key)
			}
		}
		for i, name := range []string{"if", "then", "else"} {
			if !seen[i] {
				return nil, cmdErr(int32(17080+i), "Missing '%s' parameter to $cond", name)
			}
		}
	default:
		return nil, argCount("$cond", 3, 1)
	}
	c, err := evalIn(root, ifE, env)
	if err != nil {
		return nil, err
	}
	if coerceToBool(c) {
		return evalIn(root, thenE, env)
	}
	return evalIn(root, elseE, env)
}

// evalAdd sums numbers, widening int to long to double as the server does
// (decimals are refused), and adds them as milliseconds to at most one date. A null
// or missing operand makes the result null.
func evalAdd(args []any, eval func(int) (any, error)) (any, error) {
	var (
		isLong, isDouble, hasDate bool
		sumI                      int64
		sumF                      float64
	)
	for i := range args {
		v, err := eval(i)
		if err != nil {
			return nil, err
		}
		if isNullishValue(v) {
			return nil, nil
		}
		switch n := v.(type) {
		case int32:
			sumI, isLong = addInt(sumI, int64(n), &sumF, &isDouble, isLong)
		case int64:
			sumI, isLong = addInt(sumI, n, &sumF, &isDouble, true)
		case float64:
			isDouble = true
			sumF += n
		case bson.Decimal128:
			return nil, notImplemented("$add of a decimal")
		case bson.DateTime:
			if hasDate {
				return nil, cmdErr(16612, "only one date allowed in an $add expression")
			}
			hasDate = true
			sumI, _ = addInt(sumI, int64(n), &sumF, &isDouble, true)
		default:
			return nil, cmdErr(16554, "$add only supports numeric or date types, not %s", TypeName(v))
		}
	}
	total := sumF + float64(sumI)
	switch {
	case hasDate:
		if isDouble {
			return bson.DateTime(int64(math.Round(total))), nil
		}
		return bson.DateTime(sumI), nil
	case isDouble:
		return total, nil
	case isLong:
		return sumI, nil
	}
	return int32(sumI), nil
}

// addInt adds n to sum; an int64 overflow moves the sum to the double.
// The result is long if it already was, if wantLong, or if it left the
// int32 range.
func addInt(sum, n int64, sumF *float64, isDouble *bool, wantLong bool) (int64, bool) {
	r := sum + n
	if (n > 0 && r < sum) || (n < 0 && r > sum) {
		*sumF += float64(sum) + float64(n)
		*isDouble = true
		return 0, true
	}
	return r, wantLong || r > math.MaxInt32 || r < math.MinInt32
}

// isNullishValue reports null, undefined or missing.
func isNullishValue(v any) bool {
	switch v.(type) {
	case nil, bson.Null, bson.Undefined:
		return true
	}
	return v == missingValue
}

// coerceToBool is the truth of a value in an expression: false, null,
// undefined, missing and zero are false; everything else is true.
func coerceToBool(v any) bool {
	if isNullishValue(v) {
		return false
	}
	switch x := v.(type) {
	case bool:
		return x
	case int32:
		return x != 0
	case int64:
		return x != 0
	case float64:
		return x != 0
	case bson.Decimal128:
		return NumberFloat(x) != 0
	}
	return true
}

// compareExprValues orders two values as expressions compare them: as
// queries do, except that missing and undefined sort below null
// (canonicalizeBSONType puts them at 0, null at 5).
func compareExprValues(a, b any) int {
	ra, rb := undefinedRank(a), undefinedRank(b)
	switch {
	case ra && rb:
		return 0
	case ra:
		if _, min := b.(bson.MinKey); min {
			return 1
		}
		return -1
	case rb:
		if _, min := a.(bson.MinKey); min {
			return -1
		}
		return 1
	}
	return CompareValues(a, b)
}

func undefinedRank(v any) bool {
	_, u := v.(bson.Undefined)
	return u || v == missingValue
}
