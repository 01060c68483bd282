package mongosim_test

import (
	"context"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestServerStatusOplog: serverStatus's oplog section, which a member
// adds only when asked ({oplog: 1}), gives its oldest and newest entries'
// times, and the oldest moves as the oplog is capped
// (replication_info.cpp, OplogInfoServerStatus); a mongos answers as
// process "mongos", without the section.
func TestServerStatusOplog(t *testing.T) {
	t.Parallel()
	sim := mongosim.StartTB(t, mongosim.WithOplogMax(5))
	c := connectTo(t, sim.URI())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type status struct {
		Process string `bson:"process"`
		Oplog   *struct {
			Latest   bson.Timestamp `bson:"latestOptime"`
			Earliest bson.Timestamp `bson:"earliestOptime"`
		} `bson:"oplog"`
	}
	read := func(cmd bson.D) status {
		var s status
		require.NoError(t, c.Database("admin").RunCommand(ctx, cmd).Decode(&s))
		return s
	}
	assert.Nil(t, read(bson.D{{Key: "serverStatus", Value: 1}}).Oplog, "not by default")
	before := read(bson.D{{Key: "serverStatus", Value: 1}, {Key: "oplog", Value: 1}})
	require.NotNil(t, before.Oplog)
	assert.False(t, before.Oplog.Latest.Before(before.Oplog.Earliest))
	for i := range 10 {
		_, err := c.Database("d").Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: i}})
		require.NoError(t, err)
	}
	after := read(bson.D{{Key: "serverStatus", Value: 1}, {Key: "oplog", Value: true}})
	assert.True(t, before.Oplog.Earliest.Before(after.Oplog.Earliest), "the capped oplog's oldest entry moved on")
	assert.True(t, before.Oplog.Latest.Before(after.Oplog.Latest))

	_, router := startSharded(t)
	var s status
	require.NoError(t, router.Database("admin").RunCommand(ctx, bson.D{{Key: "serverStatus", Value: 1}, {Key: "oplog", Value: 1}}).Decode(&s))
	assert.Equal(t, "mongos", s.Process)
	assert.Nil(t, s.Oplog)
}
