package mongosim

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Multi-document transactions, as a replica-set primary runs them:
//
//   - A transaction reads from a snapshot of every collection taken when it
//     starts, and its writes land in that snapshot only: nothing outside
//     sees them until commit, and an abort leaves nothing.
//   - Writing a document that another open transaction wrote, or that
//     anyone changed since the snapshot, fails at once with WriteConflict
//     (112), labelled TransientTransactionError, and aborts the
//     transaction (the server's write-conflict rule under snapshot
//     isolation, as the manual's "Transactions and Write Conflicts" has it).
//   - commitTransaction logs every write of the transaction at one cluster
//     time, numbered by txnOpIndex, with the session's lsid and txnNumber,
//     as the server expands an applyOps entry into change events.
//
// What the simulator does not do it refuses (NotImplemented): a write
// outside any transaction to a document an open transaction wrote (the
// server makes that write wait for the transaction to end), and DDL
// commands inside a transaction.

// Error codes of transactions.
const (
	codeWriteConflict                      int32 = 112
	codeConflictingOperationInProgress     int32 = 117
	codeTransactionTooOld                  int32 = 225
	codeNoSuchTransaction                  int32 = 251
	codeOperationNotSupportedInTransaction int32 = 263
	labelTransientTransactionError               = "TransientTransactionError"
)

// writeSeq numbers every change to a stored document, so that a
// transaction can tell whether a document changed after its snapshot.
var writeSeq atomic.Uint64

// txnCommands are the commands a transaction may run. Others fail with
// OperationNotSupportedInTransaction, as on the server.
var txnCommands = map[string]bool{
	"find": true, "insert": true, "update": true, "delete": true, "findAndModify": true, "findandmodify": true,
	"aggregate": true, "distinct": true, "getMore": true, "killCursors": true,
	"commitTransaction": true, "abortTransaction": true,
}

type txnState int

const (
	txnInProgress txnState = iota
	txnCommitted
	txnAborted
)

// docRef names one document of one collection.
type docRef struct{ db, coll, key string }

// transaction is one multi-document transaction of a session.
type transaction struct {
	lsid   bson.Raw // the session's lsid, as the oplog records it
	number int64
	state  txnState

	parent    *store // the server's store
	snap      *store // the snapshot the transaction reads and writes
	snapSeq   uint64
	snapUUIDs map[[2]string][16]byte
	written   map[docRef]bool
	entries   []*oplogEntry
	conflict  *CommandError
	started   time.Time
}

// defaultTxnLifetime is the server's transactionLifetimeLimitSeconds
// default (src/mongo/db/transaction/transaction_participant.idl: 60).
const defaultTxnLifetime = 60 * time.Second

// expiredLocked reports a transaction still open past the lifetime limit.
// The server's periodic job aborts such a transaction; the simulator does
// so when it is next in the way of another write or used again, which a
// client cannot tell apart. The parent's lock must be held.
func (t *transaction) expiredLocked(now time.Time) bool {
	return t.state == txnInProgress && now.Sub(t.started) > t.parent.txnLifetime
}

// transactions are the sessions' transactions, by session id.
type transactions struct {
	mu        sync.Mutex
	bySession map[string]*transaction
}

func newTransactions() *transactions {
	return &transactions{bySession: make(map[string]*transaction)}
}

// txnArgs are the transaction fields of a command.
type txnArgs struct {
	number     int64
	autocommit *bool
	start      bool
}

