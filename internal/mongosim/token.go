package mongosim

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/changestream-go/changestream/internal/keystring"
	"github.com/changestream-go/changestream/internal/mongosim/query"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Resume tokens are {_data: "<uppercase hex>", _typeBits?: BinData(0)}, in
// the server's own format: _data is the KeyString (package keystring) of
// the version-2 resume token data, in this order:
//
//	clusterTime     Timestamp
//	version         2
//	tokenType       128 for an event, 0 for a high-water mark
//	txnOpIndex      the operation's index inside its transaction, else 0
//	fromInvalidate  true only for an invalidate event
//	collectionUUID  binData subtype 4; absent for high-water marks and
//	                dropDatabase
//	eventIdentifier {operationType, documentKey} for CRUD events,
//	                {operationType, operationDescription} for DDL events;
//	                absent where the UUID is absent
//	fragmentNum     for a fragment of a split event: 0 for the first
//
// _typeBits carries the numeric types of the documentKey (an int64 or a
// double _id), and is sent only when one of its bits is set. Comparing the
// KeyStrings orders the tokens as the server orders them: by cluster
// time, then a high-water mark before every event at that time, then by
// txnOpIndex, the invalidate after the event that caused it, and the
// fragments of an event after the event itself.
const (
	tokenVersion            = 2
	tokenTypeEvent          = 128
	tokenTypeHighWaterMark  = 0
	maxResumeTokenHexLength = 1 << 16
)

// resumeToken is a token with its decoded head. key and typeBits are the
// token's bytes exactly as sent, so a token read from a client is written
// back unchanged.
type resumeToken struct {
	ts             bson.Timestamp
	highWaterMark  bool
	txnOpIndex     int32
	fromInvalidate bool
	hasUUID        bool
	uuid           [16]byte
	// fragment is fragmentNum+1 for a fragment of a split event, else 0.
	fragment int32

	key      string // the KeyString, end byte included
	typeBits string // serialized type bits, "" when all zero
	// unsplit is the key of the whole event for a fragment's token
	// (without fragmentNum); for other tokens it equals key.
	unsplit string
}

// tokenSpec is what a token is built from.
type tokenSpec struct {
	ts             bson.Timestamp
	highWaterMark  bool
	txnOpIndex     int32
	fromInvalidate bool
	uuid           [16]byte
	hasUUID        bool
	eventID        bsoncore.Document // nil for high-water marks
	// Or, without building that document: the operation type and the
	// one field that follows it (documentKey or operationDescription).
	opType   string
	idKey    string
	idValue  bsoncore.Value
	docKeyID any   // for a documentKey of {_id} alone: the _id
	fragment int32 // fragmentNum+1, or 0
}

// appendIDField appends the field _id: id, directly for the common types
// of an _id and through BSON for the others.
func appendIDField(b *keystring.Builder, id any) error {
	switch x := id.(type) {
	case int32:
		b.StartField("_id", bsoncore.TypeInt32)
		b.AppendInt(x)
		return nil
	case int64:
		b.StartField("_id", bsoncore.TypeInt64)
		return b.AppendInt64(x)
	case bson.ObjectID:
		b.StartField("_id", bsoncore.TypeObjectID)
		b.AppendObjectID(x)
		return nil
	case string:
		b.AppendStringField("_id", x)
		return nil
	}
	t, data, err := bson.MarshalValue(id)
	if err != nil {
		return err
	}
	return b.AppendField("_id", bsoncore.Value{Type: bsoncore.Type(t), Data: data})
}

