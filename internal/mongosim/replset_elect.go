package mongosim

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// electLocked makes member w primary in a new term. The new primary writes
// a no-op in its term before it accepts writes ("new primary" in the
// server's oplog), so that the commit point can move into the term.
func (rs *ReplicaSet) electLocked(w int) {
	rs.term++
	rs.elections++
	rs.primary = w
	s := rs.members[w]
	m := s.member
	m.interrupt = make(chan struct{})
	m.frozenUntil = time.Time{}
	st := s.store
	st.mu.Lock()
	st.term = rs.term
	st.appendLocked(&oplogEntry{op: opNoop, opDesc: bson.D{{Key: "msg", Value: "new primary"}}})
	st.mu.Unlock()
	rs.bumpTopologyLocked()
	rs.updateCommitLocked()
	rs.notifyLocked()
}

// stepDownLocked makes the primary p a secondary that may not stand for
// election for freeze. Waiting getMores and write-concern waits on it
// fail, and its open transactions are aborted, as on a step-down.
func (rs *ReplicaSet) stepDownLocked(p int, freeze time.Duration) {
	s := rs.members[p]
	m := s.member
	rs.primary = -1
	rs.noPrimarySince = time.Now()
	m.frozenUntil = time.Now().Add(freeze)
	m.steppingDown = false
	close(m.interrupt)
	s.txns.abortAll(s.store)
	rs.bumpTopologyLocked()
	rs.notifyLocked()
}

// candidateLocked returns the member an election would choose, or -1.
// The candidate is the most up to date member that is up and not frozen;
// it wins only with the votes of a majority, and a member votes only for
// a candidate at least as up to date as itself (so no majority-committed
// entry is ever lost to an election).
func (rs *ReplicaSet) candidateLocked(exclude int) int {
	best := -1
	var bestPos memberOpTime
	now := time.Now()
	pos := make([]memberOpTime, len(rs.members))
	for i, s := range rs.members {
		m := s.member
		if !m.up {
			continue
		}
		pos[i] = rs.appliedLocked(i)
		if i == exclude || now.Before(m.frozenUntil) {
			continue
		}
		if best < 0 || bestPos.less(pos[i]) {
			best, bestPos = i, pos[i]
		}
	}
	if best < 0 {
		return -1
	}
	votes := 0
	for i, s := range rs.members {
		if s.member.up && !bestPos.less(pos[i]) {
			votes++
		}
	}
	if votes < rs.majority() {
		return -1
	}
	return best
}

// memberOpTime is a member's newest applied entry as the set compares
// members: by term first, then position, as the server compares OpTimes.
// A former primary's entries that the set never had (awaiting rollback)
// are of an older term, so they never count as ahead of the new
// primary's entries, in a commit point, a vote or a write concern.
type memberOpTime struct {
	term int64
	pos  oplogPos
}

func (a memberOpTime) less(b memberOpTime) bool {
	if a.term != b.term {
		return a.term < b.term
	}
	return a.pos.less(b.pos)
}

// appliedLocked is member i's newest applied entry: read from its store
// while it runs, as last known once it was killed.
func (rs *ReplicaSet) appliedLocked(i int) memberOpTime {
	s := rs.members[i]
	if s.member.up {
		st := s.store
		st.mu.Lock()
		defer st.mu.Unlock()
		last := st.lastEntryLocked()
		return memberOpTime{term: last.term, pos: last.pos()}
	}
	return s.member.applied
}

// watchElections holds an election when the set has had no primary for
// the election timeout, as the secondaries' election timers do.
func (rs *ReplicaSet) watchElections() {
	defer rs.wg.Done()
	for {
		rs.mu.Lock()
		ch := rs.changed
		wait := time.Duration(0)
		if rs.primary < 0 {
			due := rs.noPrimarySince.Add(rs.cfg.electionTimeout)
			if d := time.Until(due); d > 0 {
				wait = d
			} else if c := rs.candidateLocked(-1); c >= 0 {
				rs.electLocked(c)
				ch = rs.changed
			} else {
				// Nobody electable yet: a member coming back changes the
				// set's state; a frozen one thawing does not, so wake then.
				wait = rs.nextThawLocked()
			}
		}
		rs.mu.Unlock()
		if !waitAny(rs.ctx.Done(), wait, ch, nil) {
			return
		}
	}
}

