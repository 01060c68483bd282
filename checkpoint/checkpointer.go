package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/changestream-go/changestream"
)

// Checkpointer commits a stream's position as events are acknowledged.
//
// The consumer marks each event in stream order ([Checkpointer.Mark]) and
// acknowledges it when its work is done ([Ack.Done]), in any order and
// from any goroutine. The Checkpointer commits the highest position below
// which every marked event is acknowledged: after a crash the stream
// resumes there, repeating at most the events that were in flight and
// skipping none. Marking blocks while the in-flight bound is reached
// ([MaxInFlight]).
//
// A quiet or filtered stream's progress ([Checkpointer.Progress], fed by
// changestream.WithProgress) is committed when nothing is in flight, so
// that a stream that sees no events still saves a position that stays in
// the oplog.
//
// Commits happen on demand ([Checkpointer.Commit]), every interval
// ([CommitEvery]), and on [Checkpointer.Close].
type Checkpointer struct {
	store      Store
	key        string
	spec       string
	every      time.Duration
	beforeSave func(context.Context) error

	slots chan struct{} // one token per event in flight

	mu          sync.Mutex
	ring        []entry // in-flight events, oldest first from head
	head, n     int
	base        uint64 // the sequence number of ring[head]
	lastMarked  changestream.Position
	committable changestream.Position // every event up to it is acknowledged
	pending     changestream.Position // progress waiting for the in-flight events to drain
	saved       changestream.Position
	fatal       error // a commit error that stops the consumer

	commitMu sync.Mutex // one commit at a time

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type entry struct {
	pos  changestream.Position
	done bool
}

// Option configures a Checkpointer.
type Option func(*Checkpointer) error

// MaxInFlight bounds the events in flight (default 1,000): those marked
// after the committable position, acknowledged or not, which are the most
// a crash can make the stream deliver again. Mark blocks while the oldest
// of n such events waits for its acknowledgement.
func MaxInFlight(n int) Option {
	return func(c *Checkpointer) error {
		if n < 1 {
			return fmt.Errorf("checkpoint: MaxInFlight(%d): must be at least 1", n)
		}
		c.slots = make(chan struct{}, n)
		c.ring = make([]entry, n)
		return nil
	}
}

// CommitEvery commits in the background every d (default: only on demand
// and on Close). A background commit that fails for good (ErrLeaseLost, a
// SpecMismatchError) is returned by the next Mark; others are retried at
// the next tick.
func CommitEvery(d time.Duration) Option {
	return func(c *Checkpointer) error {
		if d <= 0 {
			return fmt.Errorf("checkpoint: CommitEvery(%v): must be positive", d)
		}
		c.every = d
		return nil
	}
}

// BeforeCommit calls fn before each save, after the position to save is
// chosen: every event it covers was acknowledged before fn is called. A
// consumer whose acknowledged work is buffered (output written but not
// flushed) flushes it in fn, so that what is committed is what is
// durable. An error from fn skips the save and is returned by Commit.
// fn may run on the background commit goroutine, concurrently with the
// consumer.
func BeforeCommit(fn func(context.Context) error) Option {
	return func(c *Checkpointer) error {
		if fn == nil {
			return errors.New("checkpoint: BeforeCommit: nil function")
		}
		c.beforeSave = fn
		return nil
	}
}

// DefaultMaxInFlight is the in-flight bound without MaxInFlight.
const DefaultMaxInFlight = 1000

// NewCheckpointer returns a Checkpointer that saves to store under key the
// positions of the stream that spec describes.
func NewCheckpointer(store Store, key string, spec StreamSpec, opts ...Option) (*Checkpointer, error) {
	if store == nil {
		return nil, errors.New("checkpoint: NewCheckpointer: nil store")
	}
	if err := checkKey(key); err != nil {
		return nil, err
	}
	fp, err := spec.Fingerprint()
	if err != nil {
		return nil, err
	}
	c := &Checkpointer{store: store, key: key, spec: fp}
	if err := MaxInFlight(DefaultMaxInFlight)(c); err != nil {
		return nil, err
	}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("checkpoint: NewCheckpointer: nil option")
		}
		if err := o(c); err != nil {
			return nil, err
		}
	}
	if c.every > 0 {
		c.stop, c.done = make(chan struct{}), make(chan struct{})
		go c.commitLoop()
	}
	return c, nil
}

// Spec returns the fingerprint the Checkpointer saves with its positions.
func (c *Checkpointer) Spec() string { return c.spec }

// Load returns the saved position to resume from, and false if there is
// none. A checkpoint of another stream is refused with a
// *SpecMismatchError. Commits never go back before what Load returned.
func (c *Checkpointer) Load(ctx context.Context) (changestream.Position, bool, error) {
	cp, ok, err := c.LoadCheckpoint(ctx)
	return cp.Position, ok, err
}

