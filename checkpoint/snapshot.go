package checkpoint

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// SnapshotMode says when Run reads the target's current documents before
// it streams its changes.
type SnapshotMode int

const (
	// SnapshotNever never reads the documents (the default): the consumer
	// sees changes only.
	SnapshotNever SnapshotMode = iota
	// SnapshotInitial reads them when there is no checkpoint: the first
	// start of a consumer.
	SnapshotInitial
	// SnapshotWhenNeeded reads them when there is no checkpoint, and again
	// when the checkpoint's position cannot be resumed from (its history
	// left the oplog): the lost-history policy becomes "snapshot again,
	// then stream". It cannot be combined with ResyncFromNow.
	SnapshotWhenNeeded
	// SnapshotAlways reads them at every start of Run.
	SnapshotAlways
)

// OperationSnapshot is the operation type of the events a snapshot hands
// the handler: one per document, with the document as FullDocument, its
// {_id} as DocumentKey, its namespace, and as ClusterTime the time of the
// position the stream takes over at. They have no ID (resume token).
const OperationSnapshot changestream.OperationType = "snapshot"

// OperationSnapshotStart and OperationSnapshotEnd are the operation types
// of the events that bracket a snapshot's documents (they carry only the
// operation type and ClusterTime). A snapshot that starts again after lost
// history cannot report the deletions it missed: a sink that keeps
// documents drops them at these bounds, for example by clearing itself at
// the start (the snapshot delivers every document again), or by deleting
// at the end what neither the snapshot nor a later event delivered. A
// snapshot resumed after a crash does not start again: it has no start
// event, and the sink keeps what the interrupted run gave it.
const (
	OperationSnapshotStart changestream.OperationType = "snapshotStart"
	OperationSnapshotEnd   changestream.OperationType = "snapshotEnd"
)

// SnapshotReport tells Config.OnSnapshot how a snapshot progresses.
type SnapshotReport struct {
	// Namespace is the "db.coll" being read.
	Namespace string
	// Read counts the documents of Namespace handed to the handler so far
	// in this run; Estimated is the collection's estimated count.
	Read, Estimated int64
	// Done is set once, after the whole snapshot.
	Done bool
}

// DefaultSnapshotBatch is how many documents a snapshot reads per query
// without Config.SnapshotBatch.
const DefaultSnapshotBatch = 1000

// snapshotNamespaces lists what the target's snapshot reads, in order:
// its collections (not views, not system collections), sorted.
func (s *settings) snapshotNamespaces(ctx context.Context) ([]string, error) {
	listColls := func(db *mongo.Database) ([]string, error) {
		names, err := db.ListCollectionNames(ctx, bson.D{{Key: "type", Value: "collection"}})
		if err != nil {
			return nil, fmt.Errorf("checkpoint: snapshot: listing the collections of %s: %w", db.Name(), err)
		}
		var out []string
		for _, n := range names {
			if !strings.HasPrefix(n, "system.") {
				out = append(out, db.Name()+"."+n)
			}
		}
		return out, nil
	}
	switch {
	case s.Collection != nil:
		return []string{s.spec.Target}, nil
	case s.Database != nil:
		out, err := listColls(s.Database)
		// Sorted: a resumed snapshot skips the namespaces before its own.
		slices.Sort(out)
		return out, err
	}
	var out []string
	dbs, err := s.Client.ListDatabaseNames(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: snapshot: listing the databases: %w", err)
	}
	for _, db := range dbs {
		if db == "admin" || db == "config" || db == "local" {
			continue
		}
		colls, err := listColls(s.Client.Database(db))
		if err != nil {
			return nil, err
		}
		out = append(out, colls...)
	}
	slices.Sort(out)
	return out, nil
}

// collectionOf returns the collection of namespace ns.
func (s *settings) collectionOf(ns string) *mongo.Collection {
	db, coll, _ := strings.Cut(ns, ".")
	if s.Collection != nil {
		return s.Collection
	}
	if s.Database != nil {
		return s.Database.Collection(coll)
	}
	return s.Client.Database(db).Collection(coll)
}

// snapshotPosition opens the stream from now and returns its position:
// where the stream will take over once the snapshot is read.
func (s *settings) snapshotPosition(ctx context.Context) (changestream.Position, error) {
	cs, err := s.watch(ctx, s.streamOptions(nil, nil, nil))
	if err != nil {
		return changestream.Position{}, err
	}
	defer closeStream(ctx, cs)
	return cs.Position(), nil
}

