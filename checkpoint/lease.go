package checkpoint

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Lease is the right of one owner to consume a key, until it expires by
// the server's clock. Every acquisition increments the key's epoch, and a
// store fenced by the lease ([MongoStore.Fenced]) saves only while the
// epoch is still its own: a former holder, paused or partitioned past its
// lease, cannot overwrite its successor's checkpoint.
//
// The holder must stop consuming when [Lease.Remaining] reaches zero
// unless a renewal succeeded: that deadline is measured from the moment
// the acquiring or renewing request was sent, on the local monotonic
// clock, so it falls before the server's expiry.
type Lease struct {
	store *MongoStore
	key   string
	owner string
	ttl   time.Duration

	mu      sync.Mutex
	epoch   int64
	until   time.Time // the server's expiry, as the server wrote it
	expires time.Time // the local deadline: when the request was sent, plus ttl
}

// Key returns the leased key.
func (l *Lease) Key() string { return l.key }

// Owner returns the owner the lease was acquired for.
func (l *Lease) Owner() string { return l.owner }

// Epoch returns the lease's epoch: it grows with every acquisition of the
// key, so a handler can fence its own writes with it too.
func (l *Lease) Epoch() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epoch
}

// Until returns when the lease expires, by the server's clock.
func (l *Lease) Until() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.until
}

// Remaining returns how long the holder may still act on the lease: the
// time left until the local deadline, 0 once it has passed.
func (l *Lease) Remaining() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(time.Until(l.expires), 0)
}

// DefaultOwner returns an owner name unique to this process and call:
// the host name, the process id and random bytes.
func DefaultOwner() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Acquire takes the lease of key for owner for ttl, if it is free: never
// taken, released, expired by the server's clock ($$NOW), or already
// owner's (an owner re-acquiring its own lease fences its earlier
// incarnation too). A lease held by another owner fails with a
// *LeaseHeldError (errors.Is ErrLeaseHeld). Owners must be unique per
// process: use [DefaultOwner] when in doubt.
func (s *MongoStore) Acquire(ctx context.Context, key, owner string, ttl time.Duration) (*Lease, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if owner == "" {
		return nil, errors.New("checkpoint: Acquire: empty owner")
	}
	if ttl < time.Millisecond {
		return nil, fmt.Errorf("checkpoint: Acquire: ttl %v is below 1ms", ttl)
	}
	filter := bson.D{{Key: "_id", Value: key}, {Key: "$expr", Value: bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "$lt", Value: bson.A{"$leaseUntil", "$$NOW"}}},
		bson.D{{Key: "$eq", Value: bson.A{"$owner", owner}}},
	}}}}}
	update := mongo.Pipeline{{{Key: "$set", Value: bson.D{
		{Key: "owner", Value: owner},
		{Key: "epoch", Value: bson.D{{Key: "$add", Value: bson.A{bson.D{{Key: "$ifNull", Value: bson.A{"$epoch", int64(0)}}}, int64(1)}}}},
		{Key: "leaseUntil", Value: bson.D{{Key: "$add", Value: bson.A{"$$NOW", ttl.Milliseconds()}}}},
	}}}}
	sent := time.Now()
	var d storedDoc
	err := s.coll.FindOneAndUpdate(ctx, filter, update,
		options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After)).Decode(&d)
	if mongo.IsDuplicateKeyError(err) {
		// The document exists and the filter did not match: the lease is
		// held. Say by whom, if it still is.
		held, ok, lerr := s.load(ctx, key)
		if lerr != nil {
			return nil, lerr
		}
		if !ok {
			return nil, fmt.Errorf("checkpoint: acquiring %q: %w", key, err)
		}
		return nil, &LeaseHeldError{Key: key, Owner: held.Owner, Until: held.LeaseUntil}
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: acquiring %q: %w", key, err)
	}
	return &Lease{store: s, key: key, owner: owner, ttl: ttl, epoch: d.Epoch, until: d.LeaseUntil, expires: sent.Add(ttl)}, nil
}

// Renew extends the lease by its ttl from now, by the server's clock. It
// fails with ErrLeaseLost if another owner has acquired the key since; a
// lease that expired without being taken is renewed.
func (l *Lease) Renew(ctx context.Context) error {
	epoch := l.Epoch()
	sent := time.Now()
	var d storedDoc
	err := l.store.coll.FindOneAndUpdate(ctx,
		bson.D{{Key: "_id", Value: l.key}, {Key: "epoch", Value: epoch}},
		mongo.Pipeline{{{Key: "$set", Value: bson.D{
			{Key: "leaseUntil", Value: bson.D{{Key: "$add", Value: bson.A{"$$NOW", l.ttl.Milliseconds()}}}},
		}}}},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return ErrLeaseLost
	}
	if err != nil {
		return fmt.Errorf("checkpoint: renewing %q: %w", l.key, err)
	}
	l.mu.Lock()
	l.until, l.expires = d.LeaseUntil, sent.Add(l.ttl)
	l.mu.Unlock()
	return nil
}

// Release gives the lease up at once, so that a standby can take it
// without waiting for it to expire. Releasing a lease already taken by
// another owner returns ErrLeaseLost and changes nothing.
func (l *Lease) Release(ctx context.Context) error {
	res, err := l.store.coll.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: l.key}, {Key: "epoch", Value: l.Epoch()}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "leaseUntil", Value: time.Unix(0, 0).UTC()}}}})
	if err != nil {
		return fmt.Errorf("checkpoint: releasing %q: %w", l.key, err)
	}
	l.mu.Lock()
	l.expires = time.Time{}
	l.mu.Unlock()
	if res.MatchedCount == 0 {
		return ErrLeaseLost
	}
	return nil
}

// Fenced returns a Store whose saves of the lease's key succeed only while
// the lease's epoch is current, failing with ErrLeaseLost otherwise. It
// saves no other key.
func (s *MongoStore) Fenced(l *Lease) Store { return &fencedStore{s: s, l: l} }

type fencedStore struct {
	s *MongoStore
	l *Lease
}

// Load reads the checkpoint; reads are not fenced.
func (f *fencedStore) Load(ctx context.Context, key string) (Checkpoint, bool, error) {
	return f.s.Load(ctx, key)
}

// Save saves the lease's key while the lease's epoch is current.
func (f *fencedStore) Save(ctx context.Context, key string, cp Checkpoint) error {
	if key != f.l.key {
		return fmt.Errorf("checkpoint: a store fenced by the lease of %q cannot save %q", f.l.key, key)
	}
	epoch := f.l.Epoch()
	return f.s.save(ctx, key, cp, &epoch)
}
