package changestream

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// HealthState says what a stream is doing, for a readiness or liveness
// probe: [HealthCaughtUp] and [HealthConsuming] are the healthy ones,
// [HealthLagging] is healthy but late, [HealthStuck] and [HealthFailed]
// are not healthy. Package checkpoint adds the states of a consumer
// around its stream.
type HealthState string

const (
	// HealthCaughtUp: the last reply had nothing more to send and every
	// event was returned (Behind is 0). A quiet stream is caught up:
	// there is nothing to do.
	HealthCaughtUp HealthState = "caught-up"
	// HealthConsuming: behind the server by less than the Lagging
	// threshold, and moving.
	HealthConsuming HealthState = "consuming"
	// HealthLagging: behind by more than the Lagging threshold, and still
	// moving.
	HealthLagging HealthState = "lagging"
	// HealthStuck: no progress for the Stuck threshold while there is
	// work: the application has not called Next or TryNext (its handler
	// or its sink is stuck), or a call has had no reply from the server
	// while the stream was behind.
	HealthStuck HealthState = "stuck"
	// HealthResuming: the last call failed with an error the stream
	// survives (Err says which); the next call resumes.
	HealthResuming HealthState = "resuming"
	// HealthEnded: the stream was invalidated (its collection or
	// database dropped or renamed) or closed.
	HealthEnded HealthState = "ended"
	// HealthFailed: the stream is dead (Err says why).
	HealthFailed HealthState = "failed"
)

// Healthy reports whether the state is one a liveness probe accepts:
// every state but stuck and failed.
func (s HealthState) Healthy() bool { return s != HealthStuck && s != HealthFailed }

// HealthThresholds are the figures [ChangeStream.Health] judges by. A zero
// field takes its default.
type HealthThresholds struct {
	// Lagging is how far behind (Behind) a moving stream may be before it
	// is lagging (default 30s).
	Lagging time.Duration
	// Stuck is how long a stream with work may go without progress before
	// it is stuck (default 2m): without a call to Next or TryNext, or,
	// in a call, without a reply while it is behind. A consumer that calls
	// less often than this, by design, is reported stuck: set Stuck above
	// its interval.
	Stuck time.Duration
}

// Defaults of HealthThresholds.
const (
	DefaultHealthLagging = 30 * time.Second
	DefaultHealthStuck   = 2 * time.Minute
)

func (t HealthThresholds) withDefaults() HealthThresholds {
	if t.Lagging <= 0 {
		t.Lagging = DefaultHealthLagging
	}
	if t.Stuck <= 0 {
		t.Stuck = DefaultHealthStuck
	}
	return t
}

// Health is what [ChangeStream.Health] found.
type Health struct {
	State HealthState
	// Reason says why, in words, for a probe's response body.
	Reason string
	// Behind is [ChangeStream.Behind] at the time.
	Behind time.Duration
	// SinceProgress is the time since the stream last made progress: a
	// reply from the server, or an event returned.
	SinceProgress time.Duration
	// Err is the error of a resuming or failed stream, nil otherwise.
	Err error
}

// Health judges the stream from what it has measured (Behind, its last
// reply and event, its calls, its error) against th. It makes no call to
// the server. Safe from any goroutine, while another iterates.
func (cs *ChangeStream) Health(th HealthThresholds) Health {
	th = th.withDefaults()
	now := time.Now()
	behind := cs.Behind()
	calling := cs.calling.Load()
	var callEnded time.Time
	if ns := cs.callEnded.Load(); ns != 0 {
		callEnded = time.Unix(0, ns)
	}
	cs.stateMu.Lock()
	err := cs.err
	progress := latest(cs.lastReply, cs.stats.LastEvent, cs.openedAt)
	cs.stateMu.Unlock()
	h := Health{Behind: behind, SinceProgress: now.Sub(progress)}
	switch {
	case cs.closed.Load():
		h.State, h.Reason = HealthEnded, "closed"
	case !cs.alive.Load() && err == nil:
		h.State, h.Reason = HealthEnded, "invalidated: the watched collection or database was dropped or renamed"
	case !cs.alive.Load():
		h.State, h.Err, h.Reason = HealthFailed, err, "the stream is dead: "+err.Error()
	case err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled):
		h.State, h.Err, h.Reason = HealthResuming, err, "the last call failed, and the next resumes: "+err.Error()
	case !calling && now.Sub(latest(callEnded, cs.openedAt)) > th.Stuck:
		h.State = HealthStuck
		h.Reason = fmt.Sprintf("no call to Next or TryNext for %v (over %v): the consumer is not reading", now.Sub(latest(callEnded, cs.openedAt)).Round(time.Millisecond), th.Stuck)
	case behind == 0:
		h.State, h.Reason = HealthCaughtUp, "caught up"
	case calling && h.SinceProgress > th.Stuck:
		h.State = HealthStuck
		h.Reason = fmt.Sprintf("behind, and no reply from the server for %v (over %v)", h.SinceProgress.Round(time.Millisecond), th.Stuck)
	case behind > th.Lagging:
		h.State, h.Reason = HealthLagging, fmt.Sprintf("behind by %v (over %v)", behind.Round(time.Millisecond), th.Lagging)
	default:
		h.State, h.Reason = HealthConsuming, fmt.Sprintf("behind by %v", behind.Round(time.Millisecond))
	}
	return h
}

// latest returns the latest of ts.
func latest(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if t.After(out) {
			out = t
		}
	}
	return out
}
