package changestream

import (
	"encoding/binary"
	"encoding/hex"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Position is a point a stream can be reopened at, with
// [WithResumeAfter] (or [WithStartAfter] after an invalidate).
type Position struct {
	// Token is the resume token: an event's _id, or a postBatchResumeToken.
	Token bson.Raw
	// ClusterTime is the cluster time at the head of the token: the event's
	// clusterTime, or the time the server had scanned to. Zero when the
	// token is not one a server issues (see [TokenTime]).
	ClusterTime bson.Timestamp
	// HighWater reports a high-water mark: a postBatchResumeToken with no
	// event exactly at it, which the server returns for an empty batch or
	// after events a $match filtered out.
	HighWater bool
}

// IsZero reports whether p holds no token: a stream that has not yet
// received a reply has no position.
func (p Position) IsZero() bool { return p.Token == nil }

// Position returns the stream's current position: where a new stream opened
// with [WithResumeAfter] carries on with nothing lost or repeated. It is the
// token [ChangeStream.ResumeToken] returns, with what the token says about
// itself. It is safe to call from any goroutine, and after Close.
func (cs *ChangeStream) Position() Position { return positionOf(cs.ResumeToken()) }

func positionOf(token bson.Raw) Position {
	if token == nil {
		return Position{}
	}
	p := Position{Token: token}
	if h, ok := readTokenHead(token); ok {
		p.ClusterTime, p.HighWater = h.time, h.highWater
	}
	return p
}

// TokenTime returns the cluster time at the head of a resume token, as
// servers from 4.0 on write it (the _data hex string's KeyString starts
// with the timestamp), without asking the server. It reports false for a
// token it cannot read.
func TokenTime(token bson.Raw) (bson.Timestamp, bool) {
	h, ok := readTokenHead(token)
	return h.time, ok
}

// tokenHead is what the start of a token's KeyString says: its cluster
// time, and whether it is a high-water mark.
type tokenHead struct {
	time      bson.Timestamp
	highWater bool
}

// KeyString bytes of a resume token's head (the server's key_string.h).
const (
	ksTimestamp       = 130 // the type byte of a Timestamp, 0x82
	ksZero            = 41  // the number 0
	ksPositive1Byte   = 43  // a positive integer of 1 byte; up to 8 bytes follow
	ksPositive8Byte   = 50  // a positive integer of 8 bytes
	tokenTypeHighMark = 0   // tokenType of a high-water mark; events are 128
)

// readTokenHead decodes the start of a token's _data: the timestamp, the
// version, and (version 1 and later) the token type.
func readTokenHead(token bson.Raw) (tokenHead, bool) {
	v, err := token.LookupErr("_data")
	if err != nil {
		return tokenHead{}, false
	}
	s, ok := v.StringValueOK()
	if !ok || len(s) < 18 || len(s)%2 != 0 {
		return tokenHead{}, false
	}
	b, err := hex.DecodeString(s)
	if err != nil || b[0] != ksTimestamp {
		return tokenHead{}, false
	}
	h := tokenHead{time: bson.Timestamp{T: binary.BigEndian.Uint32(b[1:5]), I: binary.BigEndian.Uint32(b[5:9])}}
	rest := b[9:]
	version, rest, ok := readKSInt(rest)
	if !ok {
		// A token with nothing after its time still names a time.
		return h, true
	}
	if version >= 1 {
		if typ, _, ok := readKSInt(rest); ok {
			h.highWater = typ == tokenTypeHighMark
		}
	}
	return h, true
}

// readKSInt reads a non-negative KeyString integer: a type byte giving its
// byte count, then the value shifted left by one, big-endian.
func readKSInt(b []byte) (int64, []byte, bool) {
	if len(b) == 0 {
		return 0, b, false
	}
	c := b[0]
	if c == ksZero {
		return 0, b[1:], true
	}
	if c < ksPositive1Byte || c > ksPositive8Byte {
		return 0, b, false
	}
	n := int(c-ksPositive1Byte) + 1
	if len(b) < 1+n {
		return 0, b, false
	}
	var v uint64
	for _, x := range b[1 : 1+n] {
		v = v<<8 | uint64(x)
	}
	if v&1 != 0 {
		return 0, b, false // a fraction: not a token's integer
	}
	return int64(v >> 1), b[1+n:], true
}
