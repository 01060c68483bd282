// Package changestream opens MongoDB change streams that follow the Change
// Streams specification exactly and survive what production throws at them:
// dropped connections, killed cursors, failovers, and, above all, the
// caller's own context deadlines and cancellations.
//
// A [ChangeStream] starts before its first event. Call [ChangeStream.Next]
// in a loop; it returns false at the end of the stream, on an error, or when
// its context ends, and [ChangeStream.Err] tells these apart. Each true
// return makes one event available in [ChangeStream.Current] (or through
// [ChangeStream.Decode] and the typed [Event]) until the next call:
//
//	cs, err := changestream.WatchCollection(ctx, coll, nil)
//	if err != nil { ... }
//	defer cs.Close(context.Background())
//	for cs.Next(ctx) {
//		var ev changestream.Event[Order]
//		if err := cs.Decode(&ev); err != nil { ... }
//		...
//	}
//	if err := cs.Err(); err != nil { ... }
//
// # Resuming
//
// The stream caches a resume token: the _id of the event last returned, or
// the server's postBatchResumeToken when it has moved further. When a getMore
// fails with an error the specification calls resumable (a network error,
// CursorNotFound, or a server error labelled ResumableChangeStreamError),
// the stream kills the old cursor, selects a server again and reopens itself
// from that token, once per error, without losing or repeating an event.
// [ChangeStream.ResumeToken] returns the token, to save and later pass to
// [WithResumeAfter] or [WithStartAfter].
//
// # Contexts
//
// A context that ends while Next or TryNext waits makes the call return false
// with Err wrapping ctx.Err(); the stream stays [ChangeStream.Alive], and the
// next call with a live context carries on from the cached token. So
// per-call deadlines are a normal way to wait for events, and never cost the
// stream or an event.
//
// # Errors
//
// The stream ends for good after [ChangeStream.Close] ([ErrClosed]), after an
// invalidate event (Err is nil), or after an error that is not resumable:
// the server's error, [ErrMissingResumeToken], or a [*HistoryLostError]
// matching [ErrHistoryLost]. Server errors stay reachable with errors.As.
package changestream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// streamKind is what a stream watches.
type streamKind int

const (
	kindCollection streamKind = iota
	kindDatabase
	kindCluster
)

// ChangeStream is an open change stream. It starts before the first event:
// call Next or TryNext before reading Current.
//
// Next, TryNext, Decode, Err, ID and RemainingBatchLength belong to the
// goroutine that iterates. Close, ResumeToken and Alive may be called from
// any goroutine at any time; Close interrupts a Next that is waiting.
type ChangeStream struct {
	// Current is the event the last successful Next or TryNext returned. It
	// is valid until the next call of Next, TryNext or Close; copy it to
	// keep it.
	Current bson.Raw

	kind       streamKind
	db         *mongo.Database   // the database the aggregate runs on
	coll       *mongo.Collection // for a collection stream: its registry decodes
	collName   string            // for a collection stream
	pipeline   []bson.Raw        // the caller's stages, after $changeStream
	cfg        *config
	sess       *mongo.Session
	ownSession bool // the stream started sess and ends it on Close

	// mu serializes iteration and Close's cleanup, and guards cur.
	mu  sync.Mutex
	cur *cursor // nil once closed or after a failed resume
	// curStart is the start point cur was opened from, and curReturned
	// whether it has returned an event since: until it has, a getMore's
	// refusal of the position is a refusal of that start point (on mongos,
	// whose first batch is always empty, it comes only then).
	curStart    startPoint
	curReturned bool

	// stateMu guards what other goroutines may read while one iterates.
	stateMu     sync.Mutex
	token       bson.Raw        // the cached resume token
	opTime      *bson.Timestamp // the aggregate's operationTime, when no token is known
	returnedAny bool            // an event has been returned
	err         error
	// split is an event being put back together (WithSplitLargeEvents);
	// only the iterating goroutine, holding mu, touches it.
	split *splitState
	// stats and what Behind needs, under stateMu.
	stats         Stats
	openedAt      time.Time
	replyCaughtUp bool
	unreturned    int
	// lastReply is when the last reply arrived, for Health.
	lastReply time.Time
	// The last progress reported; only the iterating goroutine touches
	// these.
	lastProgress   []byte
	lastProgressAt time.Time

	// clientTimeout is the client's timeoutMS, set once by open.
	clientTimeout time.Duration

	// heartbeat is WithHeartbeat's writer, nil without one; Close stops it.
	heartbeat *heartbeat

	alive  atomic.Bool
	closed atomic.Bool
	// calling is set while a Next or TryNext runs, and callEnded (Unix
	// nanoseconds) is when the last one returned, for Health: atomics, so
	// that every call does not take stateMu twice more.
	calling   atomic.Bool
	callEnded atomic.Int64
	closeCtx  context.Context // done when Close starts, to interrupt a waiting Next
	closeFn   context.CancelFunc
}

