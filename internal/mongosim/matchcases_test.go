package mongosim_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/matchcases"
	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/mongosim/query"
	"github.com/changestream-go/changestream/internal/testclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// TestMatcherAgreesWithTheServer runs the shared table of matcher cases
// (internal/matchcases, from the server's expression_leaf_test.cpp, and
// run through the hub's WithMatch too) through the simulator's matcher,
// then as finds through the driver: against the simulator, or against
// the deployment MONGODB_URI names, where the table itself is checked.
func TestMatcherAgreesWithTheServer(t *testing.T) {
	t.Parallel()
	cases := matchcases.Cases()
	for _, tc := range cases {
		m, err := query.CompileFilter(tc.Filter)
		require.NoError(t, err, tc.Name)
		assert.Equal(t, tc.Want, m(tc.Doc), "%s: %v against %v", tc.Name, tc.Filter, tc.Doc)
	}

	uri := os.Getenv("MONGODB_URI")
	if uri == "" {
		uri = mongosim.StartTB(t).URI()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mongo.Connect(testclient.Options(uri))
	require.NoError(t, err)
	defer func() { _ = c.Disconnect(context.Background()) }()
	coll := c.Database("matchcases_" + bson.NewObjectID().Hex()).Collection("docs")
	defer func() { _ = coll.Database().Drop(context.Background()) }()
	docs := make([]any, len(cases))
	for i, tc := range cases {
		docs[i] = tc.Doc
	}
	_, err = coll.InsertMany(ctx, docs)
	require.NoError(t, err)
	for _, tc := range cases {
		n, err := coll.CountDocuments(ctx, bson.D{{Key: "$and", Value: bson.A{bson.D{tc.Doc[0]}, tc.Filter}}})
		require.NoError(t, err, tc.Name)
		assert.Equal(t, tc.Want, n == 1, "%s: %v against %v", tc.Name, tc.Filter, tc.Doc)
	}
}
