//lint:file-ignore SA1019 these tests send the legacy OP_QUERY handshake a server must still accept.

package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// The builders below write wire messages byte by byte rather than through
// the driver, so that a test can also produce what no driver would send
// (wrong lengths, duplicate sections, stray flag bits). Their names start
// with wt to stay clear of the other files of the package.

// wtDoc marshals d, failing the test on error.
func wtDoc(tb testing.TB, d bson.D) bsoncore.Document {
	tb.Helper()
	b, err := bson.Marshal(d)
	require.NoError(tb, err)
	return b
}

// wtFrame prefixes payload with a header whose length is right.
func wtFrame(reqID int32, op wiremessage.OpCode, payload []byte) []byte {
	msg := wiremessage.AppendHeader(nil, int32(HeaderLen+len(payload)), reqID, 0, op)
	return append(msg, payload...)
}

// wtBodySection is an OP_MSG kind-0 section.
func wtBodySection(doc []byte) []byte { return append([]byte{0}, doc...) }

// wtSeqSection is an OP_MSG kind-1 section with a correct size.
func wtSeqSection(id string, docs ...bsoncore.Document) []byte {
	var payload []byte
	payload = append(payload, id...)
	payload = append(payload, 0)
	for _, d := range docs {
		payload = append(payload, d...)
	}
	out := []byte{1}
	out = binary.LittleEndian.AppendUint32(out, uint32(4+len(payload)))
	return append(out, payload...)
}

// wtOpMsg frames sections as OP_MSG. With checksum it sets the
// checksumPresent bit and appends the CRC-32C of the whole message.
func wtOpMsg(reqID int32, flags uint32, checksum bool, sections ...[]byte) []byte {
	if checksum {
		flags |= msgChecksumPresent
	}
	payload := binary.LittleEndian.AppendUint32(nil, flags)
	for _, s := range sections {
		payload = append(payload, s...)
	}
	if !checksum {
		return wtFrame(reqID, wiremessage.OpMsg, payload)
	}
	msg := wiremessage.AppendHeader(nil, int32(HeaderLen+len(payload)+4), reqID, 0, wiremessage.OpMsg)
	msg = append(msg, payload...)
	return binary.LittleEndian.AppendUint32(msg, crc32.Checksum(msg, castagnoli))
}

// wtOpQuery frames a legacy OP_QUERY of query on ns.
func wtOpQuery(reqID int32, ns string, query []byte) []byte {
	payload := wiremessage.AppendQueryFlags(nil, wiremessage.SecondaryOK)
	payload = wiremessage.AppendQueryFullCollectionName(payload, ns)
	payload = wiremessage.AppendQueryNumberToSkip(payload, 0)
	payload = wiremessage.AppendQueryNumberToReturn(payload, -1)
	payload = append(payload, query...)
	return wtFrame(reqID, wiremessage.OpQuery, payload)
}