// snapshot reads the target's documents from state on, hands each to the
// dispatcher, and saves its progress after each batch, with at as the
// position the stream takes over at.
func (r *runner) snapshot(ctx context.Context, cp *Checkpointer, d *dispatcher, lease *Lease, at changestream.Position, state SnapshotState) error {
	s := r.s
	namespaces, err := s.snapshotNamespaces(ctx)
	if err != nil {
		return err
	}
	batch := s.SnapshotBatch
	if state.Namespace == "" && state.After == nil {
		if err := d.dispatch(r.marker(OperationSnapshotStart, at)); err != nil {
			return err
		}
	}
	for _, ns := range namespaces {
		if ns < state.Namespace {
			continue // read before a restart
		}
		after := state.After
		if ns != state.Namespace {
			after = nil
		}
		coll := s.collectionOf(ns)
		db, name, _ := strings.Cut(ns, ".")
		namespace := changestream.Namespace{DB: db, Coll: name}
		report := SnapshotReport{Namespace: ns}
		if s.OnSnapshot != nil {
			report.Estimated, _ = coll.EstimatedDocumentCount(ctx)
			s.OnSnapshot(report)
		}
		for {
			if lease != nil && lease.Remaining() == 0 {
				if err := lease.Renew(ctx); err != nil {
					return fmt.Errorf("%w: it ran out and could not be renewed: %v", ErrLeaseLost, err)
				}
			}
			// min/max with the _id index's hint read in index order across
			// every type of _id, and from where the last batch ended.
			limit := int64(batch)
			opts := options.Find().SetHint(bson.D{{Key: "_id", Value: 1}})
			if after != nil {
				limit++ // min is inclusive: the first is the last one handled
				opts.SetMin(after)
			}
			opts.SetLimit(limit).SetBatchSize(int32(limit))
			cur, err := coll.Find(ctx, bson.D{}, opts)
			if err != nil {
				return fmt.Errorf("checkpoint: snapshot of %s: %w", ns, err)
			}
			n := 0
			for cur.Next(ctx) {
				id, err := cur.Current.LookupErr("_id")
				if err != nil {
					continue
				}
				key, _ := bson.Marshal(bson.D{{Key: "_id", Value: id}})
				if after != nil && bytes.Equal(key, after) {
					continue // min is inclusive: handled before
				}
				j, err := r.snapshotJob(namespace, key, cur, at.ClusterTime)
				if err != nil {
					if s.DeadLetter == nil {
						_ = cur.Close(ctx)
						return err
					}
					j = undecodableJob(err)
				}
				j.pos = at
				if s.DeadLetter != nil {
					j.event = snapshotEvent(namespace, key, cur.Current, at.ClusterTime)
				}
				if err := d.dispatch(j); err != nil {
					_ = cur.Close(ctx)
					return err
				}
				after = key
				n++
			}
			err = cur.Err()
			_ = cur.Close(ctx)
			if err != nil {
				return fmt.Errorf("checkpoint: snapshot of %s: %w", ns, err)
			}
			if err := d.wait(); err != nil {
				return err
			}
			report.Read += int64(n)
			if n == 0 {
				break
			}
			if err := cp.saveSnapshot(ctx, at, &SnapshotState{Namespace: ns, After: after}); err != nil {
				return err
			}
			if s.OnSnapshot != nil {
				s.OnSnapshot(report)
			}
		}
	}
	if err := d.dispatch(r.marker(OperationSnapshotEnd, at)); err != nil {
		return err
	}
	if err := d.wait(); err != nil {
		return err
	}
	if err := cp.saveSnapshot(ctx, at, nil); err != nil {
		return err
	}
	if s.OnSnapshot != nil {
		s.OnSnapshot(SnapshotReport{Done: true})
	}
	return nil
}

// marker is the job of a snapshot's start or end event, at the position
// the snapshot reads at.
func (r *runner) marker(op changestream.OperationType, at changestream.Position) job {
	j := r.markerJob(op, at.ClusterTime)
	j.pos = at
	if r.s.DeadLetter != nil {
		j.event = markerEvent(op, at.ClusterTime)
	}
	return j
}
