package mongosim

import (
	"bytes"
	"sort"
	"strings"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// maxBatchBytes bounds the events of one reply, as the server bounds a
// batch by the maximum user document size.
const maxBatchBytes = 16 << 20

// scanChunk is how many oplog entries a scan copies out under the store
// lock at a time, so that a stream far behind does not hold the lock long.
const scanChunk = 512

// changeStreamSource produces the events of one $changeStream cursor. Its
// state is touched only by the aggregate that creates it and then by one
// getMore at a time (serverCursor.busy), so it needs no lock of its own.
type changeStreamSource struct {
	st        *store
	scope     streamScope
	db, coll  string
	nsString  string // the namespace named in executor error messages
	opts      eventOptions
	stages    []query.EventStage
	split     bool // the pipeline ends with $changeStreamSplitLargeEvent
	firstDone bool

	// pos is the scan position: every entry up to pos was scanned.
	pos oplogPos
	// posToken is what the postBatchResumeToken says when no event is
	// newer: a high-water mark at pos, or the last event's token.
	posToken resumeToken
	// verify is the event token the stream resumed after, not yet found:
	// the first event the stream meets must be that one, as a real
	// server checks before it returns anything.
	verify *resumeToken
	// fromMongos marks a shard's part of a router's stream: the resume
	// event may be on another shard, so the shard only skips what comes
	// before the token and returns the rest, the event itself included,
	// for the router to check and swallow
	// (DocumentSourceChangeStreamCheckResumability on shards, ...
	// EnsureResumeTokenPresent on mongos).
	fromMongos bool
	// pendingInvalidate is an invalidating entry whose invalidate event
	// is still to be returned (the batch filled up after its drop/rename).
	pendingInvalidate *oplogEntry
	// held are events that did not fit in the previous batch: one event,
	// or the remaining fragments of a split one.
	held []producedEvent
	// skipFragments is how many fragments of the next event the stream
	// already returned before it resumed from a fragment's token.
	skipFragments int32
	// done is set once the invalidate has been produced.
	done bool
}

type producedEvent struct {
	doc   bsoncore.Document
	token resumeToken
	final bool // the invalidate: once returned, the stream is done
	// midTxn: more entries of the same commit follow, so a filtered
	// event must not move the position to a high-water mark at its time.
	midTxn bool
}

// newChangeStreamSource parses the $changeStream stage and the stages after
// it and fixes the stream's start point. It fails as the aggregate would.
func newChangeStreamSource(cc *cmdCtx, target string, stages []bsoncore.Value) (*changeStreamSource, error) {
	spec, scope, err := parseChangeStreamSpec(cc, target, stages[0].Document().Index(0).Value())
	if err != nil {
		return nil, err
	}
	evStages, split, err := parseStreamStages(stages[1:])
	if err != nil {
		return nil, err
	}
	fromMongos, _ := cc.cmd.Lookup("fromMongos").BooleanOK()
	src := &changeStreamSource{
		fromMongos: fromMongos,
		st:         cc.s.store,
		scope:      scope,
		db:         cc.db,
		coll:       target,
		stages:     evStages,
		split:      split,
		opts: eventOptions{
			fullDocument:             spec.fullDocument,
			fullDocumentBeforeChange: spec.fullDocumentBeforeChange,
			expanded:                 spec.showExpandedEvents,
		},
	}
	src.nsString = cc.db + "." + target
	if target == "" {
		src.nsString = cc.db + ".$cmd.aggregate"
	}

	st := cc.s.store
	var startTs bson.Timestamp // checked against the retained oplog
	check := true
	switch tok := firstNonNil(spec.startAfter, spec.resumeAfter); {
	case tok != nil && (tok.highWaterMark || tok.fromInvalidate):
		// A high-water mark at T: every event at or before T was seen.
		// An invalidate token (startAfter only): start after its event.
		src.pos, src.posToken, startTs = posAfter(tok.ts), *tok, tok.ts
	case tok != nil:
		// Just before the token's event, which may sit inside a
		// transaction: the scan meets it first and checks it.
		src.pos = oplogPos{ts: tok.ts, idx: int64(tok.txnOpIndex) - 1}
		src.posToken, startTs = *tok, tok.ts
		t := *tok
		src.verify = &t
	case spec.startAtOperationTime != nil:
		t := *spec.startAtOperationTime
		src.pos, startTs = posBefore(t), t
		src.posToken = hwmToken(tsPrev(t))
	default:
		now := st.clusterTime()
		src.pos, src.posToken = posAfter(now), hwmToken(now)
		check = false
	}
	if check {
		st.mu.Lock()
		lost := st.oplog.historyLost(startTs)
		st.mu.Unlock()
		if lost {
			return nil, src.executorError(cc, historyLostError())
		}
	}
	return src, nil
}

func firstNonNil(ts ...*resumeToken) *resumeToken {
	for _, t := range ts {
		if t != nil {
			return t
		}
	}
	return nil
}

func historyLostError() *CommandError {
	return &CommandError{
		Code:    codeChangeStreamHistoryLost,
		Message: "Resume of change stream was not possible, as the resume point may no longer be in the oplog.",
		Labels:  []string{labelNonResumableChangeStreamError},
	}
}

// cappedPositionLostError is the oplog scan's error when the entry after
// its position was truncated; the record id of an oplog entry is its
// timestamp as one 64-bit number.
func cappedPositionLostError(pos bson.Timestamp) *CommandError {
	return cmdErr(codeCappedPositionLost,
		"CollectionScan died due to position in capped collection being deleted. Last seen record id: RecordId(%d)",
		int64(pos.T)<<32|int64(pos.I))
}

// executorError words err as a real server reports an error raised while
// the pipeline runs: prefixed with the command that ran it.
func (src *changeStreamSource) executorError(cc *cmdCtx, err *CommandError) *CommandError {
	prefix := "Executor error during getMore :: caused by :: "
	if cc.name == "aggregate" {
		prefix = "Executor error during aggregate command on namespace: " + src.nsString + " :: caused by :: "
	}
	out := *err
	out.Message = prefix + err.Message
	return &out
}

// nextBatch implements cursorSource. The aggregate (maxTime 0) scans what
// the oplog holds now; a getMore waits up to maxTime for at least one
// event, waking at once on an oplog append, a closed connection or a kill.
func (src *changeStreamSource) nextBatch(cc *cmdCtx, batchSize int, maxTime time.Duration, killed <-chan struct{}) (batch, error) {
	first := !src.firstDone
	src.firstDone = true
	if first && batchSize == 0 {
		// cursor: {batchSize: 0} opens the cursor without running it.
		return batch{pbrt: src.posToken.doc()}, nil
	}
	limit := batchSize
	if limit <= 0 {
		limit = int(^uint(0) >> 1)
	}
	var out batch
	var size int
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		changed := src.st.changedCh()
		full, err := src.scan(cc, &out, &size, limit)
		if err != nil {
			return batch{}, src.executorError(cc, err)
		}
		if full || len(out.docs) > 0 || src.done || maxTime <= 0 {
			break
		}
		if timer == nil {
			timer = time.NewTimer(maxTime)
			cc.s.awaiting.Add(1)
			defer cc.s.awaiting.Add(-1)
		}
		select {
		case <-changed:
			continue
		case <-timer.C:
		case <-cc.ctx.Done():
		case <-killed:
		case <-cc.interrupt:
			return batch{}, interruptedError(true)
		}
		break
	}
	out.exhausted = src.done
	out.pbrt = src.posToken.doc()
	return out, nil
}