// wtSeeds returns well-formed messages of every shape the driver sends,
// plus a few near misses, as the fuzzer's starting corpus.
func wtSeeds(tb testing.TB) [][]byte {
	hello := wtDoc(tb, bson.D{{Key: "hello", Value: 1}, {Key: "$db", Value: "admin"}})
	insert := wtDoc(tb, bson.D{{Key: "insert", Value: "c"}, {Key: "ordered", Value: true}, {Key: "$db", Value: "test"}})
	d1 := wtDoc(tb, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: "x"}})
	d2 := wtDoc(tb, bson.D{{Key: "_id", Value: 2}, {Key: "b", Value: bson.A{1, 2.5, nil}}})
	isMaster := wtDoc(tb, bson.D{
		{Key: "isMaster", Value: 1}, {Key: "helloOk", Value: true},
		{Key: "client", Value: bson.D{{Key: "application", Value: bson.D{{Key: "name", Value: "seed"}}}}},
	})
	wrapped := wtDoc(tb, bson.D{{Key: "$query", Value: bson.D{{Key: "ismaster", Value: 1}}}, {Key: "$readPreference", Value: bson.D{{Key: "mode", Value: "primary"}}}})
	getMore := wtDoc(tb, bson.D{{Key: "getMore", Value: int64(12345)}, {Key: "collection", Value: "c"}, {Key: "maxTimeMS", Value: 1000}, {Key: "$db", Value: "test"}})
	good := wtOpMsg(1, 0, false, wtBodySection(hello))
	return [][]byte{
		good,
		wtOpMsg(2, 0, true, wtBodySection(hello)),
		wtOpMsg(3, 0, false, wtBodySection(insert), wtSeqSection("documents", d1, d2)),
		wtOpMsg(4, 0, true, wtSeqSection("documents", d1), wtBodySection(insert)),
		wtOpMsg(5, MsgMoreToCome, false, wtBodySection(insert), wtSeqSection("documents", d1)),
		wtOpMsg(6, msgExhaustAllowed, false, wtBodySection(getMore)),
		wtOpMsg(7, 0, false, wtBodySection(insert), wtSeqSection("documents", d1), wtSeqSection("documents", d2)),
		wtOpQuery(8, "admin.$cmd", isMaster),
		wtOpQuery(9, "admin.$cmd", wrapped),
		wtOpQuery(10, "test.coll", isMaster),
		good[:len(good)-1],
		wtFrame(11, wiremessage.OpCode(2012), []byte{0, 0, 0, 0}),
	}
}

// wtValidateDeep validates doc and every document and array nested in it.
// bsoncore's Document.Validate checks only the outer level (a nested
// document's length, not its contents), while a real server checks the
// whole of every document it receives, and handlers walk nested values
// trusting them.
func wtValidateDeep(doc bsoncore.Document) error {
	if err := doc.Validate(); err != nil {
		return err
	}
	elems, err := doc.Elements()
	if err != nil {
		return err
	}
	for _, e := range elems {
		v := e.Value()
		var nested bsoncore.Document
		switch v.Type {
		case bsoncore.TypeEmbeddedDocument, bsoncore.TypeArray:
			nested = v.Data
		case bsoncore.TypeCodeWithScope:
			_, scope, ok := v.CodeWithScopeOK()
			if !ok {
				return errors.New("invalid code with scope")
			}
			nested = scope
		default:
			continue
		}
		if err := wtValidateDeep(nested); err != nil {
			return fmt.Errorf("%s: %w", e.Key(), err)
		}
	}
	return nil
}

// FuzzParseRequest checks that no input makes ParseRequest panic, that it
// never hands the dispatcher a body that is not valid BSON, and that what
// it accepts is internally consistent.
func FuzzParseRequest(f *testing.F) {
	for _, seed := range wtSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		orig := bytes.Clone(msg)
		req, err := ParseRequest(msg)
		assert.Equal(t, orig, msg, "ParseRequest must not modify its input")
		if err != nil {
			assert.Nil(t, req)
			assert.ErrorIs(t, err, ErrBadMessage)
			return
		}
		require.NotNil(t, req)
		require.NoError(t, wtValidateDeep(req.Body), "accepted an invalid body")
		assert.NotEmpty(t, req.DB)
		for id, docs := range req.Sequences {
			for _, d := range docs {
				assert.NoError(t, wtValidateDeep(d), "accepted an invalid document in sequence %q", id)
			}
		}
		_, reqID, _, op, _, _ := wiremessage.ReadHeader(msg)
		assert.Equal(t, reqID, req.RequestID)
		assert.Equal(t, op, req.OpCode)
		switch op {
		case wiremessage.OpMsg:
			db, ok := req.Body.Lookup("$db").StringValueOK()
			assert.True(t, ok)
			assert.Equal(t, db, req.DB)
		case wiremessage.OpQuery:
			assert.Empty(t, req.Sequences)
			assert.False(t, req.MoreToCome)
		default:
			t.Fatalf("accepted opcode %v", op)
		}
		// Whatever parses must also be readable off a socket unchanged.
		read, err := ReadMessage(bytes.NewReader(msg), nil)
		require.NoError(t, err)
		assert.Equal(t, msg, read)
	})
}

