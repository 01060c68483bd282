package changestream

import (
	"context"
	"errors"
	"strings"

	"github.com/changestream-go/changestream/internal/retryable"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
)

// This file holds the Change Streams specification's resume rules: which
// errors are resumable, and how the command that reopens a stream is built
// from the cached resume point.

const (
	codeCursorNotFound = 43
	labelResumable     = "ResumableChangeStreamError"
	labelNetworkError  = "NetworkError"
)

// isResumable applies the specification's rule to an error from a getMore,
// for servers 4.4 and newer: any error that does not come from the server is
// resumable, CursorNotFound always is, and any other server error only when
// it carries the ResumableChangeStreamError label. A context that has ended
// is never a reason to resume: the caller is leaving, not the server.
func isResumable(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	if hasResumableLabel(err) {
		// Checked first: the driver makes a server's MaxTimeMSExpired (50)
		// match context.DeadlineExceeded, yet the server's label says the
		// error is the server's and resumable.
		return true
	}
	if isCallerTimeout(err) {
		// A deadline hit inside the driver counts as the caller's, even when
		// ctx itself has a moment left.
		return false
	}
	code, fromServer := serverCode(err)
	if !fromServer {
		return true
	}
	return code == codeCursorNotFound
}

// isCallerTimeout reports whether err is the caller's deadline or
// cancellation surfacing from inside the driver (for example a getMore not
// sent because the deadline would pass first) rather than a server error.
// The driver makes a server's MaxTimeMSExpired match
// context.DeadlineExceeded too; that one is the server's, and the
// specification's rules decide it.
func isCallerTimeout(err error) bool {
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return false
	}
	_, fromServer := serverCode(err)
	return !fromServer
}

// hasResumableLabel reports whether the server labelled err
// ResumableChangeStreamError.
func hasResumableLabel(err error) bool {
	var le mongo.LabeledError
	return errors.As(err, &le) && le.HasErrorLabel(labelResumable)
}

// serverCode returns the error code the server sent, and whether the error
// came from the server at all. The driver reports network failures as a
// CommandError with code 0 and the NetworkError label.
func serverCode(err error) (int32, bool) {
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		if ce.Code == 0 || ce.HasErrorLabel(labelNetworkError) {
			return 0, false
		}
		return ce.Code, true
	}
	var se mongo.ServerError
	if errors.As(err, &se) {
		// Write errors and other server replies without a single top-level code.
		return 0, true
	}
	return 0, false
}

// isTransient reports whether an aggregate failed for a reason that may be
// gone on the next attempt: a network error, no server to select, a
// retryable-read code, or the server's ResumableChangeStreamError label
// (mongos puts it on a shard it cannot reach, such as a whole shard down:
// FailedToSatisfyReadPreference, 133). The opening aggregate is retried
// once after such an error; a failed resume leaves the stream alive so the
// next call tries again.
func isTransient(err error) bool {
	var sse topology.ServerSelectionError
	if errors.As(err, &sse) || mongo.IsNetworkError(err) || hasResumableLabel(err) {
		return true
	}
	code, fromServer := serverCode(err)
	if !fromServer {
		return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
	}
	return retryable.ReadCode(code)
}

// positionError turns a server error that says the stream cannot carry on
// from sp into a *HistoryLostError or an *UnresumablePositionError, and
// returns nil for any other error. sp.key is empty for an open stream's
// getMore.
func positionError(err error, sp startPoint) error {
	code, fromServer := serverCode(err)
	if !fromServer {
		return nil
	}
	switch {
	case code == codeHistoryLost || code == codeCappedPositionLost:
		return &HistoryLostError{ResumeToken: cloneRaw(sp.token), OperationTime: sp.time, Option: sp.key, Code: code, Err: err}
	case code == codeInvalidResumeToken || (code == codeChangeStreamFatal && isTokenNotFound(err)):
		return &UnresumablePositionError{ResumeToken: cloneRaw(sp.token), Option: sp.key, Code: code, Err: err}
	}
	return nil
}

// isTokenNotFound tells the 280 that refuses a token whose event is not
// in the oplog from the other fatal errors that share its code (a pipeline
// that changed _id, a missing pre-image): only the message does.
func isTokenNotFound(err error) bool {
	var ce mongo.CommandError
	return errors.As(err, &ce) && strings.Contains(ce.Message, msgResumeTokenNotFound)
}

// startPoint is where an aggregate asks the stream to start.
type startPoint struct {
	key   string // "resumeAfter", "startAfter", "startAtOperationTime" or "" (now)
	token bson.Raw
	time  *bson.Timestamp
	// asked: the caller's own start, on which every start option the
	// caller set is sent, even conflicting ones: the server refuses those
	// (40674, 50865) and the caller sees why. A resume sends only key.
	asked bool
}

