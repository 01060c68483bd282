package mongos

import (
	"context"
	"fmt"
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

// A transaction's commit can reach a router that never saw the
// transaction: the driver retries a commit whose connection broke on any
// mongos, and a restarted one knows nothing. As 8.0's router does, every
// reply to a write statement carries recoveryToken {recoveryShardId},
// which the driver sends back with commitTransaction; a router without
// the transaction asks that shard for the decision
// (TransactionRouter::_commitWithRecoveryToken). Without a token, or with
// an empty one (the transaction only read), the answer is
// NoSuchTransaction, labelled TransientTransactionError so that the
// driver runs the transaction again (error_labels.cpp). Where the server
// sends coordinateCommitTransaction, which aborts a transaction still in
// progress and answers NoSuchTransaction, the simulator sends the shard
// commitTransaction: a committed transaction answers ok again, an
// unknown or aborted one NoSuchTransaction, and one still in progress
// (every statement of which succeeded, or the driver would not commit)
// commits. Answering ok for a transaction it never saw, as this router
// once did, lost the transaction's writes while the client counted them
// done (the sharded soak's checkpoint.Run reader found it).

// routerTxn is a session's transaction as the router tracks it.
type routerTxn struct {
	txnNumber int64
	shard     int  // the participant; -1 before the first statement
	wrote     bool // a statement wrote: the participant is the recovery shard
}

// writeStatements are the statements that make their shard a
// transaction's recovery shard.
var writeStatements = map[string]bool{"insert": true, "update": true, "delete": true, "findAndModify": true, "findandmodify": true}

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
	known := t != nil && t.txnNumber == n
	if start, _ := req.Body.Lookup("startTransaction").BooleanOK(); start || !known {
		t = &routerTxn{txnNumber: n, shard: -1}
		r.txns.open[key] = t
	}
	r.txns.mu.Unlock()

	switch name {
	case "commitTransaction":
		if t.shard >= 0 {
			return r.forward(ctx, t.shard, req)
		}
		if known {
			return r.okReply(nil) // nothing ran: nothing to commit on any shard
		}
		return r.recoverCommit(ctx, req)
	case "abortTransaction":
		if t.shard < 0 {
			// Nothing ran here: a shard that has the transaction aborts it
			// at its lifetime limit.
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
	reply := r.forward(ctx, target, req)
	t.wrote = t.wrote || writeStatements[name]
	token := bsoncore.NewDocumentBuilder()
	if t.wrote {
		token.AppendString("recoveryShardId", r.cat.Shards()[target].Name)
	}
	return replaceElements(reply, map[string]bsoncore.Value{"recoveryToken": {Type: bsoncore.TypeEmbeddedDocument, Data: token.Build()}})
}

// recoverCommit answers a commitTransaction for a transaction this router
// never saw, from the shard its recoveryToken names.
func (r *Router) recoverCommit(ctx context.Context, req *wire.Request) bsoncore.Document {
	if shard, ok := req.Body.Lookup("recoveryToken", "recoveryShardId").StringValueOK(); ok {
		for i, s := range r.cat.Shards() {
			if s.Name == shard {
				return r.forward(ctx, i, req)
			}
		}
		return r.errorReply(codeShardNotFound, fmt.Sprintf("the recovery token names shard %s, which the cluster does not have", shard))
	}
	msg := "no known command has been sent by this router for this transaction, and it has no recovery token"
	if _, err := req.Body.LookupErr("recoveryToken"); err == nil {
		msg = "Recovery token is empty, meaning the transaction only performed reads and can be safely retried"
	}
	return r.errorReply(codeNoSuchTransaction, msg, "TransientTransactionError")
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
