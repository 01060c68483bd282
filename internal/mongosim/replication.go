package mongosim

import (
	"slices"
	"sort"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// replicate is member s's oplog fetcher and applier: it copies the
// primary's entries once each is as old as the member's lag, applies them
// in order and reports its position, which moves the commit point. A
// member whose newest entry the primary does not have rolls back first.
func (rs *ReplicaSet) replicate(s *Server) {
	defer rs.wg.Done()
	m := s.member
	for {
		rs.mu.Lock()
		ch := rs.changed
		var src *Server
		if m.up && !m.paused && rs.primary >= 0 && rs.primary != m.idx {
			src = rs.members[rs.primary]
		}
		lag := m.lag
		rs.mu.Unlock()
		var wake <-chan struct{}
		var next time.Duration
		if src != nil {
			wake = src.store.changedCh()
			next = rs.pull(s, src, lag)
		}
		if !waitAny(rs.ctx.Done(), next, ch, wake) {
			return
		}
	}
}

// pull applies to s what src has past s's newest entry and is due. It
// returns how long until the next entry falls due, 0 when none waits.
func (rs *ReplicaSet) pull(s, src *Server, lag time.Duration) time.Duration {
	dst := s.store
	dst.mu.Lock()
	mine := dst.lastEntryLocked()
	dst.mu.Unlock()

	var batch []*oplogEntry
	var next time.Duration
	diverged := false
	src.store.mu.Lock()
	entries := src.store.oplog.entries
	i := sort.Search(len(entries), func(i int) bool { return !entries[i].pos().less(mine.pos()) })
	if i == len(entries) || entries[i] != mine {
		diverged = true
	} else {
		now := time.Now()
		for _, e := range entries[i+1:] {
			if due := e.wall.Add(lag); due.After(now) {
				next = due.Sub(now)
				break
			}
			batch = append(batch, e)
			if len(batch) == scanChunk {
				break
			}
		}
	}
	src.store.mu.Unlock()

	if diverged {
		rs.rollback(s, src)
		return 0
	}
	if len(batch) == 0 {
		return next
	}
	// replicate looked at the member's state before this pull: under the
	// set's lock, nothing is applied once PauseReplication (or a stop) has
	// returned, as a test pausing a real member's replication waits until
	// its fetcher has stopped. Without this, a pull that had already begun
	// applied a write made after the pause.
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if m := s.member; !m.up || m.paused {
		return 0
	}
	dst.mu.Lock()
	if dst.lastEntryLocked() != mine {
		dst.mu.Unlock()
		return 0
	}
	for _, e := range batch {
		dst.applyLocked(e)
	}
	dst.notifyLocked()
	dst.mu.Unlock()
	rs.updateCommitLocked()
	if len(batch) == scanChunk {
		return time.Nanosecond
	}
	return next
}

// rollback brings a member whose oplog diverged from the primary's (it was
// primary and took writes the set never had) back in line. A real member
// undoes its writes back to the common point and then applies the new
// primary's entries; the simulator reaches the same state by copying the
// primary's data and oplog. The rolled-back writes were never majority
// committed, so no change stream ever returned them. Cursors on the member
// are killed, as its state transition to ROLLBACK kills user operations.
func (rs *ReplicaSet) rollback(s, src *Server) {
	s.cursors.killAll()
	s.txns.abortAll(s.store)
	s.store.resyncFrom(src.store)
	rs.mu.Lock()
	rs.rollbacks++
	rs.updateCommitLocked()
	rs.notifyLocked()
	rs.mu.Unlock()
}

// Rollbacks returns how many times a member rolled back.
func (rs *ReplicaSet) Rollbacks() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.rollbacks
}

// updateCommitLocked moves the majority commit point to the newest
// position a majority of members has applied, if that is in the current
// term, and tells every member in touch with the primary.
func (rs *ReplicaSet) updateCommitLocked() {
	if rs.primary < 0 {
		return
	}
	pos := make([]memberOpTime, len(rs.members))
	for i := range rs.members {
		pos[i] = rs.appliedLocked(i)
	}
	sorted := slices.Clone(pos)
	slices.SortFunc(sorted, func(a, b memberOpTime) int {
		switch {
		case b.less(a):
			return -1
		case a.less(b):
			return 1
		}
		return 0
	})
	if maj := sorted[rs.majority()-1]; maj.term == rs.term && rs.commit.less(maj.pos) {
		rs.commit = maj.pos
		rs.notifyLocked()
	}
	for i, s := range rs.members {
		m := s.member
		if !m.up || (m.paused && i != rs.primary) {
			continue
		}
		if pos[i].term != rs.term {
			// Not yet in the current term, or diverged from it: what it
			// holds past the common point may be rolled back, so its
			// commit point waits until it has the new term's entries.
			continue
		}
		c := rs.commit
		if pos[i].pos.less(c) {
			c = pos[i].pos
		}
		st := s.store
		st.mu.Lock()
		if st.commit.less(c) {
			st.commit = c
			st.notifyLocked()
		}
		st.mu.Unlock()
	}
}

// lastEntryLocked returns the newest oplog entry (the oplog always keeps
// at least one).
func (st *store) lastEntryLocked() *oplogEntry {
	return st.oplog.entries[len(st.oplog.entries)-1]
}