// WatchCollection opens a change stream on coll. pipeline holds the stages
// that follow $changeStream and takes what the driver's Watch takes
// (mongo.Pipeline, []bson.D, bson.A, nil, ...). The aggregate is retried
// once after a network error or a retryable server error; any other error,
// including the server's rejection of an option, is returned as the server
// sent it.
//
// If ctx carries a session (mongo.NewSessionContext), the stream runs in it
// and leaves it open on Close; the caller must not use that session from
// another goroutine while the stream is open, since driver sessions are not
// safe for concurrent use. Otherwise the stream starts its own session and
// ends it on Close. ctx bounds only the opening; every later call takes its
// own.
func WatchCollection(ctx context.Context, coll *mongo.Collection, pipeline any, opts ...Option) (*ChangeStream, error) {
	if coll == nil {
		return nil, errors.New("changestream: WatchCollection: nil collection")
	}
	if coll.Database() == nil || coll.Database().Client() == nil || coll.Name() == "" {
		return nil, errors.New("changestream: WatchCollection: the collection was not made by a client's Database(...).Collection(...)")
	}
	cs, err := newStream(kindCollection, coll.Database(), pipeline, opts)
	if err != nil {
		return nil, err
	}
	cs.coll, cs.collName = coll, coll.Name()
	return cs.open(ctx)
}

// WatchDatabase opens a change stream on every collection of db, except
// system collections. See [WatchCollection] for pipeline, errors and
// sessions.
func WatchDatabase(ctx context.Context, db *mongo.Database, pipeline any, opts ...Option) (*ChangeStream, error) {
	if db == nil {
		return nil, errors.New("changestream: WatchDatabase: nil database")
	}
	if db.Client() == nil || db.Name() == "" {
		return nil, errors.New("changestream: WatchDatabase: the database was not made by a client's Database(...)")
	}
	cs, err := newStream(kindDatabase, db, pipeline, opts)
	if err != nil {
		return nil, err
	}
	return cs.open(ctx)
}

// WatchCluster opens a change stream on every database of the deployment
// except admin, config and local. See [WatchCollection] for pipeline, errors
// and sessions.
func WatchCluster(ctx context.Context, client *mongo.Client, pipeline any, opts ...Option) (*ChangeStream, error) {
	if client == nil {
		return nil, errors.New("changestream: WatchCluster: nil client")
	}
	admin := client.Database("admin")
	cs, err := newStream(kindCluster, admin, pipeline, opts)
	if err != nil {
		return nil, err
	}
	return cs.open(ctx)
}