// build encodes the spec. It fails only for an eventIdentifier holding a
// value the keystring package does not encode.
func (sp tokenSpec) build() (resumeToken, error) {
	var b keystring.Builder
	b.Grow(64 + len(sp.opType) + len(sp.eventID) + len(sp.idValue.Data) + 32)
	b.AppendTimestamp(sp.ts.T, sp.ts.I)
	b.AppendInt(tokenVersion)
	if sp.highWaterMark {
		b.AppendInt(tokenTypeHighWaterMark)
	} else {
		b.AppendInt(tokenTypeEvent)
	}
	b.AppendInt(sp.txnOpIndex)
	b.AppendBool(sp.fromInvalidate)
	if sp.hasUUID {
		b.AppendUUID(sp.uuid)
		var err error
		switch {
		case sp.eventID != nil:
			err = b.AppendDocument(sp.eventID)
		case sp.opType != "":
			b.StartObject()
			b.AppendStringField("operationType", sp.opType)
			switch {
			case sp.docKeyID != nil:
				// {documentKey: {_id: <id>}} without encoding it as BSON.
				b.StartField("documentKey", bsoncore.TypeEmbeddedDocument)
				b.StartObject()
				err = appendIDField(&b, sp.docKeyID)
				b.EndObject()
			case sp.idKey != "":
				err = b.AppendField(sp.idKey, sp.idValue)
			}
			b.EndObject()
		}
		if err != nil {
			return resumeToken{}, notImplemented("a resume token for this event: %v", err)
		}
	}
	var unsplit []byte
	if sp.fragment > 0 {
		unsplit = b.Snapshot()
		b.AppendInt(sp.fragment - 1)
	}
	key, tb, err := b.Key()
	if err != nil {
		return resumeToken{}, notImplemented("a resume token for this event: %v", err)
	}
	t := resumeToken{
		ts: sp.ts, highWaterMark: sp.highWaterMark, txnOpIndex: sp.txnOpIndex,
		fromInvalidate: sp.fromInvalidate, fragment: sp.fragment,
		key: string(key), typeBits: string(tb),
	}
	t.unsplit = t.key
	if unsplit != nil {
		t.unsplit = string(unsplit)
	}
	if sp.hasUUID {
		t.hasUUID, t.uuid = true, sp.uuid
	}
	return t, nil
}

// hwmToken returns the high-water mark at ts.
func hwmToken(ts bson.Timestamp) resumeToken {
	t, err := tokenSpec{ts: ts, highWaterMark: true}.build()
	if err != nil {
		panic("mongosim: a high-water mark cannot fail to encode: " + err.Error())
	}
	return t
}

// withFragment returns the token of fragment n (1-based) of the event t.
func (t resumeToken) withFragment(n int32) resumeToken {
	// Re-encoding from the parts would need the eventIdentifier as BSON;
	// the fragment number is simply appended before the end byte.
	var b keystring.Builder
	b.AppendInt(n - 1)
	suffix, _, _ := b.Key()
	out := t
	out.fragment = n
	out.unsplit = t.key
	out.key = t.key[:len(t.key)-1] + string(suffix)
	return out
}

// isFragment reports whether the token is a fragment's.
func (t resumeToken) isFragment() bool { return t.fragment > 0 }

const upperHex = "0123456789ABCDEF"

// appendData appends the uppercase hex of the KeyString, the _data string.
func (t resumeToken) appendData(dst []byte) []byte {
	for i := 0; i < len(t.key); i++ {
		c := t.key[i]
		dst = append(dst, upperHex[c>>4], upperHex[c&0x0f])
	}
	return dst
}

// data returns the _data string.
func (t resumeToken) data() string { return string(t.appendData(make([]byte, 0, 2*len(t.key)))) }

// appendDoc appends the token document {_data: "...", _typeBits?} to dst.
func (t resumeToken) appendDoc(dst []byte) []byte {
	idx, dst := bsoncore.AppendDocumentStart(dst)
	dst = bsoncore.AppendHeader(dst, bsoncore.TypeString, "_data")
	dst = binary.LittleEndian.AppendUint32(dst, uint32(2*len(t.key)+1))
	dst = t.appendData(dst)
	dst = append(dst, 0)
	if t.typeBits != "" {
		dst = bsoncore.AppendBinaryElement(dst, "_typeBits", 0, []byte(t.typeBits))
	}
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst
}

