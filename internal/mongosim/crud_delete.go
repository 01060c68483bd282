package mongosim

import (
	"github.com/changestream-go/changestream/internal/mongosim/query"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"time"
)

// matchingLocked returns the documents of c that match, in natural order
// or sorted; at most one unless multi. st.mu must be held.
func matchingLocked(c *collection, match query.Matcher, order func(a, b bson.D) int, multi bool) []bson.D {
	if c == nil {
		return nil
	}
	var out []bson.D
	for _, d := range c.docs.all() {
		if match(d) {
			out = append(out, d)
			if !multi && order == nil {
				break
			}
		}
	}
	if order != nil && len(out) > 1 {
		best := out[0]
		for _, d := range out[1:] {
			if order(d, best) < 0 {
				best = d
			}
		}
		out = []bson.D{best}
	}
	return out
}

// deleteDocLocked removes one stored document and logs it.
func (st *store) deleteDocLocked(c *collection, d bson.D) error {
	id, _ := query.Lookup(d, "_id")
	if err := st.lockedByTxnLocked(c, idKey(id)); err != nil {
		return err
	}
	c.docs.remove(idKey(id))
	e := &oplogEntry{op: opDelete, db: c.db, coll: c.name, collUUID: c.uuid, docKey: c.documentKey(d)}
	if c.preAndPostImages {
		e.preImage = d
	}
	st.appendLocked(e)
	return nil
}

func handleDelete(cc *cmdCtx) (bsoncore.Document, error) {
	coll, ordered, raws, err := cc.writeArgs("deletes")
	if err != nil {
		return nil, err
	}
	type stmt struct {
		match      query.Matcher
		multi      bool
		exprFailed func() error
		err        error
	}
	stmts := make([]stmt, len(raws))
	for i, r := range raws {
		stmts[i].err = func() error {
			sc := &cmdCtx{name: "delete.deletes", cmd: r}
			qraw, ok, err := sc.docArg("q")
			if err != nil {
				return err
			}
			if !ok {
				return cmdErr(40414, "BSON field 'delete.deletes.q' is missing but a required field")
			}
			q, err := decodeDoc(qraw)
			if err != nil {
				return err
			}
			limit, ok, err := sc.int64Arg("limit")
			if err != nil {
				return err
			}
			if !ok {
				return cmdErr(40414, "BSON field 'delete.deletes.limit' is missing but a required field")
			}
			if limit != 0 && limit != 1 {
				return cmdErr(codeFailedToParse, "The limit field in delete objects must be 0 or 1. Got %d", limit)
			}
			stmts[i].multi = limit == 0
			stmts[i].match, stmts[i].exprFailed, err = query.CompileFilterAt(q, time.Now())
			return err
		}()
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
	for i, s := range stmts {
		if rw.executedLocked(st, i) {
			n++
			continue
		}
		if s.err != nil {
			werrs = append(werrs, writeError{index: i, err: toCmdErr(s.err)})
			if ordered {
				break
			}
			continue
		}
		c := st.collLocked(cc.db, coll)
		matches := matchingLocked(c, s.match, nil, s.multi)
		if err := s.exprFailed(); err != nil {
			werrs = append(werrs, writeError{index: i, err: toCmdErr(err)})
			if ordered {
				break
			}
			continue
		}
		end := rw.begin(st, i)
		for _, d := range matches {
			if err := st.deleteDocLocked(c, d); err != nil {
				end()
				return nil, err
			}
			n++
		}
		end()
	}
	return writeReply(n, nil, nil, werrs)
}
