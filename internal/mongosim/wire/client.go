package wire

import (
	"encoding/binary"
	"fmt"
	"slices"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// AppendCommand frames a command as the OP_MSG a router sends to a shard:
// body (with its $db), and each of seqs as a document sequence (kind 1),
// in the order of their identifiers so that the bytes are the same for
// the same command.
func AppendCommand(dst []byte, requestID int32, body bsoncore.Document, seqs map[string][]bsoncore.Document) []byte {
	idx, dst := wiremessage.AppendHeaderStart(dst, requestID, 0, wiremessage.OpMsg)
	dst = wiremessage.AppendMsgFlags(dst, 0)
	dst = wiremessage.AppendMsgSectionType(dst, wiremessage.SingleDocument)
	dst = append(dst, body...)
	ids := make([]string, 0, len(seqs))
	for id := range seqs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		dst = wiremessage.AppendMsgSectionType(dst, wiremessage.DocumentSequence)
		start := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		dst = append(dst, id...)
		dst = append(dst, 0)
		for _, d := range seqs[id] {
			dst = append(dst, d...)
		}
		binary.LittleEndian.PutUint32(dst[start:], uint32(len(dst)-start))
	}
	return bsoncore.UpdateLength(dst, idx, int32(len(dst)-int(idx)))
}

// ParseReply reads the body of a server's OP_MSG reply to requestID.
func ParseReply(msg []byte, requestID int32) (bsoncore.Document, error) {
	if len(msg) < HeaderLen+5 {
		return nil, fmt.Errorf("%w: a reply of %d bytes", ErrBadMessage, len(msg))
	}
	_, _, responseTo, op, rem, ok := wiremessage.ReadHeader(msg)
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: bad reply header", ErrBadMessage)
	case op != wiremessage.OpMsg:
		return nil, fmt.Errorf("%w: a reply with opcode %d", ErrBadMessage, int32(op))
	case responseTo != requestID:
		return nil, fmt.Errorf("%w: a reply to request %d, not %d", ErrBadMessage, responseTo, requestID)
	}
	flags, rem, ok := wiremessage.ReadMsgFlags(rem)
	if !ok || uint32(flags)&msgChecksumPresent != 0 {
		return nil, fmt.Errorf("%w: reply flags", ErrBadMessage)
	}
	st, rem, ok := wiremessage.ReadMsgSectionType(rem)
	if !ok || st != wiremessage.SingleDocument {
		return nil, fmt.Errorf("%w: a reply without a body section first", ErrBadMessage)
	}
	body, _, ok := bsoncore.ReadDocument(rem)
	if !ok {
		return nil, fmt.Errorf("%w: truncated reply body", ErrBadMessage)
	}
	return body, nil
}
