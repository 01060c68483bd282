package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

// MongoStore keeps checkpoints, and the leases that guard them, in a
// collection of the caller's choosing, one document per key:
//
//	{_id: key, token, clusterTime, order, highWater, spec, updated,
//	 owner, epoch, leaseUntil}
//
// Writes use majority write concern and reads majority read concern, so
// that a checkpoint or a lease survives the failover of a replica set. A
// save's condition (forward only, same spec, and for a fenced store the
// lease's epoch) is part of the update's filter: it holds whatever other
// processes do at the same time.
type MongoStore struct {
	coll *mongo.Collection
}

// NewMongoStore returns a store in coll.
func NewMongoStore(coll *mongo.Collection) (*MongoStore, error) {
	if coll == nil || coll.Database() == nil || coll.Name() == "" {
		return nil, errors.New("checkpoint: NewMongoStore: the collection was not made by a client's Database(...).Collection(...)")
	}
	return &MongoStore{coll: coll.Clone(options.Collection().
		SetWriteConcern(writeconcern.Majority()).
		SetReadConcern(readconcern.Majority()))}, nil
}

// storedDoc is a key's document.
type storedDoc struct {
	Token       bson.Raw        `bson:"token,omitempty"`
	ClusterTime bson.Timestamp  `bson:"clusterTime"`
	HighWater   bool            `bson:"highWater"`
	Spec        *string         `bson:"spec,omitempty"`
	Updated     time.Time       `bson:"updated"`
	Snapshot    *storedSnapshot `bson:"snapshot,omitempty"`
	Owner       string          `bson:"owner"`
	Epoch       int64           `bson:"epoch"`
	LeaseUntil  time.Time       `bson:"leaseUntil"`

	raw bson.Raw // the document as stored, when read by load
}

// storedSnapshot is a SnapshotState in a key's document.
type storedSnapshot struct {
	Namespace string   `bson:"namespace"`
	After     bson.Raw `bson:"after,omitempty"`
}

func (s *MongoStore) load(ctx context.Context, key string) (storedDoc, bool, error) {
	raw, err := s.coll.FindOne(ctx, bson.D{{Key: "_id", Value: key}}).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return storedDoc{}, false, nil
	}
	if err != nil {
		return storedDoc{}, false, fmt.Errorf("checkpoint: loading %q: %w", key, err)
	}
	d := storedDoc{raw: raw}
	// Fields of the wrong type decode as absent here; checkDoc, reading
	// raw, reports them.
	if tok, ok := raw.Lookup("token").DocumentOK(); ok {
		d.Token = tok
	}
	if t, i, ok := raw.Lookup("clusterTime").TimestampOK(); ok {
		d.ClusterTime = bson.Timestamp{T: t, I: i}
	}
	d.HighWater, _ = raw.Lookup("highWater").BooleanOK()
	if spec, ok := raw.Lookup("spec").StringValueOK(); ok {
		d.Spec = &spec
	}
	if dt, ok := raw.Lookup("updated").DateTimeOK(); ok {
		d.Updated = time.UnixMilli(dt).UTC()
	}
	if snap, ok := raw.Lookup("snapshot").DocumentOK(); ok {
		d.Snapshot = &storedSnapshot{}
		d.Snapshot.Namespace, _ = snap.Lookup("namespace").StringValueOK()
		d.Snapshot.After, _ = snap.Lookup("after").DocumentOK()
	}
	d.Owner, _ = raw.Lookup("owner").StringValueOK()
	d.Epoch, _ = raw.Lookup("epoch").AsInt64OK()
	if dt, ok := raw.Lookup("leaseUntil").DateTimeOK(); ok {
		d.LeaseUntil = time.UnixMilli(dt).UTC()
	}
	return d, true, nil
}

// Load returns the checkpoint saved under key, and false if there is no
// document for key or it holds only a lease. A document whose checkpoint
// fields cannot be a position (a token that is null, of the wrong type,
// empty or without _data; a time without a token) is a *DamagedError.
func (s *MongoStore) Load(ctx context.Context, key string) (Checkpoint, bool, error) {
	if err := checkKey(key); err != nil {
		return Checkpoint{}, false, err
	}
	d, ok, err := s.load(ctx, key)
	if err != nil || !ok {
		return Checkpoint{}, false, err
	}
	if err := s.checkDoc(key, d); err != nil {
		return Checkpoint{}, false, err
	}
	if d.Token == nil {
		return Checkpoint{}, false, nil // a lease, no checkpoint yet
	}
	cp := Checkpoint{
		Position: changestream.Position{Token: d.Token, ClusterTime: d.ClusterTime, HighWater: d.HighWater},
		Updated:  d.Updated,
	}
	if d.Spec != nil {
		cp.Spec = *d.Spec
	}
	if d.Snapshot != nil {
		cp.Snapshot = &SnapshotState{Namespace: d.Snapshot.Namespace, After: d.Snapshot.After}
	}
	return cp, true, nil
}

