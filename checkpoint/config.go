package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Config configures [Run].
type Config struct {
	// Key names the checkpoint (and the lease) in the store. Required.
	Key string

	// What to watch: set exactly one.
	Collection *mongo.Collection
	Database   *mongo.Database
	Client     *mongo.Client

	// The stream's shape; these make up the checkpoint's fingerprint
	// ([StreamSpec]), and a checkpoint saved with another shape is refused.
	Pipeline                 any
	FullDocument             changestream.FullDocument
	FullDocumentBeforeChange changestream.FullDocumentBeforeChange
	ShowExpandedEvents       bool
	SplitLargeEvents         bool

	// Options are more stream options, for what does not change the events
	// (WithBatchSize, WithMaxAwaitTime, WithHooks, WithLogger, ...). Run
	// chooses where the stream starts and takes its progress: a start
	// option or WithProgress given here is overridden.
	Options []changestream.Option

	// Snapshot says when Run first reads the target's documents and hands
	// each to the handler as an OperationSnapshot event, before streaming
	// the changes made since (default SnapshotNever). The stream's position
	// is taken before the documents are read, so no change is missed: a
	// document changed while the snapshot runs may come twice (from the
	// snapshot and from the stream), never zero times, and its last
	// version comes last. The handler must be idempotent, as with any
	// at-least-once source. A snapshot reads every document of the
	// target: Pipeline filters only the stream. It is resumed after a
	// crash from the last batch saved.
	Snapshot SnapshotMode
	// SnapshotBatch is how many documents a snapshot reads per query
	// (default 1,000): its progress is saved after each batch.
	SnapshotBatch int
	// OnSnapshot, if set, is told how a snapshot progresses: when it
	// starts a collection, after each batch, and when it is done.
	OnSnapshot func(SnapshotReport)

	// StartAfter or StartAtOperationTime say where a consumer without a
	// checkpoint starts (at most one; default: now). With a checkpoint,
	// the checkpoint decides.
	StartAfter           bson.Raw
	StartAtOperationTime *bson.Timestamp

	// BeforeCommit, if set, is called before each checkpoint save (see
	// the Checkpointer option of the same name): a handler that buffers
	// its output flushes it there, so that a checkpoint never covers
	// output that a crash could still lose.
	BeforeCommit func(context.Context) error

	// Store keeps the checkpoint. Required without a Lease; with one, it
	// defaults to, and must be, the lease's MongoStore (saves are fenced
	// by the lease).
	Store Store
	// Lease, if set, makes Run consume only while it holds the key's
	// lease, and wait as a standby otherwise.
	Lease *LeaseConfig

	// MaxInFlight bounds the events handed to the handler since the last
	// save (default 1,000), handled or not: after a crash, even a SIGKILL,
	// at most that many events are delivered again, whatever the
	// CommitInterval. Run saves as soon as half of them are handled, and
	// waits at the bound (see the Checkpointer option of the same name).
	MaxInFlight int
	// CommitInterval is how often the acknowledged position, or the
	// progress of a quiet stream, is saved (default 1s), when MaxInFlight
	// does not make it sooner.
	CommitInterval time.Duration
	// Workers is how many handler calls run at once (default 1, in stream
	// order). With more, events run in parallel across documents and in
	// stream order for each document, known by its namespace and the _id
	// of its documentKey (so a collection sharded while consumed, whose
	// documentKeys gain the shard key's fields, keeps each document's
	// order): an event waits only for the earlier events of its own
	// document, so a slow call holds up no other document (until
	// MaxInFlight events are waiting). An event without a document key
	// (DDL, invalidate) waits for all before it and runs alone.
	Workers int

	// OnOpen, if set, is called each time Run has opened its stream, with
	// the position the stream starts from: every change made after OnOpen
	// is called is delivered. It is called first once the first stream is
	// open (after the snapshot, with one), and again whenever Run opens a
	// new one (after an invalidation, a lost position, a lost lease). A
	// program or a test that writes right after starting Run waits for
	// it. It runs on Run's goroutine and must return quickly.
	OnOpen func(changestream.Position)

	// OnUnresumable says what to do when the checkpoint's position cannot
	// be resumed from: lost history (changestream.ErrHistoryLost) or a
	// token the server cannot find (changestream.ErrUnresumablePosition).
	OnUnresumable UnresumablePolicy
	// Resync is called, with the error, in a ResyncFromNow restart: the
	// events between the checkpoint and now are lost, and Resync must
	// rebuild what they fed (re-snapshot the collection, say). The new
	// stream is opened first, so changes made while Resync runs are
	// delivered after it (apply them idempotently); its position is saved
	// only once Resync returns, so a crash during it resyncs again. An
	// error from it ends Run.
	Resync func(ctx context.Context, cause error) error
	// OnInvalidate says what to do after an invalidate event (the watched
	// collection or database was dropped or renamed).
	OnInvalidate InvalidatePolicy

	// HandlerRetries is how many more times Run calls the handler on an
	// event it failed on, waiting from MinBackoff, doubling up to
	// MaxBackoff, between calls (default 0). The event's document's later
	// events wait meanwhile. When the retries are spent, Run stops with
	// the handler's error (the event is delivered again by the next Run),
	// unless DeadLetter is set.
	HandlerRetries int
	// DeadLetter, if set, receives an event the handler still fails on
	// after HandlerRetries, or that Run cannot decode into the handler's
	// type, with its position and the error; once it returns nil the
	// event is acknowledged and Run carries on. An error from it ends Run,
	// the event not acknowledged. Each dead-lettered event is logged and
	// counted (Stats). Setting it keeps a copy of every event until it is
	// handled. The default, nil, stops Run on such an event.
	DeadLetter func(ctx context.Context, dl DeadLetter) error
	// Stats, if set, counts the retries and the dead-lettered events.
	Stats *Stats

	// MinBackoff and MaxBackoff bound the wait after a transient error
	// (defaults 100ms and 30s); the wait doubles up to MaxBackoff and
	// starts again from MinBackoff after an event.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives what Run does: a lease taken or lost, a resync, a
	// restart after invalidation, transient errors. Nil logs nothing.
	Logger *slog.Logger
}

