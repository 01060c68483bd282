//lint:file-ignore SA1019 a server must still read the legacy OP_QUERY handshake that drivers send first, and answer it with OP_REPLY.

// Package wire reads and writes the MongoDB wire protocol as a server
// does: a client's OP_MSG and legacy OP_QUERY requests, bounded and
// validated as mongod bounds them, and OP_MSG and OP_REPLY answers. The
// simulator's members and its router (mongos) serve connections with it.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// Wire limits advertised in hello and enforced on every message read.
const (
	MaxBSONObjectSize   = 16 * 1024 * 1024
	MaxMessageSizeBytes = 48_000_000
	MaxWriteBatchSize   = 100_000
	HeaderLen           = 16
)

// ServerVersion is the MongoDB version members and routers report.
const ServerVersion = "8.0.4"

// OP_MSG flag bits (MongoDB wire protocol).
const (
	msgChecksumPresent uint32 = 1 << 0
	MsgMoreToCome      uint32 = 1 << 1
	msgExhaustAllowed  uint32 = 1 << 16
	msgKnownFlags             = msgChecksumPresent | MsgMoreToCome | msgExhaustAllowed
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadMessage marks a message the server cannot parse at all. The
// connection that sent it is closed, as a real server does.
var ErrBadMessage = errors.New("mongosim: malformed wire message")

// Request is one parsed client message: a command addressed to a database.
type Request struct {
	RequestID  int32
	OpCode     wiremessage.OpCode
	DB         string
	Body       bsoncore.Document
	Sequences  map[string][]bsoncore.Document // OP_MSG kind-1 sections
	MoreToCome bool                           // no reply is expected
	// ExhaustAllowed: the client accepts a stream of replies (moreToCome)
	// to this Request.
	ExhaustAllowed bool
}

// readChunk is how much of a message body is read, and allocated, at a
// time: a header that claims a large length costs memory only as the bytes
// really arrive.
const readChunk = 64 << 10

// ReadMessage reads one whole wire message, header included. It rejects
// lengths a real server would refuse before reading the body. started, if
// not nil, is called once the first byte of the message has arrived, so
// the caller can bound how long the rest may take.
func ReadMessage(r io.Reader, buf []byte, started ...func()) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:1]); err != nil {
		return nil, err
	}
	for _, f := range started {
		f()
	}
	if _, err := io.ReadFull(r, hdr[1:]); err != nil {
		return nil, err
	}
	length := int32(binary.LittleEndian.Uint32(hdr[:]))
	if length < HeaderLen || length > MaxMessageSizeBytes {
		return nil, fmt.Errorf("%w: message length %d out of range", ErrBadMessage, length)
	}
	buf = append(buf[:0], hdr[:]...)
	for len(buf) < int(length) {
		n := min(int(length)-len(buf), readChunk)
		if cap(buf)-len(buf) < n {
			// Grow by what arrives, not by what the header claims.
			buf = append(buf, make([]byte, n)...)[:len(buf)]
		}
		if _, err := io.ReadFull(r, buf[len(buf):len(buf)+n]); err != nil {
			return nil, err
		}
		buf = buf[:len(buf)+n]
	}
	return buf, nil
}

// ParseRequest decodes a whole wire message into a Request. It touches only
// the bytes it is given, so it can be tested and fuzzed without a socket.
// Document slices in the result alias msg.
func ParseRequest(msg []byte) (*Request, error) {
	length, reqID, _, op, rem, ok := wiremessage.ReadHeader(msg)
	if !ok || int(length) != len(msg) {
		return nil, fmt.Errorf("%w: bad header", ErrBadMessage)
	}
	switch op {
	case wiremessage.OpMsg:
		return parseOpMsg(reqID, rem, msg)
	case wiremessage.OpQuery:
		return parseOpQuery(reqID, rem)
	default:
		return nil, fmt.Errorf("%w: unsupported opcode %d", ErrBadMessage, int32(op))
	}
}

