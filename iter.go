package changestream

import (
	"context"
	"fmt"
	"iter"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Events ranges over the stream's events, decoded into [Event] values:
//
//	for ev, err := range changestream.Events[Order](ctx, cs) {
//		if err != nil { ... }
//		...
//	}
//
// A stream error (anything that makes [ChangeStream.Next] return false with
// a non-nil [ChangeStream.Err], including ctx ending) is yielded once with a
// zero Event, and the iteration stops. Most such errors are survivable: the
// stream stays [ChangeStream.Alive] and a new iteration carries on where
// this one stopped, resuming if it must; when Alive is false the stream is
// over. Loop on Alive:
//
//	for cs.Alive() && ctx.Err() == nil {
//		for ev, err := range changestream.Events[Order](ctx, cs) {
//			if err != nil {
//				if !cs.Alive() {
//					return err
//				}
//				log.Print(err) // survivable
//				break
//			}
//			handle(ev)
//		}
//	}
//	return cs.Err()
//
// An event that does not decode into T
// is yielded with a [*DecodeError], which carries the raw event and its
// resume token, and the iteration goes on if the loop does: tell the two
// apart with errors.As. The iteration ends quietly when the stream is
// invalidated. Breaking out of the loop leaves the stream open and usable;
// Events never closes it.
func Events[T any](ctx context.Context, cs *ChangeStream) iter.Seq2[Event[T], error] {
	return func(yield func(Event[T], error) bool) {
		for cs.Next(ctx) {
			var ev Event[T]
			var err error
			if derr := cs.Decode(&ev); derr != nil {
				err = &DecodeError{Event: cloneRaw(cs.Current), ResumeToken: cs.ResumeToken(), Err: derr}
			}
			if !yield(ev, err) {
				return
			}
		}
		if err := cs.Err(); err != nil {
			yield(Event[T]{}, err)
		}
	}
}

// DecodeError is what [Events] yields for an event that does not decode
// into the event type: the stream itself is fine and the iteration goes on.
// The partly decoded event yielded with it should not be used.
type DecodeError struct {
	// Event is the raw event.
	Event bson.Raw
	// ResumeToken is the stream's position after the event, so a consumer
	// that skips it can still record its progress.
	ResumeToken bson.Raw
	// Err is the decoder's error (often a *bson.DecodeError).
	Err error
}

// Error describes the event and the decode error.
func (e *DecodeError) Error() string {
	id := "?"
	if v, err := e.Event.LookupErr("_id"); err == nil {
		id = v.String()
	}
	return fmt.Sprintf("changestream: decoding event %s: %v", id, e.Err)
}

// Unwrap returns the decoder's error.
func (e *DecodeError) Unwrap() error { return e.Err }
