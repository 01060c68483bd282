package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Checkpoint is a saved stream position.
type Checkpoint struct {
	// Position is where the stream resumes: the token of the last event
	// handled, or a high-water mark a quiet stream reported.
	changestream.Position
	// Spec is the fingerprint of the stream the position belongs to (see
	// [Spec]): a token is only meaningful for the stream that issued it.
	Spec string
	// Updated is when the checkpoint was saved, by the store's clock
	// (the server's, for a MongoStore).
	Updated time.Time
	// Snapshot is set while a snapshot is under way (see Config.Snapshot):
	// how far it got. Position is then where the stream takes over once
	// the snapshot is done.
	Snapshot *SnapshotState
}

// SnapshotState is how far an unfinished snapshot got: namespaces are
// read in order, each by ascending _id.
type SnapshotState struct {
	// Namespace is the "db.coll" being read.
	Namespace string
	// After is {_id: v}, the last document of Namespace handled; nil to
	// start Namespace from its first document.
	After bson.Raw
}

// sameSnapshot reports whether two snapshot states are the same.
func sameSnapshot(a, b *SnapshotState) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Namespace == b.Namespace && bytes.Equal(a.After, b.After)
}

// Store saves checkpoints by key. Implementations must be safe for
// concurrent use.
type Store interface {
	// Load returns the checkpoint saved under key, and false if there is
	// none: the store is there and holds nothing for key. A store that is
	// not there, or a saved value that cannot be a position, is an error
	// (a *DamagedError for this package's stores), never false: that
	// would start the stream from now and skip what came since.
	Load(ctx context.Context, key string) (Checkpoint, bool, error)
	// Save stores cp under key unless the saved checkpoint is already past
	// cp's position (see [Compare]), or at it with the same snapshot
	// state: a save never moves a checkpoint backwards, and one that would
	// is a no-op, not an error. A saved
	// checkpoint of another stream (Spec) is not replaced: Save returns a
	// *SpecMismatchError.
	Save(ctx context.Context, key string, cp Checkpoint) error
}

// ErrSpecMismatch is matched (errors.Is) by a *SpecMismatchError.
var ErrSpecMismatch = errors.New("checkpoint: the checkpoint belongs to a different stream")

// SpecMismatchError reports a checkpoint taken with a different stream
// (target, pipeline, fullDocument modes, split) than the one being opened:
// its token cannot be trusted to resume this one. Delete the checkpoint,
// or use another key, to start the new stream.
type SpecMismatchError struct {
	Key   string
	Saved string // the checkpoint's fingerprint
	Want  string // the fingerprint of the stream being opened
}

// Error says which checkpoint belongs to which stream.
func (e *SpecMismatchError) Error() string {
	return fmt.Sprintf("checkpoint: %q was saved for the stream %q, not %q: tokens are not portable between streams; delete the checkpoint or use another key", e.Key, e.Saved, e.Want)
}

// Is makes errors.Is(err, ErrSpecMismatch) true.
func (e *SpecMismatchError) Is(target error) bool { return target == ErrSpecMismatch }

// ErrLeaseLost is returned by a fenced save, a renewal or a release once
// another owner has taken the lease: the caller must stop consuming.
var ErrLeaseLost = errors.New("checkpoint: the lease was taken by another owner")

// ErrLeaseHeld is matched (errors.Is) by a *LeaseHeldError.
var ErrLeaseHeld = errors.New("checkpoint: the lease is held by another owner")

// LeaseHeldError reports that Acquire found the lease held by another
// owner whose lease has not expired.
type LeaseHeldError struct {
	Key   string
	Owner string    // the current holder
	Until time.Time // when its lease expires, by the server's clock
}

// Error names the holder and when its lease expires.
func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("checkpoint: the lease %q is held by %q until %s", e.Key, e.Owner, e.Until.UTC().Format(time.RFC3339Nano))
}

// Is makes errors.Is(err, ErrLeaseHeld) true.
func (e *LeaseHeldError) Is(target error) bool { return target == ErrLeaseHeld }

// ErrDamaged is matched (errors.Is) by a *DamagedError.
var ErrDamaged = errors.New("checkpoint: the store holds a checkpoint that cannot be used")

// DamagedError reports a store that is not there, or a saved checkpoint
// that is not a position: a token that is null, of the wrong type, an
// empty document or one without _data; a time without a token; a file that
// is not a checkpoint file; a checkpoint file that is a dangling symlink;
// a store directory that is gone. None of these is "no checkpoint": that
// would start the stream from now and skip every event since the saved
// position. Nothing is overwritten; a person decides.
type DamagedError struct {
	Key     string // the checkpoint's key
	Where   string // the file, or the document (collection and _id)
	Problem string // what is wrong
	Fix     string // what to do about it
}

// Error names the key, the file or document, what is wrong and the fix.
func (e *DamagedError) Error() string {
	return fmt.Sprintf("checkpoint: the checkpoint %q (%s) cannot be used: %s; nothing was overwritten: %s", e.Key, e.Where, e.Problem, e.Fix)
}

// Is makes errors.Is(err, ErrDamaged) true.
func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }

// fixDamaged is the fix for a saved value that cannot be a position.
const fixDamaged = "restore it from a backup, or delete it to start the stream afresh (the events since it was saved are then not delivered)"

// checkToken reports what is wrong with a saved token, "" if nothing: it
// must be a document with a _data field, as every server's is.
func checkToken(token bson.Raw) string {
	if len(token) == 0 {
		return "it has no token"
	}
	if err := token.Validate(); err != nil {
		return fmt.Sprintf("its token is not a document: %v", err)
	}
	if _, err := token.LookupErr("_data"); err != nil {
		return "its token has no _data field"
	}
	return ""
}

// checkKey refuses an empty key.
func checkKey(key string) error {
	if key == "" {
		return errors.New("checkpoint: empty key")
	}
	return nil
}

// checkSave refuses a checkpoint that cannot be saved.
func checkSave(key string, cp Checkpoint) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if cp.Token == nil {
		return errors.New("checkpoint: a checkpoint without a token")
	}
	return nil
}
