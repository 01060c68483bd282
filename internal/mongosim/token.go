package mongosim

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Resume tokens are {_data: "<uppercase hex>"}. The bytes are laid out so
// that comparing them (or their hex, which preserves byte order) orders the
// tokens as the stream orders its positions, as a real server's KeyString
// encoding does:
//
//	0      0x82, the KeyString type byte of a Timestamp
//	1..8   cluster time: seconds then increment, 4 bytes big-endian each,
//	       so tools that read the time out of a real token read ours too
//	9      kind: tokenKindHighWaterMark < tokenKindEvent, so that a
//	       high-water mark at T sorts before any event at T
//	10     fromInvalidate: 0, or 1 for an invalidate event, which sorts
//	       after the drop or rename that caused it (same cluster time)
//	11..26 UUID of the event's collection (zero for high-water marks and
//	       dropDatabase); it lets a resume detect a token from elsewhere
//	27     0x04, the KeyString end marker
//
// Every oplog entry has its own cluster time, so the time identifies the
// event; the UUID is a consistency check.
const (
	tokenTypeByte           = 0x82
	tokenEndByte            = 0x04
	tokenKindHighWaterMark  = 0x01
	tokenKindEvent          = 0x02
	tokenLen                = 28
	tokenHexLen             = 2 * tokenLen
	maxResumeTokenHexLength = 1 << 12
)

// resumeToken is a decoded token.
type resumeToken struct {
	ts             bson.Timestamp
	highWaterMark  bool
	fromInvalidate bool
	uuid           [16]byte
}

func hwmToken(ts bson.Timestamp) resumeToken { return resumeToken{ts: ts, highWaterMark: true} }

// bytes returns the binary form described above.
func (t resumeToken) bytes() [tokenLen]byte {
	var b [tokenLen]byte
	b[0] = tokenTypeByte
	binary.BigEndian.PutUint32(b[1:5], t.ts.T)
	binary.BigEndian.PutUint32(b[5:9], t.ts.I)
	if t.highWaterMark {
		b[9] = tokenKindHighWaterMark
	} else {
		b[9] = tokenKindEvent
	}
	if t.fromInvalidate {
		b[10] = 1
	}
	copy(b[11:27], t.uuid[:])
	b[27] = tokenEndByte
	return b
}

const upperHex = "0123456789ABCDEF"

// appendData appends the uppercase hex of the token, the _data string.
func (t resumeToken) appendData(dst []byte) []byte {
	b := t.bytes()
	for _, c := range b {
		dst = append(dst, upperHex[c>>4], upperHex[c&0x0f])
	}
	return dst
}

// data returns the _data string.
func (t resumeToken) data() string { return string(t.appendData(make([]byte, 0, tokenHexLen))) }

// appendDoc appends the token document {_data: "..."} to dst.
func (t resumeToken) appendDoc(dst []byte) []byte {
	var hexBuf [tokenHexLen]byte
	h := t.appendData(hexBuf[:0])
	idx, dst := bsoncore.AppendDocumentStart(dst)
	dst = bsoncore.AppendHeader(dst, bsoncore.TypeString, "_data")
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(h)+1))
	dst = append(dst, h...)
	dst = append(dst, 0)
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst
}

// doc returns the token document.
func (t resumeToken) doc() bsoncore.Document { return t.appendDoc(make([]byte, 0, tokenHexLen+20)) }

// compare orders tokens as their bytes order them.
func (t resumeToken) compare(u resumeToken) int {
	a, b := t.bytes(), u.bytes()
	return bytes.Compare(a[:], b[:])
}

