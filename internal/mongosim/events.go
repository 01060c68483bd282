package mongosim

import (
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Change events are built with the fields in the order a real 8.0 server
// sends them: _id, operationType, clusterTime, collectionUUID (expanded
// events only), wallTime, fullDocument (insert, replace), ns, to (rename),
// documentKey, updateDescription, operationDescription, nsType (expanded
// events only), then fullDocumentBeforeChange and an update's looked-up
// fullDocument, which the server's later pipeline stages append.

// reportsNSType says whether create events carry nsType, which servers
// report from 8.1 and 8.0.5 on; the simulator claims ServerVersion.
var reportsNSType = versionAtLeast(ServerVersion, 8, 0, 5)

// eventOptions say how a stream renders events beyond the default shape.
type eventOptions struct {
	fullDocument             string
	fullDocumentBeforeChange string
	expanded                 bool
}

func (o eventOptions) isDefault() bool {
	return o.fullDocument == fullDocDefault && o.fullDocumentBeforeChange == fullDocOff && !o.expanded
}

// eventToken returns the resume token of the event e produces, built once
// per entry. It fails only for a documentKey the keystring package cannot
// encode.
func eventToken(e *oplogEntry) (resumeToken, error) {
	e.tokenOnce.Do(func() { e.token, e.tokenErr = buildEventToken(e, false) })
	return e.token, e.tokenErr
}

// invalidateToken returns the token of the invalidate event that e causes:
// the token of e, marked fromInvalidate, so that it sorts right after it.
func invalidateToken(e *oplogEntry) (resumeToken, error) { return buildEventToken(e, true) }

// buildEventToken builds the token of e as the server does for version-2
// tokens: the collection UUID and an eventIdentifier of the operation type
// with the documentKey (CRUD) or the operationDescription (DDL). A
// dropDatabase event has no collection, so its token carries neither.
func buildEventToken(e *oplogEntry, fromInvalidate bool) (resumeToken, error) {
	sp := tokenSpec{ts: e.ts, txnOpIndex: e.txnOpIndex, fromInvalidate: fromInvalidate}
	if e.op != opDropDatabase {
		u := e.collUUID
		sp.uuid = &u
		id := bsoncore.NewDocumentBuilder().AppendString("operationType", e.op)
		var err error
		switch e.op {
		case opInsert, opUpdate, opReplace, opDelete:
			id, err = appendDocField(id, "documentKey", e.docKey)
		default:
			if e.opDesc != nil {
				id, err = appendDocField(id, "operationDescription", e.opDesc)
			}
		}
		if err != nil {
			return resumeToken{}, err
		}
		sp.eventID = id.Build()
	}
	return sp.build()
}

func appendDocField(b *bsoncore.DocumentBuilder, key string, d bson.D) (*bsoncore.DocumentBuilder, error) {
	raw, err := bson.Marshal(d)
	if err != nil {
		return nil, cmdErr(codeInternalError, "mongosim: encoding %s: %v", key, err)
	}
	return b.AppendDocument(key, raw), nil
}

// defaultEvent returns the event of e in the default shape, built once per
// entry and shared by every stream: this is the hot path.
func defaultEvent(e *oplogEntry) (bsoncore.Document, error) {
	e.encodeOnce.Do(func() {
		e.encoded, e.encodeErr = renderEvent(nil, e, eventOptions{fullDocument: fullDocDefault, fullDocumentBeforeChange: fullDocOff})
	})
	return e.encoded, e.encodeErr
}

// renderEvent builds the event of e. st is consulted only for updateLookup
// (it may be nil otherwise). It fails only when an image is required and
// missing.
func renderEvent(st *store, e *oplogEntry, o eventOptions) (bsoncore.Document, error) {
	dst := make([]byte, 0, 256+estimateSize(e))
	idx, dst := bsoncore.AppendDocumentStart(dst)
	tok, err := eventToken(e)
	if err != nil {
		return nil, err
	}
	dst = bsoncore.AppendDocumentElement(dst, "_id", tok.doc())
	dst = bsoncore.AppendStringElement(dst, "operationType", e.op)
	dst = bsoncore.AppendTimestampElement(dst, "clusterTime", e.ts.T, e.ts.I)
	if o.expanded && e.op != opDropDatabase && e.nsType != "view" {
		// A view has no UUID, so the create of a view carries none.
		dst = bsoncore.AppendBinaryElement(dst, "collectionUUID", 4, e.collUUID[:])
	}
	dst = bsoncore.AppendDateTimeElement(dst, "wallTime", e.wall.UnixMilli())
	if e.op == opInsert || e.op == opReplace {
		dst = appendDocValue(dst, "fullDocument", e.fullDoc)
	}
	nidx, dst := bsoncore.AppendDocumentElementStart(dst, "ns")
	dst = bsoncore.AppendStringElement(dst, "db", e.db)
	if e.op != opDropDatabase {
		dst = bsoncore.AppendStringElement(dst, "coll", e.coll)
	}
	dst, _ = bsoncore.AppendDocumentEnd(dst, nidx)
	if e.op == opRename {
		dst = appendNSDoc(dst, "to", e.toDB, e.toColl)
	}
	switch e.op {
	case opInsert, opUpdate, opReplace, opDelete:
		dst = appendDocValue(dst, "documentKey", e.docKey)
	}
	if e.op == opUpdate {
		dst = appendUpdateDescription(dst, e.updateDesc, o.expanded)
	}
	if e.lsid != nil {
		// An event of a transaction names it: the session as the oplog
		// recorded it ({id, uid}) and the transaction number.
		dst = bsoncore.AppendDocumentElement(dst, "lsid", e.lsid)
		dst = bsoncore.AppendInt64Element(dst, "txnNumber", e.txnNumber)
	}
	if o.expanded {
		switch e.op {
		case opRename, opCreate, opCreateIndexes, opDropIndexes, opModify:
			// A rename's description is the oplog entry's, less the
			// source namespace: {to: {db, coll}, dropTarget: <uuid>} when
			// the rename replaced an existing collection.
			dst = appendDocValue(dst, "operationDescription", e.opDesc)
		}
		if e.op == opModify && e.stateBefore != nil {
			dst = appendDocValue(dst, "stateBeforeChange", e.stateBefore)
		}
		if e.op == opCreate && reportsNSType {
			dst = bsoncore.AppendStringElement(dst, "nsType", e.nsType)
		}
	}
	if o.fullDocumentBeforeChange != fullDocOff && (e.op == opUpdate || e.op == opReplace || e.op == opDelete) {
		if e.preImage == nil && o.fullDocumentBeforeChange == fullDocRequired {
			return nil, cmdErr(47, "Change stream was configured to require a pre-image for all update, delete and replace events, but the pre-image was not found for event: %s", imageErrorDetail(e))
		}
		dst = appendDocValue(dst, "fullDocumentBeforeChange", e.preImage)
	}
	if e.op == opUpdate && o.fullDocument != fullDocDefault {
		var post bson.D
		switch o.fullDocument {
		case fullDocUpdateLookup:
			post = lookupCurrent(st, e)
		default:
			post = e.postImage
			if post == nil && o.fullDocument == fullDocRequired {
				return nil, cmdErr(47, "Change stream was configured to require a post-image for all update events, but the post-image was not found for event: %s", imageErrorDetail(e))
			}
		}
		dst = appendDocValue(dst, "fullDocument", post)
	}
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst, nil
}

// invalidateEvent builds the invalidate event that e causes.
func invalidateEvent(e *oplogEntry, tok resumeToken) bsoncore.Document {
	dst := make([]byte, 0, 128)
	idx, dst := bsoncore.AppendDocumentStart(dst)
	dst = bsoncore.AppendDocumentElement(dst, "_id", tok.doc())
	dst = bsoncore.AppendStringElement(dst, "operationType", "invalidate")
	dst = bsoncore.AppendTimestampElement(dst, "clusterTime", e.ts.T, e.ts.I)
	dst = bsoncore.AppendDateTimeElement(dst, "wallTime", e.wall.UnixMilli())
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst
}

// lookupCurrent returns the current version of the updated document, nil
// when it is gone or its collection was dropped and created again.
func lookupCurrent(st *store, e *oplogEntry) bson.D {
	if st == nil {
		return nil
	}
	id, ok := lookup(e.docKey, "_id")
	if !ok {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	c := st.collLocked(e.db, e.coll)
	if c == nil || c.uuid != e.collUUID {
		return nil
	}
	return c.docs.get(idKey(id))
}

func imageErrorDetail(e *oplogEntry) string {
	return fmt.Sprintf("{operationType: %q, ns: {db: %q, coll: %q}, clusterTime: Timestamp(%d, %d)}",
		e.op, e.db, e.coll, e.ts.T, e.ts.I)
}

func estimateSize(e *oplogEntry) int {
	n := 0
	if e.fullDoc != nil {
		n += 64 * len(e.fullDoc)
	}
	return n
}

// appendDocValue appends d as an embedded document, or null when d is nil.
func appendDocValue(dst []byte, key string, d bson.D) []byte {
	if d == nil {
		return bsoncore.AppendNullElement(dst, key)
	}
	b, err := bson.Marshal(d)
	if err != nil {
		return bsoncore.AppendNullElement(dst, key)
	}
	return bsoncore.AppendDocumentElement(dst, key, b)
}

func appendNSDoc(dst []byte, key, db, coll string) []byte {
	idx, dst := bsoncore.AppendDocumentElementStart(dst, key)
	dst = bsoncore.AppendStringElement(dst, "db", db)
	dst = bsoncore.AppendStringElement(dst, "coll", coll)
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst
}

func appendUpdateDescription(dst []byte, u *updateDescription, expanded bool) []byte {
	if u == nil {
		u = &updateDescription{}
	}
	idx, dst := bsoncore.AppendDocumentElementStart(dst, "updateDescription")
	if u.updatedFields == nil {
		dst = bsoncore.AppendDocumentElement(dst, "updatedFields", bsoncore.NewDocumentBuilder().Build())
	} else {
		dst = appendDocValue(dst, "updatedFields", u.updatedFields)
	}
	aidx, dst := bsoncore.AppendArrayElementStart(dst, "removedFields")
	for i, f := range u.removedFields {
		dst = bsoncore.AppendStringElement(dst, fmt.Sprint(i), f)
	}
	dst, _ = bsoncore.AppendArrayEnd(dst, aidx)
	tidx, dst := bsoncore.AppendArrayElementStart(dst, "truncatedArrays")
	for i, t := range u.truncatedArrays {
		eidx, d := bsoncore.AppendDocumentElementStart(dst, fmt.Sprint(i))
		d = bsoncore.AppendStringElement(d, "field", t.field)
		d = bsoncore.AppendInt32Element(d, "newSize", t.newSize)
		dst, _ = bsoncore.AppendDocumentEnd(d, eidx)
	}
	dst, _ = bsoncore.AppendArrayEnd(dst, tidx)
	if expanded {
		if u.disambiguatedPaths == nil {
			dst = bsoncore.AppendDocumentElement(dst, "disambiguatedPaths", bsoncore.NewDocumentBuilder().Build())
		} else {
			dst = appendDocValue(dst, "disambiguatedPaths", u.disambiguatedPaths)
		}
	}
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst
}

// eventStage is one compiled stage after $changeStream. It returns the
// transformed event, or keep=false when the event is filtered out.
type eventStage func(ev bson.D) (out bson.D, keep bool, err error)

// compileEventStage compiles an allowed stage. It returns nil for a stage
// that changes nothing here.
func compileEventStage(name string, spec bsoncore.Value) (eventStage, error) {
	switch name {
	case "$match":
		d, ok := rawToD(spec)
		if !ok {
			return nil, cmdErr(15959, "the match filter must be an expression in an object")
		}
		m, err := compileFilter(d)
		if err != nil {
			return nil, err
		}
		return func(ev bson.D) (bson.D, bool, error) { return ev, m(ev), nil }, nil
	case "$project":
		d, ok := rawToD(spec)
		if !ok {
			return nil, cmdErr(15969, "$project specification must be an object")
		}
		if len(d) == 0 {
			return nil, cmdErr(51272, "Invalid $project :: caused by :: projection specification must have at least one field")
		}
		p, err := compileProjection(d)
		if err != nil {
			return nil, err
		}
		return func(ev bson.D) (bson.D, bool, error) { return p(ev), true, nil }, nil
	case "$addFields", "$set":
		d, ok := rawToD(spec)
		if !ok {
			return nil, cmdErr(40272, "%s specification stage must be an object, got %s", name, typeAlias(spec.Type))
		}
		if err := checkExpr(d); err != nil {
			return nil, err
		}
		return func(ev bson.D) (bson.D, bool, error) {
			out := cloneD(ev)
			for _, f := range d {
				out = addField(out, ev, strings.Split(f.Key, "."), f.Value)
			}
			return out, true, nil
		}, nil
	case "$unset":
		var paths []string
		if s, ok := spec.StringValueOK(); ok {
			paths = []string{s}
		} else if a, ok := spec.ArrayOK(); ok {
			vals, _ := a.Values()
			for _, v := range vals {
				s, ok := v.StringValueOK()
				if !ok {
					return nil, cmdErr(31120, "$unset specification must be a string or an array containing only string values")
				}
				paths = append(paths, s)
			}
		} else {
			return nil, cmdErr(31002, "$unset specification must be a string or an array")
		}
		if len(paths) == 0 {
			return nil, cmdErr(31119, "$unset specification must be a string or an array with at least one field")
		}
		return func(ev bson.D) (bson.D, bool, error) {
			out := cloneD(ev)
			for _, p := range paths {
				out = removePath(out, strings.Split(p, "."))
			}
			return out, true, nil
		}, nil
	case "$replaceRoot", "$replaceWith":
		var expr any
		if name == "$replaceRoot" {
			d, ok := rawToD(spec)
			if !ok {
				return nil, cmdErr(40228, "expected an object as specification for $replaceRoot stage, got %s", typeAlias(spec.Type))
			}
			nr, ok := lookup(d, "newRoot")
			if !ok || len(d) != 1 {
				return nil, cmdErr(40231, "no newRoot specified for the $replaceRoot stage")
			}
			expr = nr
		} else {
			var err error
			if expr, err = rawToAny(spec); err != nil {
				return nil, err
			}
		}
		if err := checkExpr(expr); err != nil {
			return nil, err
		}
		return func(ev bson.D) (bson.D, bool, error) {
			v, ok := evalExpr(expr, ev)
			d, isDoc := v.(bson.D)
			if !ok || !isDoc {
				return nil, false, cmdErr(40228, "'replacement document' must evaluate to an object, but resulting value was: %v. Type of resulting value: '%s'", v, goTypeAlias(v, ok))
			}
			return d, true, nil
		}, nil
	case "$redact":
		return nil, cmdErr(codeIllegalOperation, "mongosim does not implement $redact in a $changeStream pipeline")
	}
	return nil, cmdErr(40324, "Unrecognized pipeline stage name: '%s'", name)
}

func rawToD(v bsoncore.Value) (bson.D, bool) {
	doc, ok := v.DocumentOK()
	if !ok {
		return nil, false
	}
	var d bson.D
	if err := bson.Unmarshal(doc, &d); err != nil {
		return nil, false
	}
	return d, true
}

func rawToAny(v bsoncore.Value) (any, error) {
	var out any
	if err := bson.UnmarshalValue(bson.Type(v.Type), v.Data, &out); err != nil {
		return nil, cmdErr(codeFailedToParse, "invalid stage specification: %v", err)
	}
	return out, nil
}

// The expression language is the small part of aggregation expressions a
// change-stream pipeline usually needs: literals, field paths ("$a.b"),
// $$ROOT/$$CURRENT/$$REMOVE, $literal, and documents and arrays of these.

// checkExpr refuses operators the simulator does not evaluate, at parse
// time as the server refuses unknown ones.
func checkExpr(v any) error {
	switch x := v.(type) {
	case string:
		if strings.HasPrefix(x, "$$") {
			name, _, _ := strings.Cut(x[2:], ".")
			if name != "ROOT" && name != "CURRENT" && name != "REMOVE" {
				return cmdErr(17276, "Use of undefined variable: %s", name)
			}
		}
	case bson.D:
		if len(x) > 0 && strings.HasPrefix(x[0].Key, "$") {
			if x[0].Key == "$literal" && len(x) == 1 {
				return nil
			}
			return unsupportedExpression(x[0].Key)
		}
		for _, f := range x {
			if err := checkExpr(f.Value); err != nil {
				return err
			}
		}
	case bson.A:
		for _, e := range x {
			if err := checkExpr(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// evalExpr evaluates a checked expression against root; ok=false means the
// value is missing.
func evalExpr(v any, root bson.D) (any, bool) {
	switch x := v.(type) {
	case string:
		if strings.HasPrefix(x, "$$") {
			name, rest, dotted := strings.Cut(x[2:], ".")
			if name == "REMOVE" {
				return nil, false
			}
			if !dotted {
				return root, true
			}
			return getPath(root, strings.Split(rest, "."))
		}
		if strings.HasPrefix(x, "$") {
			return getPath(root, strings.Split(x[1:], "."))
		}
		return x, true
	case bson.D:
		if len(x) == 1 && x[0].Key == "$literal" {
			return x[0].Value, true
		}
		out := make(bson.D, 0, len(x))
		for _, f := range x {
			if fv, ok := evalExpr(f.Value, root); ok {
				out = append(out, bson.E{Key: f.Key, Value: fv})
			}
		}
		return out, true
	case bson.A:
		out := make(bson.A, len(x))
		for i, e := range x {
			fv, ok := evalExpr(e, root)
			if !ok {
				fv = nil
			}
			out[i] = fv
		}
		return out, true
	}
	return v, true
}

// getPath reads a dotted path, mapping over arrays as field paths do.
func getPath(v any, path []string) (any, bool) {
	if len(path) == 0 {
		return v, true
	}
	switch x := v.(type) {
	case bson.D:
		fv, ok := lookup(x, path[0])
		if !ok {
			return nil, false
		}
		return getPath(fv, path[1:])
	case bson.A:
		out := bson.A{}
		for _, e := range x {
			if _, isDoc := e.(bson.D); !isDoc {
				continue
			}
			if ev, ok := getPath(e, path); ok {
				out = append(out, ev)
			}
		}
		return out, true
	}
	return nil, false
}

// addField sets path to the value of expr ($addFields semantics: an
// embedded document spec merges into an existing embedded document).
func addField(doc bson.D, root bson.D, path []string, expr any) bson.D {
	if len(path) == 1 {
		if sub, isDoc := expr.(bson.D); isDoc && !(len(sub) > 0 && strings.HasPrefix(sub[0].Key, "$")) {
			cur, _ := lookup(doc, path[0])
			curDoc, _ := cur.(bson.D)
			merged := cloneD(curDoc)
			for _, f := range sub {
				merged = addField(merged, root, strings.Split(f.Key, "."), f.Value)
			}
			return setField(doc, path[0], merged)
		}
		v, ok := evalExpr(expr, root)
		if !ok {
			return removePath(doc, path)
		}
		return setField(doc, path[0], v)
	}
	cur, _ := lookup(doc, path[0])
	curDoc, _ := cur.(bson.D)
	return setField(doc, path[0], addField(cloneD(curDoc), root, path[1:], expr))
}

func setField(doc bson.D, key string, v any) bson.D {
	for i := range doc {
		if doc[i].Key == key {
			doc[i].Value = v
			return doc
		}
	}
	return append(doc, bson.E{Key: key, Value: v})
}

// removePath deletes a dotted path, copying the documents it changes.
func removePath(doc bson.D, path []string) bson.D {
	for i, f := range doc {
		if f.Key != path[0] {
			continue
		}
		if len(path) == 1 {
			out := make(bson.D, 0, len(doc)-1)
			out = append(out, doc[:i]...)
			return append(out, doc[i+1:]...)
		}
		if sub, ok := f.Value.(bson.D); ok {
			out := cloneD(doc)
			out[i].Value = removePath(cloneD(sub), path[1:])
			return out
		}
		return doc
	}
	return doc
}

func cloneD(d bson.D) bson.D {
	if d == nil {
		return bson.D{}
	}
	return append(bson.D(nil), d...)
}

func goTypeAlias(v any, ok bool) string {
	if !ok {
		return "missing"
	}
	t, _, err := bson.MarshalValue(v)
	if err != nil {
		return "unknown"
	}
	return typeAlias(bsoncore.Type(t))
}
