package mongosim

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// cursorSource produces the batches of one server cursor: find results or
// change events.
type cursorSource interface {
	// nextBatch returns the documents of the next batch (at most batchSize
	// when batchSize > 0), the postBatchResumeToken to send (nil for none)
	// and whether the cursor is exhausted. A change-stream source waits up
	// to maxTime for events, returning early when cc.ctx or killed is done.
	nextBatch(cc *cmdCtx, batchSize int, maxTime time.Duration, killed <-chan struct{}) (batch, error)
}

// batch is one reply's worth of a cursor.
type batch struct {
	docs      []bsoncore.Document
	pbrt      bsoncore.Document // postBatchResumeToken, nil when the source has none
	exhausted bool
}

// serverCursor is an open cursor, owned by the session that created it.
type serverCursor struct {
	id   int64
	db   string
	coll string // getMore's collection field must name this
	ns   string // as reported in cursor.ns
	lsid []byte // raw lsid of the creating command, nil when none
	src  cursorSource
	// changeStream marks a $changeStream cursor: the server labels its
	// resumable getMore errors.
	changeStream bool

	busy     sync.Mutex    // one getMore at a time
	killed   chan struct{} // closed by kill
	killOnce sync.Once
	killErr  *CommandError // what a getMore in progress reports; set before killed closes
}

// kill wakes a getMore in progress, which then fails with err.
func (c *serverCursor) kill(err *CommandError) {
	c.killOnce.Do(func() {
		c.killErr = err
		close(c.killed)
	})
}

type cursorRegistry struct {
	mu      sync.Mutex
	cursors map[int64]*serverCursor
}

func newCursorRegistry() *cursorRegistry {
	return &cursorRegistry{cursors: make(map[int64]*serverCursor)}
}

// open registers a cursor and assigns it a random positive id.
func (r *cursorRegistry) open(c *serverCursor) {
	c.killed = make(chan struct{})
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id := int64(binary.LittleEndian.Uint64(b[:]) >> 2)
		if _, taken := r.cursors[id]; id != 0 && !taken {
			c.id = id
			r.cursors[id] = c
			return
		}
	}
}

func (r *cursorRegistry) get(id int64) *serverCursor {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cursors[id]
}

// remove forgets the cursor and kills it, as killCursors does: a getMore in
// progress fails with CursorKilled. It reports whether the cursor was open.
func (r *cursorRegistry) remove(id int64) bool {
	r.mu.Lock()
	c := r.cursors[id]
	delete(r.cursors, id)
	r.mu.Unlock()
	if c != nil {
		c.kill(cmdErr(codeCursorKilled, "cursor id %d was killed while in use", id))
	}
	return c != nil
}

// killAll forgets every cursor, as a restart or failover does. A getMore in
// progress fails as on a node shutting down: InterruptedAtShutdown, which a
// change-stream cursor labels resumable like any other resumable code.
func (r *cursorRegistry) killAll() {
	r.mu.Lock()
	all := r.cursors
	r.cursors = make(map[int64]*serverCursor)
	r.mu.Unlock()
	for _, c := range all {
		err := cmdErr(codeInterruptedAtShutdown, "interrupted at shutdown")
		if c.changeStream {
			err.Labels = []string{labelResumableChangeStreamError}
		}
		c.kill(err)
	}
}

// count returns the number of open cursors.
func (r *cursorRegistry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cursors)
}

// OpenCursors returns the number of cursors open on the server.
func (s *Server) OpenCursors() int { return s.cursors.count() }

// openCursor runs the first batch of src and, unless it is exhausted,
// registers a cursor for later getMores. It returns the reply body
// {cursor: {firstBatch, postBatchResumeToken?, id, ns}}.
func (cc *cmdCtx) openCursor(coll, ns string, src cursorSource, batchSize int) (bsoncore.Document, error) {
	c := &serverCursor{db: cc.db, coll: coll, ns: ns, lsid: cloneBytes(cc.lsid), src: src}
	_, c.changeStream = src.(*changeStreamSource)
	b, err := src.nextBatch(cc, batchSize, 0, nil)
	if err != nil {
		return nil, err
	}
	var id int64
	if !b.exhausted {
		cc.s.cursors.open(c)
		id = c.id
	}
	return appendCursorReply(nil, "firstBatch", id, ns, b), nil
}

// appendCursorReply builds {cursor: {<batchKey>: [...], postBatchResumeToken?, id, ns}}.
func appendCursorReply(dst []byte, batchKey string, id int64, ns string, b batch) bsoncore.Document {
	size := 64 + len(ns) + len(b.pbrt)
	for _, d := range b.docs {
		size += len(d) + 8
	}
	if cap(dst) < size {
		dst = make([]byte, 0, size)
	}
	idx, dst := bsoncore.AppendDocumentStart(dst)
	cidx, dst := bsoncore.AppendDocumentElementStart(dst, "cursor")
	aidx, dst := bsoncore.AppendArrayElementStart(dst, batchKey)
	var key [20]byte
	for i, d := range b.docs {
		dst = bsoncore.AppendDocumentElement(dst, string(appendIndexKey(key[:0], i)), d)
	}
	dst, _ = bsoncore.AppendArrayEnd(dst, aidx)
	if b.pbrt != nil {
		dst = bsoncore.AppendDocumentElement(dst, "postBatchResumeToken", b.pbrt)
	}
	dst = bsoncore.AppendInt64Element(dst, "id", id)
	dst = bsoncore.AppendStringElement(dst, "ns", ns)
	dst, _ = bsoncore.AppendDocumentEnd(dst, cidx)
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst
}

