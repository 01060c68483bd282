package mongosim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// ReplicaSet is a replica set of simulated members in one process. Each
// member is a Server on its own loopback port with its own data and
// oplog; members share nothing but what replication copies from the
// primary. Elections, step-downs, member kills and replication lag are
// driven from Go (StepDown, Kill, Restart, SetLag, PauseReplication) or,
// where the server has one, by command (replSetStepDown, replSetFreeze).
//
// What it models and what it leaves out is listed in the package
// documentation.
type ReplicaSet struct {
	name    string
	members []*Server
	cfg     rsConfig

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// primary is the index of the primary, -1 while there is none.
	primary int
	// term is the election term: it grows by one with every election
	// and is the t of every opTime written in it. The commit point
	// advances only to entries of the current term, as in Raft (a primary
	// commits its predecessors' entries by committing one of its own).
	term int64
	// commit is the majority commit point.
	commit oplogPos
	// noPrimarySince is when the set last lost its primary.
	noPrimarySince time.Time
	// changed is closed and replaced on every change of the set's state:
	// roles, members up or down, replication settings, the commit point.
	changed chan struct{}
	// elections counts elections won, for tests and soaks.
	elections int
	// rollbacks counts members that rolled back.
	rollbacks int
}

// waitAny waits until done is closed (false), or a or b is closed, or d
// has passed when d > 0 (true).
func waitAny(done <-chan struct{}, d time.Duration, a, b <-chan struct{}) bool {
	var timer <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-done:
		return false
	case <-a:
	case <-b:
	case <-timer:
	}
	return true
}

// member is a Server's place in its ReplicaSet. Fields are guarded by
// rs.mu.
type member struct {
	rs  *ReplicaSet
	idx int

	up     bool
	lag    time.Duration
	paused bool
	// frozenUntil: the member may not stand for election before this
	// time (replSetFreeze, and a stepped-down primary's stepDownSecs).
	frozenUntil time.Time
	// steppingDown is set while a primary waits for a secondary to catch
	// up before it steps down; writes wait meanwhile, as they wait for
	// the replication state transition lock on a real server.
	steppingDown bool
	// applied is the member's newest applied position when it was
	// killed (while it runs, its store says).
	applied memberOpTime
	// interrupt is closed when the member leaves the primary state,
	// failing what waits on it (getMores, write-concern waits).
	interrupt chan struct{}
}

// rsConfig holds the set's settings.
type rsConfig struct {
	electionTimeout time.Duration
}

// Defaults of a replica set's settings, as on the server.
const (
	// DefaultElectionTimeout is settings.electionTimeoutMillis (10 s):
	// how long secondaries wait without a primary before electing one.
	DefaultElectionTimeout = 10 * time.Second
	// DefaultStepDownPeriod is replSetStepDown's default stepDownSecs
	// (60): how long a stepped-down primary may not stand for election.
	DefaultStepDownPeriod = 60 * time.Second
	// DefaultCatchUpPeriod is replSetStepDown's default
	// secondaryCatchUpPeriodSecs (10).
	DefaultCatchUpPeriod = 10 * time.Second
)

// ReplicaSetOption configures a ReplicaSet.
type ReplicaSetOption func(*rsConfig)

// WithElectionTimeout sets how long the members wait without a primary
// before they elect one (settings.electionTimeoutMillis, default
// DefaultElectionTimeout). Tests of a killed primary set it low, as the
// server's own tests do.
func WithElectionTimeout(d time.Duration) ReplicaSetOption {
	return func(c *rsConfig) { c.electionTimeout = d }
}