func parseTxnArgs(cc *cmdCtx) (txnArgs, bool, error) {
	var a txnArgs
	if v, ok := cc.field("autocommit"); ok {
		b, isBool := v.BooleanOK()
		if !isBool {
			return a, false, typeMismatch(cc.name, "autocommit", v.Type, "bool")
		}
		a.autocommit = &b
	}
	if v, ok := cc.field("startTransaction"); ok {
		b, isBool := v.BooleanOK()
		if !isBool {
			return a, false, typeMismatch(cc.name, "startTransaction", v.Type, "bool")
		}
		if !b {
			return a, false, cmdErr(codeInvalidOptions, "startTransaction has to be true")
		}
		a.start = true
	}
	isTxnCmd := cc.name == "commitTransaction" || cc.name == "abortTransaction"
	if a.autocommit == nil {
		if a.start || isTxnCmd {
			return a, false, cmdErr(codeInvalidOptions, "'autocommit' field must be specified for a command in a multi-document transaction")
		}
		return a, false, nil // not a transaction (a retryable write may still carry txnNumber)
	}
	if *a.autocommit {
		return a, false, cmdErr(codeInvalidOptions, "autocommit must be false")
	}
	v, ok := cc.field("txnNumber")
	if !ok {
		return a, false, cmdErr(codeInvalidOptions, "txnNumber must be provided for multi-document transactions")
	}
	n, isNum := v.Int64OK()
	if !isNum {
		return a, false, typeMismatch(cc.name, "txnNumber", v.Type, "long")
	}
	if cc.lsid == nil {
		return a, false, cmdErr(codeInvalidOptions, "Transaction number requires a session ID to also be specified")
	}
	a.number = n
	return a, true, nil
}

// sessionKey is the session's id as a map key.
func sessionKey(lsid []byte) string {
	if v, err := bsoncore.Document(lsid).LookupErr("id"); err == nil {
		return string(v.Data)
	}
	return string(lsid)
}

// enterTxn finds or starts the transaction a command belongs to. It returns
// nil for a command outside any transaction.
func (s *Server) enterTxn(cc *cmdCtx) (*transaction, error) {
	args, inTxn, err := parseTxnArgs(cc)
	if err != nil || !inTxn {
		return nil, err
	}
	if !txnCommands[cc.name] {
		if cc.name == "create" || cc.name == "createIndexes" {
			return nil, notImplemented("%s inside a transaction", cc.name)
		}
		return nil, cmdErr(codeOperationNotSupportedInTransaction, "Cannot run '%s' in a multi-document transaction.", cc.name)
	}
	var next *transaction
	if args.start {
		// The snapshot is taken before ts.mu: for a majority read it may
		// wait for the commit point, and every session's transaction
		// commands would wait behind it. Discarded if the start is refused.
		if next, err = s.store.beginTxn(cc, args.number); err != nil {
			return nil, err
		}
	}
	ts := s.txns
	ts.mu.Lock()
	defer ts.mu.Unlock()
	key := sessionKey(cc.lsid)
	cur := ts.bySession[key]
	if args.start {
		if cur != nil && cur.number > args.number {
			return nil, cmdErr(codeTransactionTooOld,
				"Cannot start transaction %d on session because a newer transaction %d has already started.", args.number, cur.number)
		}
		if cur != nil && cur.number == args.number {
			return nil, cmdErr(codeConflictingOperationInProgress,
				"Cannot start a transaction at given transaction number %d a transaction with the same number is in progress.", args.number)
		}
		if cur != nil && cur.state == txnInProgress {
			s.store.mu.Lock()
			cur.abortLocked()
			s.store.mu.Unlock()
		}
		ts.bySession[key] = next
		return next, nil
	}
	if cur != nil && cur.number == args.number {
		s.store.mu.Lock()
		if cur.expiredLocked(time.Now()) {
			cur.abortLocked()
		}
		s.store.mu.Unlock()
	}
	if (cur == nil || cur.number < args.number) && cc.name == "commitTransaction" {
		s.store.mu.Lock()
		committed := s.store.txnCommittedLocked(key, args.number)
		s.store.mu.Unlock()
		if committed {
			// Committed on another member (before a failover): the retried
			// commit succeeds.
			return &transaction{lsid: sessionLSID(cc.lsid), number: args.number, parent: s.store, state: txnCommitted}, nil
		}
	}
	if cur == nil || cur.number != args.number {
		active := int64(-1)
		if cur != nil {
			active = cur.number
		}
		return nil, noSuchTxn(fmt.Sprintf("Given transaction number %d does not match any in-progress transactions. The active transaction number is %d", args.number, active))
	}
	switch cur.state {
	case txnAborted:
		return nil, noSuchTxn(fmt.Sprintf("Transaction with { txnNumber: %d } has been aborted.", args.number))
	case txnCommitted:
		if cc.name != "commitTransaction" {
			return nil, cmdErr(256, "Transaction with { txnNumber: %d } has been committed.", args.number)
		}
	}
	return cur, nil
}