func parseOpMsg(reqID int32, rem, whole []byte) (*Request, error) {
	flags, rem, ok := wiremessage.ReadMsgFlags(rem)
	if !ok {
		return nil, fmt.Errorf("%w: OP_MSG without flags", ErrBadMessage)
	}
	f := uint32(flags)
	if f&^msgKnownFlags&0xffff != 0 {
		// Unknown required bits (0-15) must make the server fail the message.
		return nil, fmt.Errorf("%w: OP_MSG has unknown required flag bits %#x", ErrBadMessage, f)
	}
	if f&msgChecksumPresent != 0 {
		if len(rem) < 4 {
			return nil, fmt.Errorf("%w: OP_MSG checksum missing", ErrBadMessage)
		}
		sum := binary.LittleEndian.Uint32(rem[len(rem)-4:])
		if crc32.Checksum(whole[:len(whole)-4], castagnoli) != sum {
			return nil, fmt.Errorf("%w: OP_MSG checksum mismatch", ErrBadMessage)
		}
		rem = rem[:len(rem)-4]
	}
	req := &Request{RequestID: reqID, OpCode: wiremessage.OpMsg, MoreToCome: f&MsgMoreToCome != 0,
		ExhaustAllowed: f&msgExhaustAllowed != 0}
	for len(rem) > 0 {
		var st wiremessage.SectionType
		st, rem, ok = wiremessage.ReadMsgSectionType(rem)
		if !ok {
			return nil, fmt.Errorf("%w: truncated OP_MSG section", ErrBadMessage)
		}
		switch st {
		case wiremessage.SingleDocument:
			if req.Body != nil {
				return nil, fmt.Errorf("%w: OP_MSG has two body sections", ErrBadMessage)
			}
			var doc bsoncore.Document
			doc, rem, ok = wiremessage.ReadMsgSectionSingleDocument(rem)
			if !ok {
				return nil, fmt.Errorf("%w: truncated OP_MSG body", ErrBadMessage)
			}
			req.Body = doc
		case wiremessage.DocumentSequence:
			id, docs, next, ok := readDocumentSequence(rem)
			if !ok {
				return nil, fmt.Errorf("%w: bad OP_MSG document sequence", ErrBadMessage)
			}
			rem = next
			if req.Sequences == nil {
				req.Sequences = make(map[string][]bsoncore.Document)
			}
			if _, dup := req.Sequences[id]; dup {
				return nil, fmt.Errorf("%w: duplicate document sequence %q", ErrBadMessage, id)
			}
			req.Sequences[id] = docs
		default:
			return nil, fmt.Errorf("%w: unknown OP_MSG section kind %d", ErrBadMessage, st)
		}
	}
	if req.Body == nil {
		return nil, fmt.Errorf("%w: OP_MSG without a body section", ErrBadMessage)
	}
	if err := validateDeep(req.Body, 0); err != nil {
		return nil, fmt.Errorf("%w: invalid BSON body: %v", ErrBadMessage, err)
	}
	for id, docs := range req.Sequences {
		for _, d := range docs {
			if err := validateDeep(d, 0); err != nil {
				return nil, fmt.Errorf("%w: invalid BSON in sequence %q: %v", ErrBadMessage, id, err)
			}
		}
	}
	dbVal, err := req.Body.LookupErr("$db")
	if err != nil {
		return nil, fmt.Errorf("%w: OP_MSG body has no $db", ErrBadMessage)
	}
	db, ok := dbVal.StringValueOK()
	if !ok || db == "" {
		return nil, fmt.Errorf("%w: $db is not a non-empty string", ErrBadMessage)
	}
	req.DB = db
	return req, nil
}

// readDocumentSequence reads a kind-1 section strictly: the declared size
// must cover exactly the identifier and whole documents.
func readDocumentSequence(src []byte) (id string, docs []bsoncore.Document, rem []byte, ok bool) {
	if len(src) < 4 {
		return "", nil, src, false
	}
	size := int(int32(binary.LittleEndian.Uint32(src)))
	if size < 5 || size > len(src) {
		return "", nil, src, false
	}
	body, rem := src[4:size], src[size:]
	nul := -1
	for i, b := range body {
		if b == 0 {
			nul = i
			break
		}
	}
	if nul < 0 {
		return "", nil, src, false
	}
	id, body = string(body[:nul]), body[nul+1:]
	for len(body) > 0 {
		doc, next, ok := bsoncore.ReadDocument(body)
		if !ok {
			return "", nil, src, false
		}
		docs = append(docs, doc)
		body = next
	}
	return id, docs, rem, true
}