// TestParseRequest covers each way ParseRequest accepts or rejects a
// message, so that a regression names the rule it broke.
func TestParseRequest(t *testing.T) {
	t.Parallel()
	hello := wtDoc(t, bson.D{{Key: "hello", Value: 1}, {Key: "$db", Value: "admin"}})
	insert := wtDoc(t, bson.D{{Key: "insert", Value: "c"}, {Key: "$db", Value: "test"}})
	d1 := wtDoc(t, bson.D{{Key: "_id", Value: 1}})
	d2 := wtDoc(t, bson.D{{Key: "_id", Value: 2}})
	noDB := wtDoc(t, bson.D{{Key: "ping", Value: 1}})
	emptyDB := wtDoc(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: ""}})
	intDB := wtDoc(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: 1}})
	isMaster := wtDoc(t, bson.D{{Key: "isMaster", Value: 1}})

	// invalidBody has a correct outer length but an element of type 0x02
	// (string) whose declared length runs past the document.
	invalidBody := []byte{0, 0, 0, 0, 0x02, 'a', 0, 0xff, 0, 0, 0, 'x', 0, 0}
	binary.LittleEndian.PutUint32(invalidBody, uint32(len(invalidBody)))
	// badElemDoc is a sequence document of the right size with an
	// unknown element type.
	badElemDoc := []byte{0, 0, 0, 0, 0x7e, 'a', 0, 0}
	binary.LittleEndian.PutUint32(badElemDoc, uint32(len(badElemDoc)))

	// nestedInvalid is valid at the top level (which is all that
	// bsoncore's Validate checks) but carries invalidBody as a subdocument.
	nested := func(first string, more ...string) []byte {
		idx, d := bsoncore.AppendDocumentStart(nil)
		d = bsoncore.AppendInt32Element(d, first, 1)
		d = bsoncore.AppendDocumentElement(d, "x", invalidBody)
		for i := 0; i+1 < len(more); i += 2 {
			d = bsoncore.AppendStringElement(d, more[i], more[i+1])
		}
		d, _ = bsoncore.AppendDocumentEnd(d, idx)
		return d
	}
	queryWrapping := func(inner []byte) []byte {
		idx, d := bsoncore.AppendDocumentStart(nil)
		d = bsoncore.AppendDocumentElement(d, "$query", inner)
		d, _ = bsoncore.AppendDocumentEnd(d, idx)
		return d
	}

	badSum := wtOpMsg(1, 0, true, wtBodySection(hello))
	badSum[len(badSum)-1] ^= 0xff
	noRoomForSum := wtOpMsg(1, msgChecksumPresent, false)
	shortSeq := wtSeqSection("documents", d1)
	binary.LittleEndian.PutUint32(shortSeq[1:], uint32(len(shortSeq)-1+3)) // claims 3 bytes more than there are
	seqNoNul := []byte{1, 8, 0, 0, 0, 'd', 'o', 'c', 's'}
	seqHalfDoc := wtSeqSection("documents", d1)
	seqHalfDoc = append(seqHalfDoc[:len(seqHalfDoc)-2], seqHalfDoc[len(seqHalfDoc)-1]) // one byte short inside
	binary.LittleEndian.PutUint32(seqHalfDoc[1:], uint32(len(seqHalfDoc)-1))
	wrongLen := wtOpMsg(1, 0, false, wtBodySection(hello))
	binary.LittleEndian.PutUint32(wrongLen, uint32(len(wrongLen)+1))

	for _, tc := range []struct {
		name    string
		msg     []byte
		wantErr string // "" for success
		check   func(t *testing.T, req *Request)
	}{
		{name: "hello", msg: wtOpMsg(7, 0, false, wtBodySection(hello)), check: func(t *testing.T, req *Request) {
			assert.Equal(t, int32(7), req.RequestID)
			assert.Equal(t, "admin", req.DB)
			assert.Equal(t, "hello", wtFirstKey(req.Body))
			assert.False(t, req.MoreToCome)
		}},
		{name: "checksum", msg: wtOpMsg(1, 0, true, wtBodySection(hello)), check: func(t *testing.T, req *Request) {
			assert.Equal(t, bsoncore.Document(hello), req.Body)
		}},
		{name: "sequence after body", msg: wtOpMsg(1, 0, false, wtBodySection(insert), wtSeqSection("documents", d1, d2)), check: func(t *testing.T, req *Request) {
			assert.Equal(t, "test", req.DB)
			assert.Equal(t, []bsoncore.Document{d1, d2}, req.Sequences["documents"])
		}},
		{name: "sequence before body with checksum", msg: wtOpMsg(1, 0, true, wtSeqSection("documents", d1), wtBodySection(insert)), check: func(t *testing.T, req *Request) {
			assert.Equal(t, []bsoncore.Document{d1}, req.Sequences["documents"])
		}},
		{name: "empty sequence", msg: wtOpMsg(1, 0, false, wtBodySection(insert), wtSeqSection("documents")), check: func(t *testing.T, req *Request) {
			docs, ok := req.Sequences["documents"]
			assert.True(t, ok)
			assert.Empty(t, docs)
		}},
		{name: "two different sequences", msg: wtOpMsg(1, 0, false, wtBodySection(insert), wtSeqSection("documents", d1), wtSeqSection("updates", d2)), check: func(t *testing.T, req *Request) {
			assert.Len(t, req.Sequences, 2)
		}},
		{name: "moreToCome", msg: wtOpMsg(1, MsgMoreToCome, false, wtBodySection(hello)), check: func(t *testing.T, req *Request) {
			assert.True(t, req.MoreToCome)
		}},
		{name: "optional flag bits are ignored", msg: wtOpMsg(1, msgExhaustAllowed|1<<20, false, wtBodySection(hello))},
		{name: "OP_QUERY isMaster", msg: wtOpQuery(9, "admin.$cmd", isMaster), check: func(t *testing.T, req *Request) {
			assert.Equal(t, wiremessage.OpQuery, req.OpCode)
			assert.Equal(t, "admin", req.DB)
			assert.Equal(t, "isMaster", wtFirstKey(req.Body))
		}},
		{name: "OP_QUERY $query wrapper", msg: wtOpQuery(1, "admin.$cmd", wtDoc(t, bson.D{{Key: "$query", Value: bson.D{{Key: "ismaster", Value: 1}}}})), check: func(t *testing.T, req *Request) {
			assert.Equal(t, "ismaster", wtFirstKey(req.Body))
		}},

		{name: "empty", msg: nil, wantErr: "bad header"},
		{name: "truncated header", msg: wtOpMsg(1, 0, false, wtBodySection(hello))[:10], wantErr: "bad header"},
		{name: "truncated body", msg: wtOpMsg(1, 0, false, wtBodySection(hello))[:30], wantErr: "bad header"},
		{name: "length disagrees", msg: wrongLen, wantErr: "bad header"},
		{name: "unknown opcode", msg: wtFrame(1, wiremessage.OpCode(9999), hello), wantErr: "unsupported opcode 9999"},
		{name: "OP_COMPRESSED", msg: wtFrame(1, wiremessage.OpCompressed, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}), wantErr: "unsupported opcode 2012"},
		{name: "OP_REPLY from a client", msg: wtFrame(1, wiremessage.OpReply, make([]byte, 20)), wantErr: "unsupported opcode 1"},
		{name: "OP_MSG without flags", msg: wtFrame(1, wiremessage.OpMsg, []byte{0, 0}), wantErr: "without flags"},
		{name: "unknown required flag bit", msg: wtOpMsg(1, 1<<3, false, wtBodySection(hello)), wantErr: "unknown required flag bits"},
		{name: "bad checksum", msg: badSum, wantErr: "checksum mismatch"},
		{name: "checksum flag without checksum", msg: noRoomForSum, wantErr: "checksum missing"},
		{name: "no sections", msg: wtOpMsg(1, 0, false), wantErr: "without a body section"},
		{name: "only a sequence", msg: wtOpMsg(1, 0, false, wtSeqSection("documents", d1)), wantErr: "without a body section"},
		{name: "two bodies", msg: wtOpMsg(1, 0, false, wtBodySection(hello), wtBodySection(hello)), wantErr: "two body sections"},
		{name: "unknown section kind", msg: wtOpMsg(1, 0, false, wtBodySection(hello), []byte{2, 5, 0, 0, 0, 0}), wantErr: "unknown OP_MSG section kind 2"},
		{name: "truncated body section", msg: wtOpMsg(1, 0, false, wtBodySection(hello)[:10]), wantErr: "truncated OP_MSG body"},
		{name: "duplicate sequence ids", msg: wtOpMsg(1, 0, false, wtBodySection(insert), wtSeqSection("documents", d1), wtSeqSection("documents", d2)), wantErr: `duplicate document sequence "documents"`},
		{name: "sequence size past the end", msg: wtOpMsg(1, 0, false, wtBodySection(insert), shortSeq), wantErr: "bad OP_MSG document sequence"},
		{name: "sequence id without NUL", msg: wtOpMsg(1, 0, false, wtBodySection(insert), seqNoNul), wantErr: "bad OP_MSG document sequence"},
		{name: "sequence with a partial document", msg: wtOpMsg(1, 0, false, wtBodySection(insert), seqHalfDoc), wantErr: "bad OP_MSG document sequence"},
		{name: "invalid BSON body", msg: wtOpMsg(1, 0, false, wtBodySection(invalidBody)), wantErr: "invalid BSON body"},
		{name: "invalid BSON in a sequence", msg: wtOpMsg(1, 0, false, wtBodySection(insert), wtSeqSection("documents", badElemDoc)), wantErr: `invalid BSON in sequence "documents"`},
		{name: "invalid BSON nested in the body", msg: wtOpMsg(1, 0, false, wtBodySection(nested("ping", "$db", "admin"))), wantErr: "invalid BSON"},
		{name: "invalid BSON nested in a sequence", msg: wtOpMsg(1, 0, false, wtBodySection(insert), wtSeqSection("documents", nested("_id"))), wantErr: "invalid BSON"},
		{name: "OP_QUERY invalid BSON nested", msg: wtOpQuery(1, "admin.$cmd", nested("isMaster")), wantErr: "invalid BSON"},
		{name: "OP_QUERY $query wrapping invalid BSON", msg: wtOpQuery(1, "admin.$cmd", queryWrapping(invalidBody)), wantErr: "invalid BSON"},
		{name: "missing $db", msg: wtOpMsg(1, 0, false, wtBodySection(noDB)), wantErr: "has no $db"},
		{name: "empty $db", msg: wtOpMsg(1, 0, false, wtBodySection(emptyDB)), wantErr: "$db is not a non-empty string"},
		{name: "$db not a string", msg: wtOpMsg(1, 0, false, wtBodySection(intDB)), wantErr: "$db is not a non-empty string"},
		{name: "OP_QUERY on a collection", msg: wtOpQuery(1, "test.coll", isMaster), wantErr: "only <db>.$cmd commands"},
		{name: "OP_QUERY without a database", msg: wtOpQuery(1, ".$cmd", isMaster), wantErr: "only <db>.$cmd commands"},
		{name: "OP_QUERY without a query", msg: wtOpQuery(1, "admin.$cmd", nil), wantErr: "without a query document"},
		{name: "OP_QUERY namespace without NUL", msg: wtFrame(1, wiremessage.OpQuery, []byte{0, 0, 0, 0, 'a', 'd'}), wantErr: "without a namespace"},
		{name: "OP_QUERY invalid BSON", msg: wtOpQuery(1, "admin.$cmd", invalidBody), wantErr: "invalid BSON query"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, err := ParseRequest(tc.msg)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Nil(t, req)
				assert.ErrorIs(t, err, ErrBadMessage)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			if tc.check != nil {
				tc.check(t, req)
			}
		})
	}
}

