package changestream

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/changestream-go/changestream/internal/keystring"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TokenInfo is what a resume token says about the point it names. Servers
// from 4.2 on write a token's _data as the hex of a KeyString (the
// server's byte-comparable encoding) of these fields, in this order.
type TokenInfo struct {
	// ClusterTime is the time of the event, or the time scanned to.
	ClusterTime bson.Timestamp
	// Version is the token's format: 1 (MongoDB 4.2 to 6.x) or 2 (7.0 on).
	Version int
	// HighWater reports a high-water mark (tokenType 0): a point between
	// events, as a postBatchResumeToken is; an event's token has type 128.
	HighWater bool
	// TxnOpIndex is the event's index among the operations of its
	// transaction (0 outside one).
	TxnOpIndex int64
	// FromInvalidate reports the token of an invalidate event: a stream
	// can start after it (startAfter) but not resume after it.
	FromInvalidate bool
	// CollectionUUID is the UUID of the event's collection, nil when the
	// token has none (a high-water mark, a database-level event).
	CollectionUUID []byte
	// EventIdentifier identifies the event among those of its cluster time:
	// in version 2, {operationType, documentKey} for a change to a
	// document, and the operation's description for DDL; in version 1, the
	// documentKey. Numbers read as int64: a KeyString keeps their BSON
	// type only in the token's _typeBits.
	EventIdentifier bson.D
	// FragmentNum is set on the token of a fragment of a split event
	// (WithSplitLargeEvents), as the server stores it: the fragment's
	// index, from 0.
	FragmentNum *int64
}

// Token types of TokenInfo.HighWater (ResumeTokenData::TokenType).
const (
	tokenTypeHighWater = 0
	tokenTypeEvent     = 128
)

// DecodeToken reads what a resume token (an event's _id, a
// postBatchResumeToken) says about itself, without a server. It reads
// tokens of versions 1 and 2 whose _data is a hex string; others fail
// with an error saying why.
func DecodeToken(token bson.Raw) (TokenInfo, error) {
	var info TokenInfo
	v, err := token.LookupErr("_data")
	if err != nil {
		return info, errors.New("changestream: the token has no _data field")
	}
	s, ok := v.StringValueOK()
	if !ok {
		return info, fmt.Errorf("changestream: the token's _data is a BSON %s, not the hex string servers from 4.2 on write", v.Type)
	}
	key, err := hex.DecodeString(s)
	if err != nil || len(key) == 0 {
		return info, fmt.Errorf("changestream: the token's _data is not hex: %q", s)
	}
	r := keystring.NewReader(key)
	fail := func(what string, err error) (TokenInfo, error) {
		return TokenInfo{}, fmt.Errorf("changestream: reading the token's %s: %w", what, err)
	}
	t, i, err := r.Timestamp()
	if err != nil {
		return fail("cluster time", err)
	}
	info.ClusterTime = bson.Timestamp{T: t, I: i}
	version, err := r.Integer()
	if err != nil {
		return fail("version", err)
	}
	if version != 1 && version != 2 {
		return TokenInfo{}, fmt.Errorf("changestream: version %d tokens are not decoded (versions 1 and 2 are)", version)
	}
	info.Version = int(version)
	typ, err := r.Integer()
	if err != nil {
		return fail("token type", err)
	}
	switch typ {
	case tokenTypeHighWater:
		info.HighWater = true
	case tokenTypeEvent:
	default:
		return TokenInfo{}, fmt.Errorf("changestream: unknown token type %d", typ)
	}
	if info.TxnOpIndex, err = r.Integer(); err != nil {
		return fail("txnOpIndex", err)
	}
	if info.FromInvalidate, err = r.Bool(); err != nil {
		return fail("fromInvalidate", err)
	}
	if r.IsBinary() {
		_, data, err := r.Binary()
		if err != nil {
			return fail("collection UUID", err)
		}
		info.CollectionUUID = append([]byte(nil), data...)
	}
	if r.IsObject() {
		id, err := r.Value()
		if err != nil {
			return fail("event identifier", err)
		}
		info.EventIdentifier, _ = id.(bson.D)
	}
	if r.IsNumber() {
		n, err := r.Integer()
		if err != nil {
			return fail("fragment number", err)
		}
		info.FragmentNum = &n
	}
	if err := r.Done(); err != nil {
		return fail("end", err)
	}
	return info, nil
}
