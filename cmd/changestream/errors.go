package main

import (
	"context"
	"errors"
	"fmt"
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

// explain turns err into one line naming the cause and the fix.
func explain(err error) string {
	var hl *changestream.HistoryLostError
	var up *changestream.UnresumablePositionError
	var sm *checkpoint.SpecMismatchError
	switch {
	case errors.As(err, &hl):
		return fmt.Sprintf("the saved position%s has left the oplog (%v): events since then are gone; "+
			"delete the checkpoint (or use another -key) to start from now, after resyncing what depends on them", tokenWhen(hl.ResumeToken), hl.Err)
	case errors.As(err, &up):
		return fmt.Sprintf("the server cannot resume from the saved position%s (%v); delete the checkpoint or use another -key", tokenWhen(up.ResumeToken), up.Err)
	case errors.As(err, &sm):
		return fmt.Sprintf("the checkpoint %q was saved by another stream (%s), not this one (%s): use another -key, or delete it", sm.Key, sm.Saved, sm.Want)
	case errors.Is(err, checkpoint.ErrInvalidated):
		return "the stream was invalidated: the watched collection or database was dropped or renamed"
	case errors.Is(err, checkpoint.ErrLeaseLost):
		return "another process took the lease over; this one stopped"
	}
	return err.Error()
}

// tokenWhen says when a token's position was, if it can tell.
func tokenWhen(token []byte) string {
	ts, ok := changestream.TokenTime(token)
	if !ok {
		return ""
	}
	return fmt.Sprintf(" (%s)", time.Unix(int64(ts.T), 0).UTC().Format(time.RFC3339))
}