func newStream(kind streamKind, db *mongo.Database, pipeline any, opts []Option) (*ChangeStream, error) {
	stages, err := marshalPipeline(pipeline)
	if err != nil {
		return nil, err
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	cs := &ChangeStream{kind: kind, db: db, pipeline: stages, cfg: cfg}
	cs.token = cfg.initialStart().token
	cs.opTime = cfg.startAtOperationTime
	cs.closeCtx, cs.closeFn = context.WithCancel(context.Background())
	return cs, nil
}

// errNotOpened is what a ChangeStream that no Watch function made reports:
// its zero value, or one copied out of a pointer.
var errNotOpened = errors.New("changestream: the ChangeStream was not opened by WatchCollection, WatchDatabase or WatchCluster")

// opened reports whether cs was made by a Watch function.
func (cs *ChangeStream) opened() bool { return cs.closeFn != nil }

// open starts the session and runs the first aggregate.
func (cs *ChangeStream) open(ctx context.Context) (*ChangeStream, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if sess := mongo.SessionFromContext(ctx); sess != nil {
		cs.sess = sess
	} else {
		sess, err := cs.db.Client().StartSession()
		if err != nil {
			return nil, fmt.Errorf("changestream: starting a session: %w", err)
		}
		cs.sess, cs.ownSession = sess, true
	}
	sp := cs.cfg.initialStart()
	err := cs.openCursor(ctx, sp)
	if err != nil && isTransient(err) && ctx.Err() == nil {
		err = cs.openCursor(ctx, sp)
	}
	if err != nil {
		cs.endSession()
		cs.closeFn()
		if out, ok := asOutage(ctx, err); ok {
			err = out
		}
		werr := cs.wrapOpenError(err, sp)
		cs.hookError(werr)
		return nil, werr
	}
	cs.clientTimeout = cs.cur.dec.settings.timeout
	if err := cs.startHeartbeat(ctx); err != nil {
		cs.cur.kill(ctx)
		cs.endSession()
		cs.closeFn()
		cs.hookError(err)
		return nil, err
	}
	cs.alive.Store(true)
	cs.stateMu.Lock()
	cs.openedAt = time.Now()
	cs.stateMu.Unlock()
	return cs, nil
}

// openCursor runs the aggregate for sp and installs its cursor, caching the
// first batch's resume point.
func (cs *ChangeStream) openCursor(ctx context.Context, sp startPoint) error {
	began := time.Now()
	cur, err := openCursor(mongo.NewSessionContext(ctx, cs.sess), cs.db, cs.coll, cs.command(sp), cs.cfg, cs.cfg.readPreference)
	if err != nil {
		return err
	}
	cs.cur = cur
	cs.curStart, cs.curReturned = sp, false
	now := time.Now()
	cs.hookBatch(cur, "aggregate", now.Sub(began))
	cs.noteReply(cur, now, true)
	if cur.remaining() == 0 && !cs.cacheEmptyBatch(cur) && sp.key == "" {
		cs.rememberStartTime()
	}
	return nil
}

// cacheEmptyBatch caches the postBatchResumeToken of a batch with no events
// and reports whether the server sent one.
func (cs *ChangeStream) cacheEmptyBatch(cur *cursor) bool {
	pbrt := cur.postBatchResumeToken()
	if pbrt == nil || cs.split != nil {
		// Inside a split event the token would point between fragments.
		return false
	}
	cs.stateMu.Lock()
	cs.token = cloneRaw(pbrt)
	cs.stateMu.Unlock()
	return true
}

// rememberStartTime keeps the aggregate's operationTime when a stream that
// was given no start point opens on a server too old for
// postBatchResumeToken, so that a resume before the first event starts
// there and misses nothing.
func (cs *ChangeStream) rememberStartTime() {
	cs.stateMu.Lock()
	defer cs.stateMu.Unlock()
	if cs.token != nil || cs.opTime != nil {
		return
	}
	if t := cs.sess.OperationTime(); t != nil {
		ot := *t
		cs.opTime = &ot
	}
}

// wrapOpenError turns a position the server refuses into its typed error.
func (cs *ChangeStream) wrapOpenError(err error, sp startPoint) error {
	if perr := positionError(err, sp); perr != nil {
		return perr
	}
	return fmt.Errorf("changestream: opening the stream: %w", err)
}

func (cs *ChangeStream) aggregateTarget() any {
	if cs.kind == kindCollection {
		return cs.collName
	}
	return int32(1)
}

// Next waits for the next event and reports whether there is one in
// Current. It returns false when ctx ends (Err wraps ctx.Err(); the stream
// stays alive and a later call resumes where this one stopped), when the
// stream is invalidated (Err is nil, Alive is false), when it is closed
// (ErrClosed), or on an error that is not resumable. Resumable errors are
// handled inside Next: it resumes once per error, as the specification
// says. If the resume itself fails for a reason that may pass (a network
// error, no server), Next reports it and the stream stays alive.
//
// The server waits up to the max await time for events before answering a
// getMore; Next then asks again, so it blocks until an event or an error.
//
// Deadlines: the server's wait is cut to end before ctx's deadline, so a
// deadline normally costs neither an event nor the connection. A call
// always asks the server at least once, however little time it has, so
// events already waiting are delivered even to a call with a millisecond
// left; such a call may return a reply's transit time after its deadline
// (about a millisecond on a local network) rather than break the
// connection by cutting the reply off. A reply more than 250 ms late is
// given up on, and the next call resumes. Cancelling ctx interrupts the
// call at once.
func (cs *ChangeStream) Next(ctx context.Context) bool { return cs.next(ctx, true) }

// TryNext is Next that asks the server at most once: it returns an event
// already received, or sends one getMore (plus one resume if it fails
// resumably) and returns false with a nil Err when that brought no event.
// It is not free of waiting: the server holds that getMore until an event
// arrives or the max await time passes ([WithMaxAwaitTime], 1 s unless
// set, and never past ctx's deadline), so on an idle stream TryNext takes
// about that long. To poll without waiting, pass a ctx with a short
// deadline or set a short max await time. Check Err and Alive after a
// false return to tell "nothing yet" from the end of the stream.
func (cs *ChangeStream) TryNext(ctx context.Context) bool { return cs.next(ctx, false) }

// callTimeout is the bound of a call whose ctx has no deadline: WithTimeout's
// if set, else the client's timeoutMS; 0 for none.
func (cs *ChangeStream) callTimeout() time.Duration {
	switch {
	case cs.cfg == nil:
		return 0
	case cs.cfg.callTimeoutSet:
		return cs.cfg.callTimeout
	default:
		return cs.clientTimeout
	}
}

func (cs *ChangeStream) next(ctx context.Context, block bool) bool {
	if ctx == nil {
		ctx = context.Background()
	}
	if d := cs.callTimeout(); d > 0 {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.noteCall(true)
	defer cs.noteCall(false)
	cs.Current = nil
	if !cs.opened() {
		cs.setErr(errNotOpened)
		return false
	}
	if cs.closed.Load() {
		cs.setErr(ErrClosed)
		return false
	}
	if !cs.alive.Load() {
		return false // the terminal error, if any, stays in Err
	}
	if cs.err != nil { // only the iterating goroutine, holding mu, writes err
		cs.setErr(nil)
	}
	resumed := false // a resume in this call, with no progress since
	asked := false   // a getMore was sent in this call
	for {
		if err := ctx.Err(); err != nil {
			cs.setErr(fmt.Errorf("changestream: %w", err))
			return false
		}
		if cs.cur == nil || cs.cur.stale {
			// Replacing a cursor a previous call abandoned (its context
			// ended, or its resume failed) is not a resume after an error of
			// this call: the next error still gets its own resume.
			if !cs.resume(ctx, nil) {
				return false
			}
		}
		c := cs.cur
		if c.remaining() > 0 {
			if ok, done := cs.accept(c); done {
				return ok
			}
			continue // a fragment of a split event: gather the rest
		}
		if c.id() == 0 {
			cs.finish(ctx, nil) // the server closed the cursor: invalidated
			return false
		}
		if asked && !block {
			return false // TryNext asks the server once
		}
		if asked && lowOnTime(ctx) {
			// This call already asked and the server had nothing; asking
			// again with almost no time left would only end the call
			// after its deadline. (A call's first getMore is always sent,
			// however little time it has, so events already waiting are
			// delivered.)
			cs.setErr(fmt.Errorf("changestream: %w", context.DeadlineExceeded))
			return false
		}
		began := time.Now()
		err := cs.getMore(ctx, c)
		asked = true
		if err != nil {
			if cs.handleError(ctx, err, &resumed) {
				continue
			}
			return false
		}
		resumed = false
		received := time.Now()
		cs.hookBatch(c, "getMore", received.Sub(began))
		cs.noteReply(c, received, false)
		if c.remaining() > 0 {
			if ok, done := cs.accept(c); done {
				return ok
			}
			continue
		}
		if c.id() == 0 {
			cs.finish(ctx, nil)
			return false
		}
		// Only the iterating goroutine writes the token, so it may read
		// it here without the lock.
		before := cs.token
		if cs.cacheEmptyBatch(c) && !bytes.Equal(before, cs.token) {
			cs.reportProgress(received)
		}
		if !block {
			return false
		}
	}
}

// getMore asks the server for the next batch. The server's wait is fitted
// to ctx's deadline, so the reply is due before it; the read is not cut
// off at the deadline itself, because a reply cut off mid-read breaks the
// connection and with it the cursor. Cancelling ctx and Close still
// interrupt the call at once, and a reply later than replyGrace past the
// deadline is given up on. With little time left the server is still
// asked, with the shortest wait: events already there are delivered.
func (cs *ChangeStream) getMore(ctx context.Context, c *cursor) error {
	c.fitAwait(ctx, cs.cfg.maxAwaitTime)
	opCtx, release := cs.replyContext(ctx)
	defer release()
	return c.getMore(opCtx)
}

// replyContext is ctx for a getMore: ctx's values, ended by ctx's
// cancellation and by Close, and by ctx's deadline only replyGrace later.
func (cs *ChangeStream) replyContext(ctx context.Context) (context.Context, func()) {
	base := context.WithoutCancel(ctx)
	var cancel context.CancelFunc
	if dl, ok := ctx.Deadline(); ok {
		base, cancel = context.WithDeadline(base, dl.Add(replyGrace))
	} else {
		base, cancel = context.WithCancel(base)
	}
	stopCaller := context.AfterFunc(ctx, func() {
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cancel() // cancelled, not timed out: stop now
		}
	})
	stopClose := context.AfterFunc(cs.closeCtx, cancel)
	return base, func() {
		stopCaller()
		stopClose()
		cancel()
	}
}

// interruptible returns a context that ends with ctx or when Close is
// called, so that Close can interrupt a call blocked on the server. The
// release function must be called when the call returns.
func (cs *ChangeStream) interruptible(ctx context.Context) (context.Context, func()) {
	opCtx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(cs.closeCtx, cancel)
	return opCtx, func() {
		stop()
		cancel()
	}
}

// handleError decides what a failed call means for the stream. It returns
// true when the stream resumed and the caller should go on iterating.
func (cs *ChangeStream) handleError(ctx context.Context, err error, resumed *bool) bool {
	if cs.cur != nil {
		cs.cur.stale = true
	}
	switch {
	case cs.closed.Load():
		cs.setErr(ErrClosed)
		return false
	case ctx.Err() != nil:
		// The caller's context ended mid-call: the cursor is abandoned, to be
		// killed and replaced by the next call, which resumes from the token.
		cs.setErr(fmt.Errorf("changestream: %w", ctx.Err()))
		return false
	case isCallerTimeout(err):
		cs.setErr(fmt.Errorf("changestream: %w", err))
		return false
	case !isResumable(ctx, err):
		cs.finish(ctx, cs.wrapIterError(err))
		return false
	case *resumed:
		// The stream resumed in this call and failed again before any
		// progress: report it rather than loop against a failing server.
		// The stream stays alive and the next call resumes again.
		cs.setErr(fmt.Errorf("changestream: failed again right after resuming: %w", err))
		return false
	}
	*resumed = true
	return cs.resume(ctx, err)
}

// resume kills the old cursor and reopens the stream from the cached resume
// point. cause is the error that made it resume, nil when it replaces a
// cursor an earlier call abandoned. On failure it sets Err; a failure that
// may pass leaves the stream alive for the next call, any other ends it.
func (cs *ChangeStream) resume(ctx context.Context, cause error) bool {
	opCtx, release := cs.interruptible(ctx)
	if cs.cur != nil {
		cs.cur.kill(opCtx)
		cs.cur = nil
	}
	sp := cs.resumeStart()
	began := time.Now()
	err := cs.openCursor(opCtx, sp)
	release()
	cs.hookResume(ResumeEvent{Cause: cause, Option: sp.key, Position: positionOf(sp.token), Err: err, Duration: time.Since(began)})
	if err == nil {
		cs.stateMu.Lock()
		cs.stats.Resumes++
		cs.stateMu.Unlock()
		return true
	}
	outage, isOutage := asOutage(ctx, err)
	perr := positionError(err, sp)
	switch {
	case cs.closed.Load():
		cs.setErr(ErrClosed)
	case ctx.Err() != nil:
		cs.setErr(fmt.Errorf("changestream: resuming: %w", ctx.Err()))
	case isOutage:
		cs.setErr(fmt.Errorf("changestream: resuming: %w", outage))
	case isCallerTimeout(err):
		// The driver refused to send the aggregate because the deadline
		// would pass first: the caller's time ran out, not the stream's.
		cs.setErr(fmt.Errorf("changestream: resuming: %w", err))
	case isTransient(err):
		cs.setErr(fmt.Errorf("changestream: resuming: %w", err))
	case perr != nil:
		cs.finish(ctx, perr)
	default:
		cs.finish(ctx, fmt.Errorf("changestream: resuming: %w", err))
	}
	return false
}

// wrapIterError types an open stream's getMore error: a lost place in the
// oplog (136), or a resumed stream whose token the server did not find.
func (cs *ChangeStream) wrapIterError(err error) error {
	sp := startPoint{token: cs.ResumeToken()}
	if !cs.curReturned && cs.curStart.key != "" {
		sp = cs.curStart
	}
	if perr := positionError(err, sp); perr != nil {
		return perr
	}
	if code, fromServer := serverCode(err); fromServer && code == codeBSONObjectTooLarge {
		return &EventTooLargeError{Position: cs.Position(), Err: err}
	}
	return fmt.Errorf("changestream: %w", err)
}

// accept makes the cursor's current document the stream's current event and
// caches its resume token: the batch's postBatchResumeToken when the event is
// the last of its batch and the server sent one, the event's _id otherwise.
// done is false when the document was a fragment of a split event that is
// not complete yet: nothing is returned and the position does not move.
func (cs *ChangeStream) accept(c *cursor) (ok, done bool) {
	doc, err := c.next()
	if err != nil {
		cs.finish(context.Background(), err)
		return false, true
	}
	id, err := doc.LookupErr("_id")
	if err != nil || id.Type != bson.TypeEmbeddedDocument {
		cs.finish(context.Background(), ErrMissingResumeToken)
		return false, true
	}
	token := bson.Raw(id.Value)
	var fragments int64
	if cs.cfg.splitLargeEvents {
		if n, of, isFragment := splitOf(doc); isFragment {
			fragments = 1
			whole, lastToken, err := cs.fragment(doc, token, n, of)
			if err != nil {
				cs.finish(context.Background(), err)
				return false, true
			}
			if whole == nil {
				cs.noteFragment()
				return false, false
			}
			doc, token = whole, lastToken
		}
	}
	if c.remaining() == 0 {
		if pbrt := c.postBatchResumeToken(); pbrt != nil {
			token = pbrt
		}
	}
	now := time.Now()
	cs.stateMu.Lock()
	cs.token = token // aliases the batch, which the driver never reuses; ResumeToken copies
	cs.returnedAny = true
	cs.unreturned = max(cs.unreturned-1, 0)
	cs.stats.Events++
	cs.stats.Fragments += fragments
	cs.stats.LastEvent = now
	cs.stateMu.Unlock()
	cs.Current = doc
	cs.curReturned = true
	return true, true
}

// finish ends the stream for good with err (nil after an invalidate) and
// releases the server cursor.
func (cs *ChangeStream) finish(ctx context.Context, err error) {
	cs.alive.Store(false)
	cs.setErr(err)
	if cs.cur != nil {
		if cs.cur.id() != 0 {
			killCtx, release := cs.interruptible(ctx)
			cs.cur.kill(killCtx)
			release()
		}
		cs.cur = nil
	}
}

func (cs *ChangeStream) setErr(err error) {
	cs.stateMu.Lock()
	cs.err = err
	cs.stateMu.Unlock()
	cs.hookError(err)
}

// Decode unmarshals Current into v with the client's BSON registry, for
// example into an [Event]. It fails when there is no current event.
func (cs *ChangeStream) Decode(v any) error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if !cs.opened() {
		return errNotOpened
	}
	if cs.closed.Load() {
		return ErrClosed
	}
	if cs.Current == nil || cs.cur == nil {
		return errNoCurrent
	}
	if ed, ok := v.(eventDecoder); ok {
		return ed.decodeEvent(cs.Current, cs.cur)
	}
	return cs.cur.decode(cs.Current, v)
}