// scan appends events to out until the batch is full (full=true), the
// oplog has nothing more, or the stream is invalidated.
func (src *changeStreamSource) scan(cc *cmdCtx, out *batch, size *int, limit int) (full bool, err *CommandError) {
	emit := func(ev producedEvent) bool {
		if len(out.docs) >= limit || (len(out.docs) > 0 && *size+len(ev.doc) > maxBatchBytes) {
			return false
		}
		out.docs = append(out.docs, ev.doc)
		*size += len(ev.doc)
		src.posToken = ev.token
		src.done = src.done || ev.final
		return true
	}
	for len(src.held) > 0 {
		if !emit(src.held[0]) {
			return true, nil
		}
		src.held = src.held[1:]
	}
	src.held = nil
	if src.pendingInvalidate != nil {
		e := src.pendingInvalidate
		src.pendingInvalidate = nil
		if ok, err := src.produceInvalidate(e, emit); err != nil || !ok {
			return !ok, err
		}
	}
	for !src.done {
		if len(out.docs) >= limit {
			return true, nil
		}
		entries, err := src.nextEntries(cc.name == "getMore")
		if err != nil {
			return false, err
		}
		if len(entries) == 0 {
			return false, nil
		}
		for _, e := range entries {
			if src.done {
				break
			}
			if len(out.docs) >= limit {
				return true, nil
			}
			src.pos = e.pos()
			ok, err := src.produce(e, emit)
			if err != nil {
				return false, err
			}
			if !ok {
				return true, nil
			}
		}
	}
	return false, nil
}