func noSuchTxn(msg string) *CommandError {
	return &CommandError{Code: codeNoSuchTransaction, Message: msg, Labels: []string{labelTransientTransactionError}}
}

// beginTxn snapshots the store for the transaction cc starts, with the
// lock a read of cc's takes (lockRead): a majority-read transaction's
// snapshot holds committed data alone.
func (st *store) beginTxn(cc *cmdCtx, number int64) (*transaction, error) {
	if err := cc.lockRead(st); err != nil {
		return nil, err
	}
	defer st.mu.Unlock()
	t := &transaction{
		lsid: sessionLSID(cc.lsid), number: number, parent: st,
		snapSeq:   writeSeq.Load(),
		snapUUIDs: make(map[[2]string][16]byte),
		written:   make(map[docRef]bool),
		started:   time.Now(),
	}
	snap := &store{dbs: make(map[string]*database, len(st.dbs)), clock: st.clock, changed: make(chan struct{}), txn: t}
	for name, d := range st.dbs {
		nd := &database{name: name, colls: make(map[string]*collection, len(d.colls))}
		for cn, c := range d.colls {
			cp := *c
			cp.docs = c.docs.clone()
			cp.indexes = slices.Clone(c.indexes)
			nd.colls[cn] = &cp
			t.snapUUIDs[[2]string{name, cn}] = c.uuid
		}
		snap.dbs[name] = nd
	}
	t.snap = snap
	return t, nil
}

// sessionLSID is the lsid as the server logs it: the driver's id and the
// uid of the authenticated user, for an unauthenticated client the SHA-256
// of the empty string.
func sessionLSID(lsid []byte) bson.Raw {
	b := bsoncore.NewDocumentBuilder()
	if v, err := bsoncore.Document(lsid).LookupErr("id"); err == nil {
		b.AppendValue("id", v)
	}
	b.AppendBinary("uid", 0, emptyUserDigest[:])
	return bson.Raw(b.Build())
}

// emptyUserDigest is SHA-256(""), the uid of a session without a user.
var emptyUserDigest = [32]byte{
	0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
	0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
}

// record is the snapshot store's appendLocked: the write is kept for the
// commit, and checked for a conflict with the committed data and with
// other transactions. snap.mu is held; record takes the parent's lock.
func (t *transaction) record(e *oplogEntry) {
	t.entries = append(t.entries, e)
	switch e.op {
	case opInsert, opUpdate, opReplace, opDelete:
	default:
		return
	}
	id, _ := query.Lookup(e.docKey, "_id")
	ref := docRef{e.db, e.coll, idKey(id)}
	t.written[ref] = true
	p := t.parent
	p.mu.Lock()
	defer p.mu.Unlock()
	conflict := false
	if pc := p.collLocked(e.db, e.coll); pc != nil {
		conflict = pc.uuid != e.collUUID || pc.docs.lastWrite[ref.key] > t.snapSeq
	} else if _, existed := t.snapUUIDs[[2]string{e.db, e.coll}]; existed {
		conflict = true // dropped since the snapshot
	}
	if owner := p.txnLocks[ref]; owner != nil && owner != t {
		if owner.expiredLocked(time.Now()) {
			owner.abortLocked()
		} else {
			conflict = true
		}
	}
	if conflict {
		if t.conflict == nil {
			t.conflict = &CommandError{
				Code: codeWriteConflict,
				Message: "Caused by :: Write conflict during plan execution and yielding is disabled. :: " +
					"Please retry your operation or multi-document transaction.",
				Labels: []string{labelTransientTransactionError},
			}
		}
		return
	}
	if p.txnLocks == nil {
		p.txnLocks = make(map[docRef]*transaction)
	}
	p.txnLocks[ref] = t
}

// abortAll aborts every open transaction, as a step-down or a rollback
// does. st is the server's store.
func (ts *transactions) abortAll(st *store) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, t := range ts.bySession {
		if t.state == txnInProgress {
			t.abortLocked()
		}
	}
}

// abortLocked ends the transaction without a trace. The parent's lock must
// be held.
func (t *transaction) abortLocked() {
	t.state = txnAborted
	t.releaseLocked()
}