// LeaseConfig configures the lease Run holds while it consumes.
type LeaseConfig struct {
	// Store holds the lease, and the checkpoint. Required.
	Store *MongoStore
	// Owner names this process (default [DefaultOwner]()).
	Owner string
	// TTL is how long the lease lasts without renewal (default 10s): how
	// long a standby waits after the holder dies. It is renewed every
	// TTL/3.
	TTL time.Duration
	// RetryEvery is how often a standby tries to take the lease (default
	// TTL/4).
	RetryEvery time.Duration
	// StopWhenLost makes Run return ErrLeaseLost when it loses the lease,
	// instead of standing by to take it again.
	StopWhenLost bool
}

// UnresumablePolicy is what Run does when its position cannot be resumed.
type UnresumablePolicy int

const (
	// FailUnresumable ends Run with the error (the default): a human
	// decides.
	FailUnresumable UnresumablePolicy = iota
	// ResyncFromNow calls Config.Resync, then carries on from the present.
	ResyncFromNow
)

// InvalidatePolicy is what Run does after an invalidate event.
type InvalidatePolicy int

const (
	// StopOnInvalidate ends Run with ErrInvalidated once the invalidate
	// event is handled and committed (the default).
	StopOnInvalidate InvalidatePolicy = iota
	// RestartAfterInvalidate opens a new stream after the invalidate event
	// (startAfter), which sees the collection created again.
	RestartAfterInvalidate
)

// ErrInvalidated ends Run after an invalidate event, with StopOnInvalidate.
var ErrInvalidated = errors.New("checkpoint: the stream was invalidated (its collection or database was dropped or renamed)")

// Defaults of Config.
const (
	DefaultCommitInterval = time.Second
	DefaultLeaseTTL       = 10 * time.Second
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
)

// settings is a checked Config with its defaults applied.
type settings struct {
	Config
	spec  StreamSpec
	fp    string
	log   *slog.Logger
	stats *Stats // Config.Stats, or Run's own
}