// decodeResumeToken reads the value of resumeAfter or startAfter (field
// names the option in errors). It never panics, whatever the input, and
// fails with the codes a real server uses for the same kind of damage.
func decodeResumeToken(field string, v bsoncore.Value) (resumeToken, error) {
	doc, ok := v.DocumentOK()
	if !ok {
		return resumeToken{}, cmdErr(codeTypeMismatch,
			"BSON field '$changeStream.%s' is the wrong type '%s', expected type 'object'", field, typeAlias(v.Type))
	}
	dv, err := doc.LookupErr("_data")
	if err != nil || dv.Type != bsoncore.TypeString {
		return resumeToken{}, cmdErr(40647,
			"Bad resume token: _data of missing or of wrong type. Expected string, got %s", docString(doc))
	}
	if tb, err := doc.LookupErr("_typeBits"); err == nil {
		if sub, _, ok := tb.BinaryOK(); !ok || sub != 0 {
			return resumeToken{}, cmdErr(40648, "Bad resume token: _typeBits of wrong type %s", docString(doc))
		}
	}
	return parseTokenData(dv.StringValue())
}

// parseTokenData decodes a _data string.
func parseTokenData(s string) (resumeToken, error) {
	if len(s)%2 != 0 || len(s) > maxResumeTokenHexLength {
		return resumeToken{}, cmdErr(codeFailedToParse, "resume token string was not a valid hex string")
	}
	raw := make([]byte, len(s)/2)
	for i := 0; i < len(raw); i++ {
		hi, ok1 := unhex(s[2*i])
		lo, ok2 := unhex(s[2*i+1])
		if !ok1 || !ok2 {
			return resumeToken{}, cmdErr(codeFailedToParse, "resume token string was not a valid hex string")
		}
		raw[i] = hi<<4 | lo
	}
	if len(raw) == 0 {
		return resumeToken{}, cmdErr(40649, "invalid empty resume token")
	}
	// A real server decodes its KeyString here; a token of another layout
	// (a real server's, or garbage) is refused with InvalidResumeToken.
	if len(raw) != tokenLen || raw[0] != tokenTypeByte || raw[tokenLen-1] != tokenEndByte ||
		(raw[9] != tokenKindHighWaterMark && raw[9] != tokenKindEvent) || raw[10] > 1 {
		return resumeToken{}, cmdErr(codeInvalidResumeToken,
			"KeyString format error: resume token %s was not issued by this server", s)
	}
	t := resumeToken{
		ts:             bson.Timestamp{T: binary.BigEndian.Uint32(raw[1:5]), I: binary.BigEndian.Uint32(raw[5:9])},
		highWaterMark:  raw[9] == tokenKindHighWaterMark,
		fromInvalidate: raw[10] == 1,
	}
	copy(t.uuid[:], raw[11:27])
	if t.highWaterMark && (t.fromInvalidate || t.uuid != [16]byte{}) {
		return resumeToken{}, cmdErr(6189504, "Invalid high water mark token")
	}
	return t, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// docString renders a document roughly as the server's Document::toString
// does in error messages: {_data: "..."}.
func docString(doc bsoncore.Document) string {
	elems, err := doc.Elements()
	if err != nil {
		return "{}"
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range elems {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(e.Key())
		b.WriteString(": ")
		v := e.Value()
		switch v.Type {
		case bsoncore.TypeString:
			fmt.Fprintf(&b, "%q", v.StringValue())
		case bsoncore.TypeEmbeddedDocument:
			b.WriteString(docString(v.Document()))
		case bsoncore.TypeTimestamp:
			t, i := v.Timestamp()
			fmt.Fprintf(&b, "Timestamp(%d, %d)", t, i)
		default:
			b.WriteString(v.String())
		}
	}
	b.WriteByte('}')
	return b.String()
}

// tsPrev returns the cluster time just before ts, so that "every entry
// after tsPrev(ts)" means "every entry at or after ts".
func tsPrev(ts bson.Timestamp) bson.Timestamp {
	switch {
	case ts.I > 0:
		return bson.Timestamp{T: ts.T, I: ts.I - 1}
	case ts.T > 0:
		return bson.Timestamp{T: ts.T - 1, I: math.MaxUint32}
	}
	return ts
}
