package mongosim

import (
	"math"
	"sort"
	"sync"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Oplog operation types. The CRUD and drop/rename/dropDatabase ones are the
// change events every stream sees; the others appear only with
// showExpandedEvents.
const (
	opInsert        = "insert"
	opUpdate        = "update"
	opReplace       = "replace"
	opDelete        = "delete"
	opDrop          = "drop"
	opRename        = "rename"
	opDropDatabase  = "dropDatabase"
	opCreate        = "create"
	opCreateIndexes = "createIndexes"
	opDropIndexes   = "dropIndexes"
	opModify        = "modify"
	// opShardCollection is the no-op a shard writes when a collection is
	// sharded, which streams with showExpandedEvents report.
	opShardCollection = "shardCollection"
	// opRefineShardKey is the no-op the primary shard writes when a
	// collection's shard key is refined (refineCollectionShardKey), and
	// the fromMigrate entry the others write as they learn the new key.
	opRefineShardKey = "refineCollectionShardKey"
	// opNoop is a no-op entry ("n" in a real oplog): the entry that
	// initiates the replica set, and the periodic no-op writer's. It is
	// never an event, but a stream that scans it moves its
	// postBatchResumeToken past it.
	opNoop = "n"
)

// oplogEntry is one change, written by a command under store.mu. An entry
// is identified by its position: its cluster time, then its txnOpIndex,
// since all the entries of one transaction share the commit's time.
type oplogEntry struct {
	ts       bson.Timestamp
	wall     time.Time
	op       string
	db, coll string
	collUUID [16]byte

	// CRUD changes.
	docKey     bson.D                   // {_id: ...}
	fullDoc    bson.D                   // insert and replace: the document written
	preImage   bson.D                   // update, replace, delete: set only when the collection records pre-images
	postImage  bson.D                   // update: set only when the collection records post-images
	updateDesc *query.UpdateDescription // update only

	// DDL changes.
	toDB, toColl string // rename target
	opDesc       bson.D // operationDescription for expanded events
	stateBefore  bson.D // a modify event's stateBeforeChange
	// nsType is what a create made: "collection", "view" or "timeseries".
	nsType string

	// Transactions: every entry of one commit shares its cluster time and
	// is told apart by txnOpIndex; lsid and txnNumber name the session's
	// transaction, and txnLast marks its last entry.
	txnOpIndex int32
	lsid       bson.Raw
	txnNumber  int64
	txnLast    bool

	// Replication: the term the entry was written in, and what a
	// secondary needs to apply it that the event fields do not carry.
	term        int64
	after       bson.D   // update and replace: the whole document after
	collOptions bson.D   // create and modify: the collection's options after
	collIndexes []bson.D // modify: the collection's indexes after
	// fromMigrate marks a write of a chunk migration: replicated like
	// any other, never a change event.
	fromMigrate bool
	// retry names the retryable write statement that wrote the entry.
	retry *retryTag

	// encoded caches the default rendering of the event, built once by the
	// first change stream that needs it; token caches its resume token.
	encodeOnce sync.Once
	encoded    bsoncore.Document
	encodeErr  error
	tokenOnce  sync.Once
	token      resumeToken
	tokenErr   error
}

// oplog is the retained history, oldest first.
type oplog struct {
	entries []*oplogEntry
	max     int // 0: unbounded
	// lastDropped is the newest dropped entry's position: a stream that
	// has scanned up to it has lost nothing.
	lastDropped oplogPos
}

func (o *oplog) append(e *oplogEntry) {
	o.entries = append(o.entries, e)
	if o.max > 0 && len(o.entries) > o.max {
		o.dropOldest(len(o.entries) - o.max)
	}
}

func (o *oplog) dropOldest(n int) {
	o.lastDropped = o.entries[n-1].pos()
	clear(o.entries[:n])
	o.entries = o.entries[n:]
	if cap(o.entries) > 4*len(o.entries)+1024 {
		o.entries = append([]*oplogEntry(nil), o.entries...)
	}
}

// truncate drops every entry but the newest.
func (o *oplog) truncate() {
	if len(o.entries) > 1 {
		o.dropOldest(len(o.entries) - 1)
	}
}

// historyLost reports whether ts is older than the oldest retained entry,
// so that a stream cannot start or resume from it: the server's check
// (DocumentSourceChangeStreamCheckResumability) compares the start point with the
// oplog's first entry, whether or not anything was ever truncated.
func (o *oplog) historyLost(ts bson.Timestamp) bool {
	return len(o.entries) > 0 && tsLess(ts, o.entries[0].ts)
}

// after returns the retained entries past p. The slice aliases the oplog;
// entries are never modified once appended.
func (o *oplog) after(p oplogPos) []*oplogEntry {
	i := sort.Search(len(o.entries), func(i int) bool { return p.less(o.entries[i].pos()) })
	return o.entries[i:len(o.entries):len(o.entries)]
}

// lostAfter reports whether an entry past p was dropped, so that a stream
// that has scanned up to p has missed it.
func (o *oplog) lostAfter(p oplogPos) bool {
	return o.lastDropped.ts.T != 0 && p.less(o.lastDropped)
}

// oplogPos is a position in the oplog: a cluster time and an index among
// the entries of a transaction committed at that time.
type oplogPos struct {
	ts  bson.Timestamp
	idx int64
}

// Positions around a cluster time: before every entry at ts, and after
// every entry at ts.
func posBefore(ts bson.Timestamp) oplogPos { return oplogPos{ts: ts, idx: -1} }
func posAfter(ts bson.Timestamp) oplogPos  { return oplogPos{ts: ts, idx: math.MaxInt64} }

func (p oplogPos) less(q oplogPos) bool {
	if p.ts != q.ts {
		return tsLess(p.ts, q.ts)
	}
	return p.idx < q.idx
}

func (e *oplogEntry) pos() oplogPos { return oplogPos{ts: e.ts, idx: int64(e.txnOpIndex)} }

// endsTxn reports whether nothing of e's commit follows it: true for an
// entry outside a transaction and for a transaction's last entry.
func (e *oplogEntry) endsTxn() bool { return e.lsid == nil || e.txnLast }

// tsLess orders cluster times.
func tsLess(a, b bson.Timestamp) bool {
	return a.T < b.T || (a.T == b.T && a.I < b.I)
}
