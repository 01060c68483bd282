package mongosim

import (
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// What the server knows but the simulator does not implement fails with
// NotImplemented and a message naming the simulator and the feature
// (notImplemented), never with a silently different answer. A name the
// server does not know either fails with the server's own error.

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
		return notImplemented("the aggregation expression %s (it evaluates only field paths and $literal)", op)
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
	if knownStages[name] || allowedStreamStages[name] {
		return notImplemented("the aggregation stage %s", name)
	}
	return cmdErr(codeUnrecognizedPipelineStage, "Unrecognized pipeline stage name: '%s'", name)
}

// checkCollation accepts a command's collation only when it is the
// simple (binary) one: the simulator compares strings byte by byte and
// would give a different answer under any other.
func checkCollation(v bsoncore.Value) error {
	doc, ok := v.DocumentOK()
	if !ok {
		return cmdErr(codeTypeMismatch, "collation must be an object, got %s", typeAlias(v.Type))
	}
	locale, err := doc.LookupErr("locale")
	if err != nil {
		return cmdErr(40414, "BSON field 'locale' is missing but a required field")
	}
	if s, _ := locale.StringValueOK(); s == "simple" {
		return nil
	}
	return notImplemented("collation %s (only {locale: \"simple\"}: strings compare byte by byte)", docString(doc))
}

// checkCollations checks the collation of the command, if any, and of
// each statement of an update or a delete, which carry their own.
func (cc *cmdCtx) checkCollations() error {
	if v, ok := cc.field("collation"); ok {
		if err := checkCollation(v); err != nil {
			return err
		}
	}
	var statements []bsoncore.Document
	switch cc.name {
	case "update":
		// Malformed statements are left to the command's own parsing.
		statements, _ = cc.statements("updates")
	case "delete":
		statements, _ = cc.statements("deletes")
	}
	for _, s := range statements {
		if v, err := s.LookupErr("collation"); err == nil {
			if err := checkCollation(v); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkIndexSpec refuses index options whose effect the simulator does not
// reproduce: unique and partial indexes would refuse or admit writes it
// admits or refuses, a collation would order keys differently.
func checkIndexSpec(spec bson.D) error {
	for _, e := range spec {
		switch e.Key {
		case "unique":
			if truthy(e.Value) {
				return notImplemented("unique indexes (index %s): duplicates would not be refused", indexName(spec))
			}
		case "partialFilterExpression":
			return notImplemented("partial indexes (index %s)", indexName(spec))
		case "collation":
			if d, ok := e.Value.(bson.D); ok {
				if loc, _ := lookup(d, "locale"); loc == "simple" {
					continue
				}
			}
			return notImplemented("index collations (index %s)", indexName(spec))
		}
	}
	return nil
}

func indexName(spec bson.D) string {
	if n, ok := lookup(spec, "name"); ok {
		if s, ok := n.(string); ok {
			return s
		}
	}
	return "?"
}

// checkCollectionOptions refuses collection options the simulator does
// not enforce: a validator would refuse writes it admits, a collation
// would change every comparison, a capped collection would drop documents.
func checkCollectionOptions(options bson.D) error {
	for _, e := range options {
		switch e.Key {
		case "validator":
			if d, ok := e.Value.(bson.D); ok && len(d) == 0 {
				continue
			}
			return notImplemented("document validation (the %q option)", e.Key)
		case "validationLevel", "validationAction":
			// Meaningless without a validator, which is refused above.
		case "collation":
			if d, ok := e.Value.(bson.D); ok {
				if loc, _ := lookup(d, "locale"); loc == "simple" {
					continue
				}
			}
			return notImplemented("collection default collations")
		case "capped":
			if truthy(e.Value) {
				return notImplemented("capped collections")
			}
		case "clusteredIndex", "encryptedFields":
			return notImplemented("the %q collection option", e.Key)
		}
	}
	return nil
}

// Fields the server's IDL definitions of aggregate and getMore accept,
// besides the generic arguments every command takes (genericFields).
// Anything else fails with 40415, as IDL parsing fails it.
var (
	aggregateFields = setOf("aggregate", "pipeline", "explain", "allowDiskUse", "cursor", "maxTimeMS",
		"bypassDocumentValidation", "readConcern", "collation", "hint", "writeConcern", "let", "comment",
		"needsMerge", "fromMongos", "fromRouter", "collectionUUID", "exchange", "isMapReduceCommand",
		"$_requestReshardingResumeToken", "$_isClusterQueryWithoutShardKeyCmd", "includeQueryStatsMetrics",
		"$_requestResumeToken", "$_resumeAfter", "$_passthroughToShard")
	getMoreFields = setOf("getMore", "collection", "batchSize", "maxTimeMS", "comment", "term",
		"lastKnownCommittedOpTime", "includeQueryStatsMetrics")
)

// checkKnownFields fails a command that carries a field neither its own
// definition nor the generic arguments name.
func (cc *cmdCtx) checkKnownFields(known map[string]bool) error {
	elems, err := cc.cmd.Elements()
	if err != nil {
		return cmdErr(codeFailedToParse, "invalid command document: %v", err)
	}
	for _, e := range elems {
		k := e.Key()
		if !known[k] && !slices.Contains(genericFields, k) {
			return cmdErr(40415, "BSON field '%s.%s' is an unknown field.", cc.name, k)
		}
	}
	return nil
}

// checkChangeStreamReadConcern allows the read concern levels a change
// stream runs under: none, local or majority
// (document_source_change_stream.h, supportsReadConcern).
func checkChangeStreamReadConcern(cc *cmdCtx) error {
	v, ok := cc.field("readConcern")
	if !ok {
		return nil
	}
	doc, ok := v.DocumentOK()
	if !ok {
		return nil
	}
	lv, err := doc.LookupErr("level")
	if err != nil {
		return nil
	}
	level, _ := lv.StringValueOK()
	switch level {
	case "local", "majority":
		return nil
	}
	return cmdErr(codeInvalidOptions,
		"Aggregation stage $changeStream cannot run with a readConcern other than 'local', or 'majority'. Current readConcern: %s", level)
}

// checkNotView refuses a collection change stream on a view, which has no
// oplog entries of its own.
func checkNotView(cc *cmdCtx, target string) error {
	if target == "" {
		return nil
	}
	st := cc.s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	c := st.collLocked(cc.db, target)
	if c == nil {
		return nil
	}
	if _, _, isView := c.viewOn(); isView {
		return cmdErr(166, "Namespace %s.%s is a view, not a collection", cc.db, target)
	}
	return nil
}
