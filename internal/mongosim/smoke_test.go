package mongosim_test

import (
	"context"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

func TestSmokePing(t *testing.T) {
	s := mongosim.StartTB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := mongo.Connect(testclient.Options(s.URI()))
	require.NoError(t, err)
	defer c.Disconnect(ctx)
	require.NoError(t, c.Ping(ctx, nil))
	var res bson.M
	require.NoError(t, c.Database("admin").RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&res))
	assert.Equal(t, mongosim.ServerVersion, res["version"])
	err = c.Database("admin").RunCommand(ctx, bson.D{{Key: "nope", Value: 1}}).Err()
	var ce mongo.CommandError
	require.ErrorAs(t, err, &ce)
	assert.EqualValues(t, 59, ce.Code, "an unknown command is CommandNotFound")
}