// doc returns the token document.
func (t resumeToken) doc() bsoncore.Document {
	return t.appendDoc(make([]byte, 0, 2*len(t.key)+32+len(t.typeBits)))
}

// compare orders tokens as the server does: by their KeyStrings.
func (t resumeToken) compare(u resumeToken) int { return strings.Compare(t.key, u.key) }

// decodeResumeToken reads the value of resumeAfter or startAfter (field
// names the option in errors). It never panics, whatever the input, and
// fails with the codes a real server uses for the same kind of damage.
func decodeResumeToken(field string, v bsoncore.Value) (resumeToken, error) {
	doc, ok := v.DocumentOK()
	if !ok {
		return resumeToken{}, cmdErr(codeTypeMismatch,
			"BSON field '$changeStream.%s' is the wrong type '%s', expected type 'object'", field, query.TypeAlias(v.Type))
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
	var typeBits []byte
	if tb, err := doc.LookupErr("_typeBits"); err == nil {
		_, typeBits, _ = tb.BinaryOK()
	}
	return parseTokenData(dv.StringValue(), typeBits)
}

// parseTokenData decodes a _data string and its _typeBits.
func parseTokenData(s string, typeBits []byte) (resumeToken, error) {
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
	t, err := readToken(raw)
	if err != nil {
		return resumeToken{}, cmdErr(codeInvalidResumeToken, "KeyString format error: %v", err)
	}
	t.typeBits = string(typeBits)
	if t.highWaterMark && (t.fromInvalidate || t.hasUUID || t.txnOpIndex != 0) {
		return resumeToken{}, cmdErr(6189504, "Invalid high water mark token")
	}
	return t, nil
}

// readToken reads the fields of a version-2 token out of its KeyString.
func readToken(raw []byte) (resumeToken, error) {
	r := keystring.NewReader(raw)
	var t resumeToken
	ts, i, err := r.Timestamp()
	if err != nil {
		return t, err
	}
	t.ts = bson.Timestamp{T: ts, I: i}
	version, err := r.Integer()
	if err != nil {
		return t, err
	}
	if version != tokenVersion {
		return t, fmt.Errorf("mongosim reads only version %d resume tokens, this one is version %d", tokenVersion, version)
	}
	typ, err := r.Integer()
	if err != nil {
		return t, err
	}
	switch typ {
	case tokenTypeEvent:
	case tokenTypeHighWaterMark:
		t.highWaterMark = true
	default:
		return t, fmt.Errorf("unknown token type %d", typ)
	}
	op, err := r.Integer()
	if err != nil {
		return t, err
	}
	if op < 0 || op > math.MaxInt32 {
		return t, fmt.Errorf("txnOpIndex %d out of range", op)
	}
	t.txnOpIndex = int32(op)
	if t.fromInvalidate, err = r.Bool(); err != nil {
		return t, err
	}
	if r.IsBinary() {
		sub, data, err := r.Binary()
		if err != nil {
			return t, err
		}
		if sub != 4 || len(data) != 16 {
			return t, fmt.Errorf("collection UUID is not a UUID")
		}
		t.hasUUID = true
		copy(t.uuid[:], data)
		if r.IsObject() {
			if _, err := r.Skip(); err != nil {
				return t, err
			}
		}
	}
	t.unsplit = string(raw)
	if r.IsNumber() {
		unsplit := r.Offset()
		n, err := r.Integer()
		if err != nil {
			return t, err
		}
		if n < 0 || n >= math.MaxInt32 {
			return t, fmt.Errorf("fragmentNum %d out of range", n)
		}
		t.fragment = int32(n) + 1
		t.unsplit = string(raw[:unsplit]) + string(raw[len(raw)-1])
	}
	if err := r.Done(); err != nil {
		return t, err
	}
	t.key = string(raw)
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
