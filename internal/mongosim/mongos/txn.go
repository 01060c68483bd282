package mongos

import (
	"context"
	"sync"

	"github.com/changestream-go/changestream/internal/mongosim/wire"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Transactions through mongos on one shard: the router sends every
// statement of a session's transaction to the shard its first statement
// targeted, which runs it as a replica set does (the first statement
// carries startTransaction), and commitTransaction and abortTransaction
// there (src/mongo/s/transaction_router.cpp, with one participant: no
// two-phase commit). A statement that targets another shard, or a
// sharded collection spread over several, is refused with NotImplemented:
// 8.0 commits such a transaction with two-phase commit, each shard's part
// at its own cluster time, which the simulator does not run.

// routerTxn is a session's transaction as the router tracks it.
type routerTxn struct {
	txnNumber int64
	shard     int // the participant; -1 before the first statement
}

// txnTable holds the open transactions by session.
type txnTable struct {
	mu   sync.Mutex
	open map[string]*routerTxn // by the lsid's bytes
}

// inTransaction reports a statement of a transaction: autocommit false.
func inTransaction(body bsoncore.Document) bool {
	v, err := body.LookupErr("autocommit")
	if err != nil {
		return false
	}
	b, ok := v.BooleanOK()
	return ok && !b
}

// sessionKey is the lsid's bytes, which name the session.
func sessionKey(body bsoncore.Document) string {
	v, err := body.LookupErr("lsid")
	if err != nil {
		return ""
	}
	return string(v.Data)
}

// txnStatement runs a statement of a transaction on its participant.
func (r *Router) txnStatement(ctx context.Context, req *wire.Request, name string) bsoncore.Document {
	key := sessionKey(req.Body)
	n, _ := req.Body.Lookup("txnNumber").AsInt64OK()
	if key == "" {
		return r.errorReply(codeInvalidOptions, "a transaction needs a session (lsid) and a txnNumber")
	}
	r.txns.mu.Lock()
	if r.txns.open == nil {
		r.txns.open = map[string]*routerTxn{}
	}
	t := r.txns.open[key]
	if start, _ := req.Body.Lookup("startTransaction").BooleanOK(); start || t == nil || t.txnNumber != n {
		t = &routerTxn{txnNumber: n, shard: -1}
		r.txns.open[key] = t
	}
	r.txns.mu.Unlock()

	switch name {
	case "commitTransaction", "abortTransaction":
		if t.shard < 0 {
			// Nothing ran: nothing to commit or abort on any shard.
			return r.okReply(nil)
		}
		return r.forward(ctx, t.shard, req)
	case "getMore", "killCursors":
		return r.dispatchPlain(ctx, req, name, 0)
	}
	target, fail := r.txnTarget(req, name)
	if fail != nil {
		return fail
	}
	if t.shard < 0 {
		t.shard = target
	} else if t.shard != target {
		return r.notImplemented("a transaction across shards (8.0 commits it with two-phase commit, which the simulator does not run)")
	}
	return r.forward(ctx, target, req)
}

// txnTarget is the one shard a transaction's statement can run on.
func (r *Router) txnTarget(req *wire.Request, name string) (int, bsoncore.Document) {
	if !routed[name] || req.DB == "admin" || req.DB == "config" || req.DB == "local" {
		return 0, r.notImplemented(name + " in a transaction through mongos")
	}
	if coll, ok := req.Body.Lookup(name).StringValueOK(); ok {
		if sc := r.cat.collection(req.DB + "." + coll); sc != nil {
			holders := sc.holders()
			if len(holders) != 1 {
				return 0, r.notImplemented("a transaction on a sharded collection whose chunks are on several shards")
			}
			return holders[0], nil
		}
	}
	return r.cat.primaryShard(req.DB), nil
}