// checkDoc fails with a *DamagedError if d's checkpoint fields cannot be
// a position; a document with none of them holds only a lease.
func (s *MongoStore) checkDoc(key string, d storedDoc) error {
	damaged := func(problem string) error {
		return &DamagedError{Key: key, Where: fmt.Sprintf("the document {_id: %q} in %s.%s", key, s.coll.Database().Name(), s.coll.Name()),
			Problem: problem, Fix: fixDamaged}
	}
	raw := d.raw
	tok, err := raw.LookupErr("token")
	if err != nil {
		for _, f := range []string{"clusterTime", "order", "spec", "highWater", "snapshot"} {
			if _, err := raw.LookupErr(f); err == nil {
				return damaged(fmt.Sprintf("it has a %s and no token", f))
			}
		}
		return nil
	}
	if tok.Type != bson.TypeEmbeddedDocument {
		return damaged(fmt.Sprintf("its token is a %s, not a document", tok.Type))
	}
	if problem := checkToken(tok.Document()); problem != "" {
		return damaged(problem)
	}
	if _, _, ok := raw.Lookup("clusterTime").TimestampOK(); !ok {
		return damaged("its clusterTime is not a timestamp")
	}
	if d.Spec == nil {
		return damaged("it names no stream (spec)")
	}
	return nil
}

// Save stores cp under key unless the saved checkpoint is at or past it.
func (s *MongoStore) Save(ctx context.Context, key string, cp Checkpoint) error {
	return s.save(ctx, key, cp, nil)
}

// Delete removes key's document, checkpoint and lease.
func (s *MongoStore) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if _, err := s.coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: key}}); err != nil {
		return fmt.Errorf("checkpoint: deleting %q: %w", key, err)
	}
	return nil
}

// save writes cp if it moves the checkpoint forward, the spec matches
// and, when epoch is set, the lease is still at that epoch.
func (s *MongoStore) save(ctx context.Context, key string, cp Checkpoint, epoch *int64) error {
	if err := checkSave(key, cp); err != nil {
		return err
	}
	order, _ := tokenData(cp.Position)
	ts := cp.ClusterTime
	filter := bson.D{
		{Key: "_id", Value: key},
		{Key: "$and", Value: bson.A{
			// Only over a checkpoint that is a position, or none: a
			// damaged one is reported below, never overwritten.
			bson.D{{Key: "$or", Value: bson.A{
				bson.D{{Key: "token", Value: bson.D{{Key: "$exists", Value: false}}}, {Key: "clusterTime", Value: bson.D{{Key: "$exists", Value: false}}},
					{Key: "spec", Value: bson.D{{Key: "$exists", Value: false}}}},
				bson.D{{Key: "token._data", Value: bson.D{{Key: "$exists", Value: true}}}, {Key: "clusterTime", Value: bson.D{{Key: "$type", Value: "timestamp"}}},
					{Key: "spec", Value: bson.D{{Key: "$type", Value: "string"}}}},
			}}},
			bson.D{{Key: "$or", Value: bson.A{
				bson.D{{Key: "token", Value: bson.D{{Key: "$exists", Value: false}}}},
				bson.D{{Key: "clusterTime", Value: bson.D{{Key: "$lt", Value: ts}}}},
				bson.D{{Key: "clusterTime", Value: ts}, {Key: "order", Value: bson.D{{Key: "$lt", Value: order}}}},
				// The same position: a snapshot's progress, or a repeat.
				bson.D{{Key: "clusterTime", Value: ts}, {Key: "order", Value: order}},
			}}},
			bson.D{{Key: "$or", Value: bson.A{
				bson.D{{Key: "spec", Value: bson.D{{Key: "$exists", Value: false}}}},
				bson.D{{Key: "spec", Value: cp.Spec}},
			}}},
		}},
	}
	if epoch != nil {
		filter = append(filter, bson.E{Key: "epoch", Value: *epoch})
	}
	set := bson.D{
		{Key: "token", Value: cp.Token}, {Key: "clusterTime", Value: ts}, {Key: "order", Value: order},
		{Key: "highWater", Value: cp.HighWater}, {Key: "spec", Value: cp.Spec},
	}
	update := bson.D{{Key: "$currentDate", Value: bson.D{{Key: "updated", Value: true}}}}
	if ss := cp.Snapshot; ss != nil {
		snap := bson.D{{Key: "namespace", Value: ss.Namespace}}
		if ss.After != nil {
			snap = append(snap, bson.E{Key: "after", Value: ss.After})
		}
		set = append(set, bson.E{Key: "snapshot", Value: snap})
	} else {
		update = append(update, bson.E{Key: "$unset", Value: bson.D{{Key: "snapshot", Value: ""}}})
	}
	update = append(update, bson.E{Key: "$set", Value: set})
	// A fenced save never creates the document: without it there is no
	// lease, so the lease was lost.
	res, err := s.coll.UpdateOne(ctx, filter, update, options.UpdateOne().SetUpsert(epoch == nil))
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("checkpoint: saving %q: %w", key, err)
	}
	if err == nil && (res.MatchedCount > 0 || res.UpsertedCount > 0) {
		return nil
	}
	// The filter did not match: find out which condition failed.
	d, ok, err := s.load(ctx, key)
	if err != nil {
		return err
	}
	if ok {
		if err := s.checkDoc(key, d); err != nil {
			return err
		}
	}
	switch {
	case epoch != nil && (!ok || d.Epoch != *epoch):
		return ErrLeaseLost
	case ok && d.Spec != nil && *d.Spec != cp.Spec:
		return &SpecMismatchError{Key: key, Saved: *d.Spec, Want: cp.Spec}
	}
	return nil // already at or past cp
}
