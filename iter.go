package changestream

import (
	"context"
	"iter"
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
// zero Event, and the iteration stops. An event that does not decode into T
// is yielded with its decode error and the iteration goes on if the loop
// does. The iteration ends quietly when the stream is invalidated. Breaking
// out of the loop leaves the stream open and usable; Events never closes it.
func Events[T any](ctx context.Context, cs *ChangeStream) iter.Seq2[Event[T], error] {
	return func(yield func(Event[T], error) bool) {
		for cs.Next(ctx) {
			var ev Event[T]
			err := cs.Decode(&ev)
			if !yield(ev, err) {
				return
			}
		}
		if err := cs.Err(); err != nil {
			yield(Event[T]{}, err)
		}
	}
}