// initialStart is the start point the caller asked for.
func (c *config) initialStart() startPoint {
	switch {
	case c.startAfter != nil:
		return startPoint{key: optionStartAfter, token: c.startAfter, asked: true}
	case c.resumeAfter != nil:
		return startPoint{key: optionResumeAfter, token: c.resumeAfter, asked: true}
	case c.startAtOperationTime != nil:
		return startPoint{key: optionStartAtOperationT, time: c.startAtOperationTime, asked: true}
	}
	return startPoint{asked: true}
}

// resumeStart is the start point of a resume, by the specification's rules:
// a cached token resumes with startAfter while a startAfter stream has
// returned no event yet, and with resumeAfter otherwise; with no token, a
// known operation time resumes with startAtOperationTime; with neither, the
// original command is sent again.
func (cs *ChangeStream) resumeStart() startPoint {
	cs.stateMu.Lock()
	defer cs.stateMu.Unlock()
	if s := cs.split; s != nil {
		// In the middle of a split event: carry on after the last
		// fragment received, keeping the ones gathered.
		if cs.cfg.startAfter != nil && !cs.returnedAny {
			return startPoint{key: optionStartAfter, token: s.lastToken}
		}
		return startPoint{key: optionResumeAfter, token: s.lastToken}
	}
	switch {
	case cs.token != nil && cs.cfg.startAfter != nil && !cs.returnedAny:
		return startPoint{key: optionStartAfter, token: cs.token}
	case cs.token != nil:
		return startPoint{key: optionResumeAfter, token: cs.token}
	case cs.opTime != nil:
		return startPoint{key: optionStartAtOperationT, time: cs.opTime}
	}
	return cs.cfg.initialStart()
}

// command builds the aggregate that opens the stream at sp. Only options the
// caller set are sent; the server validates them.
func (cs *ChangeStream) command(sp startPoint) bson.D {
	cfg := cs.cfg
	stage := make(bson.D, 0, 6)
	if cs.kind == kindCluster {
		stage = append(stage, bson.E{Key: "allChangesForCluster", Value: true})
	}
	if cfg.fullDocument != nil {
		stage = append(stage, bson.E{Key: "fullDocument", Value: string(*cfg.fullDocument)})
	}
	if cfg.fullDocumentBeforeChange != nil {
		stage = append(stage, bson.E{Key: "fullDocumentBeforeChange", Value: string(*cfg.fullDocumentBeforeChange)})
	}
	switch {
	case sp.asked:
		if cfg.resumeAfter != nil {
			stage = append(stage, bson.E{Key: optionResumeAfter, Value: cfg.resumeAfter})
		}
		if cfg.startAfter != nil {
			stage = append(stage, bson.E{Key: optionStartAfter, Value: cfg.startAfter})
		}
		if cfg.startAtOperationTime != nil {
			stage = append(stage, bson.E{Key: optionStartAtOperationT, Value: *cfg.startAtOperationTime})
		}
	case sp.token != nil:
		stage = append(stage, bson.E{Key: sp.key, Value: sp.token})
	case sp.time != nil:
		stage = append(stage, bson.E{Key: sp.key, Value: *sp.time})
	}
	if cfg.showExpandedEvents != nil {
		stage = append(stage, bson.E{Key: "showExpandedEvents", Value: *cfg.showExpandedEvents})
	}
	pipeline := make(bson.A, 0, len(cs.pipeline)+2)
	pipeline = append(pipeline, bson.D{{Key: "$changeStream", Value: stage}})
	if h := cfg.heartbeat; h != nil {
		pipeline = append(pipeline, h.filterStage())
	}
	for _, st := range cs.pipeline {
		pipeline = append(pipeline, st)
	}
	if cfg.splitLargeEvents {
		// The server allows it only as the last stage.
		pipeline = append(pipeline, bson.D{{Key: "$changeStreamSplitLargeEvent", Value: bson.D{}}})
	}
	cursorDoc := bson.D{}
	if cfg.batchSize != nil {
		cursorDoc = append(cursorDoc, bson.E{Key: "batchSize", Value: *cfg.batchSize})
	}
	cmd := bson.D{
		{Key: "aggregate", Value: cs.aggregateTarget()},
		{Key: "pipeline", Value: pipeline},
		{Key: "cursor", Value: cursorDoc},
	}
	if cfg.collation != nil {
		cmd = append(cmd, bson.E{Key: "collation", Value: cfg.collation})
	}
	if cfg.comment != nil {
		cmd = append(cmd, bson.E{Key: "comment", Value: cfg.comment})
	}
	if rc := cfg.readConcern; rc != nil && rc.Level != "" {
		cmd = append(cmd, bson.E{Key: "readConcern", Value: bson.D{{Key: "level", Value: rc.Level}}})
	}
	return cmd
}
