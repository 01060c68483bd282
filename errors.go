package changestream

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
)

// ErrClosed is reported by [ChangeStream.Next], [ChangeStream.TryNext] (through
// [ChangeStream.Err]) and [ChangeStream.Decode] once [ChangeStream.Close] has
// been called, including by a Next that Close interrupted.
var ErrClosed = errors.New("changestream: stream is closed")

// ErrMissingResumeToken is reported through [ChangeStream.Err] when the
// server returns an event without an _id (the resume token). Servers before
// 4.2 let a pipeline stage remove it; newer ones refuse such a stage's
// events themselves with ChangeStreamFatalError (280), which the stream
// reports as the server sent it. Either way the stream ends: without the
// token it could never resume correctly.
var ErrMissingResumeToken = errors.New("changestream: event has no _id resume token; do not project out _id")

// ErrHistoryLost matches, with [errors.Is], every error that reports lost
// history: the server's ChangeStreamHistoryLost (286), when the point the
// stream was to start or resume from is older than the oldest entry of the
// server's oplog, and CappedPositionLost (136), when an open stream fell
// so far behind that the oplog dropped its place. The events in between
// are gone; the caller must re-read the state it derives from the
// collection and start a new stream. The error is a [*HistoryLostError],
// and [ErrUnresumablePosition] matches it too.
var ErrHistoryLost = errors.New("changestream: change stream history lost")

// ErrUnresumablePosition matches, with [errors.Is], every error that says
// the server cannot carry on from the stream's position: lost history
// ([ErrHistoryLost], a [*HistoryLostError]), and a token the server cannot
// resume from for another reason ([*UnresumablePositionError]): one whose
// event is not in its oplog (ChangeStreamFatalError 280, "the resume token
// was not found", for example a token of another collection or another
// deployment) or one it cannot read (InvalidResumeToken, 260). A policy
// that must handle every dead position (re-snapshot, alert) tests this one.
var ErrUnresumablePosition = errors.New("changestream: the server cannot resume from this position")

// Server codes of positions a stream cannot carry on from.
const (
	codeHistoryLost         = 286 // ChangeStreamHistoryLost
	codeCappedPositionLost  = 136 // CappedPositionLost, on an open stream's getMore
	codeChangeStreamFatal   = 280 // ChangeStreamFatalError; see isTokenNotFound
	codeInvalidResumeToken  = 260 // InvalidResumeToken
	msgResumeTokenNotFound  = "resume token was not found"
	optionStartAfter        = "startAfter"
	optionResumeAfter       = "resumeAfter"
	optionStartAtOperationT = "startAtOperationTime"
)

// HistoryLostError reports that the stream's resume point fell off the
// server's oplog. errors.Is(err, ErrHistoryLost) holds, and the server's
// error stays reachable through errors.As (for example as a
// mongo.CommandError).
type HistoryLostError struct {
	// ResumeToken is the token the stream tried to start or resume from, or
	// the last position of an open stream that fell behind; nil when it
	// started from an operation time.
	ResumeToken bson.Raw
	// OperationTime is the operation time the stream tried to start from,
	// when it had no token.
	OperationTime *bson.Timestamp
	// Option is the start option the failed aggregate used: "startAfter",
	// "resumeAfter" or "startAtOperationTime"; empty when an open stream's
	// getMore lost its place (Code 136). Through mongos, whose first batch
	// is always empty, a shard's refusal of the start point comes with the
	// first getMore, and Option names the start option too.
	Option string
	// Code is the server's code: 286 (ChangeStreamHistoryLost) for a
	// start or resume, 136 (CappedPositionLost) for an open stream.
	Code int32
	// Err is the server's error.
	Err error
}

// Error describes the lost history, with the option the stream used, and
// the server's error.
func (e *HistoryLostError) Error() string {
	return "changestream: history lost: " + describePosition(e.Option, e.ResumeToken, e.OperationTime) + ": " + e.Err.Error()
}

// Position returns the position that was lost.
func (e *HistoryLostError) Position() Position { return positionOf(e.ResumeToken) }

// Unwrap returns the server's error.
func (e *HistoryLostError) Unwrap() error { return e.Err }

// Is reports whether target is ErrHistoryLost or ErrUnresumablePosition.
func (e *HistoryLostError) Is(target error) bool {
	return target == ErrHistoryLost || target == ErrUnresumablePosition
}

// UnresumablePositionError reports a token the server cannot resume from
// although its history may still be there: the token's event is not in
// the server's oplog (280), or the server cannot read the token (260).
// errors.Is(err, ErrUnresumablePosition) holds, and the server's error
// stays reachable through errors.As.
type UnresumablePositionError struct {
	// ResumeToken is the token the stream tried to start or resume from.
	ResumeToken bson.Raw
	// Option is the start option used: "startAfter" or "resumeAfter";
	// empty when the server refused the token on a later getMore. Through
	// mongos, whose first batch is always empty, the refusal comes with
	// the first getMore, before any event, and Option names the start
	// option too.
	Option string
	// Code is the server's code: 280 or 260.
	Code int32
	// Err is the server's error.
	Err error
}