// nextEntries copies the next retained entries out of the oplog, failing
// when entries the stream has not scanned were dropped: on an open
// stream's getMore that is the oplog scan losing its place,
// CappedPositionLost (136) without a resumable label
// (change_streams_oplog_rollover.js); only a new aggregate from a lost
// position gets ChangeStreamHistoryLost (286).
func (src *changeStreamSource) nextEntries(getMore bool) ([]*oplogEntry, *CommandError) {
	st := src.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.oplog.lostAfter(src.pos) {
		if getMore {
			return nil, cappedPositionLostError(src.pos.ts)
		}
		return nil, historyLostError()
	}
	after := st.oplog.after(src.pos)
	// A change stream reads with majority read concern: nothing past the
	// member's commit point, which a rollback could still take back.
	after = after[:sort.Search(len(after), func(i int) bool { return st.commit.less(after[i].pos()) })]
	if len(after) > scanChunk {
		after = after[:scanChunk]
	}
	return append([]*oplogEntry(nil), after...), nil
}

// visibility says what an entry means to this stream.
type visibility int

const (
	hidden visibility = iota
	visible
	invalidating // visible, then the stream is invalidated
)

func (src *changeStreamSource) classify(e *oplogEntry) visibility {
	if e.op == opNoop || e.fromMigrate {
		return hidden
	}
	if e.op == opNewShardDetected {
		// Only a router's stream hears of a chunk's new shard.
		if !src.fromMongos || e.db == "admin" || e.db == "config" || e.db == "local" {
			return hidden
		}
		if src.scope == scopeCollection && (e.db != src.db || e.coll != src.coll) || src.scope == scopeDatabase && e.db != src.db {
			return hidden
		}
		return visible
	}
	switch src.scope {
	case scopeCollection:
		mine := e.db == src.db && e.coll == src.coll
		switch e.op {
		case opInsert, opUpdate, opReplace, opDelete:
			if mine {
				return visible
			}
		case opDrop:
			if mine {
				return invalidating
			}
		case opRename:
			if mine || (e.toDB == src.db && e.toColl == src.coll) {
				return invalidating
			}
		case opCreate, opCreateIndexes, opDropIndexes, opModify, opShardCollection, opRefineShardKey:
			if mine && src.opts.expanded {
				return visible
			}
		}
		// dropDatabase is logged after a drop of each collection; a
		// collection stream is invalidated by its own drop.
		return hidden
	case scopeDatabase:
		if e.db != src.db {
			return hidden
		}
		if e.op == opDropDatabase {
			return invalidating
		}
	case scopeCluster:
		if e.db == "admin" || e.db == "config" || e.db == "local" {
			return hidden
		}
	}
	if e.op != opDropDatabase && (strings.HasPrefix(e.coll, "system.") || strings.Contains(e.coll, "$")) {
		return hidden
	}
	switch e.op {
	case opCreate, opCreateIndexes, opDropIndexes, opModify, opShardCollection, opRefineShardKey:
		if !src.opts.expanded {
			return hidden
		}
	}
	return visible
}

// produce handles one scanned entry; it reports false when the batch could
// not take the event (it is held for the next batch).
func (src *changeStreamSource) produce(e *oplogEntry, emit func(producedEvent) bool) (bool, *CommandError) {
	vis := src.classify(e)
	if vis == hidden {
		// A high-water mark at e's time says every entry at that time
		// was seen: inside a transaction that holds only at its end.
		if e.endsTxn() {
			src.posToken = hwmToken(e.ts)
		}
		return true, nil
	}
	tok, tokErr := eventToken(e)
	if tokErr != nil {
		return false, asCommandError(tokErr)
	}
	if src.verify != nil && src.fromMongos {
		switch {
		case tok.key < src.verify.unsplit:
			return true, nil // before the resume point, at its time
		case tok.key > src.verify.unsplit || !src.verify.isFragment():
			// Past it, or the event itself: the router checks, and
			// swallows a whole event it returned before. A later event
			// only says this shard does not have it; another may.
			src.verify = nil
		}
		// The event a fragment's token names: this shard splits it
		// again and returns the fragments after the token's, below.
	}
	if src.verify != nil {
		want := *src.verify
		src.verify = nil
		if want.unsplit != tok.key {
			return false, resumeTokenNotFound(tok)
		}
		if !want.isFragment() {
			// The stream already returned this event before it resumed.
			src.posToken = tok
			if vis == invalidating {
				return src.produceInvalidate(e, emit)
			}
			return true, nil
		}
		// It returned the fragments up to want's: split the event again
		// and return the rest.
		if !src.split {
			return false, splitResumeWithoutStage()
		}
		src.skipFragments = want.fragment
	}
	var doc bsoncore.Document
	var err error
	if src.opts.isDefault() {
		doc, err = defaultEvent(e)
	} else {
		doc, err = renderEvent(src.st, e, src.opts)
	}
	if err != nil {
		return false, asCommandError(err)
	}
	ok, cerr := src.emitThroughStages(producedEvent{doc: doc, token: tok, midTxn: !e.endsTxn()}, emit)
	if cerr != nil || !ok {
		if !ok && vis == invalidating {
			src.pendingInvalidate = e
		}
		return ok, cerr
	}
	if vis == invalidating {
		return src.produceInvalidate(e, emit)
	}
	return true, nil
}