// LoadCheckpoint is Load returning the whole checkpoint, with the state of
// an unfinished snapshot.
func (c *Checkpointer) LoadCheckpoint(ctx context.Context) (Checkpoint, bool, error) {
	cp, ok, err := c.store.Load(ctx, c.key)
	if err != nil || !ok {
		return Checkpoint{}, false, err
	}
	if cp.Spec != c.spec {
		return Checkpoint{}, false, &SpecMismatchError{Key: c.key, Saved: cp.Spec, Want: c.spec}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if Compare(cp.Position, c.saved) > 0 {
		c.saved = cp.Position
	}
	if Compare(cp.Position, c.committable) > 0 {
		c.committable = cp.Position
	}
	return cp, true, nil
}

// saveSnapshot saves a snapshot's progress (nil once it is done) with the
// position the stream takes over at, which becomes the committable and
// saved position.
func (c *Checkpointer) saveSnapshot(ctx context.Context, p changestream.Position, st *SnapshotState) error {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	if err := c.save(ctx, Checkpoint{Position: p, Spec: c.spec, Snapshot: st}); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.saved = p
	if Compare(p, c.committable) > 0 || c.committable.Token == nil {
		c.committable = p
	}
	return nil
}

// Ack acknowledges one marked event. The zero Ack does nothing.
type Ack struct {
	c   *Checkpointer
	seq uint64
}

// Done acknowledges the event: its work is finished and it need not be
// delivered again. It may be called from any goroutine, in any order;
// calls after the first do nothing.
func (a Ack) Done() {
	if a.c != nil {
		a.c.ack(a.seq)
	}
}

// Mark records the position of the next event, in stream order (the
// stream's Position right after Next returned the event, or the event's
// _id), and returns its Ack. It blocks while MaxInFlight events are
// unacknowledged, until one is or ctx ends. It fails if a background
// commit failed for good (ErrLeaseLost, a SpecMismatchError), or if p
// comes before the last position marked.
func (c *Checkpointer) Mark(ctx context.Context, p changestream.Position) (Ack, error) {
	if p.Token == nil {
		return Ack{}, errors.New("checkpoint: Mark: a position without a token")
	}
	if err := c.fatalErr(); err != nil {
		return Ack{}, err
	}
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return Ack{}, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if Compare(p, c.lastMarked) < 0 {
		<-c.slots
		return Ack{}, fmt.Errorf("checkpoint: Mark: position %v comes before the last one marked, %v: mark events in stream order", p.ClusterTime, c.lastMarked.ClusterTime)
	}
	c.lastMarked = p
	c.pending = changestream.Position{} // the event lies past any progress before it
	seq := c.base + uint64(c.n)
	c.ring[(c.head+c.n)%len(c.ring)] = entry{pos: p}
	c.n++
	return Ack{c: c, seq: seq}, nil
}

func (c *Checkpointer) ack(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq < c.base || seq >= c.base+uint64(c.n) {
		return // already acknowledged and committed past
	}
	e := &c.ring[(c.head+int(seq-c.base))%len(c.ring)]
	if e.done {
		return
	}
	e.done = true
	// An event's slot is freed once it leaves the window, not when it is
	// acknowledged: the window (everything a crash would deliver again)
	// is what the bound bounds, and its ring must never overflow.
	for c.n > 0 && c.ring[c.head].done {
		c.committable = c.ring[c.head].pos
		c.ring[c.head] = entry{}
		c.head = (c.head + 1) % len(c.ring)
		c.n--
		c.base++
		<-c.slots
	}
	if c.n == 0 && Compare(c.pending, c.committable) > 0 {
		c.committable, c.pending = c.pending, changestream.Position{}
	}
}

// Progress records a position the stream reached without an event (pass
// it changestream.Progress.Position from WithProgress). It becomes the
// committable position once every marked event is acknowledged, unless an
// event is marked first.
func (c *Checkpointer) Progress(p changestream.Position) {
	if p.Token == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if Compare(p, c.lastMarked) <= 0 || Compare(p, c.committable) <= 0 {
		return
	}
	if c.n == 0 {
		c.committable = p
		return
	}
	c.pending = p
}

// InFlight returns how many marked events lie past the committable
// position: those not yet acknowledged, and those acknowledged after an
// older one that is not.
func (c *Checkpointer) InFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Committable returns the position the next Commit would save.
func (c *Checkpointer) Committable() changestream.Position {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.committable
}

// Commit saves the highest position below which every marked event is
// acknowledged, if it is past the last one saved.
func (c *Checkpointer) Commit(ctx context.Context) error {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	c.mu.Lock()
	p, saved := c.committable, c.saved
	c.mu.Unlock()
	if p.Token == nil || (saved.Token != nil && Compare(p, saved) <= 0) {
		return nil
	}
	if err := c.save(ctx, Checkpoint{Position: p, Spec: c.spec}); err != nil {
		return err
	}
	c.mu.Lock()
	if Compare(p, c.saved) > 0 || c.saved.Token == nil {
		c.saved = p
	}
	c.mu.Unlock()
	return nil
}

// save runs BeforeCommit and stores cp, keeping an error that stops the
// consumer (a lost lease, another stream's checkpoint) for Mark. The
// caller holds commitMu.
func (c *Checkpointer) save(ctx context.Context, cp Checkpoint) error {
	if c.beforeSave != nil {
		if err := c.beforeSave(ctx); err != nil {
			return err
		}
	}
	err := c.store.Save(ctx, c.key, cp)
	if errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrSpecMismatch) {
		c.mu.Lock()
		c.fatal = err
		c.mu.Unlock()
	}
	return err
}

// Saved returns the last position this Checkpointer saved or loaded.
func (c *Checkpointer) Saved() changestream.Position {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.saved
}

func (c *Checkpointer) fatalErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fatal
}

// commitTimeout bounds a background commit.
const commitTimeout = 30 * time.Second

func (c *Checkpointer) commitLoop() {
	defer close(c.done)
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
			_ = c.Commit(ctx) // a failure for good is kept for Mark; others retry
			cancel()
		}
	}
}

// Close stops the background commits and commits what is acknowledged.
// It does not wait for events in flight: what is not acknowledged is
// delivered again after a restart. Close may be called more than once.
func (c *Checkpointer) Close(ctx context.Context) error {
	c.closeOnce.Do(func() {
		if c.stop != nil {
			close(c.stop)
			<-c.done
		}
	})
	return c.Commit(ctx)
}
