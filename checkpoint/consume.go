package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/internal/retryable"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// finalTimeout bounds the last commit and the stream's close on the way
// out, which run after the caller's ctx has ended.
const finalTimeout = 10 * time.Second

// consume runs the stream while ctx lasts and, with a lease, while the
// lease holds; it saves through store.
func (r *runner) consume(ctx context.Context, store Store, lease *Lease) (err error) {
	s := r.s
	opts := []Option{MaxInFlight(s.MaxInFlight), CommitEvery(s.CommitInterval)}
	if s.BeforeCommit != nil {
		opts = append(opts, BeforeCommit(s.BeforeCommit))
	}
	cp, err := NewCheckpointer(store, s.Key, s.spec, opts...)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if lease != nil {
		runCtx = context.WithValue(runCtx, leaseKey{}, lease)
		kept := make(chan struct{})
		go func() {
			defer close(kept)
			keepLease(runCtx, cancel, lease, s)
		}()
		defer func() {
			cancel(nil)
			<-kept
		}()
	}
	d := newDispatcher(runCtx, cancel, s.Workers)
	d.guard = r.guard
	defer func() {
		d.stop()
		fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), finalTimeout)
		defer fcancel()
		if cerr := cp.Close(fctx); cerr != nil && (err == nil || errors.Is(err, context.Canceled)) && ctx.Err() == nil {
			err = cerr
		}
	}()

	start, ok, err := cp.LoadCheckpoint(runCtx)
	if err != nil {
		return err
	}
	var token []byte
	var opTime *bson.Timestamp
	if ok {
		token = start.Token
	} else {
		token, opTime = s.StartAfter, s.StartAtOperationTime
	}
	// snap is the snapshot to read before streaming, nil for none; snapAt
	// the position it hands over to, zero until taken.
	var snap *SnapshotState
	var snapAt changestream.Position
	switch {
	case ok && start.Snapshot != nil: // interrupted: carry on with it
		snap, snapAt = start.Snapshot, start.Position
	case s.Snapshot == SnapshotAlways, !ok && (s.Snapshot == SnapshotInitial || s.Snapshot == SnapshotWhenNeeded):
		snap = &SnapshotState{}
	}
	b := r.newBackoff()
	var resync error // why the next stream from now must call Resync first
	for {
		if snap != nil {
			s.stats.set(HealthSnapshot, nil)
			err := r.runSnapshot(runCtx, cp, d, lease, &snap, &snapAt)
			if err != nil {
				if runCtx.Err() != nil {
					return context.Cause(runCtx)
				}
				if !isTransient(runCtx, err) {
					return err
				}
				s.log.Warn("checkpoint: snapshot", "key", s.Key, "error", err)
				if err := sleep(runCtx, b.next()); err != nil {
					return err
				}
				continue
			}
			token, opTime, ok = snapAt.Token, nil, true
			snapAt = changestream.Position{}
		}
		cs, err := s.watch(runCtx, s.streamOptions(token, opTime, cp))
		if err != nil {
			if runCtx.Err() != nil {
				return context.Cause(runCtx)
			}
			if errors.Is(err, changestream.ErrUnresumablePosition) {
				if s.Snapshot == SnapshotWhenNeeded {
					s.log.Warn("checkpoint: the checkpoint cannot be resumed from; snapshotting again", "key", s.Key, "error", err)
					snap = &SnapshotState{}
					continue
				}
				if err := r.unresumable(err); err != nil {
					return err
				}
				token, resync = nil, err
				continue
			}
			if !isTransient(runCtx, err) {
				return err
			}
			s.log.Warn("checkpoint: opening the stream", "key", s.Key, "error", err)
			s.stats.set(HealthStarting, err)
			if err := sleep(runCtx, b.next()); err != nil {
				return err
			}
			continue
		}
		// Only the first stream starts at the configured operation time; a
		// later one starts after an invalidate, or from now.
		opTime = nil
		if s.OnOpen != nil {
			s.OnOpen(cs.Position())
		}
		if token == nil || !ok { // a stream from now, or from a configured start
			if resync != nil {
				// The stream is open before Resync rebuilds what the lost
				// events fed, so that the changes made while it runs come
				// after it: an overlap, never a gap.
				s.log.Warn("checkpoint: the checkpoint cannot be resumed from; resyncing and carrying on from now", "key", s.Key, "error", resync)
				if rerr := s.Resync(runCtx, resync); rerr != nil {
					closeStream(ctx, cs)
					return fmt.Errorf("checkpoint: Resync after %v: %w", resync, rerr)
				}
				resync = nil
			}
			// A stream from now: save where it starts at once, so that a
			// crash before its first event does not go back to a position
			// the server cannot resume from, or skip what follows; after a
			// Resync only, so that a crash during it resyncs again.
			cp.Progress(cs.Position())
			if err := cp.Commit(runCtx); err != nil && runCtx.Err() == nil {
				closeStream(ctx, cs)
				return err
			}
		}
		s.stats.streaming(cs)
		err = r.iterate(runCtx, cs, cp, d, lease, b)
		invalidateToken := cs.ResumeToken()
		closeStream(ctx, cs)
		s.stats.set(HealthStarting, nil)
		switch {
		case runCtx.Err() != nil:
			return context.Cause(runCtx)
		case err == nil: // invalidated: handle and commit what came before
			if err := d.wait(); err != nil {
				return err
			}
			if err := cp.Commit(runCtx); err != nil {
				return err
			}
			if s.OnInvalidate == StopOnInvalidate {
				return ErrInvalidated
			}
			s.log.Info("checkpoint: invalidated; starting after the invalidate event", "key", s.Key)
			token = invalidateToken
		case errors.Is(err, changestream.ErrUnresumablePosition):
			if err := d.wait(); err != nil {
				return err
			}
			if s.Snapshot == SnapshotWhenNeeded {
				s.log.Warn("checkpoint: the stream's position was lost; snapshotting again", "key", s.Key, "error", err)
				snap = &SnapshotState{}
				continue
			}
			if err := r.unresumable(err); err != nil {
				return err
			}
			token, resync = nil, err
		default:
			return err
		}
	}
}

