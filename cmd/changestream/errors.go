package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/checkpoint"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// exitCode maps what ended the command to its exit code.
func exitCode(err error) int {
	var ue usageErr
	var se mongo.ServerError
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return exitOK
	case errors.As(err, &ue), errors.Is(err, checkpoint.ErrSpecMismatch):
		return exitUsage
	case errors.Is(err, changestream.ErrUnresumablePosition): // lost history too
		return exitUnresumable
	case errors.Is(err, checkpoint.ErrInvalidated):
		return exitInvalidated
	case errors.Is(err, checkpoint.ErrLeaseLost):
		return exitLeaseLost
	case errors.As(err, &se) && !mongo.IsNetworkError(err):
		// The server refused what it was asked: an option, a pipeline.
		return exitUsage
	}
	return exitFailure
}

// origin is where a tail started from, which an unresumable position's
// message names, since its fix depends on it.
type origin int

const (
	fromNow        origin = iota // no checkpoint and no start flag
	fromCheckpoint               // the checkpoint of -key
	fromStartAfter               // -start-after's token
	fromStartAt                  // -start-at's time
)

// explain turns err into one line naming the cause and the fix; from and
// key say where the tail started.
func explain(err error, from origin, key string) string {
	var hl *changestream.HistoryLostError
	var up *changestream.UnresumablePositionError
	var sm *checkpoint.SpecMismatchError
	switch {
	case errors.As(err, &hl):
		switch from {
		case fromStartAfter:
			return fmt.Sprintf("the -start-after token's position%s has left the oplog (%v): events since then are gone; "+
				"pass a later token, or leave -start-after out to start from now", tokenWhen(hl.ResumeToken), hl.Err)
		case fromStartAt:
			return fmt.Sprintf("the -start-at time is older than the oplog's oldest entry (%v): events since then are gone; "+
				"pass a later time, or leave -start-at out to start from now", hl.Err)
		case fromCheckpoint:
			return fmt.Sprintf("the checkpoint %q's position%s has left the oplog (%v): events since then are gone; "+
				"delete the checkpoint (or use another -key) to start from now, after resyncing what depends on them", key, tokenWhen(hl.ResumeToken), hl.Err)
		}
		return fmt.Sprintf("the stream's position%s has left the oplog (%v): events since then are gone; "+
			"restart to carry on from now, after resyncing what depends on them", tokenWhen(hl.ResumeToken), hl.Err)
	case errors.As(err, &up):
		switch from {
		case fromStartAfter:
			return fmt.Sprintf("the server cannot resume from the -start-after token%s (%v): pass a token of this stream, or leave -start-after out", tokenWhen(up.ResumeToken), up.Err)
		case fromStartAt:
			return fmt.Sprintf("the server cannot start at the -start-at time (%v): pass another time, or leave -start-at out", up.Err)
		case fromCheckpoint:
			return fmt.Sprintf("the server cannot resume from the checkpoint %q's position%s (%v); delete the checkpoint or use another -key", key, tokenWhen(up.ResumeToken), up.Err)
		}
		return fmt.Sprintf("the server cannot resume the stream from its position%s (%v)", tokenWhen(up.ResumeToken), up.Err)
	case errors.As(err, &sm):
		return fmt.Sprintf("the checkpoint %q was saved by another stream (%s), not this one (%s): use another -key, or delete it", sm.Key, sm.Saved, sm.Want)
	case errors.Is(err, checkpoint.ErrInvalidated):
		return "the stream was invalidated: the watched collection or database was dropped or renamed"
	case errors.Is(err, checkpoint.ErrLeaseLost):
		return "another process took the lease over; this one stopped"
	}
	// The line starts with "changestream: " already: an error of the
	// package that says so itself would repeat it.
	return strings.TrimPrefix(err.Error(), "changestream: ")
}

// tokenWhen says when a token's position was, if it can tell.
func tokenWhen(token []byte) string {
	ts, ok := changestream.TokenTime(token)
	if !ok {
		return ""
	}
	return fmt.Sprintf(" (%s)", time.Unix(int64(ts.T), 0).UTC().Format(time.RFC3339))
}
