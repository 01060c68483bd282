package hub

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Policy is what a hub does with an event for a subscription whose buffer
// is full.
type Policy int

const (
	// Block makes the hub wait until the subscriber takes an event: no
	// event is lost, and every subscriber waits for the slowest. The
	// default.
	Block Policy = iota
	// Drop ends the subscription with a *LaggingError, once the
	// subscriber has taken what it held: the others go on, and the
	// subscriber knows where it stopped (Position) to catch up on a
	// stream of its own.
	Drop
	// Coalesce replaces the newest buffered event with the new one: for a
	// subscriber that only needs to know that something changed (a cache
	// to invalidate), not every event.
	Coalesce
)

// DefaultBuffer is a subscription's buffer without WithBuffer.
const DefaultBuffer = 1024

// Option configures a subscription.
type Option func(*Subscription) error

// WithFilter gives the subscription only the events for which keep
// returns true. keep runs on the hub's goroutine, for every event: it must
// be quick, and must not keep the event it is given past its return.
func WithFilter(keep func(ev bson.Raw) bool) Option {
	return func(s *Subscription) error {
		if keep == nil {
			return errors.New("hub: WithFilter: nil function")
		}
		s.filter = keep
		return nil
	}
}

// WithBuffer sets how many events the subscription holds for its
// subscriber (default 1,024).
func WithBuffer(n int) Option {
	return func(s *Subscription) error {
		if n < 1 {
			return fmt.Errorf("hub: WithBuffer(%d): must be at least 1", n)
		}
		s.capacity = n
		return nil
	}
}

// WithPolicy sets what happens when the subscription's buffer is full
// (default Block).
func WithPolicy(p Policy) Option {
	return func(s *Subscription) error {
		if p < Block || p > Coalesce {
			return fmt.Errorf("hub: WithPolicy: unknown policy %d", p)
		}
		s.policy = p
		return nil
	}
}

// keeps reports whether the subscription's filters take ev.
func (s *Subscription) keeps(ev bson.Raw) bool {
	return (s.match == nil || s.match.match(ev)) && (s.filter == nil || s.filter(ev))
}

// LaggingError ends a Drop subscription whose buffer was full, once the
// subscriber has taken the events it held.
type LaggingError struct {
	// Buffered is how many events it held, unread, when it was dropped.
	Buffered int
	// Position is that of the last event the subscription returned, or,
	// if it returned none, where the hub stood when it subscribed: a
	// stream opened there (changestream.WithResumeAfter) repeats nothing
	// the subscriber took and misses nothing it did not.
	Position changestream.Position
}

// Error says how far behind the subscriber was.
func (e *LaggingError) Error() string {
	return fmt.Sprintf("hub: the subscriber fell %d events behind and was dropped (last event taken at %v)", e.Buffered, e.Position.ClusterTime)
}

// Subscription is one subscriber's view of a hub's stream. Its methods
// mirror the stream's; like a stream, it is iterated from one goroutine,
// and Close may be called from any.
type Subscription struct {
	// Current is the event the last successful Next or TryNext returned.
	Current bson.Raw

	hub      *Hub
	filter   func(bson.Raw) bool
	match    matcher
	policy   Policy
	capacity int

	mu   sync.Mutex
	buf  []*entry // a ring, grown up to capacity as events wait
	head int
	n    int
	err  error // set once the subscription is over
	over bool
	// dropped marks a Drop subscription that fell behind, holding
	// droppedWith events: its *LaggingError is set once they are taken.
	dropped     bool
	droppedWith int
	pos         changestream.Position
	// notify wakes a Next parked on it: an event arrived, the
	// subscription ended, or a watched context did. The hub sends only to
	// a parked Next (parked), as the send is most of its cost per
	// subscriber; the buffer of one keeps a send that comes before the
	// receive.
	notify chan struct{}
	parked bool
	// room wakes the hub waiting for this Block subscription to take an
	// event (full), the only time a take signals it.
	room chan struct{}
	full bool

	// watchedDone is the Done channel of the context whose end wakes a
	// waiting Next (through notify), and stopWatch unregisters that. A
	// Next waits on notify alone: selecting on ctx.Done() as well would
	// make every subscriber lock the same channel, the application's
	// shared context, on every wait.
	watchedDone <-chan struct{}
	stopWatch   func() bool
}

