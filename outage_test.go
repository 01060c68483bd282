package changestream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestOutageIsNotTheCallersDeadline: with the server gone and no deadline
// of the caller's, the error after the client's server selection timeout
// is ErrServerUnavailable and does not match context.DeadlineExceeded; the
// stream stays alive. With the caller's own short deadline, the error is
// the caller's (issue defect 5).
func TestOutageIsNotTheCallersDeadline(t *testing.T) {
	t.Parallel()
	sim, err := mongosim.NewServer()
	require.NoError(t, err)
	c, err := mongo.Connect(options.Client().ApplyURI(sim.URI()).SetServerSelectionTimeout(300 * time.Millisecond))
	require.NoError(t, err)
	defer c.Disconnect(context.Background())
	cs, err := changestream.WatchCollection(context.Background(), c.Database("d").Collection("c"), nil)
	require.NoError(t, err)
	defer cs.Close(context.Background())
	require.NoError(t, sim.Close())

	var saw bool
	for i := 0; i < 3 && !saw; i++ {
		require.False(t, cs.Next(context.Background()))
		err := cs.Err()
		require.Error(t, err)
		assert.True(t, cs.Alive(), "an outage is survivable")
		if errors.Is(err, changestream.ErrServerUnavailable) {
			saw = true
			assert.False(t, errors.Is(err, context.DeadlineExceeded), "not the caller's deadline: %v", err)
		}
	}
	assert.True(t, saw, "the outage was reported as one")

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.False(t, cs.Next(ctx))
	assert.ErrorIs(t, cs.Err(), context.DeadlineExceeded, "the caller's own deadline")
	assert.False(t, errors.Is(cs.Err(), changestream.ErrServerUnavailable))

	_, err = changestream.WatchCollection(context.Background(), c.Database("d").Collection("c"), nil)
	assert.ErrorIs(t, err, changestream.ErrServerUnavailable, "opening during an outage")
	assert.False(t, errors.Is(err, context.DeadlineExceeded))
}
