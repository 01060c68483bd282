package mongos

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/changestream-go/changestream/internal/keystring"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// token builds a resume token as the members do: cluster time, version
// 1, token type (0 high-water mark, 128 event), txnOpIndex, then id.
func token(t, i uint32, event bool, id string) bsoncore.Document {
	var b keystring.Builder
	b.AppendTimestamp(t, i)
	b.AppendInt(1)
	if event {
		b.AppendInt(128)
	} else {
		b.AppendInt(0)
	}
	b.AppendInt(0)
	b.AppendBool(false)
	if id != "" {
		b.AppendStringField("_id", id)
	}
	data := strings.ToUpper(hex.EncodeToString(b.Snapshot()))
	return bsoncore.NewDocumentBuilder().AppendString("_data", data).Build()
}

func event(tok bsoncore.Document) bsoncore.Document {
	return bsoncore.NewDocumentBuilder().AppendDocument("_id", tok).AppendString("operationType", "insert").Build()
}

// TestReleaseAtAHighWaterMark: a shard whose promise is a high-water mark
// at T has returned every event at or before T, so another shard's event
// at T is ready, though its KeyString sorts after the mark's; the
// stream's position is then that event, not the mark, from which a
// resume would start after T and skip it. Before points were ordered so,
// the event waited and the mark went out as the position.
func TestReleaseAtAHighWaterMark(t *testing.T) {
	evT := token(100, 5, true, "b")
	c := &streamCursor{shards: []*shardStream{
		{pbrt: token(100, 5, false, "")},
		{pbrt: evT, buf: []bsoncore.Document{event(evT)}},
	}}
	require.Less(t, tokenData(c.shards[0].pbrt), tokenData(evT), "the mark's bytes sort first")
	batch, more, notFound := c.release(0)
	require.Len(t, batch, 1, "ready")
	assert.False(t, more)
	assert.False(t, notFound)
	_, promise := c.promise()
	assert.Equal(t, tokenData(evT), tokenData(promise), "the stream's position is the event's, not the mark's before it")

	// Ordering of points: by time, then a mark after the events at its
	// time, then by KeyString.
	assert.True(t, pointOf(token(100, 4, false, "")).before(pointOf(evT)))
	assert.True(t, pointOf(evT).before(pointOf(token(100, 5, false, ""))))
	assert.True(t, pointOf(token(100, 5, true, "a")).before(pointOf(evT)))
	assert.False(t, pointOf(evT).before(pointOf(evT)))
}
