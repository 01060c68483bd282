package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Run consumes a change stream durably until ctx ends, and returns nil
// then. It:
//
//   - with a Lease, waits as a standby until it can acquire the key's
//     lease, renews it while it consumes, and goes back to waiting if it
//     loses it (a fenced save or a renewal says so);
//   - loads the checkpoint (refusing one of another stream) and opens the
//     stream after it with startAfter, or from now if there is none;
//   - decodes each event into Event[T] and calls handle, sequentially or
//     in parallel by document key (Config.Workers), marking each event in
//     a [Checkpointer] and acknowledging it when handle returns nil;
//   - commits the acknowledged position every CommitInterval, the
//     progress of a quiet stream too, and once more on the way out.
//
// An error from handle ends Run with that error; the event is not
// acknowledged and is delivered again by the next Run. Transient errors
// are retried with a capped backoff and logged; a position the server
// cannot resume from and invalidation follow Config's policies. A handler
// reads the lease it runs under with [LeaseFromContext].
func Run[T any](ctx context.Context, cfg Config, handle func(context.Context, changestream.Event[T]) error) error {
	if handle == nil {
		return errors.New("checkpoint: Run: nil handler")
	}
	s, err := cfg.check()
	if err != nil {
		return err
	}
	decode := func(cs *changestream.ChangeStream) (job, error) {
		var ev changestream.Event[T]
		if err := cs.Decode(&ev); err != nil {
			return job{}, fmt.Errorf("checkpoint: decoding the event at %v: %w", cs.Position().ClusterTime, err)
		}
		return job{
			key:        documentIdentity(ev.Namespace.DB, ev.Namespace.Coll, ev.DocumentKey),
			invalidate: ev.OperationType == changestream.OperationInvalidate,
			run:        func(ctx context.Context) error { return handle(ctx, ev) },
		}, nil
	}
	snapshotJob := func(ns changestream.Namespace, key bson.Raw, cur *mongo.Cursor, at bson.Timestamp) (job, error) {
		var doc T
		if err := cur.Decode(&doc); err != nil {
			return job{}, fmt.Errorf("checkpoint: decoding the document %s of %s.%s: %w", key, ns.DB, ns.Coll, err)
		}
		ev := changestream.Event[T]{OperationType: OperationSnapshot, Namespace: ns, DocumentKey: key, FullDocument: &doc, ClusterTime: at}
		return job{key: documentIdentity(ns.DB, ns.Coll, key), run: func(ctx context.Context) error { return handle(ctx, ev) }}, nil
	}
	markerJob := func(op changestream.OperationType, at bson.Timestamp) job {
		ev := changestream.Event[T]{OperationType: op, ClusterTime: at}
		return job{run: func(ctx context.Context) error { return handle(ctx, ev) }}
	}
	return run(ctx, s, decode, snapshotJob, markerJob)
}

// RunRaw is Run for a handler that takes each event as the server sent it
// (after WithSplitLargeEvents puts a split event back together): for
// tools that print or forward events whole. ev is the handler's to keep.
func RunRaw(ctx context.Context, cfg Config, handle func(ctx context.Context, ev bson.Raw) error) error {
	if handle == nil {
		return errors.New("checkpoint: RunRaw: nil handler")
	}
	s, err := cfg.check()
	if err != nil {
		return err
	}
	decode := func(cs *changestream.ChangeStream) (job, error) {
		ev := append(bson.Raw(nil), cs.Current...)
		op, _ := ev.Lookup("operationType").StringValueOK()
		key, _ := ev.Lookup("documentKey").DocumentOK()
		db, _ := ev.Lookup("ns", "db").StringValueOK()
		coll, _ := ev.Lookup("ns", "coll").StringValueOK()
		return job{
			key:        documentIdentity(db, coll, key),
			invalidate: op == string(changestream.OperationInvalidate),
			run:        func(ctx context.Context) error { return handle(ctx, ev) },
		}, nil
	}
	snapshotJob := func(ns changestream.Namespace, key bson.Raw, cur *mongo.Cursor, at bson.Timestamp) (job, error) {
		ev := snapshotEvent(ns, key, cur.Current, at)
		return job{key: documentIdentity(ns.DB, ns.Coll, key), run: func(ctx context.Context) error { return handle(ctx, ev) }}, nil
	}
	markerJob := func(op changestream.OperationType, at bson.Timestamp) job {
		ev := markerEvent(op, at)
		return job{run: func(ctx context.Context) error { return handle(ctx, ev) }}
	}
	return run(ctx, s, decode, snapshotJob, markerJob)
}

// snapshotEvent is a snapshot's document as an event: what RunRaw hands
// over, and what a dead letter holds.
func snapshotEvent(ns changestream.Namespace, key, doc bson.Raw, at bson.Timestamp) bson.Raw {
	return bson.Raw(bsoncore.NewDocumentBuilder().
		AppendString("operationType", string(OperationSnapshot)).
		AppendTimestamp("clusterTime", at.T, at.I).
		AppendDocument("ns", bsoncore.NewDocumentBuilder().AppendString("db", ns.DB).AppendString("coll", ns.Coll).Build()).
		AppendDocument("documentKey", bsoncore.Document(key)).
		AppendDocument("fullDocument", bsoncore.Document(doc)).Build())
}

