//lint:file-ignore SA1019 a server must still read the legacy OP_QUERY handshake that drivers send first, and answer it with OP_REPLY.

package mongosim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/changestream-go/changestream/internal/mongosim/wire"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// handlerFunc runs one command. It returns the reply body without ok,
// operationTime and $clusterTime, which the dispatcher adds; or an error,
// normally a *CommandError. Documents in cc alias the connection's read
// buffer: a handler that keeps any part of them past its return must copy it.
type handlerFunc func(cc *cmdCtx) (bsoncore.Document, error)

// cmdCtx is what a handler knows about the command it runs.
type cmdCtx struct {
	s    *Server
	conn *conn
	ctx  context.Context // done when the connection or the server closes
	db   string
	name string            // the command name as sent (first key)
	cmd  bsoncore.Document // the command body
	seqs map[string][]bsoncore.Document
	lsid []byte       // the raw lsid document, nil when the command has none
	txn  *transaction // the transaction the command runs in, or nil
	// interrupt is closed when the member the command runs on stops
	// being primary (nil when it was not primary).
	interrupt <-chan struct{}
	// committedRead is the readConcern level of a read that may see only
	// majority-committed data, or "" (see lockRead).
	committedRead string
}

// commandTable maps command names to handlers. Names are case-sensitive, as
// on a real server; isMaster's lower-case spelling is listed too.
var commandTable map[string]handlerFunc

func init() {
	commandTable = map[string]handlerFunc{
		"hello":                              handleHello,
		"isMaster":                           handleHello,
		"ismaster":                           handleHello,
		"buildInfo":                          handleBuildInfo,
		"buildinfo":                          handleBuildInfo,
		"ping":                               handlePing,
		"endSessions":                        handleOK,
		"killAllSessions":                    handleOK,
		"getParameter":                       handleGetParameter,
		"setParameter":                       handleSetParameter,
		"serverStatus":                       handleServerStatus,
		"configureFailPoint":                 handleConfigureFailPoint,
		"getMore":                            handleGetMore,
		"killCursors":                        handleKillCursors,
		"aggregate":                          handleAggregate,
		"listDatabases":                      handleListDatabases,
		"listCollections":                    handleListCollections,
		"create":                             handleCreate,
		"drop":                               handleDrop,
		"createIndexes":                      handleCreateIndexes,
		"dropIndexes":                        handleDropIndexes,
		"listIndexes":                        handleListIndexes,
		"collMod":                            handleCollMod,
		"_shardsvrCreateCollection":          handleShardsvrCreateCollection,
		"_mongosimCloneRange":                handleCloneRange,
		"_mongosimReceiveChunk":              handleReceiveChunk,
		"_shardsvrRefineCollectionShardKey":  handleShardsvrRefineCollectionShardKey,
		"_mongosimRefreshShardKey":           handleRefreshShardKey,
		"_mongosimDeleteRange":               handleDeleteRange,
		"appendOplogNote":                    handleAppendOplogNote,
		"_shardsvrDropCollectionParticipant": handleDropCollectionParticipant,
		"dropDatabase":                       handleDropDatabase,
		"renameCollection":                   handleRenameCollection,
		"insert":                             handleInsert,
		"update":                             handleUpdate,
		"delete":                             handleDelete,
		"find":                               handleFind,
		"findAndModify":                      handleFindAndModify,
		"count":                              handleCount,
		"distinct":                           handleDistinct,
		"dbStats":                            handleDBStats,
		"dbstats":                            handleDBStats,
		"replSetGetStatus":                   handleReplSetGetStatus,
		"replSetStepDown":                    handleReplSetStepDown,
		"replSetFreeze":                      handleReplSetFreeze,
		"findandmodify":                      handleFindAndModify,
		"commitTransaction":                  handleCommitTransaction,
		"abortTransaction":                   handleAbortTransaction,
	}
}

// handle runs one request and returns the reply document to send.
// errCloseConnection means: send nothing, close the socket.
func (s *Server) handle(c *conn, req *wire.Request) (reply bsoncore.Document, err error) {
	name := firstKey(req.Body)
	s.log.add(c, req.DB, name, req.Body)
	cc := &cmdCtx{s: s, conn: c, ctx: c.ctx, db: req.DB, name: name, cmd: req.Body, seqs: req.Sequences}
	if v, err := req.Body.LookupErr("lsid"); err == nil {
		if d, ok := v.DocumentOK(); ok {
			cc.lsid = d
		}
	}
	var body bsoncore.Document
	if t, i, ok := req.Body.Lookup("$clusterTime", "clusterTime").TimestampOK(); ok && !s.cfg.standalone {
		err = s.store.advanceClock(bson.Timestamp{T: t, I: i})
	}
	if err == nil {
		body, err = s.run(cc, req.OpCode)
	}
	if errors.Is(err, errCloseConnection) {
		return nil, err
	}
	return s.finishReply(body, err), nil
}