// Error describes the position and the server's error.
func (e *UnresumablePositionError) Error() string {
	where := describePosition(e.Option, e.ResumeToken, nil)
	if e.Option == "" {
		where = fmt.Sprintf("the server did not find the event of token %s", e.ResumeToken)
	}
	return "changestream: unresumable position: " + where + ": " + e.Err.Error()
}

// Position returns the position the server refused.
func (e *UnresumablePositionError) Position() Position { return positionOf(e.ResumeToken) }

// Unwrap returns the server's error.
func (e *UnresumablePositionError) Unwrap() error { return e.Err }

// Is reports whether target is ErrUnresumablePosition.
func (e *UnresumablePositionError) Is(target error) bool { return target == ErrUnresumablePosition }

// describePosition says which position a stream could not use, naming the
// start option it used.
func describePosition(option string, token bson.Raw, opTime *bson.Timestamp) string {
	switch {
	case option == optionStartAfter:
		return fmt.Sprintf("cannot start after token %s", token)
	case option == optionResumeAfter:
		return fmt.Sprintf("cannot resume after token %s", token)
	case option == optionStartAtOperationT && opTime != nil:
		return fmt.Sprintf("cannot start at operation time %d.%d", opTime.T, opTime.I)
	case token != nil:
		return fmt.Sprintf("the stream fell behind the server's oplog after token %s", token)
	}
	return "no position"
}

// errNoCurrent is returned by Decode before the first event.
var errNoCurrent = errors.New("changestream: Decode called with no current event; call Next or TryNext first and check that it returned true")

// errCorruptBatch reports a reply whose batch is not an array of documents.
var errCorruptBatch = errors.New("changestream: the server sent a batch that is not an array of documents")

// publicError gives an error from the driver's x/ layer the form the
// driver's public API gives it, so callers match it the same way: a
// driver.Error becomes reachable as a mongo.CommandError (and
// mongo.ServerError) with errors.As, with the same message; a closed client
// becomes mongo.ErrClientDisconnected.
func publicError(err error) error {
	if errors.Is(err, topology.ErrTopologyClosed) {
		return mongo.ErrClientDisconnected
	}
	var de driver.Error
	if !errors.As(err, &de) {
		return err
	}
	return &commandError{
		ce:  mongo.CommandError{Code: de.Code, Message: de.Message, Labels: de.Labels, Name: de.Name, Wrapped: err, Raw: bson.Raw(de.Raw)},
		err: err,
	}
}

// commandError is a driver.Error that errors.As also finds as the
// mongo.CommandError the driver's Cursor would have returned. Its message is
// the driver's.
type commandError struct {
	ce  mongo.CommandError
	err error
}

// Error is the driver's message.
func (e *commandError) Error() string { return e.err.Error() }

// Unwrap returns the driver's error.
func (e *commandError) Unwrap() error { return e.err }

// As fills a *mongo.CommandError or a *mongo.ServerError.
func (e *commandError) As(target any) bool {
	switch t := target.(type) {
	case *mongo.CommandError:
		*t = e.ce
		return true
	case *mongo.ServerError:
		*t = e.ce
		return true
	}
	return false
}

// ErrServerUnavailable matches, with [errors.Is], an error that says no
// server could be selected in time (the client's server selection timeout
// passed: the deployment is down, unreachable or electing). The stream
// stays alive and the next call tries again. Such an error does not match
// context.DeadlineExceeded, though the driver builds it from one, so that
// a loop that treats its own deadline as "nothing yet" does not mistake an
// outage for a quiet stream; the driver's error stays reachable through
// errors.As.
var ErrServerUnavailable = errors.New("changestream: no server available")

// unavailableError is a server-selection failure that the caller's context
// did not cause. It has no Unwrap, so that errors.Is does not find the
// driver's context.DeadlineExceeded inside; Is and As reach the rest.
type unavailableError struct{ err error }

// Error is the driver's message.
func (e *unavailableError) Error() string { return e.err.Error() }

// Is matches ErrServerUnavailable, and what the driver's error matches
// except context.DeadlineExceeded.
func (e *unavailableError) Is(target error) bool {
	switch target {
	case ErrServerUnavailable:
		return true
	case context.DeadlineExceeded:
		return false
	}
	return errors.Is(e.err, target)
}

// As reaches the driver's error.
func (e *unavailableError) As(target any) bool { return errors.As(e.err, target) }

// asOutage wraps err as an unavailableError when it is a server-selection
// failure while ctx is still live: the client's own timeout, not the
// caller's.
func asOutage(ctx context.Context, err error) (error, bool) {
	var sse topology.ServerSelectionError
	if ctx.Err() != nil || !errors.As(err, &sse) {
		return err, false
	}
	return &unavailableError{err: err}, true
}
