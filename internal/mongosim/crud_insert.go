package mongosim

import (
	"strings"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"github.com/changestream-go/changestream/internal/mongosim/wire"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// writeError is one failed statement of a write command, reported in
// writeErrors rather than failing the command.
type writeError struct {
	index int
	err   *CommandError
	// keyValue is set for duplicate key errors.
	keyValue any
	dupKey   bool
}

func (w writeError) doc() bson.D {
	d := bson.D{{Key: "index", Value: int32(w.index)}, {Key: "code", Value: w.err.Code}}
	if w.dupKey {
		d = append(d,
			bson.E{Key: "keyPattern", Value: bson.D{{Key: "_id", Value: int32(1)}}},
			bson.E{Key: "keyValue", Value: bson.D{{Key: "_id", Value: w.keyValue}}})
	}
	return append(d, bson.E{Key: "errmsg", Value: w.err.Message})
}

// toCmdErr turns any error into the CommandError to report.
func toCmdErr(err error) *CommandError {
	if ce, ok := err.(*CommandError); ok {
		return ce
	}
	return cmdErr(codeInternalError, "%v", err)
}

func dupKeyError(db, coll string, id any) *CommandError {
	return cmdErr(codeDuplicateKey, "E11000 duplicate key error collection: %s.%s index: _id_ dup key: { _id: %s }",
		db, coll, query.FormatValue(id))
}

// writeReply builds {n, nModified?, upserted?, writeErrors?}.
func writeReply(n int, nModified *int, upserted bson.A, werrs []writeError) (bsoncore.Document, error) {
	d := bson.D{{Key: "n", Value: int32(n)}}
	if nModified != nil {
		d = append(d, bson.E{Key: "nModified", Value: int32(*nModified)})
	}
	if len(upserted) > 0 {
		d = append(d, bson.E{Key: "upserted", Value: upserted})
	}
	if len(werrs) > 0 {
		arr := make(bson.A, len(werrs))
		for i, w := range werrs {
			arr[i] = w.doc()
		}
		d = append(d, bson.E{Key: "writeErrors", Value: arr})
	}
	return marshalDoc(d)
}

// statements returns the statements of a write command: the array field
// key plus an OP_MSG document sequence of the same name.
func (cc *cmdCtx) statements(key string) ([]bsoncore.Document, error) {
	var out []bsoncore.Document
	arr, present, err := cc.arrayArg(key)
	if err != nil {
		return nil, err
	}
	if present {
		vals, err := arr.Values()
		if err != nil {
			return nil, cmdErr(codeFailedToParse, "mongosim: invalid %s array: %v", key, err)
		}
		for _, v := range vals {
			d, ok := v.DocumentOK()
			if !ok {
				return nil, typeMismatch(cc.name, key+".0", v.Type, "object")
			}
			out = append(out, d)
		}
	}
	out = append(out, cc.seqs[key]...)
	if !present && len(cc.seqs[key]) == 0 {
		return nil, cmdErr(40414, "BSON field '%s.%s' is missing but a required field", cc.name, key)
	}
	if len(out) == 0 {
		return nil, cmdErr(16, "Write batch sizes must be between 1 and 100000. Got 0 operations.")
	}
	if len(out) > wire.MaxWriteBatchSize {
		return nil, cmdErr(16, "Write batch sizes must be between 1 and %d. Got %d operations.", wire.MaxWriteBatchSize, len(out))
	}
	return out, nil
}

// orderedArg reads ordered, true unless given.
// writeArgs reads what every write command starts with: the collection, the
// ordered flag and the statements under key (in the body or a kind-1
// document sequence).
func (cc *cmdCtx) writeArgs(key string) (coll string, ordered bool, stmts []bsoncore.Document, err error) {
	if coll, err = cc.collName(); err != nil {
		return "", false, nil, err
	}
	if ordered, err = cc.orderedArg(); err != nil {
		return "", false, nil, err
	}
	if stmts, err = cc.statements(key); err != nil {
		return "", false, nil, err
	}
	return coll, ordered, stmts, nil
}

func (cc *cmdCtx) orderedArg() (bool, error) {
	v, present, err := cc.boolArg("ordered")
	if err != nil {
		return false, err
	}
	return v || !present, nil
}

// checkWritable rejects writes to a view.
func checkWritable(c *collection) error {
	if c == nil {
		return nil
	}
	if _, _, isView := c.viewOn(); isView {
		return cmdErr(166, "Namespace %s.%s is a view, not a collection", c.db, c.name)
	}
	return nil
}

// checkNewDoc validates a document about to be stored.
func checkNewDoc(d bson.D) error {
	for _, e := range d {
		if strings.HasPrefix(e.Key, "$") {
			return cmdErr(codeBadValue, "Document can't have $ prefixed field names: %s", e.Key)
		}
	}
	id, _ := query.Lookup(d, "_id")
	switch id.(type) {
	case bson.A:
		return cmdErr(53, "The '_id' value cannot be of type array")
	case bson.Regex:
		return cmdErr(codeBadValue, "can't use a regex for _id")
	case bson.Undefined:
		return cmdErr(codeBadValue, "can't use a undefined for _id")
	}
	return nil
}

// insertLocked stores one new document and logs it. st.mu must be held.
func (st *store) insertLocked(c *collection, d bson.D) error {
	if err := checkUserDocSize(d, true); err != nil {
		return err
	}
	id, _ := query.Lookup(d, "_id")
	if err := st.lockedByTxnLocked(c, idKey(id)); err != nil {
		return err
	}
	if !c.docs.insert(idKey(id), d) {
		return dupKeyError(c.db, c.name, id)
	}
	st.appendLocked(&oplogEntry{op: opInsert, db: c.db, coll: c.name, collUUID: c.uuid,
		docKey: c.documentKey(d), fullDoc: d})
	return nil
}

func handleInsert(cc *cmdCtx) (bsoncore.Document, error) {
	coll, ordered, raws, err := cc.writeArgs("documents")
	if err != nil {
		return nil, err
	}
	docs := make([]bson.D, len(raws))
	for i, r := range raws {
		if docs[i], err = decodeDoc(r); err != nil {
			return nil, err
		}
		docs[i] = query.WithIDFirst(docs[i])
	}
	st := cc.store()
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := checkWritable(st.collLocked(cc.db, coll)); err != nil {
		return nil, err
	}
	rw, err := cc.retryableWriteLocked(st)
	if err != nil {
		return nil, err
	}
	n := 0
	var werrs []writeError
	for i, d := range docs {
		if rw.executedLocked(st, i) {
			n++
			continue
		}
		if err := checkNewDoc(d); err != nil {
			werrs = append(werrs, writeError{index: i, err: toCmdErr(err)})
		} else {
			end := rw.begin(st, i)
			c := st.implicitCollLocked(cc.db, coll)
			err := st.insertLocked(c, d)
			end()
			if err != nil {
				id, _ := query.Lookup(d, "_id")
				werrs = append(werrs, writeError{index: i, err: toCmdErr(err), dupKey: true, keyValue: id})
			} else {
				n++
				continue
			}
		}
		if ordered {
			break
		}
	}
	return writeReply(n, nil, nil, werrs)
}
