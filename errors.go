package changestream

import (
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

// ErrHistoryLost matches, with [errors.Is], every error that reports the
// server's ChangeStreamHistoryLost (code 286): the point the stream was to
// start or resume from is older than the oldest entry of the server's oplog.
// The events in between are gone; the caller must re-read the state it
// derives from the collection and start a new stream. The error is a
// [*HistoryLostError].
var ErrHistoryLost = errors.New("changestream: change stream history lost")

// codeHistoryLost is ChangeStreamHistoryLost.
const codeHistoryLost = 286

// HistoryLostError reports that the stream's resume point fell off the
// server's oplog. errors.Is(err, ErrHistoryLost) holds, and the server's
// error stays reachable through errors.As (for example as a
// mongo.CommandError).
type HistoryLostError struct {
	// ResumeToken is the token the stream tried to start or resume from; nil
	// when it started from an operation time.
	ResumeToken bson.Raw
	// OperationTime is the operation time the stream tried to start from,
	// when it had no token.
	OperationTime *bson.Timestamp
	// Err is the server's error.
	Err error
}

// Error describes the lost history and the server's error.
func (e *HistoryLostError) Error() string {
	switch {
	case e.ResumeToken != nil:
		return fmt.Sprintf("changestream: history lost: cannot resume after token %s: %v", e.ResumeToken, e.Err)
	case e.OperationTime != nil:
		return fmt.Sprintf("changestream: history lost: cannot start at operation time %d.%d: %v", e.OperationTime.T, e.OperationTime.I, e.Err)
	default:
		return fmt.Sprintf("changestream: history lost: %v", e.Err)
	}
}

// Unwrap returns the server's error.
func (e *HistoryLostError) Unwrap() error { return e.Err }

// Is reports whether target is ErrHistoryLost.
func (e *HistoryLostError) Is(target error) bool { return target == ErrHistoryLost }

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

func (e *commandError) Error() string { return e.err.Error() }

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
