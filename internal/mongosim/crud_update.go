package mongosim

import (
	"strings"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// updateStmt is one parsed update: a statement of the update command or a
// findAndModify.
type updateStmt struct {
	query        bson.D
	match        query.Matcher
	spec         *query.UpdateSpec
	upsert       bool
	multi        bool
	arrayFilters map[string]query.Matcher
	order        func(a, b bson.D) int // findAndModify's sort
	// now is the statement's $$NOW and $currentDate; exprFailed returns
	// the error an $expr of the filter raised while matching.
	now        time.Time
	exprFailed func() error
}

// updateOutcome reports what an update did.
type updateOutcome struct {
	matched, modified int
	upserted          bool
	upsertedID        any
	before, after     bson.D // the (last) document before and after
}

// parseUpdateStmt reads {q, u, upsert, multi, arrayFilters} from an
// update statement.
func parseUpdateStmt(raw bsoncore.Document) (*updateStmt, error) {
	sc := &cmdCtx{name: "update.updates", cmd: raw}
	qraw, ok, err := sc.docArg("q")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, cmdErr(40414, "BSON field 'update.updates.q' is missing but a required field")
	}
	uval, ok := sc.field("u")
	if !ok {
		return nil, cmdErr(40414, "BSON field 'update.updates.u' is missing but a required field")
	}
	if uval.Type != bsoncore.TypeEmbeddedDocument && uval.Type != bsoncore.TypeArray {
		return nil, cmdErr(codeFailedToParse, "Update argument must be either an object or an array")
	}
	upsert, _, err := sc.boolArg("upsert")
	if err != nil {
		return nil, err
	}
	multi, _, err := sc.boolArg("multi")
	if err != nil {
		return nil, err
	}
	var filters bson.A
	if arr, ok, err := sc.arrayArg("arrayFilters"); err != nil {
		return nil, err
	} else if ok {
		v, err := decodeValue(bsoncore.Value{Type: bsoncore.TypeArray, Data: arr})
		if err != nil {
			return nil, err
		}
		filters = v.(bson.A)
	}
	q, err := decodeDoc(qraw)
	if err != nil {
		return nil, err
	}
	u, err := decodeValue(uval)
	if err != nil {
		return nil, err
	}
	return buildUpdateStmt(q, u, upsert, multi, filters)
}

func buildUpdateStmt(q bson.D, u any, upsert, multi bool, filters bson.A) (*updateStmt, error) {
	s := &updateStmt{query: q, upsert: upsert, multi: multi, now: time.Now()}
	var err error
	if s.match, s.exprFailed, err = query.CompileFilterAt(q, s.now); err != nil {
		return nil, err
	}
	if s.spec, err = query.ParseUpdate(u); err != nil {
		return nil, err
	}
	if multi && s.spec.Kind == query.UpdReplacement {
		return nil, cmdErr(codeFailedToParse, "multi update is not supported for replacement-style update")
	}
	if s.arrayFilters, err = compileArrayFilters(filters); err != nil {
		return nil, err
	}
	return s, nil
}

// compileArrayFilters compiles ArrayFilters: each filter names one
// identifier as the first component of all its fields.
func compileArrayFilters(filters bson.A) (map[string]query.Matcher, error) {
	if len(filters) == 0 {
		return nil, nil
	}
	out := make(map[string]query.Matcher, len(filters))
	for _, f := range filters {
		d, ok := f.(bson.D)
		if !ok {
			return nil, cmdErr(codeFailedToParse, "Error parsing array filter :: caused by :: element must be an object")
		}
		id := ""
		for _, e := range d {
			name := strings.SplitN(e.Key, ".", 2)[0]
			if strings.HasPrefix(name, "$") {
				continue
			}
			if name == "" || name[0] < 'a' || name[0] > 'z' {
				return nil, cmdErr(codeBadValue, "Error parsing array filter :: caused by :: The top-level field name must be an alphanumeric string beginning with a lowercase letter, found '%s'", name)
			}
			if id != "" && id != name {
				return nil, cmdErr(codeFailedToParse, "Error parsing array filter :: caused by :: Expected a single top-level field name, found '%s' and '%s'", id, name)
			}
			id = name
		}
		if id == "" {
			return nil, cmdErr(codeFailedToParse, "Cannot use an expression without a top-level field name in arrayFilters")
		}
		if _, dup := out[id]; dup {
			return nil, cmdErr(codeFailedToParse, "Found multiple array filters with the same top-level field name %s", id)
		}
		m, err := query.CompileFilter(d)
		if err != nil {
			return nil, err
		}
		out[id] = m
	}
	return out, nil
}