// Err returns the error that made the last Next or TryNext return false, or
// nil when it returned false because the stream was invalidated or, for
// TryNext, because no event had arrived.
func (cs *ChangeStream) Err() error {
	cs.stateMu.Lock()
	defer cs.stateMu.Unlock()
	return cs.err
}

// Close kills the server cursor, ends the stream's own session, and
// interrupts a Next or TryNext waiting in another goroutine, which then
// returns false with ErrClosed. Close is idempotent and safe from any
// goroutine; ctx bounds the killCursors command. ResumeToken keeps working
// after Close, to save the final position.
func (cs *ChangeStream) Close(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if !cs.opened() {
		return errNotOpened
	}
	if !cs.closed.CompareAndSwap(false, true) {
		return nil
	}
	cs.alive.Store(false)
	cs.closeFn()
	cs.stopHeartbeat()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.Current = nil
	if cs.cur != nil {
		if cs.cur.id() != 0 {
			cs.cur.kill(ctx)
		}
		cs.cur = nil
	}
	cs.endSession()
	return nil
}

func (cs *ChangeStream) endSession() {
	if cs.ownSession && cs.sess != nil {
		cs.sess.EndSession(context.Background())
	}
}

// ResumeToken returns a copy of the cached resume token: where the stream
// would resume from now. It can move forward without an event, when the
// server reports progress through an empty batch. It is nil until the
// server has sent a token, unless the stream started from one. Safe from
// any goroutine.
func (cs *ChangeStream) ResumeToken() bson.Raw {
	cs.stateMu.Lock()
	defer cs.stateMu.Unlock()
	return cloneRaw(cs.token)
}

