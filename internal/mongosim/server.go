package mongosim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/failpoint"
	"github.com/changestream-go/changestream/internal/mongosim/wire"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Version facts the simulator claims. Change streams behave as on 8.0.
const (
	// ServerVersion is reported by buildInfo.
	ServerVersion = wire.ServerVersion
	// MaxWireVersion is reported by hello; 25 is MongoDB 8.0.
	MaxWireVersion = 25
)

// Option configures a Server.
type Option func(*config)

type config struct {
	addr        string
	replSetName string
	standalone  bool
	// shardServer: a member of a shard of a sharded cluster, which takes
	// the commands a router sends its shards (_shardsvrCreateCollection).
	shardServer bool
	// configServer: the config server member of a sharded cluster.
	configServer bool
	oplogMax     int
	logMax       int
	noop         time.Duration
	// messageTimeout bounds how long one message may take to arrive once
	// its first byte has.
	messageTimeout time.Duration
}

// DefaultMessageTimeout is how long a client may take to send one whole
// message once it has started it.
const DefaultMessageTimeout = 30 * time.Second

// DefaultNoopInterval is how often an idle primary writes a no-op to its
// oplog: the server's periodicNoopIntervalSecs, 10 by default.
const DefaultNoopInterval = 10 * time.Second

func defaultConfig() config {
	return config{addr: "127.0.0.1:0", replSetName: "rs0", logMax: 10_000, noop: DefaultNoopInterval,
		messageTimeout: DefaultMessageTimeout}
}

// WithAddr sets the listen address (default "127.0.0.1:0", a free loopback port).
func WithAddr(addr string) Option { return func(c *config) { c.addr = addr } }

// WithReplSetName sets the replica set name reported by hello (default "rs0").
func WithReplSetName(name string) Option { return func(c *config) { c.replSetName = name } }

// WithStandalone makes the server answer as a standalone mongod instead of
// a replica-set primary: hello names no replica set, replies carry no
// cluster time, and a $changeStream fails with the server's own error
// (40573), as the specification's single-topology test expects.
func WithStandalone() Option { return func(c *config) { c.standalone = true } }

// WithOplogMax bounds the oplog to the newest n entries (default 0, unbounded).
// A change stream that resumes from a token older than the oldest retained
// entry fails with ChangeStreamHistoryLost (286), as on a real server whose
// oplog has rolled over.
func WithOplogMax(n int) Option { return func(c *config) { c.oplogMax = n } }

// WithNoopInterval sets the period of the no-op writer (default
// DefaultNoopInterval; 0 turns it off). A real primary writes a no-op
// oplog entry every periodicNoopIntervalSecs in which nothing else was
// written, so an idle change stream's postBatchResumeToken keeps moving
// (and, on a sharded cluster, an idle shard's promise); a no-op is never
// an event. Tests that need a quiet oplog turn it off.
func WithNoopInterval(d time.Duration) Option { return func(c *config) { c.noop = d } }

// WithMessageTimeout bounds how long a client may take to send one whole
// message once its first byte has arrived (default DefaultMessageTimeout);
// a slower client is disconnected. Idle time between messages is not
// limited.
func WithMessageTimeout(d time.Duration) Option { return func(c *config) { c.messageTimeout = d } }

// WithCommandLogMax bounds the command log to the newest n commands
// (default 10,000; 0 disables the log).
func WithCommandLogMax(n int) Option { return func(c *config) { c.logMax = n } }

// Server is a running simulated replica-set primary.
type Server struct {
	cfg    config
	ln     net.Listener // nil while a killed member is down; guarded by connMu
	lnAddr net.Addr
	addr   string // host:port exactly as listened on

	ctx    context.Context // done when Close starts
	cancel context.CancelFunc
	wg     sync.WaitGroup

	connMu     sync.Mutex
	conns      map[*conn]struct{}
	closed     bool
	nextConnID atomic.Int64
	awaiting   atomic.Int64 // change-stream getMores waiting for events
	awaitingWC atomic.Int64 // writes waiting for their write concern
	noopPaused atomic.Bool  // PauseNoopWriter
	started    time.Time

	// topo is the server's topologyVersion, which awaitable hellos watch.
	topo topologyState

	// member places the server in a ReplicaSet; nil for a server on its
	// own, which is the primary of a one-member set.
	member *member

	store      *store
	cursors    *cursorRegistry
	failPoints *failpoint.Set
	log        *commandLog
	txns       *transactions
}

