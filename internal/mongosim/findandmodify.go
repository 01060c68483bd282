package mongosim

import (
	"github.com/changestream-go/changestream/internal/mongosim/query"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"time"
)

// handleFindAndModify updates, replaces, upserts or removes one document
// and returns it, writing the same oplog entries as update and delete.
// Failures are command errors here, not writeErrors.
func handleFindAndModify(cc *cmdCtx) (bsoncore.Document, error) {
	coll, err := cc.collName()
	if err != nil {
		return nil, err
	}
	filter, _, err := cc.docFieldD("query")
	if err != nil {
		return nil, err
	}
	sortSpec, _, err := cc.docFieldD("sort")
	if err != nil {
		return nil, err
	}
	fields, _, err := cc.docFieldD("fields")
	if err != nil {
		return nil, err
	}
	remove, _, err := cc.boolArg("remove")
	if err != nil {
		return nil, err
	}
	returnNew, _, err := cc.boolArg("new")
	if err != nil {
		return nil, err
	}
	upsert, _, err := cc.boolArg("upsert")
	if err != nil {
		return nil, err
	}
	uval, hasUpdate := cc.field("update")
	switch {
	case remove && hasUpdate:
		return nil, cmdErr(codeFailedToParse, "Cannot specify both an update and remove=true")
	case !remove && !hasUpdate:
		return nil, cmdErr(codeFailedToParse, "Either an update or remove=true must be specified")
	case remove && upsert:
		return nil, cmdErr(codeFailedToParse, "Cannot specify both upsert=true and remove=true ")
	case remove && returnNew:
		return nil, cmdErr(codeFailedToParse, "Cannot specify both new=true and remove=true; 'remove' always returns the deleted document")
	}
	var order func(a, b bson.D) int
	if len(sortSpec) > 0 {
		if order, err = query.CompileSort(sortSpec); err != nil {
			return nil, err
		}
	}
	proj, err := query.CompileProjection(fields)
	if err != nil {
		return nil, err
	}
	var stmt *updateStmt
	if remove {
		m, failed, err := query.CompileFilterAt(filter, time.Now())
		if err != nil {
			return nil, err
		}
		stmt = &updateStmt{match: m, order: order, exprFailed: failed}
	} else {
		if uval.Type != bsoncore.TypeEmbeddedDocument && uval.Type != bsoncore.TypeArray {
			return nil, cmdErr(codeFailedToParse, "Update argument must be either an object or an array")
		}
		u, err := decodeValue(uval)
		if err != nil {
			return nil, err
		}
		var filters bson.A
		if arr, ok, err := cc.arrayArg("arrayFilters"); err != nil {
			return nil, err
		} else if ok {
			v, err := decodeValue(bsoncore.Value{Type: bsoncore.TypeArray, Data: arr})
			if err != nil {
				return nil, err
			}
			filters = v.(bson.A)
		}
		if stmt, err = buildUpdateStmt(filter, u, upsert, false, filters); err != nil {
			return nil, err
		}
		stmt.order = order
	}

	st := cc.store()
	st.mu.Lock()
	defer st.mu.Unlock()
	rw, err := cc.retryableWriteLocked(st)
	if err != nil {
		return nil, err
	}
	if rw.executedLocked(st, 0) {
		return nil, notImplemented("a retried findAndModify whose first attempt was applied: the server answers it from a stored image the simulator does not keep")
	}
	defer rw.begin(st, 0)()
	var value any
	leo := bson.D{}
	if remove {
		c := st.collLocked(cc.db, coll)
		if err := checkWritable(c); err != nil {
			return nil, err
		}
		docs := matchingLocked(c, stmt.match, order, false)
		if err := stmt.exprFailed(); err != nil {
			return nil, err
		}
		for _, d := range docs {
			if err := st.deleteDocLocked(c, d); err != nil {
				return nil, err
			}
			value = proj(d)
		}
		leo = append(leo, bson.E{Key: "n", Value: int32(len(docs))})
	} else {
		res, err := st.updateLocked(cc.db, coll, stmt)
		if err != nil {
			return nil, err
		}
		switch {
		case res.upserted:
			leo = append(leo, bson.E{Key: "n", Value: int32(1)}, bson.E{Key: "updatedExisting", Value: false},
				bson.E{Key: "upserted", Value: res.upsertedID})
			if returnNew {
				value = proj(res.after)
			}
		default:
			leo = append(leo, bson.E{Key: "n", Value: int32(res.matched)}, bson.E{Key: "updatedExisting", Value: res.matched > 0})
			if res.matched > 0 {
				if returnNew {
					value = proj(res.after)
				} else {
					value = proj(res.before)
				}
			}
		}
	}
	return marshalDoc(bson.D{{Key: "lastErrorObject", Value: leo}, {Key: "value", Value: value}})
}