// signal wakes whoever waits on ch, without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// entry is an event with its position, computed once by the hub and
// shared by every subscription's buffer.
type entry struct {
	ev  bson.Raw
	pos changestream.Position
}

// positionOf returns the position of event ev: its _id token.
func positionOf(ev bson.Raw) changestream.Position {
	tok, ok := ev.Lookup("_id").DocumentOK()
	if !ok {
		return changestream.Position{}
	}
	t, _ := changestream.TokenTime(tok)
	return changestream.Position{Token: tok, ClusterTime: t}
}

// push hands e to the subscription; with Block it waits for room until
// ctx ends or the subscription does. It reports whether it woke the
// subscriber's Next.
func (s *Subscription) push(ctx context.Context, e *entry) (woke bool) {
	for {
		s.mu.Lock()
		if s.over {
			s.mu.Unlock()
			return false
		}
		if s.n == len(s.buf) && s.n < s.capacity {
			s.grow()
		}
		if s.n < len(s.buf) {
			s.buf[(s.head+s.n)%len(s.buf)] = e
			s.n++
			return s.unlockAndWake()
		}
		switch s.policy {
		case Drop:
			// The error is made once the subscriber has taken what is
			// buffered (next), so that its Position is where the
			// subscriber stopped.
			s.over, s.dropped, s.droppedWith = true, true, s.n
			s.unwatchLocked()
			s.mu.Unlock()
			s.hub.remove(s)
			signal(s.notify)
			return true
		case Coalesce:
			s.buf[(s.head+s.n-1)%len(s.buf)] = e
			return s.unlockAndWake()
		}
		s.full = true
		s.mu.Unlock()
		select {
		case <-s.room:
		case <-ctx.Done():
			return false
		}
	}
}

// unlockAndWake unlocks s.mu, held by the caller, and wakes the
// subscriber if it is parked, reporting whether it was.
func (s *Subscription) unlockAndWake() bool {
	parked := s.parked
	s.parked = false
	s.mu.Unlock()
	if parked {
		signal(s.notify)
	}
	return parked
}

// initialBuffer is the ring's first size: most subscribers keep up, and
// never need more.
const initialBuffer = 4

// grow doubles the ring, up to capacity, keeping its order.
func (s *Subscription) grow() {
	size := min(max(2*len(s.buf), initialBuffer), s.capacity)
	buf := make([]*entry, size)
	for i := range s.n {
		buf[i] = s.buf[(s.head+i)%len(s.buf)]
	}
	s.buf, s.head = buf, 0
}

// finish ends the subscription with err, after what it holds.
func (s *Subscription) finish(err error) {
	s.mu.Lock()
	if !s.over {
		s.over, s.err = true, err
	}
	s.unwatchLocked()
	s.mu.Unlock()
	signal(s.notify)
	signal(s.room)
}

// watchLocked makes the end of ctx wake a waiting Next, once per
// context: an application that passes the same context to every call
// registers it once. s.mu must be held; the callback does not take it.
func (s *Subscription) watchLocked(ctx context.Context) {
	done := ctx.Done()
	if done == nil || done == s.watchedDone {
		return
	}
	if s.stopWatch != nil {
		s.stopWatch()
	}
	s.watchedDone = done
	s.stopWatch = context.AfterFunc(ctx, func() { signal(s.notify) })
}

// unwatchLocked drops the context registration of an ended subscription,
// so that a long-lived context does not keep it. s.mu must be held.
func (s *Subscription) unwatchLocked() {
	if s.stopWatch != nil {
		s.stopWatch()
		s.stopWatch, s.watchedDone = nil, nil
	}
}

