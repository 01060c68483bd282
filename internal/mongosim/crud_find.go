package mongosim

import (
	"sort"
	"strings"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"github.com/changestream-go/changestream/internal/mongosim/wire"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// findDefaultBatch is the server's default first batch size for find and
// aggregate cursors.
const findDefaultBatch = 101

// decodeValue copies a raw value into its Go form (documents as bson.D,
// arrays as bson.A), detached from the connection's buffer.
func decodeValue(v bsoncore.Value) (any, error) {
	var out any
	if err := (bson.RawValue{Type: bson.Type(v.Type), Value: v.Data}).Unmarshal(&out); err != nil {
		return nil, cmdErr(codeFailedToParse, "mongosim: invalid BSON: %v", err)
	}
	return out, nil
}

// decodeDoc copies a raw document into a bson.D.
func decodeDoc(d bsoncore.Document) (bson.D, error) {
	out := bson.D{}
	if err := bson.Unmarshal(d, &out); err != nil {
		return nil, cmdErr(codeFailedToParse, "mongosim: invalid BSON: %v", err)
	}
	return out, nil
}

// docField reads an optional document argument as a bson.D copy.
func (cc *cmdCtx) docFieldD(key string) (bson.D, bool, error) {
	raw, ok, err := cc.docArg(key)
	if err != nil || !ok {
		return nil, ok, err
	}
	d, err := decodeDoc(raw)
	return d, true, err
}

// collName reads the collection name that is the value of the command's
// first field and checks it as the server does.
func (cc *cmdCtx) collName() (string, error) {
	v, ok := cc.field(cc.name)
	if !ok {
		return "", cmdErr(codeInvalidNamespace, "collection name has invalid type null")
	}
	s, ok := v.StringValueOK()
	if !ok {
		return "", cmdErr(codeInvalidNamespace, "collection name has invalid type %s", query.TypeAlias(v.Type))
	}
	if s == "" || strings.ContainsAny(s, "\x00$") || strings.HasPrefix(s, ".") {
		return "", cmdErr(codeInvalidNamespace, "Invalid namespace specified '%s.%s'", cc.db, s)
	}
	return s, nil
}

// viewOn returns the source and pipeline of a view, ok=false for a
// collection.
func (c *collection) viewOn() (string, bson.A, bool) {
	v, ok := query.Lookup(c.options, "viewOn")
	if !ok {
		return "", nil, false
	}
	src, _ := v.(string)
	p, _ := query.Lookup(c.options, "pipeline")
	pipe, _ := p.(bson.A)
	return src, pipe, true
}

// readDocsLocked returns the documents of a collection or view in natural
// order. A missing collection reads as empty. st.mu must be held.
func (st *store) readDocsLocked(db, name string, depth int) ([]bson.D, error) {
	c := st.collLocked(db, name)
	if c == nil {
		return nil, nil
	}
	src, pipe, isView := c.viewOn()
	if !isView {
		return c.docs.all(), nil
	}
	if depth > 20 {
		return nil, cmdErr(codeInvalidOptions, "View depth too deep or view cycle detected; maximum depth is 20")
	}
	docs, err := st.readDocsLocked(db, src, depth+1)
	if err != nil {
		return nil, err
	}
	stages := make([]bson.D, 0, len(pipe))
	for _, s := range pipe {
		if d, ok := s.(bson.D); ok {
			stages = append(stages, d)
		}
	}
	return query.RunStages(docs, stages)
}

// findSource serves the batches of a find or plain aggregate cursor from a
// snapshot of the result taken when the command ran.
type findSource struct {
	docs    []bson.D
	pos     int
	first   int  // size of the first batch; -1 for "all"
	started bool // the first batch has been sent
	single  bool // singleBatch: the first batch ends the cursor
}

func (f *findSource) nextBatch(_ *cmdCtx, batchSize int, _ time.Duration, _ <-chan struct{}) (batch, error) {
	n := batchSize
	if !f.started {
		n = f.first
		f.started = true
	} else if n <= 0 {
		n = -1
	}
	var b batch
	size := 0
	for f.pos < len(f.docs) && (n < 0 || len(b.docs) < n) {
		raw, err := bson.Marshal(f.docs[f.pos])
		if err != nil {
			return batch{}, cmdErr(codeInternalError, "mongosim: encoding document: %v", err)
		}
		if len(b.docs) > 0 && size+len(raw) > wire.MaxBSONObjectSize {
			break
		}
		size += len(raw)
		b.docs = append(b.docs, raw)
		f.pos++
	}
	b.exhausted = f.pos >= len(f.docs) || f.single
	return b, nil
}

func handleFind(cc *cmdCtx) (bsoncore.Document, error) {
	coll, err := cc.collName()
	if err != nil {
		return nil, err
	}
	filter, _, err := cc.docFieldD("filter")
	if err != nil {
		return nil, err
	}
	sortSpec, _, err := cc.docFieldD("sort")
	if err != nil {
		return nil, err
	}
	projSpec, _, err := cc.docFieldD("projection")
	if err != nil {
		return nil, err
	}
	skip, _, err := cc.int64Arg("skip")
	if err != nil {
		return nil, err
	}
	if skip < 0 {
		return nil, cmdErr(51024, "BSON field 'skip' value must be >= 0, actual value '%d'", skip)
	}
	limit, _, err := cc.int64Arg("limit")
	if err != nil {
		return nil, err
	}
	batchSize, hasBatch, err := cc.int64Arg("batchSize")
	if err != nil {
		return nil, err
	}
	if batchSize < 0 {
		return nil, cmdErr(51024, "BSON field 'batchSize' value must be >= 0, actual value '%d'", batchSize)
	}
	single, _, err := cc.boolArg("singleBatch")
	if err != nil {
		return nil, err
	}
	if t, _, _ := cc.boolArg("tailable"); t {
		return nil, cmdErr(codeBadValue, "error processing query: ns=%s.%s tailable cursor requested on non capped collection", cc.db, coll)
	}
	if limit < 0 {
		// A negative limit is the legacy "single batch of n".
		limit, single = -limit, true
	}
	match, exprFailed, err := query.CompileFilterAt(filter, time.Now())
	if err != nil {
		return nil, err
	}
	bounds, err := parseFindBounds(cc)
	if err != nil {
		return nil, err
	}
	var less func(a, b bson.D) int
	if len(sortSpec) > 0 {
		if less, err = query.CompileSort(sortSpec); err != nil {
			return nil, err
		}
	}
	proj, err := query.CompileProjection(projSpec)
	if err != nil {
		return nil, err
	}
	st := cc.store()
	if err := cc.lockRead(st); err != nil {
		return nil, err
	}
	all, err := st.readDocsLocked(cc.db, coll, 0)
	st.mu.Unlock()
	if err != nil {
		return nil, err
	}
	docs := make([]bson.D, 0, len(all))
	for _, d := range all {
		if match(d) {
			docs = append(docs, d)
		}
	}
	if err := exprFailed(); err != nil {
		return nil, err
	}
	docs = bounds.apply(docs)
	if less != nil {
		sort.SliceStable(docs, func(i, j int) bool { return less(docs[i], docs[j]) < 0 })
	}
	docs = docs[min(int(skip), len(docs)):]
	if limit > 0 && int(limit) < len(docs) {
		docs = docs[:limit]
	}
	if len(projSpec) > 0 {
		for i, d := range docs {
			docs[i] = proj(d)
		}
	}
	first := findDefaultBatch
	if hasBatch {
		first = int(batchSize)
	}
	if single && !hasBatch {
		first = -1
	}
	if limit > 0 && (first < 0 || int(limit) < first) && !single {
		first = int(limit)
	}
	return cc.openCursor(coll, cc.db+"."+coll, &findSource{docs: docs, first: first, single: single}, first)
}

// runPlainAggregate runs an aggregate whose pipeline does not start with
// $changeStream: $match, $project, $addFields/$set, $unset, $replaceRoot,
// $replaceWith, $sort, $skip, $limit and $count over a snapshot of the
// collection.
func runPlainAggregate(cc *cmdCtx) (bsoncore.Document, error) {
	target, ok := cc.field("aggregate")
	if !ok {
		return nil, cmdErr(codeFailedToParse, "BSON field 'aggregate.aggregate' is missing but a required field")
	}
	coll, isColl := target.StringValueOK()
	pipeRaw, present, err := cc.arrayArg("pipeline")
	if err != nil {
		return nil, err
	}
	if !present {
		return nil, cmdErr(40414, "BSON field 'aggregate.pipeline' is missing but a required field")
	}
	pv, err := decodeValue(bsoncore.Value{Type: bsoncore.TypeArray, Data: pipeRaw})
	if err != nil {
		return nil, err
	}
	var stages []bson.D
	for _, s := range pv.(bson.A) {
		d, ok := s.(bson.D)
		if !ok || len(d) != 1 {
			return nil, cmdErr(40323, "A pipeline stage specification object must contain exactly one field.")
		}
		stages = append(stages, d)
	}
	if ex, _, _ := cc.boolArg("explain"); ex {
		return nil, cmdErr(codeBadValue, "mongosim: explain is not supported")
	}
	cursorOpts, hasCursor, err := cc.docArg("cursor")
	if err != nil {
		return nil, err
	}
	if !hasCursor {
		return nil, cmdErr(codeFailedToParse, "The 'cursor' option is required, except for aggregate with the explain argument")
	}
	first := findDefaultBatch
	if v, err := cursorOpts.LookupErr("batchSize"); err == nil {
		n, ok := numberAsInt64(v)
		if !ok {
			return nil, typeMismatch("aggregate", "cursor.batchSize", v.Type, "long")
		}
		if n < 0 {
			return nil, cmdErr(51024, "BSON field 'batchSize' value must be >= 0, actual value '%d'", n)
		}
		first = int(n)
	}
	if !isColl {
		if len(stages) > 0 {
			return nil, cmdErr(codeInvalidNamespace, "{aggregate: 1} is not valid for '%s'; a collection is required.", stages[0][0].Key)
		}
		return nil, cmdErr(codeInvalidNamespace, "{aggregate: 1} is not valid for an empty pipeline.")
	}
	for _, s := range stages {
		if err := query.CheckStage(s); err != nil {
			return nil, err
		}
	}
	st := cc.store()
	if err := cc.lockRead(st); err != nil {
		return nil, err
	}
	docs, err := st.readDocsLocked(cc.db, coll, 0)
	st.mu.Unlock()
	if err != nil {
		return nil, err
	}
	out, err := query.RunStages(docs, stages)
	if err != nil {
		return nil, err
	}
	return cc.openCursor(coll, cc.db+"."+coll, &findSource{docs: out, first: first}, first)
}
