package changestream

import (
	"bytes"
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
)

// cursor is one server-side aggregate cursor of the stream. The driver
// does the I/O: RunCommandCursor's cursor pins getMore and killCursors to the
// server (and, load-balanced, the connection) that owns the cursor and sends
// them in the stream's session, which a RunCommand of our own could not
// guarantee. The stream reads each batch's documents straight from the
// driver's batch cursor: the public Cursor allocates for every document it
// hands out, the batch bytes cost nothing to walk.
type cursor struct {
	cur *mongo.Cursor // owns the server cursor: Close kills it, Decode uses its registry
	bc  *driver.BatchCursor
	// rest holds the unread documents of the current batch as BSON array
	// elements, and left counts them.
	rest []byte
	left int
	// stale marks a cursor that may no longer be used (its last call failed
	// or was abandoned), but that may still exist on the server: it is
	// killed before the stream resumes.
	stale bool
	// awaitSet records that a maxAwaitTime was set on cur.
	awaitSet bool
	// dec decodes with the client's registry, when it could be read.
	dec docDecoder
}

// Server waits and the deadlines they must fit.
const (
	// defaultServerAwait is how long a server waits in a getMore that
	// carries no maxTimeMS.
	defaultServerAwait = time.Second
	// replyGrace is how long past the caller's deadline a getMore's reply
	// may still arrive before the stream gives up on it: the server's wait
	// ends before the deadline, so only a slow network or a server that no
	// longer answers gets there.
	replyGrace = 250 * time.Millisecond
	// lowTime is the time left below which a call that already asked the
	// server does not ask again.
	lowTime = 5 * time.Millisecond
	// maxAwaitMargin caps the time kept between the end of the server's wait
	// and the caller's deadline, for the reply to travel back.
	maxAwaitMargin = 50 * time.Millisecond
)

// killTimeout bounds killCursors, which is best effort: a stream must not
// hang on a server that no longer answers when it is about to resume
// elsewhere or close.
const killTimeout = 5 * time.Second

// openCursor runs the aggregate in cmd on db and wraps the cursor.
func openCursor(ctx context.Context, db *mongo.Database, coll *mongo.Collection, cmd bson.D, cfg *config, rp *readpref.ReadPref) (*cursor, error) {
	runOpts := options.RunCmd()
	if rp != nil {
		runOpts.SetReadPreference(rp)
	}
	cur, err := db.RunCommandCursor(ctx, cmd, runOpts)
	if err != nil {
		return nil, err
	}
	bc := batchCursorOf(cur)
	if bc == nil {
		_ = cur.Close(ctx)
		return nil, errors.New("changestream: the driver did not expose its batch cursor; this driver version is not supported")
	}
	c := &cursor{cur: cur, bc: bc, awaitSet: cfg.maxAwaitTime != nil}
	c.dec.settings = clientSettingsOf(cur).withCollection(coll)
	// The first batch came with the aggregate: the first Next hands it over
	// without I/O, so that every later one is a getMore.
	bc.Next(ctx)
	c.load()
	if cfg.batchSize != nil {
		cur.SetBatchSize(*cfg.batchSize)
	}
	if cfg.comment != nil {
		cur.SetComment(cfg.comment)
	}
	return c, nil
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

// lowOnTime reports whether ctx has less than lowTime left.
func lowOnTime(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < lowTime
}

// batchCursorOf returns the driver's batch cursor under cur.
//
// The driver exposes it only through BatchCursorFromCursor, which it marks
// deprecated because it returns an x/ package type. It is the only way to
// read postBatchResumeToken, without which a stream that sees no matching
// events keeps a stale token and may resume from a point that has left the
// oplog, and to read batches without an allocation per event. The driver
// version is pinned in go.mod.
func batchCursorOf(cur *mongo.Cursor) *driver.BatchCursor {
	//lint:ignore SA1019 see the comment above.
	return mongo.BatchCursorFromCursor(cur)
}

// load takes the batch the driver cursor now holds.
func (c *cursor) load() {
	batch := c.bc.Batch()
	if batch == nil || len(batch.List) <= 5 {
		c.rest, c.left = nil, 0
		return
	}
	c.rest, c.left = batch.List[4:len(batch.List)-1], batch.Count()
}

// scannedPastLast reports whether the batch's postBatchResumeToken differs
// from its last event's _id: the server then read past that event to the
// end of the oplog, rather than stopping at a batch limit, where the token
// is the last event's own.
func (c *cursor) scannedPastLast() bool {
	pbrt := c.postBatchResumeToken()
	if pbrt == nil || c.left == 0 {
		return false
	}
	var last bsoncore.Value
	for rest := c.rest; len(rest) > 0; {
		elem, next, ok := bsoncore.ReadElement(rest)
		if !ok {
			return false
		}
		last, rest = elem.Value(), next
	}
	doc, ok := last.DocumentOK()
	if !ok {
		return false
	}
	id, err := doc.LookupErr("_id")
	if err != nil {
		return false
	}
	return !bytes.Equal(id.Data, pbrt)
}

// remaining returns how many documents of the current batch are unread.
func (c *cursor) remaining() int { return c.left }

// next returns the next unread document of the current batch; remaining
// must be positive. The document aliases the batch, which the driver never
// reuses.
func (c *cursor) next() (bson.Raw, error) {
	elem, rest, ok := bsoncore.ReadElement(c.rest)
	if !ok {
		c.rest, c.left = nil, 0
		return nil, errCorruptBatch
	}
	doc, ok := elem.Value().DocumentOK()
	if !ok {
		c.rest, c.left = nil, 0
		return nil, errCorruptBatch
	}
	c.rest, c.left = rest, c.left-1
	return bson.Raw(doc), nil
}

// getMore fetches the next batch with one getMore. A cursor the server has
// closed (id 0) has nothing more to fetch.
func (c *cursor) getMore(ctx context.Context) error {
	if c.bc.ID() == 0 {
		c.rest, c.left = nil, 0
		return nil
	}
	c.bc.Next(ctx)
	if err := c.bc.Err(); err != nil {
		c.rest, c.left = nil, 0
		return publicError(err)
	}
	c.load()
	return nil
}

// id returns the server cursor's id; 0 once the server has closed it.
func (c *cursor) id() int64 { return c.bc.ID() }

// decode unmarshals doc with the client's registry and BSON options, which
// the driver keeps in its Cursor.
func (c *cursor) decode(doc bson.Raw, v any) error {
	if c.dec.settings.known {
		return c.dec.decode(doc, v)
	}
	c.cur.Current = doc
	return c.cur.Decode(v)
}

// postBatchResumeToken returns the postBatchResumeToken of the batch the
// cursor holds, nil if the server sent none (servers before 4.0.7).
func (c *cursor) postBatchResumeToken() bson.Raw {
	pbrt := c.bc.PostBatchResumeToken()
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
