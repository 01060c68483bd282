package changestream

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
)

// cursor is one server-side aggregate cursor of the stream. The driver's
// Cursor does the I/O: it pins getMore and killCursors to the server (and,
// load-balanced, the connection) that owns the cursor and sends them in the
// stream's session, which a RunCommand of our own could not guarantee.
type cursor struct {
	cur *mongo.Cursor
	// stale marks a cursor that may no longer be used (its last call failed
	// or was abandoned), but that may still exist on the server: it is
	// killed before the stream resumes.
	stale bool
	// awaitSet records that a maxAwaitTime was set on cur.
	awaitSet bool
}

// Server waits and the deadlines they must fit.
const (
	// defaultServerAwait is how long a server waits in a getMore that
	// carries no maxTimeMS.
	defaultServerAwait = time.Second
	// minGetMoreTime is the least time left on a deadline worth a getMore.
	minGetMoreTime = 5 * time.Millisecond
	// maxAwaitMargin caps the time kept between the end of the server's wait
	// and the caller's deadline, for the reply to travel back.
	maxAwaitMargin = 50 * time.Millisecond
)

// killTimeout bounds killCursors, which is best effort: a stream must not
// hang on a server that no longer answers when it is about to resume
// elsewhere or close.
const killTimeout = 5 * time.Second

// openCursor runs the aggregate in cmd on db and wraps the cursor.
func openCursor(ctx context.Context, db *mongo.Database, cmd bson.D, cfg *config, rp *readpref.ReadPref) (*cursor, error) {
	runOpts := options.RunCmd()
	if rp != nil {
		runOpts.SetReadPreference(rp)
	}
	cur, err := db.RunCommandCursor(ctx, cmd, runOpts)
	if err != nil {
		return nil, err
	}
	if cur.RemainingBatchLength() == 0 {
		// The driver treats the first batch apart: the first TryNext on an
		// empty one returns false without asking the server. Spend that call
		// now, while it costs no I/O, so every later TryNext is one getMore.
		cur.TryNext(ctx)
	}
	if cfg.batchSize != nil {
		cur.SetBatchSize(*cfg.batchSize)
	}
	if cfg.comment != nil {
		cur.SetComment(cfg.comment)
	}
	return &cursor{cur: cur, awaitSet: cfg.maxAwaitTime != nil}, nil
}

// fitAwait sets how long the server may wait in the next getMore so that
// its answer arrives before ctx's deadline: an empty batch, rather than a
// deadline that breaks the connection, and with it the cursor, mid-read.
// Without a deadline the configured wait applies; once a deadline has made
// the stream send maxTimeMS, an unconfigured stream keeps sending the
// server's default, as the driver cannot unset it.
func (c *cursor) fitAwait(ctx context.Context, configured *time.Duration) {
	want := defaultServerAwait
	if configured != nil {
		want = *configured
	}
	dl, ok := ctx.Deadline()
	if !ok {
		if configured != nil || c.awaitSet {
			c.cur.SetMaxAwaitTime(want)
		}
		return
	}
	remaining := time.Until(dl)
	budget := remaining - min(max(remaining/10, 2*time.Millisecond), maxAwaitMargin)
	if budget < want {
		want = max(budget, time.Millisecond)
	}
	c.cur.SetMaxAwaitTime(want)
	c.awaitSet = true
}

// tooLate reports whether ctx has too little time left for a getMore:
// asking would only break the connection, and the cursor with it.
func tooLate(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < minGetMoreTime
}

// postBatchResumeToken returns the postBatchResumeToken of the batch the
// cursor holds, nil if the server sent none.
//
// The driver exposes it only through BatchCursorFromCursor, which it marks
// deprecated because it returns an x/ package type. There is no other way to
// read it, and without it a stream that sees no matching events keeps a
// stale token and may resume from a point that has left the oplog. If a
// future driver returns nil here, the stream still works from event _ids.
func (c *cursor) postBatchResumeToken() bson.Raw {
	//lint:ignore SA1019 the only way to read postBatchResumeToken; see the comment above.
	bc := mongo.BatchCursorFromCursor(c.cur)
	if bc == nil {
		return nil
	}
	pbrt := bc.PostBatchResumeToken()
	if pbrt == nil {
		return nil
	}
	return bson.Raw(pbrt)
}

// kill closes the cursor on the server, ignoring errors: after a failure
// the server cursor may or may not still exist, and either way the stream
// moves on. A server cursor that could not be killed times out on the
// server by itself.
func (c *cursor) kill(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, killTimeout)
	defer cancel()
	_ = c.cur.Close(ctx)
}
