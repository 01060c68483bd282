package changestream

import (
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// WithSplitLargeEvents makes the stream handle change events larger than
// the server's 16 MiB document limit: it appends
// {$changeStreamSplitLargeEvent: {}} as the last stage (MongoDB 7.0, and
// 6.0.9 on), so the server sends such an event in fragments, and puts the
// fragments back together: Next, Decode and [Events] see one event per
// change, whose _id is the last fragment's token. The position never points
// inside a split: [ChangeStream.ResumeToken] and [ChangeStream.Position]
// stay at the previous whole event until the last fragment has arrived, and
// a resume in the middle of a split keeps the fragments received and
// carries on after the last of them.
//
// Without it, such an event ends the stream with an [*EventTooLargeError].
func WithSplitLargeEvents() Option {
	return optionFunc(func(c *config) { c.splitLargeEvents = true })
}

// ErrIncompleteSplitEvent is reported, as a terminal error, when a stream
// with [WithSplitLargeEvents] receives a fragment of an event whose earlier
// fragments it never saw: it was started from a token that points inside a
// split (one a raw stream returned with a fragment), or the fragments came
// out of order. The event cannot be put together; reopen the stream from
// the position before it.
var ErrIncompleteSplitEvent = errors.New("changestream: received part of a split event without its first fragments")

// ErrEventTooLarge matches, with [errors.Is], the error that ends a stream
// when an event is larger than the server can send (BSONObjectTooLarge,
// 10334). The error is an [*EventTooLargeError].
var ErrEventTooLarge = errors.New("changestream: change event too large")

// codeBSONObjectTooLarge is the server's BSONObjectTooLarge.
const codeBSONObjectTooLarge = 10334

// EventTooLargeError reports an event over the server's 16 MiB limit on a
// stream without [WithSplitLargeEvents]. The stream is over; reopen it at
// Position with WithSplitLargeEvents to receive the event in fragments put
// back together, or with a pipeline that makes events smaller.
type EventTooLargeError struct {
	// Position is the stream's position just before the event.
	Position Position
	// Err is the server's error.
	Err error
}

// Error says what happened and what to do.
func (e *EventTooLargeError) Error() string {
	return fmt.Sprintf("changestream: an event after token %s is larger than 16 MiB; reopen there with "+
		"changestream.WithSplitLargeEvents() to receive it in fragments put back together: %v", e.Position.Token, e.Err)
}

// Unwrap returns the server's error.
func (e *EventTooLargeError) Unwrap() error { return e.Err }

// Is reports whether target is ErrEventTooLarge.
func (e *EventTooLargeError) Is(target error) bool { return target == ErrEventTooLarge }

// splitState is an event being put back together from its fragments.
type splitState struct {
	of        int32
	next      int32    // the fragment expected next
	body      []byte   // the fragments' fields, as BSON elements
	lastToken bson.Raw // the last fragment's _id: where a resume carries on
}

// fragment handles a document that carries splitEvent. It returns the
// whole event and its token (the last fragment's) once its last fragment
// is in, nil before that. doc aliases the batch; what it keeps, it copies.
func (cs *ChangeStream) fragment(doc bson.Raw, id bson.Raw, n, of int32) (whole, token bson.Raw, err error) {
	s := cs.split
	if s == nil {
		if n != 1 {
			return nil, nil, fmt.Errorf("%w: fragment %d of %d came first", ErrIncompleteSplitEvent, n, of)
		}
		// The fragments are close to the server's 16 MiB limit each but
		// the last: room for of times the first avoids regrowing.
		s = &splitState{of: of, next: 1, body: make([]byte, 0, len(doc)*int(of))}
		cs.split = s
	}
	if n != s.next || of != s.of {
		cs.split = nil
		return nil, nil, fmt.Errorf("%w: fragment %d of %d came where fragment %d of %d was expected", ErrIncompleteSplitEvent, n, of, s.next, s.of)
	}
	elems, err := doc.Elements()
	if err != nil {
		cs.split = nil
		return nil, nil, fmt.Errorf("changestream: reading a fragment: %w", err)
	}
	for _, e := range elems {
		if k := e.Key(); k != "_id" && k != "splitEvent" {
			s.body = append(s.body, e...)
		}
	}
	s.lastToken = cloneRaw(id)
	s.next++
	if n < of {
		return nil, nil, nil
	}
	cs.split = nil
	out := make([]byte, 0, 4+len(s.body)+len(s.lastToken)+10)
	idx, out := bsoncore.AppendDocumentStart(out)
	out = bsoncore.AppendDocumentElement(out, "_id", s.lastToken)
	out = append(out, s.body...)
	out, err = bsoncore.AppendDocumentEnd(out, idx)
	if err != nil {
		return nil, nil, fmt.Errorf("changestream: putting a split event together: %w", err)
	}
	return bson.Raw(out), s.lastToken, nil
}

// splitOf reads an event's splitEvent field.
func splitOf(doc bson.Raw) (n, of int32, ok bool) {
	v, err := doc.LookupErr("splitEvent")
	if err != nil {
		return 0, 0, false
	}
	d, isDoc := v.DocumentOK()
	if !isDoc {
		return 0, 0, false
	}
	fv, err1 := d.LookupErr("fragment")
	ov, err2 := d.LookupErr("of")
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	f, ok1 := fv.Int32OK()
	o, ok2 := ov.Int32OK()
	return f, o, ok1 && ok2 && f >= 1 && f <= o
}
