package mongosim

import (
	"strings"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// The commands in this file are what shells and tools send first
// (mongosh's rs.status(), db.stats(), countDocuments' older cousin count,
// distinct); they answer with the fields a real server sends that tools read.

// handleCount answers {count: coll, query, skip, limit}.
func handleCount(cc *cmdCtx) (bsoncore.Document, error) {
	docs, err := cc.matchingDocs("count", "query")
	if err != nil {
		return nil, err
	}
	skip, _, err := cc.int64Arg("skip")
	if err != nil {
		return nil, err
	}
	limit, _, err := cc.int64Arg("limit")
	if err != nil {
		return nil, err
	}
	n := max(int64(len(docs))-max(skip, 0), 0)
	if limit < 0 {
		limit = -limit
	}
	if limit > 0 {
		n = min(n, limit)
	}
	return marshalDoc(bson.D{{Key: "n", Value: int32(n)}})
}

// handleDistinct answers {distinct: coll, key, query} with the distinct
// values of key, arrays contributing their elements, in first-seen order.
func handleDistinct(cc *cmdCtx) (bsoncore.Document, error) {
	key, present, err := cc.stringArg("key")
	if err != nil {
		return nil, err
	}
	if !present {
		return nil, cmdErr(codeFailedToParse, "BSON field 'distinct.key' is missing but a required field")
	}
	docs, err := cc.matchingDocs("distinct", "query")
	if err != nil {
		return nil, err
	}
	values := bson.A{}
	add := func(v any) {
		for _, seen := range values {
			if query.CompareValues(seen, v) == 0 {
				return
			}
		}
		values = append(values, v)
	}
	for _, d := range docs {
		v, ok := query.DocPathValue(d, strings.Split(key, "."))
		if !ok {
			continue
		}
		if arr, isArr := v.(bson.A); isArr {
			for _, e := range arr {
				add(e)
			}
			continue
		}
		add(v)
	}
	return marshalDoc(bson.D{{Key: "values", Value: values}})
}

// matchingDocs reads the collection named by the command's first field and
// returns the documents that match the filter under filterKey.
func (cc *cmdCtx) matchingDocs(cmd, filterKey string) ([]bson.D, error) {
	coll, present, err := cc.stringArg(cmd)
	if err != nil {
		return nil, err
	}
	if !present || coll == "" {
		return nil, cmdErr(codeInvalidNamespace, "Invalid namespace specified '%s.'", cc.db)
	}
	filter, _, err := cc.docFieldD(filterKey)
	if err != nil {
		return nil, err
	}
	match, err := query.CompileFilter(filter)
	if err != nil {
		return nil, err
	}
	st := cc.s.store
	if err := cc.lockRead(st); err != nil {
		return nil, err
	}
	all, err := st.readDocsLocked(cc.db, coll, 0)
	st.mu.Unlock()
	if err != nil {
		return nil, err
	}
	out := all[:0:0]
	for _, d := range all {
		if match(d) {
			out = append(out, d)
		}
	}
	return out, nil
}

// handleDBStats answers dbStats with object and collection counts; sizes are
// estimates from the documents' BSON lengths.
func handleDBStats(cc *cmdCtx) (bsoncore.Document, error) {
	st := cc.s.store
	st.mu.Lock()
	var colls, objects, size int64
	if d := st.dbs[cc.db]; d != nil {
		for _, c := range d.colls {
			colls++
			for _, doc := range c.docs.all() {
				objects++
				if b, err := bson.Marshal(doc); err == nil {
					size += int64(len(b))
				}
			}
		}
	}
	st.mu.Unlock()
	avg := 0.0
	if objects > 0 {
		avg = float64(size) / float64(objects)
	}
	return marshalDoc(bson.D{
		{Key: "db", Value: cc.db}, {Key: "collections", Value: colls}, {Key: "views", Value: int64(0)},
		{Key: "objects", Value: objects}, {Key: "avgObjSize", Value: avg}, {Key: "dataSize", Value: float64(size)},
		{Key: "storageSize", Value: float64(size)}, {Key: "indexes", Value: colls}, {Key: "indexSize", Value: float64(0)},
		{Key: "totalSize", Value: float64(size)}, {Key: "scaleFactor", Value: int64(1)},
	})
}