// NewReplicaSet starts a replica set of n members (1, 3 or 5, the sizes
// with a strict majority). Member 0 is elected primary before it returns.
// Server options apply to every member, except that WithAddr may not be
// given (each member takes a free loopback port) and WithStandalone makes
// no sense. The caller must call Close.
func NewReplicaSet(n int, serverOpts []Option, opts ...ReplicaSetOption) (*ReplicaSet, error) {
	if n != 1 && n != 3 && n != 5 {
		return nil, fmt.Errorf("mongosim: a replica set of %d members is not supported (1, 3 or 5)", n)
	}
	base := defaultConfig()
	for _, o := range serverOpts {
		o(&base)
	}
	if base.standalone {
		return nil, errors.New("mongosim: a replica set member cannot be a standalone")
	}
	if base.addr != defaultConfig().addr {
		return nil, errors.New("mongosim: WithAddr does not apply to a replica set; every member takes a free loopback port")
	}
	rc := rsConfig{electionTimeout: DefaultElectionTimeout}
	for _, o := range opts {
		o(&rc)
	}
	if rc.electionTimeout <= 0 {
		return nil, fmt.Errorf("mongosim: election timeout must be positive, got %v", rc.electionTimeout)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rs := &ReplicaSet{name: base.replSetName, cfg: rc, ctx: ctx, cancel: cancel, primary: -1, changed: make(chan struct{})}
	var first *store
	for i := range n {
		var st *store
		if first == nil {
			st = newStore(base.oplogMax)
			first = st
		} else {
			// A new member copies the data and oplog of the first
			// (initial sync) before the set is initiated.
			st = newEmptyStore(base.oplogMax)
			st.resyncFrom(first)
		}
		m := &member{rs: rs, idx: i, up: true, interrupt: make(chan struct{})}
		s, err := newServer(base, st, m)
		if err != nil {
			_ = rs.Close()
			return nil, err
		}
		rs.members = append(rs.members, s)
	}
	if n > 1 {
		for _, s := range rs.members {
			s.store.autoCommit = false
		}
	}
	rs.mu.Lock()
	rs.electLocked(0)
	rs.mu.Unlock()
	for _, s := range rs.members {
		rs.wg.Add(1)
		go rs.replicate(s)
	}
	rs.wg.Add(1)
	go rs.watchElections()
	return rs, nil
}

// Name returns the replica set's name.
func (rs *ReplicaSet) Name() string { return rs.name }

// Members returns the members, in the order of their _id in the set's
// configuration.
func (rs *ReplicaSet) Members() []*Server { return slices.Clone(rs.members) }

// Member returns member i.
func (rs *ReplicaSet) Member(i int) *Server { return rs.members[i] }

// URI returns a connection string naming every member and the set.
func (rs *ReplicaSet) URI() string {
	hosts := make([]string, len(rs.members))
	for i, s := range rs.members {
		hosts[i] = s.addr
	}
	return "mongodb://" + strings.Join(hosts, ",") + "/?replicaSet=" + rs.name
}

// Primary returns the primary, or nil while there is none.
func (rs *ReplicaSet) Primary() *Server {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.primary < 0 {
		return nil
	}
	return rs.members[rs.primary]
}

// Elections returns how many elections the set has held, the first
// (which made member 0 primary) included.
func (rs *ReplicaSet) Elections() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.elections
}

// Term returns the current election term.
func (rs *ReplicaSet) Term() int64 {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.term
}

// Close stops every member and the set's goroutines.
func (rs *ReplicaSet) Close() error {
	rs.cancel()
	for _, s := range rs.members {
		_ = s.Close()
	}
	rs.wg.Wait()
	return nil
}

// WaitForPrimary waits until the set has a primary and returns it.
func (rs *ReplicaSet) WaitForPrimary(ctx context.Context) (*Server, error) {
	for {
		rs.mu.Lock()
		p, ch := rs.primary, rs.changed
		rs.mu.Unlock()
		if p >= 0 {
			return rs.members[p], nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// notifyLocked wakes everything waiting on a change of the set's state.
func (rs *ReplicaSet) notifyLocked() {
	close(rs.changed)
	rs.changed = make(chan struct{})
}

// bumpTopologyLocked moves every member's topologyVersion counter, which
// answers every waiting awaitable hello with the new state.
func (rs *ReplicaSet) bumpTopologyLocked() {
	for _, s := range rs.members {
		s.topo.bump(false)
	}
}

// majority is how many members make a majority.
func (rs *ReplicaSet) majority() int { return len(rs.members)/2 + 1 }

// isPrimary reports whether s is its set's primary; a Server outside a set
// is always primary.
func (s *Server) isPrimary() bool {
	m := s.member
	if m == nil {
		return true
	}
	m.rs.mu.Lock()
	defer m.rs.mu.Unlock()
	return m.rs.primary == m.idx
}

// interruptCh returns a channel closed when s stops being primary; nil
// when it is not primary now, or is a Server outside a set.
func (s *Server) interruptCh() <-chan struct{} {
	m := s.member
	if m == nil {
		return nil
	}
	m.rs.mu.Lock()
	defer m.rs.mu.Unlock()
	if m.rs.primary != m.idx {
		return nil
	}
	return m.interrupt
}

// AwaitingWriteConcern returns how many writes on s wait for their write
// concern right now, so a test can act while one waits without sleeping.
func (s *Server) AwaitingWriteConcern() int { return int(s.awaitingWC.Load()) }