// ID returns the server cursor's id, 0 when the stream has no open cursor.
func (cs *ChangeStream) ID() int64 {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.cur == nil {
		return 0
	}
	return cs.cur.id()
}

// RemainingBatchLength returns how many events of the current batch are
// still to be returned without asking the server.
func (cs *ChangeStream) RemainingBatchLength() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.cur == nil || cs.cur.stale {
		return 0
	}
	return cs.cur.remaining()
}

// Alive reports whether the stream can still return events: false once it
// is closed, invalidated, or failed with an error that is not resumable.
// After a context error or a failed resume the stream is still alive. Safe
// from any goroutine.
func (cs *ChangeStream) Alive() bool { return cs.alive.Load() }

// marshalPipeline accepts what the driver's Watch accepts: nil, or any value
// that marshals to a BSON array of documents.
func marshalPipeline(pipeline any) ([]bson.Raw, error) {
	if pipeline == nil {
		return nil, nil
	}
	t, data, err := bson.MarshalValue(pipeline)
	if err != nil {
		return nil, fmt.Errorf("changestream: pipeline: %w", err)
	}
	if t != bson.TypeArray {
		return nil, fmt.Errorf("changestream: pipeline must be an array of stage documents, got BSON %s (%T)", t, pipeline)
	}
	vals, err := bson.RawArray(data).Values()
	if err != nil {
		return nil, fmt.Errorf("changestream: pipeline: %w", err)
	}
	stages := make([]bson.Raw, 0, len(vals))
	for i, v := range vals {
		doc, ok := v.DocumentOK()
		if !ok {
			return nil, fmt.Errorf("changestream: pipeline stage %d is a BSON %s, not a document", i, v.Type)
		}
		stages = append(stages, doc)
	}
	return stages, nil
}