// StepDownOptions are replSetStepDown's arguments.
type StepDownOptions struct {
	// StepDownPeriod is how long the old primary may not stand for
	// election (stepDownSecs; default DefaultStepDownPeriod).
	StepDownPeriod time.Duration
	// CatchUpPeriod is how long the primary waits for an electable
	// secondary to catch up (secondaryCatchUpPeriodSecs; default
	// DefaultCatchUpPeriod, or none with Force, as the server's default).
	CatchUpPeriod time.Duration
	// Force steps down at the end of CatchUpPeriod even if no secondary
	// caught up, instead of failing.
	Force bool
}

// StepDown makes the primary step down as replSetStepDown does: it waits
// until a majority of the set and an electable secondary have every
// write, steps down, and that secondary is elected at once. It fails with
// ExceededTimeLimit (262) when none catches up in time, unless Force is
// set, which then steps down regardless.
func (rs *ReplicaSet) StepDown(ctx context.Context, o StepDownOptions) error {
	p := rs.Primary()
	if p == nil {
		return cmdErr(codeNotWritablePrimary, "not primary so can't step down")
	}
	return rs.stepDown(ctx, p.member.idx, o)
}

func (rs *ReplicaSet) stepDown(ctx context.Context, p int, o StepDownOptions) error {
	if o.StepDownPeriod == 0 {
		o.StepDownPeriod = DefaultStepDownPeriod
	}
	if o.CatchUpPeriod == 0 && !o.Force {
		o.CatchUpPeriod = DefaultCatchUpPeriod
	}
	if o.StepDownPeriod < o.CatchUpPeriod {
		return cmdErr(codeBadValue, "stepdown period must be longer than secondaryCatchUpPeriodSecs")
	}
	deadline := time.Now().Add(o.CatchUpPeriod)
	rs.mu.Lock()
	if rs.primary != p {
		rs.mu.Unlock()
		return cmdErr(codeNotWritablePrimary, "not primary so can't step down")
	}
	m := rs.members[p].member
	m.steppingDown = true
	expired := false
	for {
		// Force steps down at once only when the catch-up period is
		// over: until then it waits, as an unforced step-down does, for
		// it to be safe (topology_coordinator.cpp,
		// _canCompleteStepDownAttempt).
		caught := rs.safeToStepDownLocked(p)
		if caught >= 0 || (o.Force && !time.Now().Before(deadline)) {
			rs.stepDownLocked(p, o.StepDownPeriod)
			if caught >= 0 {
				// The old primary asks a caught-up secondary to stand at
				// once (replSetStepUp) rather than wait out a timeout.
				rs.electLocked(caught)
			}
			rs.mu.Unlock()
			return nil
		}
		if expired {
			m.steppingDown = false
			rs.notifyLocked()
			rs.mu.Unlock()
			return cmdErr(codeExceededTimeLimit, "No electable secondaries caught up as of %s. Please use the replSetStepDown command with the argument {force: true} to force node to step down.",
				time.Now().UTC().Format(time.RFC3339))
		}
		// Wake on a change of the set, when a frozen secondary may stand
		// again, or at the deadline.
		ch := rs.changed
		wait := time.Until(deadline)
		if thaw := rs.nextThawLocked(); thaw > 0 {
			wait = min(wait, thaw)
		}
		rs.mu.Unlock()
		expired = !waitAny(ctx.Done(), max(wait, time.Nanosecond), ch, nil) || !time.Now().Before(deadline)
		rs.mu.Lock()
		if rs.primary != p {
			rs.mu.Unlock()
			return cmdErr(codeNotWritablePrimary, "not primary so can't step down")
		}
	}
}

