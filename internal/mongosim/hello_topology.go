package mongosim

import (
	"context"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Awaitable hello (the server's streaming protocol, MongoDB 4.4+): a
// server reports a topologyVersion in hello; a client that sends it back
// with maxAwaitTimeMS gets its answer only when the topologyVersion moves
// on or maxAwaitTimeMS has passed. With exhaustAllowed the server goes on
// answering over the connection without further requests (moreToCome),
// each answer waiting the same way
// (src/mongo/db/repl/replication_info.cpp and
// src/mongo/db/repl/topology_version_observer; the Server Discovery and
// Monitoring spec's "Streaming isWritablePrimary").

// topologyVersion is hello's topologyVersion: the process's id, new on
// every restart, and a counter of changes in the hello answer.
type topologyVersion struct {
	processID bson.ObjectID
	counter   int64
}

// topologyState is a server's topologyVersion and the channel its change
// closes.
type topologyState struct {
	mu      sync.Mutex
	tv      topologyVersion
	changed chan struct{}
}

func newTopologyState() topologyState {
	return topologyState{tv: topologyVersion{processID: bson.NewObjectID()}, changed: make(chan struct{})}
}

// current returns the topologyVersion and a channel closed when it moves.
func (t *topologyState) current() (topologyVersion, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tv, t.changed
}

// bump moves the counter, or starts a new process (a restart), and wakes
// every waiting hello.
func (t *topologyState) bump(newProcess bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if newProcess {
		t.tv = topologyVersion{processID: bson.NewObjectID()}
	} else {
		t.tv.counter++
	}
	close(t.changed)
	t.changed = make(chan struct{})
}

// awaitChange waits until the server's topologyVersion differs from
// seen, maxAwait passes or ctx ends. A seen version from another process,
// or an older counter, answers at once, as on the server.
func (t *topologyState) awaitChange(ctx context.Context, seen topologyVersion, maxAwait time.Duration) {
	tv, ch := t.current()
	if tv != seen {
		return
	}
	timer := time.NewTimer(maxAwait)
	defer timer.Stop()
	select {
	case <-ch:
	case <-timer.C:
	case <-ctx.Done():
	}
}

// awaitArgs reads an awaitable hello's topologyVersion and maxAwaitTimeMS.
// ok is false for a plain hello.
func awaitArgs(cc *cmdCtx) (tv topologyVersion, maxAwait time.Duration, ok bool, err error) {
	tvDoc, hasTV, err := cc.docArg("topologyVersion")
	if err != nil {
		return tv, 0, false, err
	}
	ms, hasMax, err := cc.int64Arg("maxAwaitTimeMS")
	if err != nil {
		return tv, 0, false, err
	}
	if hasTV != hasMax {
		return tv, 0, false, cmdErr(codeFailedToParse, "mongosim: topologyVersion and maxAwaitTimeMS must be given together")
	}
	if !hasTV {
		return tv, 0, false, nil
	}
	if ms < 0 {
		return tv, 0, false, cmdErr(codeBadValue, "maxAwaitTimeMS must be a non-negative integer")
	}
	if tv, err = parseTopologyVersion(tvDoc); err != nil {
		return tv, 0, false, err
	}
	return tv, time.Duration(ms) * time.Millisecond, true, nil
}

// parseTopologyVersion reads a {processId, counter} document.
func parseTopologyVersion(doc bsoncore.Document) (topologyVersion, error) {
	pid, err1 := doc.LookupErr("processId")
	cnt, err2 := doc.LookupErr("counter")
	if err1 != nil || err2 != nil {
		return topologyVersion{}, cmdErr(codeFailedToParse, "BSON field 'topologyVersion' needs processId and counter")
	}
	oid, ok1 := pid.ObjectIDOK()
	n, ok2 := cnt.AsInt64OK()
	if !ok1 || !ok2 {
		return topologyVersion{}, cmdErr(codeTypeMismatch, "BSON field 'topologyVersion' has the wrong types")
	}
	return topologyVersion{processID: oid, counter: n}, nil
}

// appendTopologyVersion appends hello's topologyVersion field.
func appendTopologyVersion(dst []byte, tv topologyVersion) []byte {
	idx, dst := bsoncore.AppendDocumentElementStart(dst, "topologyVersion")
	dst = bsoncore.AppendObjectIDElement(dst, "processId", tv.processID)
	dst = bsoncore.AppendInt64Element(dst, "counter", tv.counter)
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst
}
