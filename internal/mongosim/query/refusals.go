package query

// What the server knows but the simulator does not implement fails with
// NotImplemented and a message naming the simulator and the feature
// (mongoerr.NotImplemented), never with a silently different answer. A
// name the server does not know either fails with the server's own error.

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// unsupportedExpression refuses an expression operator.
func unsupportedExpression(op string) error {
	if serverExpressions[op] {
		return notImplemented("the aggregation expression %s", op)
	}
	return cmdErr(168, "Unrecognized expression '%s'", op)
}

// unsupportedAccumulator refuses a $group accumulator.
func unsupportedAccumulator(op string) error {
	if serverAccumulators[op] {
		return notImplemented("the $group accumulator %s", op)
	}
	return cmdErr(15952, "unknown group operator '%s'", op)
}

// unsupportedStage refuses a pipeline stage outside a change stream.
func unsupportedStage(name string) error {
	if KnownStages[name] || AllowedStreamStages[name] {
		return notImplemented("the aggregation stage %s", name)
	}
	return cmdErr(codeUnrecognizedPipelineStage, "Unrecognized pipeline stage name: '%s'", name)
}

// serverExpressions are aggregation expression operators a MongoDB 8.0
// server knows. The simulator evaluates only $literal and field paths.
var serverExpressions = setOf(
	"$abs", "$acos", "$acosh", "$add", "$allElementsTrue", "$and", "$anyElementTrue", "$arrayElemAt",
	"$arrayToObject", "$asin", "$asinh", "$atan", "$atan2", "$atanh", "$avg", "$binarySize", "$bitAnd",
	"$bitNot", "$bitOr", "$bitXor", "$bsonSize", "$ceil", "$cmp", "$concat", "$concatArrays", "$cond",
	"$convert", "$cos", "$cosh", "$dateAdd", "$dateDiff", "$dateFromParts", "$dateFromString",
	"$dateSubtract", "$dateToParts", "$dateToString", "$dateTrunc", "$dayOfMonth", "$dayOfWeek",
	"$dayOfYear", "$degreesToRadians", "$divide", "$eq", "$exp", "$filter", "$first", "$firstN",
	"$floor", "$function", "$getField", "$gt", "$gte", "$hour", "$ifNull", "$in", "$indexOfArray",
	"$indexOfBytes", "$indexOfCP", "$isArray", "$isNumber", "$isoDayOfWeek", "$isoWeek", "$isoWeekYear",
	"$last", "$lastN", "$let", "$ln", "$log", "$log10", "$lt", "$lte", "$ltrim", "$map", "$max",
	"$maxN", "$median", "$mergeObjects", "$meta", "$millisecond", "$min", "$minN", "$minute", "$mod",
	"$month", "$multiply", "$ne", "$not", "$objectToArray", "$or", "$percentile", "$pow",
	"$radiansToDegrees", "$rand", "$range", "$reduce", "$regexFind", "$regexFindAll", "$regexMatch",
	"$replaceAll", "$replaceOne", "$reverseArray", "$round", "$rtrim", "$sampleRate", "$second",
	"$setDifference", "$setEquals", "$setField", "$setIntersection", "$setIsSubset", "$setUnion",
	"$sin", "$sinh", "$size", "$slice", "$sortArray", "$split", "$sqrt", "$stdDevPop", "$stdDevSamp",
	"$strLenBytes", "$strLenCP", "$strcasecmp", "$substr", "$substrBytes", "$substrCP", "$subtract",
	"$sum", "$switch", "$tan", "$tanh", "$toBool", "$toDate", "$toDecimal", "$toDouble", "$toHashedIndexKey",
	"$toInt", "$toLong", "$toLower", "$toObjectId", "$toString", "$toUpper", "$toUUID", "$trim",
	"$trunc", "$tsIncrement", "$tsSecond", "$type", "$unsetField", "$week", "$year", "$zip",
)

// serverAccumulators are $group accumulators of a MongoDB 8.0 server.
var serverAccumulators = setOf(
	"$accumulator", "$addToSet", "$avg", "$bottom", "$bottomN", "$count", "$first", "$firstN", "$last",
	"$lastN", "$max", "$maxN", "$median", "$mergeObjects", "$min", "$minN", "$percentile", "$push",
	"$stdDevPop", "$stdDevSamp", "$sum", "$top", "$topN",
)