// zeroReader yields n zero bytes, so a maximum-size message can be read
// without building it in the test.
type zeroReader struct{ n int }

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.n == 0 {
		return 0, io.EOF
	}
	k := min(len(p), z.n)
	clear(p[:k])
	z.n -= k
	return k, nil
}

func TestReadMessage(t *testing.T) {
	t.Parallel()
	hello := wtOpMsg(1, 0, false, wtBodySection(wtDoc(t, bson.D{{Key: "hello", Value: 1}, {Key: "$db", Value: "admin"}})))
	lengthOnly := func(n int32) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(n)) }

	t.Run("whole message, then the next", func(t *testing.T) {
		t.Parallel()
		r := bytes.NewReader(append(bytes.Clone(hello), hello...))
		buf := make([]byte, 0, 4096)
		got, err := ReadMessage(r, buf)
		require.NoError(t, err)
		assert.Equal(t, hello, got)
		assert.Equal(t, &buf[:1][0], &got[0], "a buffer large enough is reused")
		got, err = ReadMessage(r, got[:0])
		require.NoError(t, err)
		assert.Equal(t, hello, got)
		_, err = ReadMessage(r, got[:0])
		assert.ErrorIs(t, err, io.EOF)
	})
	for _, tc := range []struct {
		name    string
		in      []byte
		wantErr error
		msg     string
	}{
		{"empty", nil, io.EOF, ""},
		{"truncated length", []byte{0x20, 0}, io.ErrUnexpectedEOF, ""},
		{"truncated header", hello[:10], io.ErrUnexpectedEOF, ""},
		{"truncated body", hello[:len(hello)-1], io.ErrUnexpectedEOF, ""},
		{"length below a header", lengthOnly(15), ErrBadMessage, "message length 15 out of range"},
		{"zero length", lengthOnly(0), ErrBadMessage, "message length 0 out of range"},
		{"negative length", lengthOnly(-1), ErrBadMessage, "message length -1 out of range"},
		{"length over MaxMessageSizeBytes", lengthOnly(MaxMessageSizeBytes + 1), ErrBadMessage, "message length 48000001 out of range"},
		{"huge length", lengthOnly(1 << 30), ErrBadMessage, "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Anything after the length must stay unread: the server
			// refuses before allocating or reading the body.
			r := bytes.NewReader(append(bytes.Clone(tc.in), 0xAA, 0xBB))
			if len(tc.in) < 4 || tc.wantErr != ErrBadMessage {
				r = bytes.NewReader(tc.in)
			}
			got, err := ReadMessage(r, nil)
			assert.Nil(t, got)
			require.ErrorIs(t, err, tc.wantErr)
			if tc.msg != "" {
				assert.Contains(t, err.Error(), tc.msg)
			}
			if errors.Is(tc.wantErr, ErrBadMessage) {
				assert.Equal(t, 2, r.Len(), "read past the length prefix")
			}
		})
	}
	t.Run("exactly MaxMessageSizeBytes is accepted", func(t *testing.T) {
		t.Parallel()
		r := io.MultiReader(bytes.NewReader(lengthOnly(MaxMessageSizeBytes)), &zeroReader{n: MaxMessageSizeBytes - 4})
		got, err := ReadMessage(r, nil)
		require.NoError(t, err)
		assert.Len(t, got, MaxMessageSizeBytes)
		_, err = ParseRequest(got)
		assert.ErrorIs(t, err, ErrBadMessage, "a message of zeros is not a Request")
		assert.True(t, strings.Contains(err.Error(), "bad header") || strings.Contains(err.Error(), "opcode"), err.Error())
	})
}

// wtFirstKey returns the name of doc's first element, "" if none.
func wtFirstKey(doc bsoncore.Document) string {
	e, err := doc.IndexErr(0)
	if err != nil {
		return ""
	}
	return e.Key()
}