func appendIndexKey(dst []byte, i int) []byte {
	if i < 10 {
		return append(dst, byte('0'+i))
	}
	return fmt.Appendf(dst, "%d", i)
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// defaultAwaitTime is how long a change-stream getMore without maxTimeMS waits.
const defaultAwaitTime = time.Second

func handleGetMore(cc *cmdCtx) (bsoncore.Document, error) {
	if err := cc.checkKnownFields(getMoreFields); err != nil {
		return nil, err
	}
	idVal, ok := cc.field("getMore")
	if !ok {
		return nil, cmdErr(codeFailedToParse, "BSON field 'getMore.getMore' is missing but a required field")
	}
	id, ok := idVal.Int64OK()
	if !ok {
		return nil, typeMismatch("getMore", "getMore", idVal.Type, "long")
	}
	coll, present, err := cc.stringArg("collection")
	if err != nil {
		return nil, err
	}
	if !present {
		return nil, cmdErr(codeFailedToParse, "BSON field 'getMore.collection' is missing but a required field")
	}
	batchSize, _, err := cc.int64Arg("batchSize")
	if err != nil {
		return nil, err
	}
	if batchSize < 0 {
		return nil, cmdErr(codeBadValue, "BatchSize value must be non-negative, but received: %d", batchSize)
	}
	maxTimeMS, hasMaxTime, err := cc.int64Arg("maxTimeMS")
	if err != nil {
		return nil, err
	}
	if maxTimeMS < 0 {
		return nil, cmdErr(codeBadValue, "%d value for maxTimeMS is out of range", maxTimeMS)
	}
	c := cc.s.cursors.get(id)
	if c == nil {
		return nil, cmdErr(codeCursorNotFound, "cursor id %d not found", id)
	}
	if c.db != cc.db || c.coll != coll {
		return nil, cmdErr(13, "Requested getMore on namespace '%s.%s', but cursor belongs to a different namespace %s.%s",
			cc.db, coll, c.db, c.coll)
	}
	if err := checkCursorSession(c, cc.lsid); err != nil {
		return nil, err
	}
	c.busy.Lock()
	defer c.busy.Unlock()
	if cc.s.cursors.get(id) != c {
		return nil, cmdErr(codeCursorNotFound, "cursor id %d not found", id)
	}
	wait := defaultAwaitTime
	if hasMaxTime && maxTimeMS > 0 {
		wait = time.Duration(maxTimeMS) * time.Millisecond
	}
	if err := cc.s.afterCursorCheckout(c); err != nil {
		cc.s.cursors.remove(id)
		return nil, err
	}
	b, err := c.src.nextBatch(cc, int(batchSize), wait, c.killed)
	if err != nil {
		// A real server destroys a cursor whose getMore failed.
		cc.s.cursors.remove(id)
		return nil, err
	}
	select {
	case <-c.killed:
		return nil, c.killErr
	default:
	}
	if b.exhausted {
		cc.s.cursors.remove(id)
		id = 0
	}
	return appendCursorReply(nil, "nextBatch", id, c.ns, b), nil
}

// checkCursorSession enforces that only the session that created a cursor
// may use it, with the real server's error codes.
func checkCursorSession(c *serverCursor, lsid []byte) error {
	switch {
	case c.lsid == nil && lsid != nil:
		return cmdErr(50736, "Cannot run getMore on cursor %d, which was not created in a session, in session %s",
			c.id, sessionString(lsid))
	case c.lsid != nil && lsid == nil:
		return cmdErr(50737, "Cannot run getMore on cursor %d, which was created in session %s, without an lsid",
			c.id, sessionString(c.lsid))
	case !sameSession(c.lsid, lsid):
		return cmdErr(codeCursorInUseByOtherSession, "Cannot run getMore on cursor %d, which was created in session %s, in session %s",
			c.id, sessionString(c.lsid), sessionString(lsid))
	}
	return nil
}

func sessionString(lsid []byte) string {
	if v, err := bsoncore.Document(lsid).LookupErr("id"); err == nil {
		if _, data, ok := v.BinaryOK(); ok {
			return fmt.Sprintf("%x - ", data)
		}
	}
	return bsoncore.Document(lsid).String()
}

func handleKillCursors(cc *cmdCtx) (bsoncore.Document, error) {
	coll, present, err := cc.stringArg("killCursors")
	if err != nil {
		return nil, err
	}
	if !present {
		return nil, cmdErr(codeFailedToParse, "BSON field 'killCursors.killCursors' is missing but a required field")
	}
	ids, present, err := cc.arrayArg("cursors")
	if err != nil {
		return nil, err
	}
	if !present {
		return nil, cmdErr(codeFailedToParse, "BSON field 'killCursors.cursors' is missing but a required field")
	}
	vals, err := ids.Values()
	if err != nil {
		return nil, cmdErr(codeFailedToParse, "invalid cursors array: %v", err)
	}
	var killed, notFound []bsoncore.Value
	for _, v := range vals {
		id, ok := v.Int64OK()
		if !ok {
			return nil, cmdErr(codeTypeMismatch, "BSON field 'killCursors.cursors' is the wrong type '%s', expected type 'long'", query.TypeAlias(v.Type))
		}
		c := cc.s.cursors.get(id)
		if c != nil && c.db == cc.db && c.coll == coll && cc.s.cursors.remove(id) {
			killed = append(killed, v)
		} else {
			notFound = append(notFound, v)
		}
	}
	var dst []byte
	idx, dst := bsoncore.AppendDocumentStart(dst)
	dst = bsoncore.BuildArrayElement(dst, "cursorsKilled", killed...)
	dst = bsoncore.BuildArrayElement(dst, "cursorsNotFound", notFound...)
	dst = bsoncore.BuildArrayElement(dst, "cursorsAlive")
	dst = bsoncore.BuildArrayElement(dst, "cursorsUnknown")
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst, nil
}