// runSnapshot reads the snapshot *snap from, taking (and saving) its
// hand-over position *at first if it has none. On success *snap is nil;
// on failure both hold what the checkpoint saved, for a retry.
func (r *runner) runSnapshot(ctx context.Context, cp *Checkpointer, d *dispatcher, lease *Lease, snap **SnapshotState, at *changestream.Position) error {
	if at.Token == nil {
		p, err := r.s.snapshotPosition(ctx)
		if err != nil {
			return err
		}
		// Saved before any document is read: a crash resumes this
		// snapshot, with this hand-over position.
		if err := cp.saveSnapshot(ctx, p, *snap); err != nil {
			return err
		}
		*at = p
	}
	if err := r.snapshot(ctx, cp, d, lease, *at, **snap); err != nil {
		if saved, ok, lerr := cp.LoadCheckpoint(ctx); lerr == nil && ok && saved.Snapshot != nil {
			*snap, *at = saved.Snapshot, saved.Position
		}
		return err
	}
	*snap = nil
	return nil
}

// iterate hands the stream's events to the dispatcher until the stream
// ends (nil: invalidated), fails for good, or ctx ends. Errors the stream
// survives are retried after a backoff.
func (r *runner) iterate(ctx context.Context, cs *changestream.ChangeStream, cp *Checkpointer, d *dispatcher, lease *Lease, b *backoff) error {
	for {
		for cs.Next(ctx) {
			b.reset()
			j, err := r.decode(cs)
			if err != nil {
				if r.s.DeadLetter == nil {
					return err
				}
				j = undecodableJob(err)
			}
			j.pos = cs.Position()
			if r.s.DeadLetter != nil {
				j.event = append(bson.Raw(nil), cs.Current...)
			}
			if lease != nil && lease.Remaining() == 0 {
				// The lease ran out while this process was not looking
				// (paused, say): renew before handling anything more.
				if err := lease.Renew(ctx); err != nil {
					return fmt.Errorf("%w: it ran out and could not be renewed: %v", ErrLeaseLost, err)
				}
			}
			if j.ack, err = cp.Mark(ctx, cs.Position()); err != nil {
				return err
			}
			if err := d.dispatch(j); err != nil {
				return err
			}
		}
		err := cs.Err()
		if ctx.Err() != nil || !cs.Alive() {
			return err
		}
		r.s.log.Warn("checkpoint: the stream reported an error it survives", "key", r.s.Key, "error", err)
		if err := sleep(ctx, b.next()); err != nil {
			return err
		}
	}
}

// unresumable applies the OnUnresumable policy to err: it returns err to
// fail, nil to resync and carry on from now.
func (r *runner) unresumable(err error) error {
	if r.s.OnUnresumable == FailUnresumable {
		return err
	}
	return nil
}

func closeStream(ctx context.Context, cs *changestream.ChangeStream) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalTimeout)
	defer cancel()
	_ = cs.Close(cctx)
}

// isTransient reports an error after which trying again may succeed: no
// server, a network error, a driver timeout (not ctx's), or a retryable
// server error.
func isTransient(ctx context.Context, err error) bool {
	if ctx.Err() != nil || err == nil {
		return false
	}
	if errors.Is(err, changestream.ErrServerUnavailable) || mongo.IsNetworkError(err) || mongo.IsTimeout(err) {
		return true
	}
	var se mongo.ServerError
	if errors.As(err, &se) {
		return retryable.HasReadCode(se) ||
			se.HasErrorLabel("ResumableChangeStreamError") || se.HasErrorLabel("RetryableError")
	}
	return false
}