// Next waits for the next event and reports whether there is one in
// Current. It returns false when ctx ends (Err then wraps ctx's error and
// the subscription goes on) or the subscription is over: the hub's stream
// ended (Err is nil after an invalidate), the hub or the subscription was
// closed (ErrClosed), or a Drop subscription fell behind (*LaggingError).
// Events buffered before the end are returned first.
func (s *Subscription) Next(ctx context.Context) bool { return s.next(ctx, true) }

// TryNext is Next without waiting: it returns a buffered event, or false
// at once (with a nil Err while the subscription goes on).
func (s *Subscription) TryNext(ctx context.Context) bool { return s.next(ctx, false) }

func (s *Subscription) next(ctx context.Context, wait bool) bool {
	s.Current = nil
	for {
		s.mu.Lock()
		s.parked = false // awake, whoever woke it
		if s.n > 0 {
			e := s.buf[s.head]
			s.buf[s.head] = nil
			s.head = (s.head + 1) % len(s.buf)
			s.n--
			s.pos = e.pos
			if !s.over {
				s.err = nil // a subscription that goes on clears an earlier error
			}
			full := s.full
			s.full = false
			s.mu.Unlock()
			if full {
				signal(s.room)
			}
			s.Current = e.ev
			return true
		}
		if s.over || !wait {
			if s.dropped && s.err == nil {
				s.err = &LaggingError{Buffered: s.droppedWith, Position: s.pos}
			}
			s.mu.Unlock()
			return false
		}
		if err := ctx.Err(); err != nil {
			s.err = err
			s.mu.Unlock()
			return false
		}
		s.watchLocked(ctx)
		s.parked = true
		s.mu.Unlock()
		// Woken by an event, the end of the subscription or of ctx (or a
		// stale signal of an earlier context): the loop looks again.
		<-s.notify
	}
}

// Err returns what made the last Next or TryNext return false: ctx's
// error, or what ended the subscription (nil after an invalidate).
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Alive reports whether the subscription can still return events.
func (s *Subscription) Alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.over || s.n > 0
}

// Position returns the position of the last event Next or TryNext
// returned, or before the first, where the hub stood when the
// subscription joined: a stream opened there with
// changestream.WithResumeAfter carries on after it.
func (s *Subscription) Position() changestream.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pos
}

// Decode unmarshals Current into v, for example a changestream.Event[T],
// with the default BSON registry.
func (s *Subscription) Decode(v any) error {
	if s.Current == nil {
		return errors.New("hub: Decode: no current event")
	}
	return bson.Unmarshal(s.Current, v)
}

// Close ends the subscription and frees its buffer; a Next waiting in
// another goroutine returns false with ErrClosed. It is cheap, safe from
// any goroutine, and may be called more than once.
func (s *Subscription) Close() error {
	s.hub.remove(s)
	s.mu.Lock()
	if !s.over {
		s.over, s.err = true, ErrClosed
	}
	clear(s.buf)
	s.n = 0
	s.unwatchLocked()
	s.mu.Unlock()
	signal(s.notify)
	signal(s.room)
	return nil
}

// Events iterates over the subscription's events decoded into Event[T],
// as changestream.Events does over a stream: it stops when ctx ends or the
// subscription is over, yielding the error, if any, last.
func Events[T any](ctx context.Context, s *Subscription) iter.Seq2[changestream.Event[T], error] {
	return func(yield func(changestream.Event[T], error) bool) {
		for s.Next(ctx) {
			var ev changestream.Event[T]
			if err := s.Decode(&ev); err != nil {
				if !yield(ev, err) {
					return
				}
				continue
			}
			if !yield(ev, nil) {
				return
			}
		}
		if err := s.Err(); err != nil {
			yield(changestream.Event[T]{}, err)
		}
	}
}
