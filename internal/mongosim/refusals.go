package mongosim

import (
	"slices"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// What the server knows but the simulator does not implement fails with
// NotImplemented and a message naming the simulator and the feature
// (notImplemented), never with a silently different answer. A name the
// server does not know either fails with the server's own error.

// checkCollation accepts a command's collation only when it is the
// simple (binary) one: the simulator compares strings byte by byte and
// would give a different answer under any other.
func checkCollation(v bsoncore.Value) error {
	doc, ok := v.DocumentOK()
	if !ok {
		return cmdErr(codeTypeMismatch, "collation must be an object, got %s", query.TypeAlias(v.Type))
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
			if query.Truthy(e.Value) {
				return notImplemented("unique indexes (index %s): duplicates would not be refused", indexName(spec))
			}
		case "partialFilterExpression":
			return notImplemented("partial indexes (index %s)", indexName(spec))
		case "collation":
			if d, ok := e.Value.(bson.D); ok {
				if loc, _ := query.Lookup(d, "locale"); loc == "simple" {
					continue
				}
			}
			return notImplemented("index collations (index %s)", indexName(spec))
		}
	}
	return nil
}

func indexName(spec bson.D) string {
	if n, ok := query.Lookup(spec, "name"); ok {
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
				if loc, _ := query.Lookup(d, "locale"); loc == "simple" {
					continue
				}
			}
			return notImplemented("collection default collations")
		case "capped":
			if query.Truthy(e.Value) {
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
	aggregateFields = []string{"aggregate", "pipeline", "explain", "allowDiskUse", "cursor", "maxTimeMS",
		"bypassDocumentValidation", "readConcern", "collation", "hint", "writeConcern", "let", "comment",
		"needsMerge", "fromMongos", "fromRouter", "collectionUUID", "exchange", "isMapReduceCommand",
		"$_requestReshardingResumeToken", "$_isClusterQueryWithoutShardKeyCmd", "includeQueryStatsMetrics",
		"$_requestResumeToken", "$_resumeAfter", "$_passthroughToShard"}
	getMoreFields = []string{"getMore", "collection", "batchSize", "maxTimeMS", "comment", "term",
		"lastKnownCommittedOpTime", "includeQueryStatsMetrics"}
)

// checkKnownFields fails a command that carries a field neither its own
// definition nor the generic arguments name.
func (cc *cmdCtx) checkKnownFields(known []string) error {
	elems, err := cc.cmd.Elements()
	if err != nil {
		return cmdErr(codeFailedToParse, "invalid command document: %v", err)
	}
	for _, e := range elems {
		k := e.Key()
		if !slices.Contains(known, k) && !slices.Contains(genericFields, k) {
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