// lastPosLocked returns the newest oplog entry's position.
func (st *store) lastPosLocked() oplogPos { return st.lastEntryLocked().pos() }

// notifyLocked wakes every change stream and replication waiting on st.
func (st *store) notifyLocked() {
	close(st.changed)
	st.changed = make(chan struct{})
}

// applyLocked applies a primary's oplog entry to a secondary's data and
// appends it to the secondary's oplog, sharing the entry: it is the same
// operation at the same optime on every member.
func (st *store) applyLocked(e *oplogEntry) {
	key := func() string { id, _ := query.Lookup(e.docKey, "_id"); return idKey(id) }
	coll := func() *collection {
		if c := st.collLocked(e.db, e.coll); c != nil {
			return c
		}
		// Every collection's create is logged before its first write;
		// this only guards against a corrupt history.
		c := &collection{db: e.db, name: e.coll, uuid: e.collUUID}
		st.dbLocked(e.db, true).colls[e.coll] = c
		return c
	}
	switch e.op {
	case opInsert:
		coll().docs.insert(key(), e.fullDoc)
	case opUpdate, opReplace:
		coll().docs.replace(key(), e.after)
	case opDelete:
		coll().docs.remove(key())
	case opCreate:
		c := &collection{db: e.db, name: e.coll, uuid: e.collUUID, options: e.collOptions}
		c.preAndPostImages = preAndPostImagesEnabled(e.collOptions)
		st.dbLocked(e.db, true).colls[e.coll] = c
	case opDrop:
		if d := st.dbs[e.db]; d != nil {
			delete(d.colls, e.coll)
			if len(d.colls) == 0 {
				delete(st.dbs, e.db)
			}
		}
	case opDropDatabase:
		delete(st.dbs, e.db)
	case opRename:
		src := st.collLocked(e.db, e.coll)
		if src == nil {
			break
		}
		if d := st.dbs[e.toDB]; d != nil {
			delete(d.colls, e.toColl)
		}
		moved := *src
		moved.db, moved.name = e.toDB, e.toColl
		delete(st.dbs[e.db].colls, e.coll)
		if len(st.dbs[e.db].colls) == 0 {
			delete(st.dbs, e.db)
		}
		st.dbLocked(e.toDB, true).colls[e.toColl] = &moved
	case opCreateIndexes:
		c := coll()
		for _, spec := range indexSpecs(e.opDesc) {
			c.indexes = append(slices.Clip(c.indexes), spec)
		}
	case opDropIndexes:
		// A new slice: the old one may be shared with a copy of the
		// collection (resyncFrom).
		c := coll()
		dropped := indexSpecs(e.opDesc)
		c.indexes = slices.DeleteFunc(slices.Clone(c.indexes), func(ix bson.D) bool {
			return slices.ContainsFunc(dropped, func(spec bson.D) bool { return ix[2].Value == spec[2].Value })
		})
	case opShardCollection, opRefineShardKey:
		key, _ := query.Lookup(e.opDesc, "shardKey")
		coll().shardKey, _ = key.(bson.D)
	case opModify:
		c := coll()
		c.options, c.indexes = e.collOptions, e.collIndexes
		c.preAndPostImages = preAndPostImagesEnabled(e.collOptions)
	}
	if e.retry != nil {
		st.recordRetryLocked(*e.retry)
	}
	if e.txnLast && e.lsid != nil {
		st.recordTxnCommitLocked(sessionKey(e.lsid), e.txnNumber)
	}
	st.oplog.append(e)
	if tsLess(st.clock, e.ts) {
		st.clock = e.ts
	}
	st.term = max(st.term, e.term)
}

// indexSpecs returns the index specifications of an index entry's
// operationDescription ({indexes: [...]}).
func indexSpecs(desc bson.D) []bson.D {
	v, _ := query.Lookup(desc, "indexes")
	arr, _ := v.(bson.A)
	out := make([]bson.D, 0, len(arr))
	for _, x := range arr {
		if d, ok := x.(bson.D); ok && len(d) >= 3 {
			out = append(out, d)
		}
	}
	return out
}

// resyncFrom replaces st's data and oplog with a copy of src's, as an
// initial sync does.
func (st *store) resyncFrom(src *store) {
	src.mu.Lock()
	dbs := make(map[string]*database, len(src.dbs))
	for name, d := range src.dbs {
		nd := &database{name: name, colls: make(map[string]*collection, len(d.colls))}
		for cn, c := range d.colls {
			cp := *c
			cp.docs = c.docs.clone()
			cp.indexes = slices.Clip(c.indexes)
			nd.colls[cn] = &cp
		}
		dbs[name] = nd
	}
	entries := slices.Clone(src.oplog.entries)
	lastDropped := src.oplog.lastDropped
	clock, commit, term := src.clock, src.commit, src.term
	sessions := make(map[string]*retrySession, len(src.sessions))
	for k, v := range src.sessions {
		sessions[k] = v.clone()
	}
	src.mu.Unlock()

	st.mu.Lock()
	defer st.mu.Unlock()
	st.dbs = dbs
	st.oplog.entries, st.oplog.lastDropped = entries, lastDropped
	st.clock, st.commit, st.term = clock, commit, term
	st.sessions = sessions
	st.txnLocks = nil
	st.notifyLocked()
}
