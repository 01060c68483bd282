package mongosim

import (
	"crypto/rand"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// store holds every database and the oplog under one lock, so that a write
// and its oplog entry are one atomic step, as a real server's storage
// transaction makes them.
//
// Documents are bson.D values and are immutable once stored: a write builds
// a new document and swaps it in, so oplog entries and cursors may keep
// references without copying.
type store struct {
	mu      sync.Mutex
	dbs     map[string]*database
	clock   bson.Timestamp // the newest cluster time handed out
	oplog   oplog
	changed chan struct{} // closed and replaced on every oplog append and commit-point move

	// txn is set on a transaction's snapshot: its writes are recorded
	// for the commit instead of logged.
	txn *transaction
	// txnLocks are the documents open transactions wrote.
	txnLocks map[docRef]*transaction
	// txnLifetime is transactionLifetimeLimitSeconds: an open transaction
	// older than this is aborted when it is next in the way.
	txnLifetime time.Duration

	// term is the election term the member's writes are stamped with.
	term int64
	// commit is the newest position known to be majority committed:
	// change streams return nothing past it. With autoCommit (a member
	// alone in its set) every append is committed at once; in a larger
	// set the ReplicaSet moves it.
	commit     oplogPos
	autoCommit bool
	// sessions are the retryable writes executed, by session (see
	// retryable.go); stmt tags the entries of the statement running now.
	sessions map[string]*retrySession
	stmt     *retryTag
}

type database struct {
	name  string
	colls map[string]*collection
}

type collection struct {
	db, name string
	uuid     [16]byte
	options  bson.D // as given to create (without the command name)
	// shardKey is the key the collection is sharded on; nil unless a
	// router sharded it.
	shardKey bson.D
	// preAndPostImages is changeStreamPreAndPostImages.enabled.
	preAndPostImages bool
	docs             docSet
	// indexes are the secondary index specifications, in creation order;
	// the _id index is implicit.
	indexes []bson.D
}

// newEmptyStore returns a store with an empty oplog, for a member that
// copies another's (resyncFrom).
func newEmptyStore(oplogMax int) *store {
	return &store{
		dbs:         make(map[string]*database),
		oplog:       oplog{max: oplogMax},
		changed:     make(chan struct{}),
		txnLifetime: defaultTxnLifetime,
		autoCommit:  true,
		term:        1,
	}
}

func newStore(oplogMax int) *store {
	st := newEmptyStore(oplogMax)
	// A replica set's oplog starts with the no-op that initiated it, so
	// a start point older than that is lost history (286), as it is on a
	// new deployment. The clock starts one second ahead of the wall
	// clock: a simulator restarted within the second its previous life
	// ended would otherwise hand out times that life already used, and a
	// token from it would silently skip the new events.
	st.clock = bson.Timestamp{T: uint32(time.Now().Unix()) + 1}
	st.appendLocked(&oplogEntry{op: opNoop, opDesc: bson.D{{Key: "msg", Value: "initiating set"}}})
	return st
}

// appendNoopLocked writes a periodic no-op entry, as a primary's periodic
// no-op writer does every periodicNoopIntervalSecs when nothing else was
// written. st.mu must be held.
func (st *store) appendNoopLocked() {
	st.appendLocked(&oplogEntry{op: opNoop, opDesc: bson.D{{Key: "msg", Value: "periodic noop"}}})
}

// lastEntryTimeLocked returns the time of the newest oplog entry, zero
// when there is none. st.mu must be held.
func (st *store) lastEntryTimeLocked() bson.Timestamp {
	if n := len(st.oplog.entries); n > 0 {
		return st.oplog.entries[n-1].ts
	}
	return bson.Timestamp{}
}

// clusterTime returns the newest cluster time, the operationTime of a reply.
func (st *store) clusterTime() bson.Timestamp {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.clock
}

// maxClockDrift is how far ahead of its wall clock a member lets a
// gossiped cluster time take its own (maxAcceptableLogicalClockDriftSecs,
// 365 days).
const maxClockDrift = 365 * 24 * time.Hour

// advanceClock moves the cluster time to ts if it is later, as a member
// does with the $clusterTime a client or a router gossips, so that what
// it writes next is stamped after what the gossiper saw elsewhere (a
// router's other shards). A time too far ahead of the wall clock is
// refused, as the server's rate limiter refuses it (vector_clock.cpp).
func (st *store) advanceClock(ts bson.Timestamp) error {
	if limit := time.Now().Add(maxClockDrift).Unix(); int64(ts.T) > limit {
		return cmdErr(40484, "New cluster time, %d, is too far from this node's wall clock time, %d.", ts.T, time.Now().Unix())
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if tsLess(st.clock, ts) {
		st.clock = ts
	}
	return nil
}

// nextTimeLocked returns a cluster time later than every one handed out:
// wall-clock seconds, with an increment that orders writes within a second.
func (st *store) nextTimeLocked() bson.Timestamp {
	now := uint32(time.Now().Unix())
	if now > st.clock.T {
		return bson.Timestamp{T: now, I: 1}
	}
	if st.clock.I == math.MaxUint32 {
		return bson.Timestamp{T: st.clock.T + 1, I: 1}
	}
	return bson.Timestamp{T: st.clock.T, I: st.clock.I + 1}
}

// appendLocked stamps e with the next cluster time and the wall time,
// appends it to the oplog and wakes every waiting change stream. st.mu must
// be held.
func (st *store) appendLocked(e *oplogEntry) {
	if st.txn != nil {
		st.txn.record(e)
		return
	}
	st.clock = st.nextTimeLocked()
	e.ts = st.clock
	e.wall = time.Now()
	st.logLocked(e)
	st.notifyLocked()
}

// logLocked appends a stamped entry written on this member to its oplog:
// with the member's term, the running retryable statement's tag, and, when
// the member commits alone, as the new commit point.
func (st *store) logLocked(e *oplogEntry) {
	e.term = st.term
	if st.stmt != nil {
		e.retry = st.stmt
		st.recordRetryLocked(*st.stmt)
	}
	if e.txnLast && e.lsid != nil {
		st.recordTxnCommitLocked(sessionKey(e.lsid), e.txnNumber)
	}
	st.oplog.append(e)
	if st.autoCommit {
		st.commit = e.pos()
	}
}

// changedCh returns a channel closed by the next oplog append or move of
// the commit point.
func (st *store) changedCh() <-chan struct{} {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.changed
}

func (st *store) truncateOplog() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.oplog.truncate()
}

// dbLocked returns the named database, creating it when create is set.
func (st *store) dbLocked(name string, create bool) *database {
	d := st.dbs[name]
	if d == nil && create {
		d = &database{name: name, colls: make(map[string]*collection)}
		st.dbs[name] = d
	}
	return d
}

// collLocked returns the named collection or nil.
func (st *store) collLocked(db, coll string) *collection {
	d := st.dbs[db]
	if d == nil {
		return nil
	}
	return d.colls[coll]
}

// createCollLocked creates a collection and logs a create entry, which only
// streams with showExpandedEvents report. It does not check for an existing
// collection.
func (st *store) createCollLocked(db, name string, options bson.D) *collection {
	c := &collection{db: db, name: name, options: options}
	_, _ = rand.Read(c.uuid[:])
	c.uuid[6] = c.uuid[6]&0x0f | 0x40 // UUID version 4
	c.uuid[8] = c.uuid[8]&0x3f | 0x80
	c.preAndPostImages = preAndPostImagesEnabled(options)
	st.dbLocked(db, true).colls[name] = c
	st.appendLocked(&oplogEntry{op: opCreate, db: db, coll: name, collUUID: c.uuid,
		opDesc: createDescription(options), nsType: namespaceType(options), collOptions: options})
	return c
}

// namespaceType classifies a create as a real server does for a create
// event's nsType: a view on a system.buckets collection is the visible
// half of a time-series collection.
func namespaceType(options bson.D) string {
	for _, e := range options {
		switch e.Key {
		case "timeseries":
			return "timeseries"
		case "viewOn":
			if s, _ := e.Value.(string); strings.HasPrefix(s, "system.buckets.") {
				return "timeseries"
			}
			return "view"
		}
	}
	return "collection"
}

// implicitCollLocked returns the collection, creating it as an insert or an
// upsert does when it is missing.
func (st *store) implicitCollLocked(db, name string) *collection {
	if c := st.collLocked(db, name); c != nil {
		return c
	}
	return st.createCollLocked(db, name, nil)
}

func preAndPostImagesEnabled(options bson.D) bool {
	for _, e := range options {
		if e.Key != "changeStreamPreAndPostImages" {
			continue
		}
		if d, ok := e.Value.(bson.D); ok {
			for _, f := range d {
				if f.Key == "enabled" {
					b, _ := f.Value.(bool)
					return b
				}
			}
		}
	}
	return false
}

// createDescription is a create event's operationDescription: the oplog
// entry's create command less the collection name, that is the options,
// then the _id index spec, which a collection has and a view does not.
func createDescription(options bson.D) bson.D {
	desc := append(bson.D(nil), options...)
	if namespaceType(options) == "view" {
		return desc
	}
	return append(desc, bson.E{Key: "idIndex", Value: bson.D{{Key: "v", Value: int32(2)}, {Key: "key", Value: bson.D{{Key: "_id", Value: int32(1)}}}, {Key: "name", Value: "_id_"}}})
}

// sortedCollNames returns the collection names of d in order.
func (d *database) sortedCollNames() []string {
	names := make([]string, 0, len(d.colls))
	for n := range d.colls {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// docSet keeps a collection's documents in insertion order (natural order)
// with an index on _id.
type docSet struct {
	byID  map[string]*storedDoc
	order []*storedDoc
	dead  int // deleted entries still in order
	// lastWrite is the writeSeq of the last change to each key, kept so
	// that a transaction can tell what changed after its snapshot.
	lastWrite map[string]uint64
}

// clone returns a copy whose changes do not reach s (the documents, being
// immutable, are shared).
func (s *docSet) clone() docSet {
	out := docSet{byID: make(map[string]*storedDoc, len(s.byID)), order: make([]*storedDoc, 0, len(s.byID))}
	for _, d := range s.order {
		if !d.deleted {
			cp := &storedDoc{key: d.key, doc: d.doc}
			out.byID[d.key] = cp
			out.order = append(out.order, cp)
		}
	}
	return out
}

func (s *docSet) touch(key string) {
	if s.lastWrite == nil {
		s.lastWrite = make(map[string]uint64)
	}
	s.lastWrite[key] = writeSeq.Add(1)
}

type storedDoc struct {
	key     string
	doc     bson.D
	deleted bool
}

func (s *docSet) len() int { return len(s.byID) }

// get returns the document whose _id has key, or nil.
func (s *docSet) get(key string) bson.D {
	if sd := s.byID[key]; sd != nil {
		return sd.doc
	}
	return nil
}

// insert adds doc; it reports false when its _id is taken.
func (s *docSet) insert(key string, doc bson.D) bool {
	if s.byID == nil {
		s.byID = make(map[string]*storedDoc)
	}
	if _, dup := s.byID[key]; dup {
		return false
	}
	sd := &storedDoc{key: key, doc: doc}
	s.touch(key)
	s.byID[key] = sd
	s.order = append(s.order, sd)
	return true
}

// replace swaps the document with key for doc, keeping its position.
func (s *docSet) replace(key string, doc bson.D) {
	if sd := s.byID[key]; sd != nil {
		sd.doc = doc
		s.touch(key)
	}
}

// remove deletes the document with key.
func (s *docSet) remove(key string) {
	sd := s.byID[key]
	if sd == nil {
		return
	}
	sd.deleted = true
	s.touch(key)
	delete(s.byID, key)
	s.dead++
	if s.dead > 64 && s.dead > len(s.order)/2 {
		live := s.order[:0]
		for _, d := range s.order {
			if !d.deleted {
				live = append(live, d)
			}
		}
		clear(s.order[len(live):])
		s.order = live
		s.dead = 0
	}
}

// all returns the live documents in natural order. The slice is new; the
// documents are shared and must not be modified.
func (s *docSet) all() []bson.D {
	out := make([]bson.D, 0, len(s.byID))
	for _, d := range s.order {
		if !d.deleted {
			out = append(out, d.doc)
		}
	}
	return out
}

// idKey returns a map key for an _id value. Numbers that compare equal
// (1, 1.0, int64(1)) share a key, as they do in a real _id index.
func idKey(v any) string {
	switch n := v.(type) {
	case int32:
		return "n" + strconv.FormatFloat(float64(n), 'g', -1, 64)
	case int64:
		if n >= -1<<53 && n <= 1<<53 {
			return "n" + strconv.FormatFloat(float64(n), 'g', -1, 64)
		}
		return "l" + strconv.FormatInt(n, 10)
	case float64:
		return "n" + strconv.FormatFloat(n, 'g', -1, 64)
	}
	t, data, err := bson.MarshalValue(v)
	if err != nil {
		return "?" + err.Error()
	}
	return string(rune(t)) + string(data)
}
