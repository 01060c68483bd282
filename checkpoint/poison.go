package checkpoint

import (
	"context"
	"errors"
	"fmt"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// A poison event is one the handler cannot process: Run's default is to
// stop on it, so that a human looks (the event is delivered again by the
// next Run). Config.HandlerRetries and Config.DeadLetter make the policy
// explicit: retry with a capped backoff, then stop, or hand the event to
// a dead-letter function and carry on. Either way the decision is made
// where the event runs, so a document's later events wait for it; an
// error wrapping ErrLeaseLost (a handler that found its writes fenced off)
// always stops Run; and an event is never skipped silently: it is logged, counted in Stats and
// passed to DeadLetter, and acknowledged only once DeadLetter returns nil.

// DeadLetter is an event Run gave up on, as [Config.DeadLetter] receives
// it: the handler failed on it HandlerRetries+1 times, or Run could not
// decode it into the handler's type.
type DeadLetter struct {
	// Key is the checkpoint's key.
	Key string
	// Event is the event as the server sent it (for a snapshot's document,
	// the event RunRaw would have handed over); DeadLetter may keep it.
	Event bson.Raw
	// Position is the event's position in the stream; for a snapshot's
	// document, the position the snapshot reads at.
	Position changestream.Position
	// Err is the handler's last error, or the decoding error.
	Err error
	// Attempts is how many times the handler was called: 0 for an event
	// that could not be decoded.
	Attempts int
}

// errUndecodable marks a job whose event could not be decoded: retrying
// cannot help.
type errUndecodable struct{ err error }

func (e errUndecodable) Error() string { return e.err.Error() }
func (e errUndecodable) Unwrap() error { return e.err }

// guard wraps j's run in the handler policy: retries, then the dead
// letter or the error that ends Run. Without a policy j is unchanged.
func (r *runner) guard(j job) job {
	s := r.s
	if s.HandlerRetries == 0 && s.DeadLetter == nil {
		return j
	}
	call := j.run
	j.run = func(ctx context.Context) error {
		b := r.newBackoff()
		attempts := 0
		var err error
		for {
			err = call(ctx)
			if err == nil {
				return nil
			}
			var undecodable errUndecodable
			if errors.As(err, &undecodable) {
				break
			}
			if errors.Is(err, ErrLeaseLost) {
				return err // the handler found itself fenced: never skip past that
			}
			attempts++
			if attempts > s.HandlerRetries || ctx.Err() != nil {
				break
			}
			s.stats.retries.Add(1)
			s.log.Warn("checkpoint: the handler failed; retrying", "key", s.Key, "position", j.pos.ClusterTime,
				"attempt", attempts, "of", s.HandlerRetries+1, "error", err)
			if serr := sleep(ctx, b.next()); serr != nil {
				return err
			}
		}
		if s.DeadLetter == nil || ctx.Err() != nil {
			return err
		}
		dl := DeadLetter{Key: s.Key, Event: j.event, Position: j.pos, Err: err, Attempts: attempts}
		if derr := s.DeadLetter(ctx, dl); derr != nil {
			return fmt.Errorf("%w (and the dead-letter function failed: %v)", err, derr)
		}
		s.stats.deadLettered.Add(1)
		s.log.Warn("checkpoint: event dead-lettered", "key", s.Key, "position", j.pos.ClusterTime,
			"attempts", attempts, "error", err)
		return nil
	}
	return j
}

// undecodableJob is the job of an event Run could not decode: with a
// dead-letter function it goes there, without one it ends Run with err.
// It has no document key, so it runs after every event before it.
func undecodableJob(err error) job {
	return job{run: func(context.Context) error { return errUndecodable{err} }}
}
