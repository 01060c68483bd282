package changestream_test

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestDecodeTokenManual decodes the insert token that MongoDB's manual
// gives as its example ("Resume Tokens from Change Events").
func TestDecodeTokenManual(t *testing.T) {
	t.Parallel()
	token, err := bson.Marshal(bson.D{{Key: "_data", Value: "82635019A0000000012B042C0100296E5A1004AB1154ACACD849A48C61756D70D3B21F" +
		"463C6F7065726174696F6E54797065003C696E736572740046646F63756D656E744B65790046645F69640064635019A078BE67426D7CF4D2000004"}})
	require.NoError(t, err)
	info, err := changestream.DecodeToken(token)
	require.NoError(t, err)
	oid, _ := bson.ObjectIDFromHex("635019A078BE67426D7CF4D2")
	assert.Equal(t, bson.Timestamp{T: 0x635019A0, I: 1}, info.ClusterTime)
	assert.Equal(t, 2, info.Version)
	assert.False(t, info.HighWater)
	assert.Zero(t, info.TxnOpIndex)
	assert.False(t, info.FromInvalidate)
	assert.Equal(t, "ab1154acacd849a48c61756d70d3b21f", hex.EncodeToString(info.CollectionUUID))
	assert.Equal(t, bson.D{{Key: "operationType", Value: "insert"}, {Key: "documentKey", Value: bson.D{{Key: "_id", Value: oid}}}}, info.EventIdentifier)
	assert.Nil(t, info.FragmentNum)
}

// TestDecodeTokenFromStream: every field DecodeToken reads matches the
// event the token came with: a plain insert, the events of a transaction
// (txnOpIndex), a high-water mark, a drop's invalidate (fromInvalidate).
func TestDecodeTokenFromStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxTimeout(t, 20*time.Second)
	cs, err := changestream.WatchCollection(ctx, e.coll, nil, changestream.WithShowExpandedEvents(true))
	require.NoError(t, err)
	defer cs.Close(context.Background())
	hw, err := changestream.DecodeToken(cs.ResumeToken())
	require.NoError(t, err)
	assert.True(t, hw.HighWater, "an opening position is a high-water mark")
	assert.Nil(t, hw.EventIdentifier)

	_, err = e.coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "k"}})
	require.NoError(t, err)
	sess, err := e.client.StartSession()
	require.NoError(t, err)
	defer sess.EndSession(ctx)
	_, err = sess.WithTransaction(ctx, func(sc context.Context) (any, error) {
		_, err := e.coll.InsertMany(sc, []any{bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}}})
		return nil, err
	})
	require.NoError(t, err)
	require.NoError(t, e.coll.Drop(ctx))

	var txnOps []int64
	for {
		require.True(t, cs.Next(ctx), "%v", cs.Err())
		var ev changestream.Event[bson.Raw]
		require.NoError(t, cs.Decode(&ev))
		info, err := changestream.DecodeToken(ev.ID)
		require.NoError(t, err, "%s", ev.ID)
		assert.Equal(t, ev.ClusterTime, info.ClusterTime)
		assert.False(t, info.HighWater)
		if ev.CollectionUUID != nil {
			assert.Equal(t, ev.CollectionUUID.Data, info.CollectionUUID)
		}
		switch ev.OperationType {
		case changestream.OperationInsert:
			assert.Equal(t, "insert", info.EventIdentifier[0].Value)
			if ev.TxnNumber != nil {
				txnOps = append(txnOps, info.TxnOpIndex)
			}
		case changestream.OperationInvalidate:
			assert.True(t, info.FromInvalidate)
			assert.Equal(t, []int64{0, 1}, txnOps, "txnOpIndex counts a transaction's operations")
			return
		}
	}
}

func TestDecodeTokenErrors(t *testing.T) {
	t.Parallel()
	doc := func(v any) bson.Raw {
		raw, err := bson.Marshal(bson.D{{Key: "_data", Value: v}})
		require.NoError(t, err)
		return raw
	}
	cases := []struct {
		name  string
		token bson.Raw
		want  string
	}{
		{"no _data", bson.Raw(mustMarshal(t, bson.D{{Key: "x", Value: 1}})), "no _data"},
		{"binary _data", doc(bson.Binary{Data: []byte{1}}), "not the hex string"},
		{"not hex", doc("zz"), "not hex"},
		{"truncated", doc("8263"), "cluster time"},
		{"version 0", doc("82635019A00000000129"), "version 0 tokens are not decoded"},
	}
	for _, tc := range cases {
		_, err := changestream.DecodeToken(tc.token)
		assert.ErrorContains(t, err, tc.want, tc.name)
	}
}
