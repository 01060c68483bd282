package checkpoint

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/changestream-go/changestream"
)

// Stats is what a Run reports of itself while it runs: its counters, and
// its health for a readiness or liveness probe. Give Run one in
// Config.Stats and read it from any goroutine; one Stats serves one Run
// at a time. The zero value is ready to use.
type Stats struct {
	retries, deadLettered atomic.Int64

	mu     sync.Mutex
	state  changestream.HealthState // a Run state, or "" while streaming
	stream *changestream.ChangeStream
	epoch  int64
	err    error
}

// The states of a Run around its stream, besides the stream's own
// (changestream.HealthCaughtUp, ...) while it streams and
// changestream.HealthFailed once Run has returned an error.
const (
	// HealthStarting: Run is opening its stream (Err holds the last
	// transient error, if one made it wait).
	HealthStarting changestream.HealthState = "starting"
	// HealthStandby: Run waits for the key's lease, which another
	// consumer holds. Healthy: it takes over when the holder goes.
	HealthStandby changestream.HealthState = "standby"
	// HealthSnapshot: Run is reading the snapshot.
	HealthSnapshot changestream.HealthState = "snapshot"
	// HealthStopped: Run returned, without an error.
	HealthStopped changestream.HealthState = "stopped"
)

// HandlerRetries returns how many times a failed handler call was tried
// again (Config.HandlerRetries).
func (st *Stats) HandlerRetries() int64 { return st.retries.Load() }

// DeadLettered returns how many events went to Config.DeadLetter, and
// were acknowledged without the handler.
func (st *Stats) DeadLettered() int64 { return st.deadLettered.Load() }

// Health is what [Stats.Health] found of a Run.
type Health struct {
	// State is the Run's state: while it streams, its stream's
	// (changestream.HealthCaughtUp, HealthConsuming, HealthLagging,
	// HealthStuck, HealthResuming); otherwise HealthStarting,
	// HealthStandby, HealthSnapshot, HealthStopped or
	// changestream.HealthFailed.
	State changestream.HealthState
	// Reason says why, in words.
	Reason string
	// Stream is the stream's health while Run streams.
	Stream changestream.Health
	// LeaseEpoch is the epoch of the lease Run holds, 0 without one.
	LeaseEpoch int64
	// HandlerRetries and DeadLettered are the counters of the same names.
	HandlerRetries, DeadLettered int64
	// Err is why Run failed, or the transient error it waits after.
	Err error
}

// Health judges the Run: while it streams, by its stream's Health against
// th (a handler that blocks stops the Run's calls to Next, and shows as
// stuck); otherwise by what Run is doing. It makes no call to the
// server.
func (st *Stats) Health(th changestream.HealthThresholds) Health {
	st.mu.Lock()
	state, cs, epoch, err := st.state, st.stream, st.epoch, st.err
	st.mu.Unlock()
	h := Health{State: state, LeaseEpoch: epoch, Err: err, HandlerRetries: st.HandlerRetries(), DeadLettered: st.DeadLettered()}
	switch {
	case state == "" && cs != nil:
		h.Stream = cs.Health(th)
		h.State, h.Reason = h.Stream.State, h.Stream.Reason
		if h.Err == nil {
			h.Err = h.Stream.Err
		}
	case state == "":
		h.State, h.Reason = HealthStarting, "not started"
	case state == HealthStarting && err != nil:
		h.Reason = "opening the stream, after: " + err.Error()
	case state == HealthStarting:
		h.Reason = "opening the stream"
	case state == HealthStandby:
		h.Reason = "waiting for the lease, which another consumer holds"
	case state == HealthSnapshot:
		h.Reason = "reading the snapshot"
	case state == HealthStopped:
		h.Reason = "Run returned"
	case state == changestream.HealthFailed:
		h.Reason = fmt.Sprintf("Run failed: %v", err)
	}
	return h
}

// set records what Run is doing; err is kept with it.
func (st *Stats) set(state changestream.HealthState, err error) {
	st.mu.Lock()
	st.state, st.stream, st.err = state, nil, err
	st.mu.Unlock()
}

// streaming records the stream Run reads.
func (st *Stats) streaming(cs *changestream.ChangeStream) {
	st.mu.Lock()
	st.state, st.stream, st.err = "", cs, nil
	st.mu.Unlock()
}

// leased records the epoch of the lease Run holds, 0 for none.
func (st *Stats) leased(epoch int64) {
	st.mu.Lock()
	st.epoch = epoch
	st.mu.Unlock()
}