func (c Config) check() (*settings, error) {
	s := &settings{Config: c}
	if err := checkKey(c.Key); err != nil {
		return nil, err
	}
	if targets := btoi(c.Collection != nil) + btoi(c.Database != nil) + btoi(c.Client != nil); targets != 1 {
		return nil, fmt.Errorf("checkpoint: Config: set exactly one of Collection, Database and Client (%d set)", targets)
	}
	if c.Lease != nil && c.Lease.Store == nil {
		return nil, errors.New("checkpoint: Config: Lease.Store is required")
	}
	if c.Store == nil && c.Lease != nil {
		s.Store = c.Lease.Store
	}
	if s.Store == nil {
		return nil, errors.New("checkpoint: Config: Store is required")
	}
	if c.Lease != nil {
		if ms, ok := s.Store.(*MongoStore); !ok || ms != c.Lease.Store {
			return nil, errors.New("checkpoint: Config: with a Lease, Store must be Lease.Store, whose saves the lease fences")
		}
		l := *c.Lease
		if l.Owner == "" {
			l.Owner = DefaultOwner()
		}
		if l.TTL == 0 {
			l.TTL = DefaultLeaseTTL
		}
		if l.TTL < 10*time.Millisecond {
			return nil, fmt.Errorf("checkpoint: Config: Lease.TTL %v is below 10ms", l.TTL)
		}
		if l.RetryEvery <= 0 {
			l.RetryEvery = l.TTL / 4
		}
		s.Lease = &l
	}
	if c.MaxInFlight < 0 || c.Workers < 0 || c.CommitInterval < 0 || c.MinBackoff < 0 || c.MaxBackoff < 0 || c.HandlerRetries < 0 {
		return nil, errors.New("checkpoint: Config: MaxInFlight, Workers, CommitInterval, HandlerRetries and the backoffs cannot be negative")
	}
	s.stats = c.Stats
	if s.stats == nil {
		s.stats = &Stats{}
	}
	if s.MaxInFlight == 0 {
		s.MaxInFlight = DefaultMaxInFlight
	}
	if s.Workers == 0 {
		s.Workers = 1
	}
	if s.CommitInterval == 0 {
		s.CommitInterval = DefaultCommitInterval
	}
	if s.MinBackoff == 0 {
		s.MinBackoff = DefaultMinBackoff
	}
	if s.MaxBackoff == 0 {
		s.MaxBackoff = DefaultMaxBackoff
	}
	if s.MaxBackoff < s.MinBackoff {
		return nil, errors.New("checkpoint: Config: MaxBackoff is below MinBackoff")
	}
	if c.Snapshot < SnapshotNever || c.Snapshot > SnapshotAlways {
		return nil, fmt.Errorf("checkpoint: Config: unknown Snapshot mode %d", c.Snapshot)
	}
	if c.SnapshotBatch < 0 {
		return nil, errors.New("checkpoint: Config: SnapshotBatch cannot be negative")
	}
	if s.SnapshotBatch == 0 {
		s.SnapshotBatch = DefaultSnapshotBatch
	}
	switch c.OnUnresumable {
	case FailUnresumable:
	case ResyncFromNow:
		if c.Resync == nil {
			return nil, errors.New("checkpoint: Config: ResyncFromNow needs a Resync function")
		}
		if c.Snapshot == SnapshotWhenNeeded {
			return nil, errors.New("checkpoint: Config: SnapshotWhenNeeded snapshots again when the position is lost: it cannot be combined with ResyncFromNow")
		}
	default:
		return nil, fmt.Errorf("checkpoint: Config: unknown OnUnresumable %d", c.OnUnresumable)
	}
	if c.OnInvalidate != StopOnInvalidate && c.OnInvalidate != RestartAfterInvalidate {
		return nil, fmt.Errorf("checkpoint: Config: unknown OnInvalidate %d", c.OnInvalidate)
	}
	if c.StartAfter != nil && c.StartAtOperationTime != nil {
		return nil, errors.New("checkpoint: Config: set at most one of StartAfter and StartAtOperationTime")
	}
	switch {
	case c.Collection != nil:
		s.spec.Target = c.Collection.Database().Name() + "." + c.Collection.Name()
	case c.Database != nil:
		s.spec.Target = c.Database.Name()
	}
	s.spec.Pipeline = c.Pipeline
	s.spec.FullDocument, s.spec.FullDocumentBeforeChange = c.FullDocument, c.FullDocumentBeforeChange
	s.spec.ShowExpandedEvents, s.spec.SplitLargeEvents = c.ShowExpandedEvents, c.SplitLargeEvents
	fp, err := s.spec.Fingerprint()
	if err != nil {
		return nil, err
	}
	s.fp = fp
	s.log = c.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// streamOptions returns the options of a stream that starts after token,
// or at opTime, or (both nil) from now, and reports progress to cp.
func (s *settings) streamOptions(token []byte, opTime *bson.Timestamp, cp *Checkpointer) []changestream.Option {
	opts := append([]changestream.Option(nil), s.Options...)
	if s.FullDocument != "" {
		opts = append(opts, changestream.WithFullDocument(s.FullDocument))
	}
	if s.FullDocumentBeforeChange != "" {
		opts = append(opts, changestream.WithFullDocumentBeforeChange(s.FullDocumentBeforeChange))
	}
	if s.ShowExpandedEvents {
		opts = append(opts, changestream.WithShowExpandedEvents(true))
	}
	if s.SplitLargeEvents {
		opts = append(opts, changestream.WithSplitLargeEvents())
	}
	switch {
	case token != nil:
		// startAfter, not resumeAfter: it also starts after an invalidate.
		opts = append(opts, changestream.WithStartAfter(token))
	case opTime != nil:
		opts = append(opts, changestream.WithStartAtOperationTime(*opTime))
	}
	if cp == nil {
		return opts
	}
	return append(opts, changestream.WithProgress(s.CommitInterval, func(p changestream.Progress) {
		cp.Progress(p.Position)
	}))
}

// watch opens the stream.
func (s *settings) watch(ctx context.Context, opts []changestream.Option) (*changestream.ChangeStream, error) {
	switch {
	case s.Collection != nil:
		return changestream.WatchCollection(ctx, s.Collection, s.Pipeline, opts...)
	case s.Database != nil:
		return changestream.WatchDatabase(ctx, s.Database, s.Pipeline, opts...)
	}
	return changestream.WatchCluster(ctx, s.Client, s.Pipeline, opts...)
}