// updateLocked runs one update statement on db.coll. st.mu must be held.
// Each modified document is stored as a new value and logged; a statement
// that changes nothing logs nothing.
func (st *store) updateLocked(db, coll string, u *updateStmt) (updateOutcome, error) {
	var out updateOutcome
	c := st.collLocked(db, coll)
	if err := checkWritable(c); err != nil {
		return out, err
	}
	matches := matchingLocked(c, u.match, u.order, u.multi)
	if err := u.exprFailed(); err != nil {
		return out, err
	}
	for _, old := range matches {
		uc := &query.UpdateContext{ArrayFilters: u.arrayFilters, Now: u.now, TS: st.nextTimeLocked(), Log: &query.UpdateLog{}}
		nd, err := u.spec.Apply(old, uc)
		if err != nil {
			return out, err
		}
		out.matched++
		out.before, out.after = old, nd
		if query.Identical(old, nd) {
			continue
		}
		if err := checkUserDocSize(nd, false); err != nil {
			return out, err
		}
		id, _ := query.Lookup(old, "_id")
		if err := st.lockedByTxnLocked(c, idKey(id)); err != nil {
			return out, err
		}
		e := &oplogEntry{db: db, coll: coll, collUUID: c.uuid, docKey: c.documentKey(old), after: nd}
		if u.spec.Kind == query.UpdReplacement {
			e.op, e.fullDoc = opReplace, nd
		} else {
			e.op = opUpdate
			if u.spec.Kind == query.UpdPipeline {
				e.updateDesc = query.DiffUpdate(old, nd)
				if e.updateDesc != nil && query.DiffLargerThan(e.updateDesc, nd) {
					// The server logs such an update as a replacement,
					// and a change stream reports a replace.
					e.op, e.fullDoc, e.updateDesc = opReplace, nd, nil
				}
			} else {
				e.updateDesc = uc.Log.Describe(nd)
			}
			if e.op == opUpdate && e.updateDesc == nil {
				continue
			}
			if c.preAndPostImages && e.op == opUpdate {
				e.postImage = nd
			}
		}
		if c.preAndPostImages {
			e.preImage = old
		}
		c.docs.replace(idKey(id), nd)
		st.appendLocked(e)
		out.modified++
	}
	if out.matched > 0 || !u.upsert {
		return out, nil
	}
	var doc bson.D
	if u.spec.Kind == query.UpdReplacement {
		doc = query.CloneDoc(u.spec.Replacement)
		if !query.HasKey(doc, "_id") {
			if id, ok := query.Lookup(u.query, "_id"); ok {
				if d, isOp := id.(bson.D); !isOp || len(d) == 0 || !strings.HasPrefix(d[0].Key, "$") {
					doc = append(bson.D{{Key: "_id", Value: query.CloneValue(id)}}, doc...)
				} else if eq, ok := query.Lookup(d, "$eq"); ok {
					doc = append(bson.D{{Key: "_id", Value: query.CloneValue(eq)}}, doc...)
				}
			}
		}
	} else {
		seed, err := query.UpsertSeed(u.query)
		if err != nil {
			return out, err
		}
		uc := &query.UpdateContext{Inserting: true, ArrayFilters: u.arrayFilters, Now: u.now, TS: st.nextTimeLocked()}
		if doc, err = u.spec.Apply(seed, uc); err != nil {
			return out, err
		}
	}
	doc = query.WithIDFirst(doc)
	if err := checkNewDoc(doc); err != nil {
		return out, err
	}
	c = st.implicitCollLocked(db, coll)
	if err := st.insertLocked(c, doc); err != nil {
		return out, err
	}
	out.upserted = true
	out.upsertedID, _ = query.Lookup(doc, "_id")
	out.after = doc
	return out, nil
}

func handleUpdate(cc *cmdCtx) (bsoncore.Document, error) {
	coll, ordered, raws, err := cc.writeArgs("updates")
	if err != nil {
		return nil, err
	}
	stmts := make([]*updateStmt, len(raws))
	perrs := make([]error, len(raws))
	for i, r := range raws {
		stmts[i], perrs[i] = parseUpdateStmt(r)
	}
	st := cc.store()
	st.mu.Lock()
	defer st.mu.Unlock()
	rw, err := cc.retryableWriteLocked(st)
	if err != nil {
		return nil, err
	}
	n, nModified := 0, 0
	var upserted bson.A
	var werrs []writeError
	for i, s := range stmts {
		if rw.executedLocked(st, i) {
			// The server answers a retried update from its record
			// without the upserted _id; n and nModified count it.
			n++
			nModified++
			continue
		}
		err := perrs[i]
		if err == nil {
			var res updateOutcome
			end := rw.begin(st, i)
			res, err = st.updateLocked(cc.db, coll, s)
			end()
			n += res.matched
			nModified += res.modified
			if res.upserted {
				n++
				upserted = append(upserted, bson.D{{Key: "index", Value: int32(i)}, {Key: "_id", Value: res.upsertedID}})
			}
		}
		if err != nil {
			ce := toCmdErr(err)
			if ce.Code == codeNamespaceNotFound || ce.Code == 166 {
				return nil, ce
			}
			w := writeError{index: i, err: ce}
			if ce.Code == codeDuplicateKey {
				w.dupKey = true
				w.keyValue = dupKeyValue(s)
			}
			werrs = append(werrs, w)
			if ordered {
				break
			}
		}
	}
	return writeReply(n, &nModified, upserted, werrs)
}

// dupKeyValue recovers the _id an upsert tried to insert, for keyValue.
func dupKeyValue(s *updateStmt) any {
	if s == nil {
		return nil
	}
	if s.spec.Kind == query.UpdReplacement {
		if id, ok := query.Lookup(s.spec.Replacement, "_id"); ok {
			return id
		}
	}
	seed, _ := query.UpsertSeed(s.query)
	id, _ := query.Lookup(seed, "_id")
	return id
}
