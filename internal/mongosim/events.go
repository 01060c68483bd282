package mongosim

import (
	"fmt"

	"github.com/changestream-go/changestream/internal/mongosim/query"
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
		sp.uuid, sp.hasUUID = e.collUUID, true
		sp.opType = e.op
		var d bson.D
		switch e.op {
		case opInsert, opUpdate, opReplace, opDelete:
			if len(e.docKey) == 1 && e.docKey[0].Key == "_id" {
				sp.docKeyID = e.docKey[0].Value
				break
			}
			sp.idKey, d = "documentKey", e.docKey
		default:
			if e.opDesc != nil {
				sp.idKey, d = "operationDescription", e.opDesc
			}
		}
		if sp.idKey != "" {
			raw, err := bson.Marshal(d)
			if err != nil {
				return resumeToken{}, cmdErr(codeInternalError, "mongosim: encoding %s: %v", sp.idKey, err)
			}
			sp.idValue = bsoncore.Value{Type: bsoncore.TypeEmbeddedDocument, Data: raw}
		}
	}
	return sp.build()
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
	dst = bsoncore.AppendHeader(dst, bsoncore.TypeEmbeddedDocument, "_id")
	dst = tok.appendDoc(dst)
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
		case opRename, opCreate, opCreateIndexes, opDropIndexes, opModify, opShardCollection, opRefineShardKey, opNewShardDetected:
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
	id, ok := query.Lookup(e.docKey, "_id")
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

func appendUpdateDescription(dst []byte, u *query.UpdateDescription, expanded bool) []byte {
	if u == nil {
		u = &query.UpdateDescription{}
	}
	idx, dst := bsoncore.AppendDocumentElementStart(dst, "updateDescription")
	if u.UpdatedFields == nil {
		dst = bsoncore.AppendDocumentElement(dst, "updatedFields", bsoncore.NewDocumentBuilder().Build())
	} else {
		dst = appendDocValue(dst, "updatedFields", u.UpdatedFields)
	}
	aidx, dst := bsoncore.AppendArrayElementStart(dst, "removedFields")
	for i, f := range u.RemovedFields {
		dst = bsoncore.AppendStringElement(dst, fmt.Sprint(i), f)
	}
	dst, _ = bsoncore.AppendArrayEnd(dst, aidx)
	tidx, dst := bsoncore.AppendArrayElementStart(dst, "truncatedArrays")
	for i, t := range u.TruncatedArrays {
		eidx, d := bsoncore.AppendDocumentElementStart(dst, fmt.Sprint(i))
		d = bsoncore.AppendStringElement(d, "field", t.Field)
		d = bsoncore.AppendInt32Element(d, "newSize", t.NewSize)
		dst, _ = bsoncore.AppendDocumentEnd(d, eidx)
	}
	dst, _ = bsoncore.AppendArrayEnd(dst, tidx)
	if expanded {
		if u.DisambiguatedPaths == nil {
			dst = bsoncore.AppendDocumentElement(dst, "disambiguatedPaths", bsoncore.NewDocumentBuilder().Build())
		} else {
			dst = appendDocValue(dst, "disambiguatedPaths", u.DisambiguatedPaths)
		}
	}
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst
}
