package mongos

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/changestream-go/changestream/internal/mongosim/mongoerr"
	"github.com/changestream-go/changestream/internal/mongosim/query"
	"github.com/changestream-go/changestream/internal/mongosim/wire"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// localCursor serves results the router holds whole: a find on config.*
// it answers itself, or the merge of a query scattered to shards.
type localCursor struct {
	mu   sync.Mutex
	ns   string
	docs []bsoncore.Document
}

// defaultBatch is a first batch's size when the client names none.
const defaultBatch = 101

// openLocal answers a cursor command with docs, registering a cursor if
// the first batch does not take them all.
func (r *Router) openLocal(ns string, docs []bson.D, batchSize int) bsoncore.Document {
	raws := make([]bsoncore.Document, 0, len(docs))
	for _, d := range docs {
		raw, err := bson.Marshal(d)
		if err != nil {
			return r.errorReply(1, "mongos: encoding a document: "+err.Error())
		}
		raws = append(raws, raw)
	}
	if batchSize <= 0 {
		batchSize = defaultBatch
	}
	c := &localCursor{ns: ns, docs: raws}
	batch := c.take(batchSize)
	var id int64
	if len(c.docs) > 0 {
		id = r.registerCursor(c)
	}
	return r.cursorReply("firstBatch", batch, nil, id, ns)
}

// take removes and returns up to n documents, keeping a batch under the
// reply size limit.
func (c *localCursor) take(n int) []bsoncore.Document {
	size, i := 0, 0
	for i < len(c.docs) && i < n {
		if size += len(c.docs[i]); size > wire.MaxBSONObjectSize-(1<<20) && i > 0 {
			break
		}
		i++
	}
	batch := c.docs[:i]
	c.docs = c.docs[i:]
	return batch
}

func (c *localCursor) getMore(_ context.Context, r *Router, req *wire.Request, id int64) bsoncore.Document {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := req.Body.Lookup("batchSize").AsInt64OK()
	if !ok || n <= 0 {
		n = int64(len(c.docs))
	}
	batch := c.take(int(n))
	if len(c.docs) == 0 {
		r.dropCursor(id)
		id = 0
	}
	return r.cursorReply("nextBatch", batch, nil, id, c.ns)
}

func (c *localCursor) kill(context.Context, *Router, *wire.Request) {}

// errorOf answers with err: the server's code and message for an error of
// the query package, InternalError otherwise.
func (r *Router) errorOf(err error) bsoncore.Document {
	var me *mongoerr.Error
	if errors.As(err, &me) {
		return r.errorReply(me.Code, me.Message, me.Labels...)
	}
	return r.errorReply(1, err.Error())
}

// findSpec is what a find asks: the router applies it to documents it
// holds whole.
type findSpec struct {
	filter, sort, projection bson.D
	skip, limit              int64
	batchSize                int
}

// parseFind reads a find command's options.
func parseFind(body bsoncore.Document) (findSpec, error) {
	var f findSpec
	for _, k := range []struct {
		name string
		dst  *bson.D
	}{{"filter", &f.filter}, {"sort", &f.sort}, {"projection", &f.projection}} {
		v, err := body.LookupErr(k.name)
		if err != nil {
			continue
		}
		d, ok := v.DocumentOK()
		if !ok {
			return f, mongoerr.New(14, "BSON field 'find.%s' is the wrong type '%s', expected type 'object'", k.name, query.TypeAlias(v.Type))
		}
		if err := bson.Unmarshal(d, k.dst); err != nil {
			return f, mongoerr.New(codeFailedToParse, "find.%s: %v", k.name, err)
		}
	}
	f.skip, _ = body.Lookup("skip").AsInt64OK()
	f.limit, _ = body.Lookup("limit").AsInt64OK()
	if n, ok := body.Lookup("batchSize").AsInt64OK(); ok {
		f.batchSize = int(n)
	}
	if f.skip < 0 || f.limit < 0 {
		return f, mongoerr.New(codeBadValue, "skip and limit must be nonnegative")
	}
	return f, nil
}

// apply filters, sorts, skips, limits and projects docs as a find does.
func (f findSpec) apply(docs []bson.D) ([]bson.D, error) {
	match, err := query.CompileFilter(f.filter)
	if err != nil {
		return nil, err
	}
	out := docs[:0:0]
	for _, d := range docs {
		if match(d) {
			out = append(out, d)
		}
	}
	if len(f.sort) > 0 {
		cmp, err := query.CompileSort(f.sort)
		if err != nil {
			return nil, err
		}
		sortStable(out, cmp)
	}
	out = out[min(int64(len(out)), f.skip):]
	if f.limit > 0 && int64(len(out)) > f.limit {
		out = out[:f.limit]
	}
	proj, err := query.CompileProjection(f.projection)
	if err != nil {
		return nil, err
	}
	for i, d := range out {
		out[i] = proj(d)
	}
	return out, nil
}

// sortStable sorts docs by cmp, keeping equal documents in their order.
func sortStable(docs []bson.D, cmp func(a, b bson.D) int) { slices.SortStableFunc(docs, cmp) }
