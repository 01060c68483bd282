package mongos

import (
	"maps"
	"slices"

	"github.com/changestream-go/changestream/internal/mongosim/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Error codes the router answers with (src/mongo/base/error_codes.yml).
const (
	codeHostUnreachable               = 6
	codeBadValue                      = 2
	codeFailedToParse                 = 9
	codeCursorNotFound                = 43
	codeFailedToSatisfyReadPreference = 133
	codeNotImplemented                = 238
	codeCommandNotFound               = 59
	codeChangeStreamFatalError        = 280
	codeInvalidNamespace              = 73
	codeInvalidOptions                = 72
	codeShardKeyNotFound              = 61
	codeNamespaceNotFound             = 26
	codeNamespaceNotSharded           = 118
	codeNoSuchTransaction             = 251
	codeShardNotFound                 = 70
)

// errorReply is a command's failure as a server answers it.
func (r *Router) errorReply(code int32, msg string, labels ...string) bsoncore.Document {
	b := bsoncore.NewDocumentBuilder().
		AppendDouble("ok", 0).
		AppendString("errmsg", msg).
		AppendInt32("code", code).
		AppendString("codeName", mongoerr.CodeName(code))
	if len(labels) > 0 {
		arr := bsoncore.NewArrayBuilder()
		for _, l := range labels {
			arr.AppendString(l)
		}
		b.AppendArray("errorLabels", arr.Build())
	}
	return r.withClusterTime(b)
}

// notImplemented refuses what the simulated router does not do, naming it.
func (r *Router) notImplemented(what string) bsoncore.Document {
	return r.errorReply(codeNotImplemented, "the simulated mongos does not implement "+what)
}

// okReply is a success with the elements of body.
func (r *Router) okReply(body *bsoncore.DocumentBuilder) bsoncore.Document {
	if body == nil {
		body = bsoncore.NewDocumentBuilder()
	}
	return r.withClusterTime(body.AppendDouble("ok", 1))
}

// withClusterTime ends a reply with the router's operationTime and
// $clusterTime, the signature all zero as an unauthenticated cluster's.
func (r *Router) withClusterTime(b *bsoncore.DocumentBuilder) bsoncore.Document {
	ts := r.clusterTime()
	return b.AppendTimestamp("operationTime", ts.T, ts.I).AppendDocument("$clusterTime", clusterTimeDoc(ts)).Build()
}

// clusterTimeDoc is a gossiped $clusterTime, with the all-zero signature
// of an unauthenticated cluster.
func clusterTimeDoc(ts bson.Timestamp) bsoncore.Document {
	sig := bsoncore.NewDocumentBuilder().AppendBinary("hash", 0, make([]byte, 20)).AppendInt64("keyId", 0).Build()
	return bsoncore.NewDocumentBuilder().AppendTimestamp("clusterTime", ts.T, ts.I).AppendDocument("signature", sig).Build()
}

// replyCode returns the code of a failed reply, 0 for a success.
func replyCode(reply bsoncore.Document) int32 {
	if ok, _ := reply.Lookup("ok").AsFloat64OK(); ok == 1 {
		return 0
	}
	code, _ := reply.Lookup("code").AsInt64OK()
	if code == 0 {
		return -1
	}
	return int32(code)
}

// gossipedTime returns the $clusterTime a command or a reply carries.
func gossipedTime(doc bsoncore.Document) (bson.Timestamp, bool) {
	t, i, ok := doc.Lookup("$clusterTime", "clusterTime").TimestampOK()
	return bson.Timestamp{T: t, I: i}, ok
}

// replaceElements returns doc with the elements of repl in place of those
// of the same name, and repl's others appended.
func replaceElements(doc bsoncore.Document, repl map[string]bsoncore.Value) bsoncore.Document {
	b := bsoncore.NewDocumentBuilder()
	done := map[string]bool{}
	elems, _ := doc.Elements()
	for _, e := range elems {
		k := e.Key()
		if v, ok := repl[k]; ok {
			b.AppendValue(k, v)
			done[k] = true
			continue
		}
		b.AppendValue(k, e.Value())
	}
	for _, k := range slices.Sorted(maps.Keys(repl)) {
		if !done[k] {
			b.AppendValue(k, repl[k])
		}
	}
	return b.Build()
}

// retryableCodes are the errors after which a driver may retry a write
// (the server's RetriableError category, as the Retryable Writes
// specification lists them).
var retryableCodes = map[int32]bool{
	6: true, 7: true, 89: true, 91: true, 189: true, 262: true, 9001: true, 10107: true,
	11600: true, 11602: true, 13435: true, 13436: true,
}

// isRetryableWrite reports a command a driver may send again: a write
// with a txnNumber outside a transaction, or a transaction's commit or
// abort.
func isRetryableWrite(name string, body bsoncore.Document) bool {
	switch name {
	case "commitTransaction", "abortTransaction":
		return true
	case "insert", "update", "delete", "findAndModify", "findandmodify":
		_, hasTxn := body.LookupErr("txnNumber")
		_, inTxn := body.LookupErr("autocommit")
		return hasTxn == nil && inTxn != nil
	}
	return false
}

// withRetryableWriteLabel adds RetryableWriteError to a retryable write's
// failure with a retryable code, as mongos labels errors
// (src/mongo/db/error_labels.cpp): the shard's own, or the router's when
// a shard could not be reached.
func withRetryableWriteLabel(name string, body, reply bsoncore.Document) bsoncore.Document {
	code := replyCode(reply)
	if code == 0 || !retryableCodes[code] || !isRetryableWrite(name, body) {
		return reply
	}
	arr := bsoncore.NewArrayBuilder()
	if labels, ok := reply.Lookup("errorLabels").ArrayOK(); ok {
		vals, _ := labels.Values()
		for _, v := range vals {
			if s, _ := v.StringValueOK(); s == "RetryableWriteError" {
				return reply
			}
			arr.AppendValue(v)
		}
	}
	arr.AppendString("RetryableWriteError")
	return replaceElements(reply, map[string]bsoncore.Value{"errorLabels": {Type: bsoncore.TypeArray, Data: arr.Build()}})
}