// markerEvent is a snapshot's start or end event.
func markerEvent(op changestream.OperationType, at bson.Timestamp) bson.Raw {
	return bson.Raw(bsoncore.NewDocumentBuilder().AppendString("operationType", string(op)).AppendTimestamp("clusterTime", at.T, at.I).Build())
}

// run is Run once the handler is wrapped in decode and snapshotJob.
func run(ctx context.Context, s *settings, decode func(*changestream.ChangeStream) (job, error),
	snapshotJob func(changestream.Namespace, bson.Raw, *mongo.Cursor, bson.Timestamp) (job, error),
	markerJob func(changestream.OperationType, bson.Timestamp) job) (err error) {
	r := &runner{s: s, decode: decode, snapshotJob: snapshotJob, markerJob: markerJob}
	s.stats.set(HealthStarting, nil)
	defer func() {
		s.stats.leased(0)
		if err != nil {
			s.stats.set(changestream.HealthFailed, err)
		} else {
			s.stats.set(HealthStopped, nil)
		}
	}()
	if s.Lease == nil {
		return ignoreCancel(ctx, r.consume(ctx, s.Store, nil))
	}
	for {
		lease, err := r.acquire(ctx)
		if err != nil {
			return ignoreCancel(ctx, err)
		}
		s.log.Info("checkpoint: lease acquired", "key", s.Key, "owner", lease.Owner(), "epoch", lease.Epoch())
		s.stats.leased(lease.Epoch())
		s.stats.set(HealthStarting, nil)
		err = r.consume(ctx, s.Lease.Store.Fenced(lease), lease)
		s.stats.leased(0)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lease.ttl)
		rerr := lease.Release(rctx)
		cancel()
		if errors.Is(err, ErrLeaseLost) || (err == nil && errors.Is(rerr, ErrLeaseLost)) {
			if s.Lease.StopWhenLost {
				s.log.Warn("checkpoint: lease lost; stopping", "key", s.Key, "owner", lease.Owner(), "epoch", lease.Epoch())
				return ErrLeaseLost
			}
			s.log.Warn("checkpoint: lease lost; standing by", "key", s.Key, "owner", lease.Owner(), "epoch", lease.Epoch())
			if ctx.Err() == nil {
				continue
			}
		}
		return ignoreCancel(ctx, err)
	}
}

// ignoreCancel turns the end of the caller's ctx into a clean return.
func ignoreCancel(ctx context.Context, err error) error {
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return nil
	}
	return err
}

// job is one decoded event for the handler.
type job struct {
	key        bson.Raw // the document's identity (documentIdentity); nil for DDL and invalidate
	invalidate bool
	run        func(context.Context) error
	ack        Ack
	pos        changestream.Position // where the event is, for the handler policy
	event      bson.Raw              // the event, kept only for Config.DeadLetter
}

type runner struct {
	s      *settings
	decode func(*changestream.ChangeStream) (job, error)
	// snapshotJob makes the job of a snapshot's document: cur's current
	// document, whose key is {_id}, read for the stream at time at.
	snapshotJob func(ns changestream.Namespace, key bson.Raw, cur *mongo.Cursor, at bson.Timestamp) (job, error)
	// markerJob makes the job of a snapshot's start or end event.
	markerJob func(op changestream.OperationType, at bson.Timestamp) job
}

// acquire waits for the lease.
func (r *runner) acquire(ctx context.Context) (*Lease, error) {
	lc := r.s.Lease
	b := r.newBackoff()
	for {
		l, err := lc.Store.Acquire(ctx, r.s.Key, lc.Owner, lc.TTL)
		if err == nil {
			return l, nil
		}
		wait := lc.RetryEvery
		r.s.stats.set(HealthStandby, nil)
		if !errors.Is(err, ErrLeaseHeld) {
			if !isTransient(ctx, err) {
				return nil, err
			}
			r.s.log.Warn("checkpoint: acquiring the lease", "key", r.s.Key, "error", err)
			r.s.stats.set(HealthStarting, err)
			wait = b.next()
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// leaseKey is the context key of the lease a handler runs under.
type leaseKey struct{}

// LeaseFromContext returns the lease under which Run called the handler
// with ctx, nil without one. A handler can fence its own writes with its
// epoch.
func LeaseFromContext(ctx context.Context) *Lease {
	l, _ := ctx.Value(leaseKey{}).(*Lease)
	return l
}

// keepLease renews the lease every ttl/3 until ctx ends, and cancels ctx
// with ErrLeaseLost once the lease is lost or has run out locally.
func keepLease(ctx context.Context, cancel context.CancelCauseFunc, l *Lease, s *settings) {
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, rcancel := context.WithTimeout(ctx, max(l.Remaining(), l.ttl/3))
		err := l.Renew(rctx)
		rcancel()
		switch {
		case errors.Is(err, ErrLeaseLost):
			cancel(ErrLeaseLost)
			return
		case err != nil && ctx.Err() == nil:
			s.log.Warn("checkpoint: renewing the lease", "key", s.Key, "error", err)
			if l.Remaining() == 0 {
				cancel(fmt.Errorf("%w: it ran out before a renewal succeeded: %v", ErrLeaseLost, err))
				return
			}
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// backoff doubles a wait from MinBackoff up to MaxBackoff.
type backoff struct {
	min, max, cur time.Duration
}

func (r *runner) newBackoff() *backoff {
	return &backoff{min: r.s.MinBackoff, max: r.s.MaxBackoff}
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }
