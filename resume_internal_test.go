package changestream

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
)

func TestIsResumable(t *testing.T) {
	t.Parallel()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	network := mongo.CommandError{Labels: []string{"NetworkError"}, Message: "connection reset"}
	cases := []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"network error", context.Background(), network, true},
		{"wrapped network error", context.Background(), fmt.Errorf("getMore: %w", network), true},
		{"plain Go error", context.Background(), errors.New("malformed reply"), true},
		{"CursorNotFound without label", context.Background(), mongo.CommandError{Code: 43}, true},
		{"labelled server error", context.Background(), mongo.CommandError{Code: 10107, Labels: []string{"ResumableChangeStreamError"}}, true},
		{"unlabelled server error", context.Background(), mongo.CommandError{Code: 10107}, false},
		{"non-resumable label", context.Background(), mongo.CommandError{Code: 280, Labels: []string{"NonResumableChangeStreamError"}}, false},
		{"history lost", context.Background(), mongo.CommandError{Code: 286}, false},
		{"caller's ctx ended", cancelled, network, false},
		{"deadline inside the driver", context.Background(), fmt.Errorf("not sent: %w", context.DeadlineExceeded), false},
		{"server MaxTimeMSExpired", context.Background(), mongo.CommandError{Code: 50, Wrapped: context.DeadlineExceeded}, false},
		{"labelled server MaxTimeMSExpired", context.Background(),
			mongo.CommandError{Code: 50, Labels: []string{"ResumableChangeStreamError"}, Wrapped: context.DeadlineExceeded}, true},
		{"nil", context.Background(), nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, isResumable(tc.ctx, tc.err))
		})
	}
}

func TestIsTransient(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"network error", mongo.CommandError{Labels: []string{"NetworkError"}}, true},
		{"server selection", topology.ServerSelectionError{Wrapped: errors.New("no primary")}, true},
		{"retryable read code", mongo.CommandError{Code: 91}, true},
		{"other server code", mongo.CommandError{Code: 48}, false},
		{"history lost", mongo.CommandError{Code: 286}, false},
		{"deadline", context.DeadlineExceeded, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, isTransient(tc.err))
		})
	}
}

// TestMissingResumeTokenClosesStream feeds the stream a batch whose event
// has no _id, which a server older than 4.2 would send when a pipeline
// projects it away (newer servers refuse with code 280 instead).
func TestMissingResumeTokenClosesStream(t *testing.T) {
	t.Parallel()
	cur, err := mongo.NewCursorFromDocuments([]any{bson.D{{Key: "operationType", Value: "insert"}}}, nil, nil)
	require.NoError(t, err)
	c := &cursor{cur: cur, bc: batchCursorOf(cur)}
	require.NotNil(t, c.bc)
	c.bc.Next(context.Background())
	c.load()
	require.Equal(t, 1, c.remaining())
	cs := &ChangeStream{cfg: &config{}, cur: c}
	cs.closeCtx, cs.closeFn = context.WithCancel(context.Background())
	cs.alive.Store(true)
	assert.False(t, cs.Next(context.Background()))
	assert.ErrorIs(t, cs.Err(), ErrMissingResumeToken)
	assert.False(t, cs.Alive())
	assert.Nil(t, cs.Current)
}

func TestHistoryLostErrorMatches(t *testing.T) {
	t.Parallel()
	server := mongo.CommandError{Code: 286, Name: "ChangeStreamHistoryLost", Message: "oplog rolled over"}
	err := fmt.Errorf("wrapped: %w", &HistoryLostError{ResumeToken: bson.Raw{5, 0, 0, 0, 0}, Err: server})
	assert.ErrorIs(t, err, ErrHistoryLost)
	var ce mongo.CommandError
	require.ErrorAs(t, err, &ce)
	assert.EqualValues(t, 286, ce.Code)
	var hl *HistoryLostError
	require.ErrorAs(t, err, &hl)
	assert.NotNil(t, hl.ResumeToken)
	assert.Contains(t, err.Error(), "history lost")
}

func TestPublicError(t *testing.T) {
	t.Parallel()
	de := driver.Error{Code: 43, Message: "cursor id 7 not found", Name: "CursorNotFound", Labels: []string{"X"}}
	err := fmt.Errorf("changestream: %w", publicError(de))
	var ce mongo.CommandError
	require.ErrorAs(t, err, &ce)
	assert.EqualValues(t, 43, ce.Code)
	assert.True(t, ce.HasErrorLabel("X"))
	var se mongo.ServerError
	require.ErrorAs(t, err, &se)
	assert.True(t, se.HasErrorCode(43))
	assert.Equal(t, "changestream: "+de.Error(), err.Error(), "the driver's own message")
	assert.True(t, isResumable(context.Background(), err), "CursorNotFound")

	timeout := driver.Error{Code: 50, Name: "MaxTimeMSExpired", Wrapped: context.DeadlineExceeded}
	assert.ErrorIs(t, publicError(timeout), context.DeadlineExceeded)
	assert.Equal(t, mongo.ErrClientDisconnected, publicError(topology.ErrTopologyClosed))
	plain := errors.New("plain")
	assert.Equal(t, plain, publicError(plain))
}