func (t *transaction) releaseLocked() {
	for ref := range t.written {
		if t.parent.txnLocks[ref] == t {
			delete(t.parent.txnLocks, ref)
		}
	}
}

// commit applies the transaction's writes to the parent store and logs its
// entries at one cluster time.
func (t *transaction) commit() {
	t.snap.mu.Lock()
	defer t.snap.mu.Unlock()
	p := t.parent
	p.mu.Lock()
	defer p.mu.Unlock()
	for ref := range t.written {
		sc := t.snap.collLocked(ref.db, ref.coll)
		pc := p.collLocked(ref.db, ref.coll)
		if pc == nil || pc.uuid != sc.uuid {
			// Created inside the transaction (its create entry is logged
			// with the rest).
			cp := *sc
			cp.docs = docSet{}
			cp.indexes = slices.Clone(sc.indexes)
			pc = &cp
			p.dbLocked(ref.db, true).colls[ref.coll] = pc
		}
		doc := sc.docs.get(ref.key)
		switch {
		case doc == nil:
			pc.docs.remove(ref.key)
		case pc.docs.get(ref.key) != nil:
			pc.docs.replace(ref.key, doc)
		default:
			pc.docs.insert(ref.key, doc)
		}
	}
	t.state = txnCommitted
	t.releaseLocked()
	if len(t.entries) == 0 {
		return
	}
	p.clock = p.nextTimeLocked()
	now := time.Now()
	for i, e := range t.entries {
		e.ts, e.wall = p.clock, now
		e.txnOpIndex = int32(i)
		e.lsid, e.txnNumber = t.lsid, t.number
		e.txnLast = i == len(t.entries)-1
		p.logLocked(e)
	}
	p.notifyLocked()
}

// lockedByTxnLocked refuses a write, outside any transaction, to a
// document an open transaction wrote: the server would make it wait until
// the transaction ends, which the simulator does not do.
func (st *store) lockedByTxnLocked(c *collection, key string) error {
	if st.txn != nil || len(st.txnLocks) == 0 {
		return nil
	}
	if t := st.txnLocks[docRef{c.db, c.name, key}]; t != nil {
		if t.expiredLocked(time.Now()) {
			t.abortLocked()
			return nil
		}
		return notImplemented("a write that waits for an open transaction: a document of %s.%s is written by transaction %d, "+
			"which must commit or abort first", c.db, c.name, t.number)
	}
	return nil
}

func handleCommitTransaction(cc *cmdCtx) (bsoncore.Document, error) {
	t := cc.txn
	if t == nil {
		return nil, cmdErr(codeInvalidOptions, "commitTransaction must be run within a transaction")
	}
	if t.state == txnCommitted {
		return nil, nil // a retried commit of a committed transaction succeeds
	}
	if cc.db != "admin" {
		return nil, cmdErr(codeUnauthorized, "commitTransaction may only be run against the admin database.")
	}
	t.commit()
	return nil, nil
}

func handleAbortTransaction(cc *cmdCtx) (bsoncore.Document, error) {
	t := cc.txn
	if t == nil {
		return nil, cmdErr(codeInvalidOptions, "abortTransaction must be run within a transaction")
	}
	if cc.db != "admin" {
		return nil, cmdErr(codeUnauthorized, "abortTransaction may only be run against the admin database.")
	}
	t.parent.mu.Lock()
	t.abortLocked()
	t.parent.mu.Unlock()
	return nil, nil
}

// finishTxnCommand applies the transaction rules to a command's outcome:
// a write conflict replaces the reply and, like any failed command inside
// a transaction, aborts it.
func (cc *cmdCtx) finishTxnCommand(body bsoncore.Document, err error) (bsoncore.Document, error) {
	t := cc.txn
	if t == nil || cc.name == "commitTransaction" || cc.name == "abortTransaction" {
		return body, err
	}
	if t.conflict != nil {
		err = t.conflict
	}
	if err != nil {
		t.parent.mu.Lock()
		t.abortLocked()
		t.parent.mu.Unlock()
	}
	return body, err
}

// store returns the store a command reads and writes: its transaction's
// snapshot, or the server's.
func (cc *cmdCtx) store() *store {
	if cc.txn != nil {
		return cc.txn.snap
	}
	return cc.s.store
}
