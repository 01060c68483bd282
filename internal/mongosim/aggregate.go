package mongosim

import (
	"strings"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// defaultFirstBatchSize is the size of an aggregate's first batch when the
// command gives none, as on a real server.
const defaultFirstBatchSize = 101

// handleAggregate parses the aggregate command. A pipeline that opens with
// $changeStream is served here; any other goes to runPlainAggregate. The
// checks run in the order a real server runs them, so that a command with
// several faults fails with the same error.
func handleAggregate(cc *cmdCtx) (bsoncore.Document, error) {
	if err := cc.checkKnownFields(aggregateFields); err != nil {
		return nil, err
	}
	target, err := aggregateTarget(cc)
	if err != nil {
		return nil, err
	}
	pv, err := cc.cmd.LookupErr("pipeline")
	if err != nil {
		return nil, cmdErr(40414, "BSON field 'aggregate.pipeline' is missing but a required field")
	}
	pipeline, ok := pv.ArrayOK()
	if !ok {
		return nil, typeMismatch("aggregate", "pipeline", pv.Type, "array")
	}
	_, explain := cc.field("explain")
	batchSize, err := aggregateCursorArg(cc, explain)
	if err != nil {
		return nil, err
	}
	stages, err := pipeline.Values()
	if err != nil {
		return nil, cmdErr(codeFailedToParse, "invalid pipeline array: %v", err)
	}
	if len(stages) == 0 || stageName(stages[0]) != "$changeStream" {
		for _, st := range stages {
			if stageName(st) == "$changeStream" {
				return nil, cmdErr(40602, "$changeStream is only valid as the first stage in a pipeline")
			}
		}
		return runPlainAggregate(cc)
	}
	if cc.s.cfg.standalone {
		return nil, cmdErr(codeChangeStreamNotReplSet, "The $changeStream stage is only supported on replica sets")
	}
	if err := checkChangeStreamReadConcern(cc); err != nil {
		return nil, err
	}
	if err := checkNotView(cc, target); err != nil {
		return nil, err
	}
	if cc.txn != nil {
		return nil, cmdErr(codeOperationNotSupportedInTransaction,
			"Operation not permitted in transaction :: caused by :: $changeStream is not allowed in a multi-document transaction")
	}
	if explain {
		return nil, cmdErr(codeIllegalOperation, "mongosim does not explain $changeStream pipelines")
	}
	if _, _, err := cc.docArg("collation"); err != nil {
		return nil, err
	}
	if ms, _, err := cc.int64Arg("maxTimeMS"); err != nil {
		return nil, err
	} else if ms < 0 {
		return nil, cmdErr(codeBadValue, "%d value for maxTimeMS is out of range", ms)
	}
	src, err := newChangeStreamSource(cc, target, stages)
	if err != nil {
		return nil, err
	}
	coll := target
	if coll == "" {
		coll = "$cmd.aggregate"
	}
	return cc.openCursor(coll, cc.db+"."+coll, src, batchSize)
}

// aggregateTarget returns the collection named by the aggregate field, or
// "" for {aggregate: 1}.
func aggregateTarget(cc *cmdCtx) (string, error) {
	v, err := cc.cmd.LookupErr("aggregate")
	if err != nil {
		return "", cmdErr(codeFailedToParse, "BSON field 'aggregate.aggregate' is missing but a required field")
	}
	if s, ok := v.StringValueOK(); ok {
		if s == "" {
			return "", cmdErr(codeInvalidNamespace, "Invalid namespace specified '%s.'", cc.db)
		}
		return s, nil
	}
	if f, ok := v.AsFloat64OK(); ok {
		if f != 1 {
			return "", cmdErr(codeBadValue, "Invalid command format: the 'aggregate' field must specify a collection name or 1")
		}
		return "", nil
	}
	return "", cmdErr(codeBadValue, "collection name has invalid type %s", query.TypeAlias(v.Type))
}

// aggregateCursorArg reads cursor.batchSize: it returns the first batch
// size (defaultFirstBatchSize when absent).
func aggregateCursorArg(cc *cmdCtx, explain bool) (int, error) {
	cur, present, err := cc.docArg("cursor")
	if err != nil {
		return 0, err
	}
	if !present {
		if explain {
			return defaultFirstBatchSize, nil
		}
		return 0, cmdErr(codeFailedToParse, "The 'cursor' option is required, except for aggregate with the explain argument")
	}
	elems, err := cur.Elements()
	if err != nil {
		return 0, cmdErr(codeFailedToParse, "invalid cursor document: %v", err)
	}
	batchSize := defaultFirstBatchSize
	for _, e := range elems {
		switch e.Key() {
		case "batchSize":
			n, ok := numberAsInt64(e.Value())
			if !ok {
				return 0, typeMismatch("cursor", "batchSize", e.Value().Type, "long")
			}
			if n < 0 {
				return 0, cmdErr(51024, "BSON field 'batchSize' value must be >= 0, actual value '%d'", n)
			}
			batchSize = int(min(n, 1<<31-1))
		default:
			return 0, cmdErr(40415, "BSON field 'cursor.%s' is an unknown field.", e.Key())
		}
	}
	return batchSize, nil
}

// stageName returns the single key of a stage document, "" if it is not one.
func stageName(v bsoncore.Value) string {
	d, ok := v.DocumentOK()
	if !ok {
		return ""
	}
	elems, err := d.Elements()
	if err != nil || len(elems) != 1 {
		return ""
	}
	return elems[0].Key()
}

// Full-document modes of $changeStream.
const (
	fullDocDefault       = "default"
	fullDocUpdateLookup  = "updateLookup"
	fullDocWhenAvailable = "whenAvailable"
	fullDocRequired      = "required"
	fullDocOff           = "off"
)

// streamScope is what a stream watches.
type streamScope int

const (
	scopeCollection streamScope = iota
	scopeDatabase
	scopeCluster
)

// streamSpec is a parsed $changeStream stage.
type streamSpec struct {
	fullDocument             string
	fullDocumentBeforeChange string
	showExpandedEvents       bool
	allChangesForCluster     bool
	resumeAfter, startAfter  *resumeToken
	startAtOperationTime     *bson.Timestamp
}

// parseChangeStreamSpec reads the $changeStream stage as the server's IDL
// parser does, then applies the server's legality checks in its order.
func parseChangeStreamSpec(cc *cmdCtx, target string, v bsoncore.Value) (streamSpec, streamScope, error) {
	spec := streamSpec{fullDocument: fullDocDefault, fullDocumentBeforeChange: fullDocOff}
	doc, ok := v.DocumentOK()
	if !ok {
		return spec, 0, cmdErr(50808, "$changeStream stage expects a document as argument")
	}
	elems, err := doc.Elements()
	if err != nil {
		return spec, 0, cmdErr(codeFailedToParse, "invalid $changeStream document: %v", err)
	}
	seen := map[string]bool{}
	var resumeVal, startVal bsoncore.Value
	for _, e := range elems {
		key, val := e.Key(), e.Value()
		if seen[key] {
			return spec, 0, cmdErr(40413, "BSON field '$changeStream.%s' is a duplicate field", key)
		}
		seen[key] = true
		isNull := val.Type == bsoncore.TypeNull || val.Type == bsoncore.TypeUndefined
		switch key {
		case "fullDocument", "fullDocumentBeforeChange":
			if isNull {
				continue
			}
			s, ok := val.StringValueOK()
			if !ok {
				return spec, 0, typeMismatch("$changeStream", key, val.Type, "string")
			}
			valid := []string{fullDocDefault, fullDocUpdateLookup, fullDocWhenAvailable, fullDocRequired}
			if key == "fullDocumentBeforeChange" {
				valid = []string{fullDocOff, fullDocWhenAvailable, fullDocRequired}
			}
			found := false
			for _, m := range valid {
				found = found || m == s
			}
			if !found {
				return spec, 0, cmdErr(codeBadValue,
					"Enumeration value '%s' for field '$changeStream.%s' is not a valid value.", s, key)
			}
			if key == "fullDocument" {
				spec.fullDocument = s
			} else {
				spec.fullDocumentBeforeChange = s
			}
		case "showExpandedEvents", "allChangesForCluster":
			if isNull {
				continue
			}
			b, ok := val.BooleanOK()
			if !ok {
				return spec, 0, typeMismatch("$changeStream", key, val.Type, "bool")
			}
			if key == "showExpandedEvents" {
				spec.showExpandedEvents = b
			} else {
				spec.allChangesForCluster = b
			}
		case "resumeAfter":
			if !isNull {
				resumeVal = val
			}
		case "startAfter":
			if !isNull {
				startVal = val
			}
		case "startAtOperationTime":
			if isNull {
				continue
			}
			t, i, ok := val.TimestampOK()
			if !ok {
				return spec, 0, typeMismatch("$changeStream", key, val.Type, "timestamp")
			}
			spec.startAtOperationTime = &bson.Timestamp{T: t, I: i}
		default:
			return spec, 0, cmdErr(40415, "BSON field '$changeStream.%s' is an unknown field.", key)
		}
	}
	// The IDL parser checks each token's shape before any legality check.
	for _, f := range []struct {
		name string
		val  bsoncore.Value
		dst  **resumeToken
	}{{"resumeAfter", resumeVal, &spec.resumeAfter}, {"startAfter", startVal, &spec.startAfter}} {
		if f.val.Type == 0 {
			continue
		}
		if _, ok := f.val.DocumentOK(); !ok {
			return spec, 0, typeMismatch("$changeStream", f.name, f.val.Type, "object")
		}
	}

	ns := cc.db
	if target != "" {
		ns += "." + target
	} else {
		ns += ".$cmd.aggregate"
	}
	if spec.allChangesForCluster && (cc.db != "admin" || target != "") {
		return spec, 0, cmdErr(codeInvalidOptions,
			"A $changeStream with 'allChangesForCluster:true' may only be opened on the 'admin' database, and with no collection name; found %s", ns)
	}
	internalOK := cc.db != "local" && cc.db != "config"
	if cc.db == "admin" {
		internalOK = spec.allChangesForCluster
	}
	if !internalOK {
		return spec, 0, cmdErr(codeInvalidNamespace, "$changeStream may not be opened on the internal %s database", cc.db)
	}
	if strings.HasPrefix(target, "system.") {
		return spec, 0, cmdErr(codeInvalidNamespace, "$changeStream may not be opened on the internal %s collection", ns)
	}
	if resumeVal.Type != 0 && startVal.Type != 0 {
		return spec, 0, cmdErr(50865, "Do not specify both 'resumeAfter' and 'startAfter' in a $changeStream stage")
	}
	for _, f := range []struct {
		name string
		val  bsoncore.Value
		dst  **resumeToken
	}{{"resumeAfter", resumeVal, &spec.resumeAfter}, {"startAfter", startVal, &spec.startAfter}} {
		if f.val.Type == 0 {
			continue
		}
		t, err := decodeResumeToken(f.name, f.val)
		if err != nil {
			return spec, 0, err
		}
		*f.dst = &t
	}
	if spec.startAtOperationTime != nil && (spec.resumeAfter != nil || spec.startAfter != nil) {
		return spec, 0, cmdErr(40674, "Only one type of resume option is allowed, but multiple were found")
	}
	if spec.resumeAfter != nil && spec.resumeAfter.fromInvalidate {
		return spec, 0, cmdErr(codeInvalidResumeToken,
			"Attempting to resume a change stream using 'resumeAfter' is not allowed from an invalidate notification")
	}
	scope := scopeCollection
	switch {
	case spec.allChangesForCluster:
		scope = scopeCluster
	case target == "":
		scope = scopeDatabase
	}
	return spec, scope, nil
}

// parseStreamStages compiles the stages after $changeStream. Parse errors
// come in stage order; a stage that is not allowed in a change stream is
// reported only after every stage parsed, as the server validates the
// whole pipeline after parsing it.
func parseStreamStages(stages []bsoncore.Value) (out []query.EventStage, split bool, err error) {
	var notPermitted string
	for i, v := range stages {
		d, ok := v.DocumentOK()
		if !ok {
			return nil, false, cmdErr(codeTypeMismatch, "Each element of the 'pipeline' array must be an object")
		}
		elems, perr := d.Elements()
		if perr != nil || len(elems) != 1 {
			return nil, false, cmdErr(40323, "A pipeline stage specification object must contain exactly one field.")
		}
		name, spec := elems[0].Key(), elems[0].Value()
		if name == "$changeStream" {
			return nil, false, cmdErr(40602, "$changeStream is only valid as the first stage in a pipeline")
		}
		if !query.AllowedStreamStages[name] {
			if !query.KnownStages[name] {
				return nil, false, cmdErr(40324, "Unrecognized pipeline stage name: '%s'", name)
			}
			if notPermitted == "" {
				notPermitted = name
			}
			continue
		}
		if name == query.SplitStageName {
			if err := parseSplitStage(spec, i, len(stages)); err != nil {
				return nil, false, err
			}
			split = true
			continue
		}
		st, err := query.CompileEventStage(name, spec)
		if err != nil {
			return nil, false, err
		}
		if st != nil {
			out = append(out, st)
		}
	}
	if notPermitted != "" {
		return nil, false, cmdErr(codeIllegalOperation, "%s is not permitted in a $changeStream pipeline", notPermitted)
	}
	return out, split, nil
}
