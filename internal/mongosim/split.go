package mongosim

import (
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Size limits of documents and events (MongoDB's bsonobj.h): a user
// document is at most BSONObjMaxUserSize; a document the server builds
// itself, a change event among them, may reach BSONObjMaxInternalSize
// before serializing it fails with BSONObjectTooLarge (10334), the error
// whose message reads "Size must be between 0 and 16793600(16MB)".
const (
	maxUserObjectSize     = 16 << 20
	maxInternalObjectSize = maxUserObjectSize + 16<<10
)

// parseSplitStage validates $changeStreamSplitLargeEvent at position i of
// the n stages after $changeStream: an empty document, and the last stage.
func parseSplitStage(spec bsoncore.Value, i, n int) error {
	doc, ok := spec.DocumentOK()
	if !ok || len(doc) != 5 {
		return cmdErr(7182800, "$changeStreamSplitLargeEvent only accepts an empty object as its specification")
	}
	if i != n-1 {
		return cmdErr(7182802, "$changeStreamSplitLargeEvent must be the last stage in the pipeline")
	}
	return nil
}

// eventTooLarge is the error of an event that cannot be returned whole.
func eventTooLarge(doc bsoncore.Document) *CommandError {
	return cmdErr(codeBSONObjectTooLarge,
		"BSONObj size: %d (0x%X) is invalid. Size must be between 0 and %d(16MB) First element: %s",
		len(doc), len(doc), maxInternalObjectSize, firstElementString(doc))
}

func firstElementString(doc bsoncore.Document) string {
	e, err := doc.IndexErr(0)
	if err != nil {
		return "EOO"
	}
	if d, ok := e.Value().DocumentOK(); ok {
		return e.Key() + ": " + docString(d)
	}
	return e.Key() + ": " + e.Value().String()
}

// splitEvent cuts an event over 16 MiB into fragments as the server does
// (change_stream_split_event_helpers.cpp): the top-level fields in their
// order, as many per fragment as fit under 16 MiB, each fragment opened by
// its own _id (the event's token plus the fragment number) and
// splitEvent: {fragment, of}. The first skip fragments are dropped: the
// stream resumed after them. A field too large for a fragment of its own
// fails the stream.
func splitEvent(doc bsoncore.Document, tok resumeToken, skip int32) ([]producedEvent, *CommandError) {
	elems, err := doc.Elements()
	if err != nil {
		return nil, cmdErr(codeInternalError, "mongosim: malformed event: %v", err)
	}
	type fragment struct{ fields []bsoncore.Element }
	// Every fragment's header has about the same size: the token grows by
	// the fragment number (a few bytes), splitEvent holds two int32s. A
	// large fragment number bounds it from above.
	header := len(fragmentHeader(tok.withFragment(1<<20), 1<<20, 1<<20))
	var frags []fragment
	cur, size := fragment{}, header
	for _, e := range elems {
		if e.Key() == "_id" {
			continue
		}
		if len(cur.fields) > 0 && size+len(e) > maxUserObjectSize {
			frags = append(frags, cur)
			cur, size = fragment{}, header
		}
		if size+len(e) > maxUserObjectSize {
			return nil, cmdErr(codeBSONObjectTooLarge,
				"mongosim: field %q of a change event is %d bytes and cannot fit in a fragment of at most %d bytes; "+
					"the server fails such an event, it cannot be split", e.Key(), len(e), maxUserObjectSize)
		}
		cur.fields = append(cur.fields, e)
		size += len(e)
	}
	if len(cur.fields) > 0 {
		frags = append(frags, cur)
	}
	of := int32(len(frags))
	if skip > of {
		return nil, resumeTokenNotFound(tok.withFragment(skip))
	}
	out := make([]producedEvent, 0, int(of-skip))
	for i := skip; i < of; i++ {
		ftok := tok.withFragment(i + 1)
		d := fragmentHeader(ftok, i+1, of)
		d = d[:len(d)-1] // reopen the document to append the fields
		for _, e := range frags[i].fields {
			d = append(d, e...)
		}
		d = append(d, 0)
		d = bsoncore.UpdateLength(d, 0, int32(len(d)))
		out = append(out, producedEvent{doc: d, token: ftok})
	}
	return out, nil
}

// fragmentHeader returns {_id: tok, splitEvent: {fragment: n, of: of}}.
func fragmentHeader(tok resumeToken, n, of int32) bsoncore.Document {
	idx, d := bsoncore.AppendDocumentStart(nil)
	d = bsoncore.AppendDocumentElement(d, "_id", tok.doc())
	sidx, d := bsoncore.AppendDocumentElementStart(d, "splitEvent")
	d = bsoncore.AppendInt32Element(d, "fragment", n)
	d = bsoncore.AppendInt32Element(d, "of", of)
	d, _ = bsoncore.AppendDocumentEnd(d, sidx)
	d, _ = bsoncore.AppendDocumentEnd(d, idx)
	return d
}

// splitResumeWithoutStage refuses to resume from a fragment's token when
// the pipeline cannot split the event again.
func splitResumeWithoutStage() *CommandError {
	return &CommandError{
		Code: codeChangeStreamFatalError,
		Message: "Attempting to resume a change stream using a resume token from a split event, " +
			"but the $changeStreamSplitLargeEvent stage is not present in the current pipeline",
		Labels: []string{labelNonResumableChangeStreamError},
	}
}

// checkUserDocSize refuses a document a write would store when it is over
// the user document limit, as the server does: an insert with BadValue,
// an update or replacement with 17419.
func checkUserDocSize(d bson.D, insert bool) error {
	raw, err := bson.Marshal(d)
	if err != nil {
		return cmdErr(codeBadValue, "mongosim: encoding document: %v", err)
	}
	if len(raw) <= maxUserObjectSize {
		return nil
	}
	if insert {
		return cmdErr(codeBadValue, "object to insert too large. size in bytes: %d, max size: %d", len(raw), maxUserObjectSize)
	}
	return cmdErr(17419, "Resulting document after update is larger than %d", maxUserObjectSize)
}
