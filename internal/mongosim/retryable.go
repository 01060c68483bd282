package mongosim

import (
	"maps"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Retryable writes: a write command sent with an lsid and a txnNumber
// outside a transaction may be sent again by the driver after a network
// error or a failover. The server records each executed statement
// (session, txnNumber, stmtId) with its oplog entry, so the record
// replicates; a statement found in the record is not executed again but
// reported as done (src/mongo/db/transaction/transaction_participant.cpp,
// checkStatementExecuted; jstests/replsets/retryable_writes_failover.js).
//
// The simulator keeps the record for insert, update and delete. A
// findAndModify retried after it was applied needs the pre- or post-image
// the server keeps for it, which the simulator does not: it refuses that
// retry (NotImplemented) instead of running the statement twice.

// retryTag names one statement of a retryable write.
type retryTag struct {
	session   string
	txnNumber int64
	stmtID    int32
}

// retrySession is what a session's newest retryable write executed, or
// that its newest transaction committed: the server's config.transactions
// entry for the session, which replicates with the oplog.
type retrySession struct {
	txnNumber int64
	stmts     map[int32]bool
	// committedTxn: txnNumber is a transaction that committed.
	committedTxn bool
}

func (r *retrySession) clone() *retrySession {
	return &retrySession{txnNumber: r.txnNumber, stmts: maps.Clone(r.stmts), committedTxn: r.committedTxn}
}

// A transaction's commit is recorded with the session too, from its last
// oplog entry, so that the record replicates: a commitTransaction retried
// on a member that did not run the transaction (a new primary after a
// failover) finds it committed and succeeds, where answering
// NoSuchTransaction would have the driver run the transaction again and
// apply its writes twice (transaction_participant.cpp refreshes a
// session's state from config.transactions;
// jstests/replsets/retryable_commit_transaction_after_failover.js).

// recordTxnCommitLocked notes that session's transaction n committed.
func (st *store) recordTxnCommitLocked(session string, n int64) {
	if st.sessions == nil {
		st.sessions = make(map[string]*retrySession)
	}
	if r := st.sessions[session]; r == nil || r.txnNumber <= n {
		st.sessions[session] = &retrySession{txnNumber: n, stmts: map[int32]bool{}, committedTxn: true}
	}
}

// txnCommittedLocked reports whether session's transaction n committed.
func (st *store) txnCommittedLocked(session string, n int64) bool {
	r := st.sessions[session]
	return r != nil && r.txnNumber == n && r.committedTxn
}

// recordRetryLocked notes that a statement executed.
func (st *store) recordRetryLocked(t retryTag) {
	if st.sessions == nil {
		st.sessions = make(map[string]*retrySession)
	}
	r := st.sessions[t.session]
	if r == nil || r.txnNumber < t.txnNumber {
		r = &retrySession{txnNumber: t.txnNumber, stmts: make(map[int32]bool)}
		st.sessions[t.session] = r
	}
	if r.txnNumber == t.txnNumber {
		r.stmts[t.stmtID] = true
	}
}

// retryableWrite is a write command's retry identity: nil when the command
// is not a retryable write.
type retryableWrite struct {
	session   string
	txnNumber int64
	stmtIDs   []int32 // from stmtIds, else the statement's index
	lsid      string  // for messages
}

// retryableWriteLocked returns the command's retry identity (nil when it
// is not a retryable write), refusing a txnNumber older than the
// session's newest. st.mu must be held.
func (cc *cmdCtx) retryableWriteLocked(st *store) (*retryableWrite, error) {
	rw := cc.retryableWriteOf()
	if err := rw.checkLocked(st); err != nil {
		return nil, err
	}
	return rw, nil
}

// retryableWriteOf returns the command's retry identity, or nil.
func (cc *cmdCtx) retryableWriteOf() *retryableWrite {
	if cc.txn != nil || cc.lsid == nil {
		return nil
	}
	v, ok := cc.field("txnNumber")
	if !ok {
		return nil
	}
	n, ok := v.AsInt64OK()
	if !ok {
		return nil
	}
	id, err := bsoncore.Document(cc.lsid).LookupErr("id")
	if err != nil {
		return nil
	}
	rw := &retryableWrite{session: string(id.Data), txnNumber: n, lsid: sessionString(cc.lsid)}
	if ids, ok := cc.field("stmtIds"); ok {
		if arr, ok := ids.ArrayOK(); ok {
			vals, _ := arr.Values()
			for _, x := range vals {
				if i, ok := x.AsInt32OK(); ok {
					rw.stmtIDs = append(rw.stmtIDs, i)
				}
			}
		}
	}
	return rw
}

func (rw *retryableWrite) tag(i int) retryTag {
	id := int32(i)
	if i < len(rw.stmtIDs) {
		id = rw.stmtIDs[i]
	}
	return retryTag{session: rw.session, txnNumber: rw.txnNumber, stmtID: id}
}

// checkLocked refuses a txnNumber older than the session's newest, as the
// server does (TransactionTooOld, 225).
func (rw *retryableWrite) checkLocked(st *store) error {
	if rw == nil {
		return nil
	}
	if r := st.sessions[rw.session]; r != nil && rw.txnNumber < r.txnNumber {
		return cmdErr(codeTransactionTooOld, "Retryable write with txnNumber %d is prohibited on session %s because a newer retryable write with txnNumber %d has already started on this session.",
			rw.txnNumber, rw.lsid, r.txnNumber)
	}
	return nil
}

// executedLocked reports whether statement i already ran.
func (rw *retryableWrite) executedLocked(st *store, i int) bool {
	if rw == nil {
		return false
	}
	t := rw.tag(i)
	r := st.sessions[t.session]
	return r != nil && r.txnNumber == t.txnNumber && r.stmts[t.stmtID]
}

// begin tags the entries statement i writes until the returned func runs.
func (rw *retryableWrite) begin(st *store, i int) func() {
	if rw == nil {
		return func() {}
	}
	t := rw.tag(i)
	st.stmt = &t
	return func() { st.stmt = nil }
}
