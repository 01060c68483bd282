package mongosim

import (
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// What a command may do on a member that is not primary, and the write
// concern a write waits for: the replica-set half of dispatch.

// writeCommands change data: only a primary runs them (NotWritablePrimary,
// 10107, elsewhere), and they wait for their write concern.
var writeCommands = map[string]bool{
	"insert": true, "update": true, "delete": true, "findAndModify": true, "findandmodify": true,
	"create": true, "drop": true, "createIndexes": true, "dropIndexes": true, "collMod": true,
	"dropDatabase": true, "renameCollection": true, "commitTransaction": true, "abortTransaction": true,
	"_shardsvrCreateCollection": true, "_mongosimReceiveChunk": true, "_mongosimDeleteRange": true, "appendOplogNote": true, "_shardsvrDropCollectionParticipant": true,
	"_shardsvrRefineCollectionShardKey": true, "_mongosimRefreshShardKey": true,
}

// readCommands read data: a secondary runs them only for a client whose
// read preference allows it (NotPrimaryNoSecondaryOk, 13435, otherwise).
// getMore continues a cursor wherever it was opened.
var readCommands = map[string]bool{
	"find": true, "aggregate": true, "count": true, "distinct": true, "listCollections": true,
	"listIndexes": true, "listDatabases": true, "dbStats": true, "dbstats": true,
	"_mongosimCloneRange": true,
}

// labelRetryableWriteError is the label a server adds to an error a driver
// may retry a write after (4.4+ drivers look only at the label).
const labelRetryableWriteError = "RetryableWriteError"

// checkRole refuses what the member's state does not allow.
func (s *Server) checkRole(cc *cmdCtx) error {
	m := s.member
	if m == nil {
		return nil
	}
	write := writeCommands[cc.name] || isTxnStatement(cc)
	if !write && !readCommands[cc.name] {
		return nil
	}
	primary := s.waitRoleSettled(cc)
	switch {
	case write && !primary:
		err := cmdErr(codeNotWritablePrimary, "not primary")
		if isRetryableWriteCmd(cc) {
			err.Labels = []string{labelRetryableWriteError}
		}
		return err
	case !write && !primary && !secondaryOk(cc):
		return cmdErr(codeNotPrimaryNoSecondaryOk, "not primary and secondaryOk=false")
	}
	return nil
}

// waitRoleSettled waits out a step-down in progress (writes wait for the
// replication state transition lock on the server) and reports whether
// the member is primary.
func (s *Server) waitRoleSettled(cc *cmdCtx) bool {
	rs := s.member.rs
	for {
		rs.mu.Lock()
		primary, stepping, ch := rs.primary == s.member.idx, s.member.steppingDown, rs.changed
		rs.mu.Unlock()
		if !stepping {
			return primary
		}
		select {
		case <-ch:
		case <-cc.ctx.Done():
			return primary
		}
	}
}

// isTxnStatement reports a command that is part of a multi-document
// transaction, which runs only on a primary.
func isTxnStatement(cc *cmdCtx) bool {
	v, ok := cc.field("autocommit")
	return ok && v.Type == bsoncore.TypeBoolean && !v.Boolean()
}

// isRetryableWriteCmd reports a command the driver retries on a
// RetryableWriteError: a write with a txnNumber, or a transaction's commit
// or abort.
func isRetryableWriteCmd(cc *cmdCtx) bool {
	if cc.name == "commitTransaction" || cc.name == "abortTransaction" {
		return true
	}
	if !writeCommands[cc.name] || isTxnStatement(cc) {
		return false
	}
	_, ok := cc.field("txnNumber")
	return ok
}

// secondaryOk reports whether the command's read preference lets a
// secondary answer: OP_MSG carries it as $readPreference, absent for
// primary.
func secondaryOk(cc *cmdCtx) bool {
	rp, ok, err := cc.docArg("$readPreference")
	if err != nil || !ok {
		return false
	}
	mode, err := rp.LookupErr("mode")
	if err != nil {
		return false
	}
	s, _ := mode.StringValueOK()
	return s != "" && s != "primary"
}

// majorityReadWait bounds how long a majority read waits for the member's
// applied writes to commit before the simulator refuses it.
const majorityReadWait = time.Second

// committedReadLevel returns the readConcern level of a read that must see
// only majority-committed data (majority, snapshot or linearizable) on a
// member of a larger set, or "". A change stream bounds itself by the
// commit point instead.
func (s *Server) committedReadLevel(cc *cmdCtx) string {
	m := s.member
	if m == nil || len(m.rs.members) == 1 || !readCommands[cc.name] || isChangeStreamAggregate(cc) {
		return ""
	}
	rc, ok, err := cc.docArg("readConcern")
	if err != nil || !ok {
		return ""
	}
	switch level, _ := rc.Lookup("level").StringValueOK(); level {
	case "majority", "snapshot", "linearizable":
		return level
	}
	return ""
}

// lockRead locks st.mu for a read. A read that must see only committed
// data takes the lock at a moment when everything the member applied is
// majority committed, waiting for that, so that it reads committed data
// alone; see the package documentation for what this leaves out. The
// check and the read share one hold of the lock: a write applied between
// them would otherwise be read before it commits. A transaction's reads
// come from the snapshot its first command took that way.
func (cc *cmdCtx) lockRead(st *store) error {
	if cc.committedRead == "" || cc.txn != nil {
		st.mu.Lock()
		return nil
	}
	timer := time.NewTimer(majorityReadWait)
	defer timer.Stop()
	for {
		st.mu.Lock()
		if !st.commit.less(st.lastPosLocked()) {
			return nil
		}
		ch := st.changed
		st.mu.Unlock()
		select {
		case <-ch:
		case <-cc.ctx.Done():
			return cc.ctx.Err()
		case <-timer.C:
			return notImplemented("a %s read on a member whose newest writes are not yet majority committed: the simulator keeps no older snapshot to read", cc.committedRead)
		}
	}
}

// isChangeStreamAggregate reports an aggregate whose first stage is
// $changeStream.
func isChangeStreamAggregate(cc *cmdCtx) bool {
	if cc.name != "aggregate" {
		return false
	}
	v, ok := cc.field("pipeline")
	if !ok {
		return false
	}
	arr, ok := v.ArrayOK()
	if !ok {
		return false
	}
	first, err := arr.IndexErr(0)
	if err != nil {
		return false
	}
	d, ok := first.DocumentOK()
	return ok && firstKey(d) == "$changeStream"
}

// awaitWriteConcern waits, after a write succeeded, for its write concern
// and returns the reply body with a writeConcernError when it was not met.
// A write without one waits for a majority: the implicit default write
// concern since MongoDB 5.0.
func (s *Server) awaitWriteConcern(cc *cmdCtx, body bsoncore.Document) bsoncore.Document {
	m := s.member
	if m == nil || len(m.rs.members) == 1 || !writeCommands[cc.name] || (cc.txn != nil && cc.name != "commitTransaction") {
		return body
	}
	w, wtimeout, err := parseWriteConcern(cc)
	if err != nil || w == "1" || w == "0" {
		return body
	}
	rs := m.rs
	st := s.store
	st.mu.Lock()
	target := st.lastPosLocked()
	st.mu.Unlock()
	var timeout <-chan time.Time
	if wtimeout > 0 {
		t := time.NewTimer(wtimeout)
		defer t.Stop()
		timeout = t.C
	}
	s.awaitingWC.Add(1)
	defer s.awaitingWC.Add(-1)
	for {
		rs.mu.Lock()
		met, wcErr := rs.writeConcernMetLocked(w, target)
		ch := rs.changed
		primary := rs.primary == m.idx
		rs.mu.Unlock()
		if wcErr != nil {
			return s.appendWriteConcernError(body, wcErr, false)
		}
		if met {
			return body
		}
		if !primary {
			return s.appendWriteConcernError(body, cmdErr(codePrimarySteppedDown, "Primary stepped down while waiting for replication"), isRetryableWriteCmd(cc))
		}
		// A step-down or a kill changes the set, and so wakes this.
		select {
		case <-ch:
		case <-timeout:
			e := cmdErr(codeWriteConcernFailed, "waiting for replication timed out")
			return s.appendWriteConcernError(body, e, false)
		case <-cc.ctx.Done():
			return body
		}
	}
}

// parseWriteConcern returns w ("majority" or a number as text) and
// wtimeout; no writeConcern means majority.
func parseWriteConcern(cc *cmdCtx) (w string, wtimeout time.Duration, err error) {
	wc, ok, err := cc.docArg("writeConcern")
	if err != nil {
		return "", 0, err
	}
	w = "majority"
	if !ok {
		return w, 0, nil
	}
	if v, err := wc.LookupErr("w"); err == nil {
		if n, ok := v.AsInt64OK(); ok {
			w = strconv.FormatInt(n, 10)
		} else if str, ok := v.StringValueOK(); ok {
			w = str
		}
	}
	if v, err := wc.LookupErr("wtimeout"); err == nil {
		if n, ok := v.AsInt64OK(); ok && n > 0 {
			wtimeout = time.Duration(n) * time.Millisecond
		}
	}
	return w, wtimeout, nil
}

// writeConcernMetLocked reports whether enough members have applied
// target for w.
func (rs *ReplicaSet) writeConcernMetLocked(w string, target oplogPos) (bool, *CommandError) {
	if w == "majority" {
		return !rs.commit.less(target), nil
	}
	n, err := strconv.Atoi(w)
	if err != nil {
		return false, cmdErr(codeUnknownReplWriteConcern, "No write concern mode named '%s' found in replica set configuration", w)
	}
	if n > len(rs.members) {
		return false, cmdErr(100, "Not enough data-bearing nodes")
	}
	have := 0
	for i := range rs.members {
		// Only entries of the current term count: a former primary's
		// newer but never-replicated entries are not this write.
		if a := rs.appliedLocked(i); a.term == rs.term && !a.pos.less(target) {
			have++
		}
	}
	return have >= n, nil
}

// appendWriteConcernError adds writeConcernError (and the retryable label)
// to a successful write's reply body.
func (s *Server) appendWriteConcernError(body bsoncore.Document, e *CommandError, retryable bool) bsoncore.Document {
	dst := make([]byte, 0, len(body)+160)
	idx, dst := bsoncore.AppendDocumentStart(dst)
	if len(body) > 5 {
		dst = append(dst, body[4:len(body)-1]...)
	}
	widx, dst := bsoncore.AppendDocumentElementStart(dst, "writeConcernError")
	dst = bsoncore.AppendInt32Element(dst, "code", e.Code)
	dst = bsoncore.AppendStringElement(dst, "codeName", codeName(e.Code))
	dst = bsoncore.AppendStringElement(dst, "errmsg", e.Message)
	if e.Code == codeWriteConcernFailed {
		eidx, d := bsoncore.AppendDocumentElementStart(dst, "errInfo")
		d = bsoncore.AppendBooleanElement(d, "wtimeout", true)
		dst, _ = bsoncore.AppendDocumentEnd(d, eidx)
	}
	if isStateChangeCode(e.Code) {
		tv, _ := s.topo.current()
		dst = appendTopologyVersion(dst, tv)
	}
	dst, _ = bsoncore.AppendDocumentEnd(dst, widx)
	if retryable {
		dst = bsoncore.BuildArrayElement(dst, "errorLabels",
			bsoncore.Value{Type: bsoncore.TypeString, Data: bsoncore.AppendString(nil, labelRetryableWriteError)})
	}
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst
}

// isStateChangeCode reports the codes of the server's NotPrimaryError and
// ShutdownError categories: their error replies carry the member's
// topologyVersion (service_entry_point_common.cpp,
// appendErrorLabelsAndTopologyVersion), by which a driver tells a stale
// error (topologyVersion not newer than the one it has) from news of a
// state change, and ignores the stale one.
func isStateChangeCode(code int32) bool {
	switch code {
	case codeNotWritablePrimary, codeNotPrimaryNoSecondaryOk, 13436, codeInterruptedDueToReplStateChange,
		codePrimarySteppedDown, codeInterruptedAtShutdown, 91:
		return true
	}
	return false
}

// interruptedError is what a change-stream getMore waiting on a primary
// that steps down fails with.
func interruptedError(changeStream bool) *CommandError {
	err := cmdErr(codeInterruptedDueToReplStateChange, "operation was interrupted because the node's replication state changed")
	if changeStream {
		err.Labels = []string{labelResumableChangeStreamError}
	}
	return err
}
