package changestream

import (
	"errors"
	"time"
)

// Progress reports that a stream's position moved with no event: the
// server answered with an empty batch whose postBatchResumeToken lies past
// the previous position, because nothing was written, or because what was
// written did not pass the pipeline's filter, or was elsewhere. Storing
// Position keeps such a stream resumable: a quiet or filtered stream whose
// position is never saved falls off the oplog.
type Progress struct {
	// Position is the stream's new position.
	Position Position
	// CaughtUp is true: the reply had nothing more to send. It is there
	// for handlers shared with other sources of progress.
	CaughtUp bool
	// Received is when the reply arrived.
	Received time.Time
}

// WithProgress calls fn when the stream's position moves without an event,
// at most once per every (0: every time). fn runs inside Next or TryNext,
// in the caller's goroutine, before the call returns: the stream starts no
// goroutine for it, and fn must not call the stream's Next, TryNext or
// Close. Progress is never reported for a reply that brought events: the
// position after such a reply lies past events the caller has not handled
// yet, and saving it would skip them; save [ChangeStream.ResumeToken]
// after handling each event instead.
func WithProgress(every time.Duration, fn func(Progress)) Option {
	return optionFunc(func(c *config) {
		switch {
		case fn == nil:
			c.errs = append(c.errs, errors.New("WithProgress: nil function"))
		case every < 0:
			c.errs = append(c.errs, errors.New("WithProgress: negative interval"))
		default:
			c.progressEvery, c.progress = every, fn
		}
	})
}

// Stats are counters and times of a stream, for metrics and health checks.
type Stats struct {
	// Events counts the events Next and TryNext returned; a split event
	// put back together counts once.
	Events int64
	// Fragments counts the fragments of split events received.
	Fragments int64
	// Resumes counts the resumes that reopened the server cursor.
	Resumes int64
	// LastEvent is when Next or TryNext last returned an event.
	LastEvent time.Time
	// LastCaughtUp is when the last reply arrived that had nothing more to
	// send (see [ChangeStream.Behind]).
	LastCaughtUp time.Time
	// Heartbeats counts the heartbeat writes made (WithHeartbeat), one per
	// shard per interval; HeartbeatErrors those that failed, the last of
	// which is HeartbeatErr.
	Heartbeats, HeartbeatErrors int64
	HeartbeatErr                error
	// Position is the stream's position.
	Position Position
}

// Stats returns the stream's counters. Safe from any goroutine.
func (cs *ChangeStream) Stats() Stats {
	cs.stateMu.Lock()
	s := cs.stats
	cs.stateMu.Unlock()
	s.Position = cs.Position()
	return s
}

// Behind reports how far the stream is behind the server: 0 once the
// last reply had nothing more to send and all its events were returned,
// otherwise the time since the stream was last caught up (or opened). A
// reply had nothing more to send when it is empty; when its
// postBatchResumeToken lies past its last event (the server read on to
// the end of the oplog); when it holds fewer events than the batch size
// asked ([WithBatchSize]); or, with no batch size set, when it is under
// 8 MiB and, for the opening aggregate, holds fewer than the server's
// default first batch of 101 events (a getMore without a batch size is
// filled up to 16 MiB). A stream that never gets such a reply reports lag
// that grows. An idle, caught-up stream reports 0. Safe from any
// goroutine.
func (cs *ChangeStream) Behind() time.Duration {
	cs.stateMu.Lock()
	defer cs.stateMu.Unlock()
	if cs.replyCaughtUp && cs.unreturned == 0 {
		return 0
	}
	since := cs.stats.LastCaughtUp
	if since.IsZero() {
		since = cs.openedAt
	}
	if since.IsZero() {
		return 0
	}
	return time.Since(since)
}

// What a reply without a batch size asked holds when the server stopped
// for a limit rather than at the end of the oplog: the opening aggregate's
// default first batch, and a size far above most replies and far below the
// 16 MiB the server fills a batch up to (a batch may stop short of it when
// the next event would not fit).
const (
	defaultFirstBatch = 101
	fullBatchBytes    = 8 << 20
)

// noteReply records a reply, that of the opening aggregate if first:
// whether it was caught up, and how many of its documents are still to be
// returned.
func (cs *ChangeStream) noteReply(c *cursor, at time.Time, first bool) {
	n := c.remaining()
	caught := n == 0
	if !caught {
		switch bs := cs.cfg.batchSize; {
		case bs != nil && *bs > 0:
			caught = n < int(*bs)
		case first:
			caught = n < defaultFirstBatch && len(c.rest) < fullBatchBytes
		default:
			caught = len(c.rest) < fullBatchBytes
		}
	}
	if !caught {
		caught = c.scannedPastLast()
	}
	cs.stateMu.Lock()
	cs.replyCaughtUp, cs.unreturned, cs.lastReply = caught, n, at
	if caught {
		cs.stats.LastCaughtUp = at
	}
	cs.stateMu.Unlock()
}

// noteFragment records a fragment taken from the batch that does not
// complete its event (accept records events, the last fragment included).
func (cs *ChangeStream) noteFragment() {
	cs.stateMu.Lock()
	cs.unreturned = max(cs.unreturned-1, 0)
	cs.stats.Fragments++
	cs.stateMu.Unlock()
}

// reportProgress calls the progress function after an empty batch moved
// the position, at most once per its interval; a move held back by the
// interval is reported with the next one.
func (cs *ChangeStream) reportProgress(at time.Time) {
	fn := cs.cfg.progress
	if fn == nil {
		return
	}
	p := cs.Position()
	if p.IsZero() || string(p.Token) == string(cs.lastProgress) {
		return
	}
	if !cs.lastProgressAt.IsZero() && at.Sub(cs.lastProgressAt) < cs.cfg.progressEvery {
		return
	}
	cs.lastProgress, cs.lastProgressAt = p.Token, at
	fn(Progress{Position: p, CaughtUp: true, Received: at})
}

// noteCall records a Next or TryNext call starting or ending, for Health.
func (cs *ChangeStream) noteCall(starting bool) {
	if !starting {
		cs.callEnded.Store(time.Now().UnixNano())
	}
	cs.calling.Store(starting)
}