// NewServer starts a server listening as configured by opts. The caller must
// call Close.
func NewServer(opts ...Option) (*Server, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	return newServer(cfg, nil, nil)
}

// newServer starts a server with cfg, on st (a new store when nil), as
// member m of a replica set (nil for none).
func newServer(cfg config, st *store, m *member) (*Server, error) {
	if cfg.oplogMax < 0 {
		return nil, fmt.Errorf("mongosim: negative oplog bound %d", cfg.oplogMax)
	}
	if cfg.replSetName == "" {
		return nil, errors.New("mongosim: empty replica set name")
	}
	if cfg.messageTimeout <= 0 {
		return nil, fmt.Errorf("mongosim: message timeout must be positive, got %v", cfg.messageTimeout)
	}
	if cfg.noop < 0 {
		return nil, fmt.Errorf("mongosim: negative no-op interval %v", cfg.noop)
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return nil, fmt.Errorf("mongosim: listen: %w", err)
	}
	if st == nil {
		st = newStore(cfg.oplogMax)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:        cfg,
		ln:         ln,
		lnAddr:     ln.Addr(),
		addr:       advertisedAddr(ln.Addr(), cfg.addr),
		ctx:        ctx,
		cancel:     cancel,
		member:     m,
		topo:       newTopologyState(),
		conns:      make(map[*conn]struct{}),
		store:      st,
		cursors:    newCursorRegistry(),
		failPoints: failpoint.NewSet(),
		log:        newCommandLog(cfg.logMax),
		txns:       newTransactions(),
		started:    time.Now(),
	}
	s.wg.Add(1)
	go s.acceptLoop(ln)
	if cfg.noop > 0 && !cfg.standalone {
		s.wg.Add(1)
		go s.noopWriter(cfg.noop)
	}
	return s, nil
}

// noopWriter writes a no-op entry at each tick of period when nothing
// else was written since the previous tick, until the server closes: the
// server's NoopWriter, which compares the last applied OpTime with the
// one it saw at its previous run (src/mongo/db/repl/noop_writer.cpp). An
// idle primary so writes one every period; a check of the last entry's
// age against the period, as before, missed it at every other tick, so
// an idle shard held a sharded stream back for up to two periods.
func (s *Server) noopWriter(period time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(period)
	defer t.Stop()
	var seen bson.Timestamp // the last entry at the previous tick
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			primary := s.isPrimary() // the set's lock before the store's
			st := s.store
			st.mu.Lock()
			last := st.lastEntryTimeLocked()
			if primary && last == seen && !s.noopPaused.Load() {
				st.appendNoopLocked()
				last = st.lastEntryTimeLocked()
			}
			seen = last
			st.mu.Unlock()
		}
	}
}

// PauseNoopWriter stops the member's periodic no-op writer until
// ResumeNoopWriter, as a primary whose writer is stalled: an idle shard
// so paused holds a sharded stream back indefinitely.
func (s *Server) PauseNoopWriter() { s.noopPaused.Store(true) }

// ResumeNoopWriter lets the periodic no-op writer run again.
func (s *Server) ResumeNoopWriter() { s.noopPaused.Store(false) }

// advertisedAddr is the host:port that hello, the URI and replSetGetStatus
// name: the listening address, except that a wildcard (0.0.0.0 or ::, or
// no host) is no address a client can connect to, so its loopback stands
// in. Go reports a 0.0.0.0 listener as [::] (one dual-stack socket), so the
// address asked for decides which loopback.
func advertisedAddr(a net.Addr, asked string) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	host := "127.0.0.1"
	if h, _, err := net.SplitHostPort(asked); err == nil && strings.Contains(h, ":") {
		host = "::1"
	}
	return net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}

