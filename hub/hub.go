// Package hub serves any number of in-process subscribers from one change
// stream.
//
// Every change stream holds a pooled connection while it waits in a
// getMore, and costs the server one oplog scan: an application that opens
// one per websocket client runs out of connections in the thousands. A Hub
// owns one [changestream.ChangeStream] and copies each event to the
// subscriptions whose filter takes it. A [Subscription] iterates like a
// stream (Next, TryNext, Current, Decode, Err, Close, and [Events]), so
// code written for a stream works on one.
//
// Each subscription has a bounded buffer and an explicit policy for when
// it is full ([Block], the default: the hub waits, and with it every
// subscriber; [Drop]: the subscription ends with a *LaggingError; or
// [Coalesce]: only the newest event is kept, for subscribers that need a
// signal). No event is lost silently. A Hub runs one goroutine, and none
// per subscriber.
//
// A subscription receives the events it takes in the stream's order.
// Nothing in a Hub is keyed by an event's documentKey, so a document
// whose key gains fields as it is consumed (its collection sharded, its
// shard key refined) keeps the order of its events.
package hub

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// ErrClosed ends a subscription whose hub was closed.
var ErrClosed = errors.New("hub: closed")

// Hub copies the events of one change stream to its subscriptions.
type Hub struct {
	cs     *changestream.ChangeStream
	ctx    context.Context // ends when Close starts
	cancel context.CancelFunc
	done   chan struct{} // closed when the reader goroutine returns

	mu sync.Mutex // serializes changes to list, at, ended and endErr
	// list holds the open subscriptions, replaced (never modified) on
	// every change, so that the reader goroutine walks it without a lock.
	list atomic.Pointer[[]*Subscription]
	// at is the position of the last event handed to list (the stream's
	// start before the first): a subscription that joins sees the events
	// after it, so at is where it starts.
	at     changestream.Position
	ended  bool  // the stream ended or the hub closed: no new subscription
	endErr error // what ends every subscription
}

// New starts a hub on cs, which it owns from then on: Close closes it.
// The hub reads cs in a goroutine of its own until the stream ends or the
// hub is closed.
func New(cs *changestream.ChangeStream) (*Hub, error) {
	if cs == nil {
		return nil, errors.New("hub: New: nil ChangeStream")
	}
	if !cs.Alive() {
		return nil, fmt.Errorf("hub: New: the ChangeStream has ended (%v)", cs.Err())
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{cs: cs, ctx: ctx, cancel: cancel, done: make(chan struct{}), at: cs.Position()}
	h.list.Store(&[]*Subscription{})
	go h.read()
	return h, nil
}

// retryPause spaces the calls after an error the stream survives, which
// it reports once per call.
const retryPause = 100 * time.Millisecond

// yieldEvery is how many subscribers the hub's goroutine wakes before it
// lets the woken ones run. Each wake queues a goroutine on the hub's own
// processor (P), whose run queue holds 256; past that the runtime moves
// them, half a queue at a time, to the global queue, which every
// processor then locks to take them. Yielding at half the queue lets the
// hub's processor run what it woke while the others steal from it. At
// 10,000 subscribers on 2 cores this took the insert-to-last-subscriber
// latency from 6.4-9.1 ms to 4.8-6.8 ms at p50 (BenchmarkFanout, runs
// with and without it alternating); below 128 wakes an event, the hub
// never yields.
const yieldEvery = 128

// read is the hub's goroutine: it copies each event to the subscriptions.
func (h *Hub) read() {
	defer close(h.done)
	for {
		if !h.cs.Next(h.ctx) {
			if h.ctx.Err() != nil {
				return // Close ends the subscriptions
			}
			if h.cs.Alive() {
				// Survivable (a failover, a dropped connection): the next
				// call resumes. The stream's hooks and logger report it.
				select {
				case <-h.ctx.Done():
					return
				case <-time.After(retryPause):
				}
				continue
			}
			// The stream is over: invalidated (nil) or failed.
			h.end(h.cs.Err())
			return
		}
		ev := append(bson.Raw(nil), h.cs.Current...)
		e := &entry{ev: ev, pos: positionOf(ev)}
		// The list and the position move together: a subscription is
		// either in the list that gets this event, or starts at it.
		h.mu.Lock()
		subs := *h.list.Load()
		h.at = e.pos
		h.mu.Unlock()
		h.deliver(subs, e)
	}
}

// deliver hands e to each of subs whose filters take it.
func (h *Hub) deliver(subs []*Subscription, e *entry) {
	ev := e.ev
	woken := 0
	for _, s := range subs {
		if s.keeps(ev) && s.push(h.ctx, e) {
			if woken++; woken%yieldEvery == 0 {
				runtime.Gosched()
			}
		}
	}
}

// end ends every subscription with err (nil: after an invalidate, the
// subscriptions end as the stream did, with no error).
func (h *Hub) end(err error) {
	h.mu.Lock()
	h.ended, h.endErr = true, err
	subs := *h.list.Swap(&[]*Subscription{})
	h.mu.Unlock()
	for _, s := range subs {
		s.finish(err)
	}
}

// Subscribe adds a subscription. It sees the events the hub reads after
// it joined, and its Position starts where the hub stood then; a
// subscriber that needs a past point opens a stream of its own from
// there. Subscribing and closing a subscription copy the hub's
// list of subscriptions (a pointer each): the hub's goroutine then walks
// it without a lock.
func (h *Hub) Subscribe(opts ...Option) (*Subscription, error) {
	s := &Subscription{hub: h, capacity: DefaultBuffer, notify: make(chan struct{}, 1), room: make(chan struct{}, 1)}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("hub: Subscribe: nil option")
		}
		if err := o(s); err != nil {
			return nil, err
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended {
		if h.endErr != nil {
			return nil, fmt.Errorf("hub: the stream has ended: %w", h.endErr)
		}
		return nil, errors.New("hub: the stream has ended")
	}
	s.pos = h.at
	list := slices.Concat(*h.list.Load(), []*Subscription{s})
	h.list.Store(&list)
	return s, nil
}

// Subscribers returns how many subscriptions are open.
func (h *Hub) Subscribers() int { return len(*h.list.Load()) }

// Position returns the hub stream's position (see
// changestream.ChangeStream.Position).
func (h *Hub) Position() changestream.Position { return h.cs.Position() }

// Close stops the hub: its goroutine returns, its stream is closed (ctx
// bounds that), and every subscription ends with ErrClosed. It may be
// called from any goroutine, more than once.
func (h *Hub) Close(ctx context.Context) error {
	h.cancel()
	<-h.done
	// After the stream's own end there is no subscription left to end:
	// this only makes a later Subscribe report the hub closed.
	h.end(ErrClosed)
	return h.cs.Close(ctx)
}

// remove takes s off the list the hub delivers to.
func (h *Hub) remove(s *Subscription) {
	h.mu.Lock()
	// A new list, without s: the reader may be walking the old one.
	old := *h.list.Load()
	if i := slices.Index(old, s); i >= 0 {
		list := slices.Concat(old[:i], old[i+1:])
		h.list.Store(&list)
	}
	h.mu.Unlock()
}
