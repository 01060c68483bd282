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
// resumes there, repeating at most the events marked since the last save
// and skipping none. Those are bounded ([MaxInFlight]): Mark blocks at the
// bound, committing what is acknowledged to make room.
//
// A quiet or filtered stream's progress ([Checkpointer.Progress], fed by
// changestream.WithProgress) is committed when nothing is in flight, so
// that a stream that sees no events still saves a position that stays in
// the oplog.
//
// Commits happen on demand ([Checkpointer.Commit]), every interval
// ([CommitEvery]), as soon as half the bound is acknowledged and not yet
// saved (in the background, with CommitEvery), at the bound (in Mark),
// and on [Checkpointer.Close].
type Checkpointer struct {
	store      Store
	key        string
	spec       string
	every      time.Duration
	beforeSave func(context.Context) error
	max        int // the bound on events marked and not yet saved

	mu sync.Mutex
	// ring holds the events past the committable position, oldest first
	// from head; base is the sequence number of ring[head], so base also
	// counts the events the committable position covers.
	ring        []entry
	head, n     int
	base        uint64
	lastMarked  changestream.Position
	committable changestream.Position // every event up to it is acknowledged
	covered     uint64                // how many events committable covers (base when it was set)
	pending     changestream.Position // progress waiting for the in-flight events to drain
	saved       changestream.Position
	savedSeq    uint64        // how many events the last save covered
	changed     chan struct{} // closed and replaced when an ack or a save may let a blocked Mark on
	waiting     bool          // a Mark waits on changed
	fatal       error         // a commit error that stops the consumer

	commitMu sync.Mutex // one commit at a time

	kick      chan struct{} // asks the background loop for a commit now
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

// MaxInFlight bounds the events marked since the last save (default
// 1,000), acknowledged or not: they are the most that a crash, even a
// SIGKILL, can make the stream deliver again, whatever the commit
// interval. At the bound, Mark commits what is acknowledged and, if the
// oldest of those events still waits for its acknowledgement, waits for
// it. With CommitEvery, a commit starts in the background as soon as half
// the bound is acknowledged and unsaved, so that a consumer keeping up
// rarely waits for a save: a store's save then costs one per n/2 events
// at most.
func MaxInFlight(n int) Option {
	return func(c *Checkpointer) error {
		if n < 1 {
			return fmt.Errorf("checkpoint: MaxInFlight(%d): must be at least 1", n)
		}
		c.max = n
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
	c := &Checkpointer{store: store, key: key, spec: fp, changed: make(chan struct{})}
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
		c.stop, c.done, c.kick = make(chan struct{}), make(chan struct{}), make(chan struct{}, 1)
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
		c.committable, c.covered = cp.Position, c.base
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
		c.committable, c.covered = p, c.base
	}
	c.savedLocked(c.covered)
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
// _id), and returns its Ack. While MaxInFlight events are marked and not
// yet saved, it commits what is acknowledged and waits, until there is
// room or ctx ends. It fails if a commit failed for good (ErrLeaseLost, a
// SpecMismatchError), or if p comes before the last position marked.
func (c *Checkpointer) Mark(ctx context.Context, p changestream.Position) (Ack, error) {
	if p.Token == nil {
		return Ack{}, errors.New("checkpoint: Mark: a position without a token")
	}
	for {
		c.mu.Lock()
		if c.fatal != nil {
			c.mu.Unlock()
			return Ack{}, c.fatal
		}
		if Compare(p, c.lastMarked) < 0 {
			c.mu.Unlock()
			return Ack{}, fmt.Errorf("checkpoint: Mark: position %v comes before the last one marked, %v: mark events in stream order", p.ClusterTime, c.lastMarked.ClusterTime)
		}
		if c.unsavedLocked() < c.max {
			c.lastMarked = p
			c.pending = changestream.Position{} // the event lies past any progress before it
			seq := c.base + uint64(c.n)
			c.ring[(c.head+c.n)%len(c.ring)] = entry{pos: p}
			c.n++
			c.mu.Unlock()
			return Ack{c: c, seq: seq}, nil
		}
		// At the bound: save what is acknowledged to make room, once half
		// the bound is (or everything marked is), so that a full window
		// costs a save per half window rather than one per event; until
		// then, wait for acknowledgements (or the background save).
		acked := c.covered - c.savedSeq
		commit := acked >= c.half() || (c.n == 0 && acked > 0)
		changed := c.changed
		c.waiting = true
		c.mu.Unlock()
		if commit {
			err := c.Commit(ctx)
			if err == nil {
				continue
			}
			if ferr := c.fatalErr(); ferr != nil {
				return Ack{}, ferr
			}
			if ctx.Err() != nil {
				return Ack{}, ctx.Err()
			}
			// A save that may succeed later: try again after a pause,
			// or sooner if something changes.
			t := time.NewTimer(markRetry)
			select {
			case <-changed:
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return Ack{}, ctx.Err()
			}
			t.Stop()
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Ack{}, ctx.Err()
		}
	}
}

// half is how many acknowledged, unsaved events start a save before the
// next tick: half the bound.
func (c *Checkpointer) half() uint64 { return uint64(max(c.max/2, 1)) }

// markRetry spaces the commits of a Mark blocked at the bound after a
// save that failed and may succeed later.
const markRetry = 100 * time.Millisecond

// unsavedLocked is how many marked events the last save does not cover.
func (c *Checkpointer) unsavedLocked() int {
	return int(c.base + uint64(c.n) - c.savedSeq)
}

// changedLocked wakes every Mark waiting for room; with none waiting,
// it costs nothing.
func (c *Checkpointer) changedLocked() {
	if !c.waiting {
		return
	}
	c.waiting = false
	close(c.changed)
	c.changed = make(chan struct{})
}

// savedLocked records that a save covered the first covered events.
func (c *Checkpointer) savedLocked(covered uint64) {
	if covered > c.savedSeq {
		c.savedSeq = covered
		c.changedLocked()
	}
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
	advanced := false
	for c.n > 0 && c.ring[c.head].done {
		c.committable = c.ring[c.head].pos
		c.ring[c.head] = entry{}
		c.head = (c.head + 1) % len(c.ring)
		c.n--
		c.base++
		advanced = true
	}
	if !advanced {
		return
	}
	c.covered = c.base
	if c.n == 0 && Compare(c.pending, c.committable) > 0 {
		c.committable, c.pending = c.pending, changestream.Position{}
	}
	c.changedLocked()
	// Half the bound acknowledged and unsaved: save it now, while the
	// other half keeps the consumer going, rather than at the next tick.
	if c.kick != nil && c.covered-c.savedSeq >= c.half() {
		select {
		case c.kick <- struct{}{}:
		default:
		}
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
		c.committable, c.covered = p, c.base
		return
	}
	c.pending = p
}

// InFlight returns how many marked events the last save does not cover:
// those a crash would deliver again, acknowledged or not. MaxInFlight
// bounds it.
func (c *Checkpointer) InFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unsavedLocked()
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
	p, covered, saved := c.committable, c.covered, c.saved
	if p.Token != nil && saved.Token != nil && Compare(p, saved) <= 0 {
		// Events at the saved position (a token that orders as equal to
		// it) are covered by that save already.
		c.savedLocked(covered)
	}
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
	c.savedLocked(covered)
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
		c.changedLocked() // a Mark waiting for room returns the error
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
		case <-c.kick:
		}
		ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
		_ = c.Commit(ctx) // a failure for good is kept for Mark; others retry
		cancel()
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