// IsLoopback reports whether the server listens on loopback addresses only.
// The simulator has no authentication: anything that can reach it can read
// and change its data.
func (s *Server) IsLoopback() bool {
	tcp, ok := s.lnAddr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// Addr returns the host:port the server listens on.
func (s *Server) Addr() string { return s.addr }

// URI returns a connection string for the driver:
// mongodb://HOST:PORT/?replicaSet=NAME (mongodb://HOST:PORT/ for a
// standalone).
func (s *Server) URI() string {
	if s.cfg.standalone {
		return "mongodb://" + s.addr + "/"
	}
	return "mongodb://" + s.addr + "/?replicaSet=" + s.cfg.replSetName
}

// Close stops accepting connections, closes every connection, wakes every
// waiting getMore and returns once all goroutines of the server have ended.
// It is safe to call more than once.
func (s *Server) Close() error {
	s.connMu.Lock()
	already := s.closed
	s.closed = true
	conns := s.connsLocked()
	ln := s.ln
	s.connMu.Unlock()
	if !already {
		s.cancel()
		if ln != nil {
			_ = ln.Close()
		}
		for _, c := range conns {
			c.close()
		}
	}
	s.wg.Wait()
	return nil
}

// stopServing closes the listener and every connection and forgets the
// cursors and transactions, as a crash does; the data stays. It is how a
// ReplicaSet kills a member.
func (s *Server) stopServing() {
	s.connMu.Lock()
	ln := s.ln
	s.ln = nil
	conns := s.connsLocked()
	s.connMu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	for _, c := range conns {
		c.close()
	}
	s.cursors.killAll()
	s.txns.abortAll(s.store)
}

// connsLocked returns the open connections, to close after connMu is
// released. connMu must be held.
func (s *Server) connsLocked() []*conn {
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

// startServing listens again on the server's address after stopServing.
func (s *Server) startServing() error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("mongosim: listen again on %s: %w", s.addr, err)
	}
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.closed {
		_ = ln.Close()
		return errors.New("mongosim: server closed")
	}
	s.ln = ln
	s.wg.Add(1)
	go s.acceptLoop(ln)
	return nil
}

// CloseClientConnections closes every open client connection at once, as a
// network failure would. The server keeps listening; cursors stay open.
func (s *Server) CloseClientConnections() {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	for c := range s.conns {
		c.close()
	}
}

// KillAllCursors forgets every open cursor, as a restart, a failover to
// another node or a cursor timeout would: a later getMore on one fails with
// CursorNotFound (43). A getMore waiting at that moment fails as on a node
// shutting down, with InterruptedAtShutdown (11600), labelled
// ResumableChangeStreamError on a change-stream cursor.
func (s *Server) KillAllCursors() { s.cursors.killAll() }

// TruncateOplog drops every oplog entry older than the newest one, so a
// change stream resuming from an earlier token fails with
// ChangeStreamHistoryLost (286).
func (s *Server) TruncateOplog() { s.store.truncateOplog() }

// AwaitingGetMores returns how many change-stream getMores are waiting for
// events right now, so a test can act while one is blocked without sleeping.
func (s *Server) AwaitingGetMores() int { return int(s.awaiting.Load()) }

// Commands returns a copy of the logged commands, oldest first.
func (s *Server) Commands() []Command { return s.log.snapshot() }

// ResetCommands empties the command log.
func (s *Server) ResetCommands() { s.log.reset() }

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.connMu.Lock()
			current := s.ln == ln
			s.connMu.Unlock()
			if s.ctx.Err() != nil || !current {
				return
			}
			// Temporary failures (EMFILE and the like): back off, do not spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		c := newConn(s, nc, s.nextConnID.Add(1))
		s.connMu.Lock()
		if s.closed || s.ln != ln {
			s.connMu.Unlock()
			_ = nc.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.connMu.Unlock()
		go func() {
			defer s.wg.Done()
			c.serve()
			s.connMu.Lock()
			delete(s.conns, c)
			s.connMu.Unlock()
		}()
	}
}