// produceInvalidate produces the invalidate event of e and ends the stream.
// When the batch is full the event is held for the next one, and the
// stream ends only once it has been returned.
func (src *changeStreamSource) produceInvalidate(e *oplogEntry, emit func(producedEvent) bool) (bool, *CommandError) {
	tok, err := invalidateToken(e)
	if err != nil {
		return false, asCommandError(err)
	}
	return src.emitThroughStages(producedEvent{doc: invalidateEvent(e, tok), token: tok, final: true}, emit)
}

// emitThroughStages runs the user's stages on ev and emits the result,
// split into fragments when it is too large and the pipeline asks for
// that. An event filtered out still moves the postBatchResumeToken past it.
// Whatever the batch cannot take is held for the next one.
func (src *changeStreamSource) emitThroughStages(ev producedEvent, emit func(producedEvent) bool) (bool, *CommandError) {
	if len(src.stages) > 0 {
		var d bson.D
		if err := bson.Unmarshal(ev.doc, &d); err != nil {
			return false, cmdErr(codeInternalError, "mongosim: decoding event: %v", err)
		}
		for _, stage := range src.stages {
			var keep bool
			var err error
			d, keep, err = stage(d)
			if err != nil {
				return false, asCommandError(err)
			}
			if !keep {
				if !ev.midTxn {
					src.posToken = filteredToken(ev.token)
				}
				src.done = src.done || ev.final
				return true, nil
			}
		}
		b, err := bson.Marshal(d)
		if err != nil {
			return false, cmdErr(codeInternalError, "mongosim: encoding event: %v", err)
		}
		if !idUnchanged(b, ev.token) {
			return false, &CommandError{
				Code: codeChangeStreamFatalError,
				Message: "Encountered an event whose _id field, which contains the resume token, was modified by the pipeline. " +
					"Modifying the _id field of an event makes it impossible to resume the stream from that point. " +
					"Only transformations that retain the unmodified _id field are allowed.",
				Labels: []string{labelNonResumableChangeStreamError},
			}
		}
		ev.doc = b
	}
	skip := src.skipFragments
	src.skipFragments = 0
	if skip == 0 && len(ev.doc) <= maxUserObjectSize {
		// The common case: one event, whole.
		if !emit(ev) {
			src.held = append(src.held[:0:0], ev)
			return false, nil
		}
		return true, nil
	}
	evs := []producedEvent{ev}
	switch {
	case src.split && len(ev.doc) > maxUserObjectSize:
		frags, err := splitEvent(ev.doc, ev.token, skip)
		if err != nil {
			return false, err
		}
		if len(frags) > 0 {
			frags[len(frags)-1].final = ev.final
		}
		evs = frags
	case skip > 0:
		// The event the token split no longer needs splitting.
		return false, resumeTokenNotFound(ev.token.withFragment(skip))
	case len(ev.doc) > maxInternalObjectSize:
		return false, eventTooLarge(ev.doc)
	}
	for i, e := range evs {
		if !emit(e) {
			src.held = append(src.held[:0:0], evs[i:]...)
			return false, nil
		}
	}
	if len(evs) == 0 {
		// Resumed after the last fragment: the event is behind us.
		src.posToken = ev.token.withFragment(skip)
	}
	return true, nil
}

// filteredToken is the position after an event the user's $match dropped:
// a high-water mark at its time, or the event's own token for an
// invalidate, which must sort after the drop that shares its time.
func filteredToken(t resumeToken) resumeToken {
	if t.fromInvalidate {
		return t
	}
	return hwmToken(t.ts)
}

// idUnchanged reports whether the event's _id is still its resume token.
func idUnchanged(doc bsoncore.Document, tok resumeToken) bool {
	v, err := doc.LookupErr("_id")
	if err != nil || v.Type != bsoncore.TypeEmbeddedDocument {
		return false
	}
	return bytes.Equal(v.Data, tok.doc())
}

func resumeTokenNotFound(seen resumeToken) *CommandError {
	return &CommandError{
		Code:    codeChangeStreamFatalError,
		Message: "cannot resume stream; the resume token was not found. " + docString(seen.doc()),
		Labels:  []string{labelNonResumableChangeStreamError},
	}
}

func asCommandError(err error) *CommandError {
	if ce, ok := err.(*CommandError); ok {
		return ce
	}
	return cmdErr(codeInternalError, "%v", err)
}