func parseOpQuery(reqID int32, rem []byte) (*Request, error) {
	_, rem, ok := wiremessage.ReadQueryFlags(rem)
	if !ok {
		return nil, fmt.Errorf("%w: OP_QUERY without flags", ErrBadMessage)
	}
	ns, rem, ok := wiremessage.ReadQueryFullCollectionName(rem)
	if !ok {
		return nil, fmt.Errorf("%w: OP_QUERY without a namespace", ErrBadMessage)
	}
	if _, rem, ok = wiremessage.ReadQueryNumberToSkip(rem); !ok {
		return nil, fmt.Errorf("%w: truncated OP_QUERY", ErrBadMessage)
	}
	if _, rem, ok = wiremessage.ReadQueryNumberToReturn(rem); !ok {
		return nil, fmt.Errorf("%w: truncated OP_QUERY", ErrBadMessage)
	}
	query, _, ok := wiremessage.ReadQueryQuery(rem)
	if !ok {
		return nil, fmt.Errorf("%w: OP_QUERY without a query document", ErrBadMessage)
	}
	if err := validateDeep(query, 0); err != nil {
		return nil, fmt.Errorf("%w: invalid BSON query: %v", ErrBadMessage, err)
	}
	db, coll, found := strings.Cut(ns, ".")
	if !found || coll != "$cmd" || db == "" {
		return nil, fmt.Errorf("%w: OP_QUERY on %q; only <db>.$cmd commands are accepted", ErrBadMessage, ns)
	}
	// Legacy commands may be wrapped as {$query: {...}, $readPreference: ...}.
	if v, err := query.LookupErr("$query"); err == nil {
		if inner, ok := v.DocumentOK(); ok {
			query = inner
		}
	}
	return &Request{RequestID: reqID, OpCode: wiremessage.OpQuery, DB: db, Body: query}, nil
}

// AppendOpMsgReply frames body as an OP_MSG reply to requestID.
func AppendOpMsgReply(dst []byte, responseTo int32, body bsoncore.Document) []byte {
	return AppendOpMsg(dst, wiremessage.NextRequestID(), responseTo, 0, body)
}

// AppendOpMsg frames body as an OP_MSG with the given ids and flags.
func AppendOpMsg(dst []byte, requestID, responseTo int32, flags uint32, body bsoncore.Document) []byte {
	idx, dst := wiremessage.AppendHeaderStart(dst, requestID, responseTo, wiremessage.OpMsg)
	dst = wiremessage.AppendMsgFlags(dst, wiremessage.MsgFlag(flags))
	dst = wiremessage.AppendMsgSectionType(dst, wiremessage.SingleDocument)
	dst = append(dst, body...)
	return bsoncore.UpdateLength(dst, idx, int32(len(dst)-int(idx)))
}

// AppendOpReply frames body as a legacy OP_REPLY, the only answer a client
// accepts to its OP_QUERY handshake.
func AppendOpReply(dst []byte, responseTo int32, body bsoncore.Document) []byte {
	idx, dst := wiremessage.AppendHeaderStart(dst, wiremessage.NextRequestID(), responseTo, wiremessage.OpReply)
	dst = wiremessage.AppendReplyFlags(dst, wiremessage.AwaitCapable)
	dst = wiremessage.AppendReplyCursorID(dst, 0)
	dst = wiremessage.AppendReplyStartingFrom(dst, 0)
	dst = wiremessage.AppendReplyNumberReturned(dst, 1)
	dst = append(dst, body...)
	return bsoncore.UpdateLength(dst, idx, int32(len(dst)-int(idx)))
}

// maxBSONDepth is how deeply a real server lets documents nest.
const maxBSONDepth = 200

// validateDeep checks a whole document, nested documents, arrays and
// code-with-scope included: bsoncore's Validate only checks the top level,
// and a real server refuses a message with broken BSON at any depth.
func validateDeep(doc bsoncore.Document, depth int) error {
	if depth > maxBSONDepth {
		return fmt.Errorf("BSON nested deeper than %d levels", maxBSONDepth)
	}
	if err := doc.Validate(); err != nil {
		return err
	}
	elems, err := doc.Elements()
	if err != nil {
		return err
	}
	for _, e := range elems {
		v := e.Value()
		switch v.Type {
		case bsoncore.TypeEmbeddedDocument, bsoncore.TypeArray:
			if err := validateDeep(bsoncore.Document(v.Data), depth+1); err != nil {
				return fmt.Errorf("field %q: %w", e.Key(), err)
			}
		case bsoncore.TypeCodeWithScope:
			_, scope, ok := v.CodeWithScopeOK()
			if !ok {
				return fmt.Errorf("field %q: malformed code with scope", e.Key())
			}
			if err := validateDeep(scope, depth+1); err != nil {
				return fmt.Errorf("field %q scope: %w", e.Key(), err)
			}
		}
	}
	return nil
}