// run applies fail points and calls the handler, turning a panic into an
// InternalError so that no input can take the server down.
func (s *Server) run(cc *cmdCtx, op wiremessage.OpCode) (body bsoncore.Document, err error) {
	if cc.name == "" {
		return nil, cmdErr(codeFailedToParse, "empty command object")
	}
	h, ok := commandTable[cc.name]
	if !ok {
		return nil, cmdErr(codeCommandNotFound, "no such command: '%s'", cc.name)
	}
	if op == wiremessage.OpQuery && !isHelloName(cc.name) {
		return nil, cmdErr(codeUnsupportedOpQueryCommand,
			"Unsupported OP_QUERY command: %s. The client driver may require an upgrade.", cc.name)
	}
	if err := s.beforeCommand(cc); err != nil {
		return nil, err
	}
	if err := s.refuseConfigDB(cc); err != nil {
		return nil, err
	}
	if err := s.checkRole(cc); err != nil {
		return nil, err
	}
	cc.committedRead = s.committedReadLevel(cc)
	cc.interrupt = s.interruptCh()
	if cc.txn, err = s.enterTxn(cc); err != nil {
		return nil, err
	}
	if err := cc.checkCollations(); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			body, err = nil, cmdErr(codeInternalError, "mongosim: panic in %s: %v\n%s", cc.name, r, debug.Stack())
		}
	}()
	body, err = cc.finishTxnCommand(h(cc))
	if err == nil {
		body = s.awaitWriteConcern(cc, body)
	}
	return body, err
}

func isHelloName(name string) bool {
	return name == "hello" || name == "isMaster" || name == "ismaster"
}

// finishReply adds ok, the error fields and the cluster time fields.
func (s *Server) finishReply(body bsoncore.Document, err error) bsoncore.Document {
	ts := s.store.clusterTime()
	dst := make([]byte, 0, len(body)+160)
	idx, dst := bsoncore.AppendDocumentStart(dst)
	if err != nil {
		var ce *CommandError
		if !errors.As(err, &ce) {
			ce = cmdErr(codeInternalError, "%v", err)
		}
		dst = bsoncore.AppendDoubleElement(dst, "ok", 0)
		dst = bsoncore.AppendStringElement(dst, "errmsg", ce.Message)
		dst = bsoncore.AppendInt32Element(dst, "code", ce.Code)
		dst = bsoncore.AppendStringElement(dst, "codeName", codeName(ce.Code))
		if len(ce.Labels) > 0 {
			vals := make([]bsoncore.Value, len(ce.Labels))
			for i, l := range ce.Labels {
				vals[i] = bsoncore.Value{Type: bsoncore.TypeString, Data: bsoncore.AppendString(nil, l)}
			}
			dst = bsoncore.BuildArrayElement(dst, "errorLabels", vals...)
		}
		if isStateChangeCode(ce.Code) {
			tv, _ := s.topo.current()
			dst = appendTopologyVersion(dst, tv)
		}
	} else {
		if len(body) > 5 {
			dst = append(dst, body[4:len(body)-1]...)
		}
		dst = bsoncore.AppendDoubleElement(dst, "ok", 1)
	}
	if !s.cfg.standalone {
		// A standalone keeps no cluster time and gossips none.
		dst = appendClusterTimeFields(dst, ts)
	}
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst
}

// appendClusterTimeFields appends operationTime and a gossiped $clusterTime
// with an all-zero signature, as an unauthenticated replica set sends.
func appendClusterTimeFields(dst []byte, ts bson.Timestamp) []byte {
	dst = bsoncore.AppendTimestampElement(dst, "operationTime", ts.T, ts.I)
	idx, dst := bsoncore.AppendDocumentElementStart(dst, "$clusterTime")
	dst = bsoncore.AppendTimestampElement(dst, "clusterTime", ts.T, ts.I)
	sidx, dst := bsoncore.AppendDocumentElementStart(dst, "signature")
	dst = bsoncore.AppendBinaryElement(dst, "hash", 0, make([]byte, 20))
	dst = bsoncore.AppendInt64Element(dst, "keyId", 0)
	dst, _ = bsoncore.AppendDocumentEnd(dst, sidx)
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst
}

// firstKey returns the name of the first element of doc, "" if none.
func firstKey(doc bsoncore.Document) string {
	elems, err := doc.Elements()
	if err != nil || len(elems) == 0 {
		return ""
	}
	return elems[0].Key()
}

// sameSession reports whether two raw lsid documents name the same session.
func sameSession(a, b []byte) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	ida, erra := bsoncore.Document(a).LookupErr("id")
	idb, errb := bsoncore.Document(b).LookupErr("id")
	if erra != nil || errb != nil {
		return bytes.Equal(a, b)
	}
	return ida.Equal(idb)
}

// marshalDoc encodes v (usually a bson.D) for a reply. Handlers use it for
// replies that are not on a hot path.
func marshalDoc(v any) (bsoncore.Document, error) {
	b, err := bson.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("mongosim: encoding reply: %w", err)
	}
	return b, nil
}

func handleOK(*cmdCtx) (bsoncore.Document, error) { return nil, nil }

func handlePing(*cmdCtx) (bsoncore.Document, error) { return nil, nil }