// nextThawLocked returns how long until the next frozen member may stand
// again, 0 when none is frozen.
func (rs *ReplicaSet) nextThawLocked() time.Duration {
	var next time.Duration
	now := time.Now()
	for _, s := range rs.members {
		if d := s.member.frozenUntil.Sub(now); d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	return next
}

// safeToStepDownLocked returns an electable secondary that has applied
// everything the primary p has, if a majority of the set (p counted) has
// too; -1 otherwise. In a three-member set the one implies the other; in
// a five-member set a caught-up electable secondary is not enough without
// a second caught-up member (topology_coordinator.cpp,
// _isSafeToStepDown).
func (rs *ReplicaSet) safeToStepDownLocked(p int) int {
	last := rs.appliedLocked(p)
	now := time.Now()
	caughtUp, electable := 0, -1
	for i, s := range rs.members {
		m := s.member
		if i != p && (!m.up || rs.appliedLocked(i).less(last)) {
			continue
		}
		caughtUp++
		if i != p && electable < 0 && !now.Before(m.frozenUntil) {
			electable = i
		}
	}
	if caughtUp < rs.majority() {
		return -1
	}
	return electable
}

// Freeze keeps member i from standing for election for d (replSetFreeze;
// 0 unfreezes). A freeze never shortens one already running, such as a
// stepped-down primary's stepDownSecs: the later deadline holds
// (topology_coordinator.cpp, prepareFreezeResponse). A primary cannot be
// frozen.
func (rs *ReplicaSet) Freeze(i int, d time.Duration) error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.primary == i {
		return cmdErr(codeNotSecondary, "cannot freeze node when primary or running for election. state: Primary")
	}
	m := rs.members[i].member
	if d == 0 {
		m.frozenUntil = time.Time{}
	} else if until := time.Now().Add(d); until.After(m.frozenUntil) {
		m.frozenUntil = until
	}
	rs.notifyLocked()
	return nil
}

// Kill stops member i as a crash would: its listener and connections
// close, its cursors and transactions are gone. Its data and oplog stay,
// non-majority writes included, for Restart. A killed primary leaves the
// set without one until the others hold an election.
func (rs *ReplicaSet) Kill(i int) {
	rs.mu.Lock()
	m := rs.members[i].member
	if !m.up {
		rs.mu.Unlock()
		return
	}
	m.applied = rs.appliedLocked(i)
	m.up = false
	if rs.primary == i {
		rs.primary = -1
		rs.noPrimarySince = time.Now()
		close(m.interrupt)
	}
	rs.bumpTopologyLocked()
	rs.notifyLocked()
	rs.mu.Unlock()
	rs.members[i].stopServing()
}

// Restart starts a killed member again on its port, as a new process
// (a new topologyVersion processId) and a secondary. It catches up from
// the primary, rolling back first any writes the set does not have.
func (rs *ReplicaSet) Restart(i int) error {
	s := rs.members[i]
	rs.mu.Lock()
	up := s.member.up
	rs.mu.Unlock()
	if up {
		return fmt.Errorf("mongosim: member %d is running", i)
	}
	if err := s.startServing(); err != nil {
		return err
	}
	rs.mu.Lock()
	s.member.up = true
	s.topo.bump(true)
	rs.bumpTopologyLocked()
	rs.notifyLocked()
	rs.mu.Unlock()
	return nil
}

// SetLag delays member i's replication: it applies an entry only once the
// entry is d old.
func (rs *ReplicaSet) SetLag(i int, d time.Duration) {
	rs.mu.Lock()
	rs.members[i].member.lag = d
	rs.notifyLocked()
	rs.mu.Unlock()
}

// PauseReplication stops member i from replicating, and from hearing of
// the commit point, as a partition from the primary would;
// ResumeReplication lets it catch up.
func (rs *ReplicaSet) PauseReplication(i int) { rs.setPaused(i, true) }

// ResumeReplication undoes PauseReplication.
func (rs *ReplicaSet) ResumeReplication(i int) { rs.setPaused(i, false) }

func (rs *ReplicaSet) setPaused(i int, p bool) {
	rs.mu.Lock()
	rs.members[i].member.paused = p
	rs.notifyLocked()
	rs.mu.Unlock()
}
