package mongosim

import (
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// paramTxnLifetime is the one server parameter the simulator lets a
// client change at runtime.
const paramTxnLifetime = "transactionLifetimeLimitSeconds"

// handleSetParameter sets transactionLifetimeLimitSeconds, as
// {setParameter: 1, transactionLifetimeLimitSeconds: n} does on a server
// (n at least 1), replying with the previous value in "was". Any other
// parameter is refused with NotImplemented.
func handleSetParameter(cc *cmdCtx) (bsoncore.Document, error) {
	if cc.db != "admin" {
		return nil, cmdErr(codeUnauthorized, "setParameter may only be run against the admin database.")
	}
	n, ok, err := cc.int64Arg(paramTxnLifetime)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, notImplemented("setParameter of parameters other than %s", paramTxnLifetime)
	}
	if n < 1 {
		return nil, cmdErr(codeBadValue, "Invalid value for parameter %s: %d is not greater than or equal to 1", paramTxnLifetime, n)
	}
	st := cc.s.store
	st.mu.Lock()
	was := st.txnLifetime
	st.txnLifetime = time.Duration(n) * time.Second
	st.mu.Unlock()
	var dst []byte
	idx, dst := bsoncore.AppendDocumentStart(dst)
	dst = bsoncore.AppendInt32Element(dst, "was", int32(was/time.Second))
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst, nil
}
