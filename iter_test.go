package changestream_test

import (
	"context"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

type numbered struct {
	ID int32 `bson:"_id"`
	N  int32 `bson:"n"`
}

func TestEventsBreakLeavesStreamUsable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil)
	e.insert(t, 1, 2, 3)
	ctx := ctxTimeout(t, 10*time.Second)

	var got []int32
	for ev, err := range changestream.Events[numbered](ctx, cs) {
		require.NoError(t, err)
		assert.Equal(t, changestream.OperationInsert, ev.OperationType)
		assert.Equal(t, e.coll.Name(), ev.Namespace.Coll)
		got = append(got, ev.FullDocument.N)
		if len(got) == 2 {
			break
		}
	}
	assert.True(t, cs.Alive())
	for ev, err := range changestream.Events[numbered](ctx, cs) {
		require.NoError(t, err)
		got = append(got, ev.FullDocument.N)
		break
	}
	assert.Equal(t, []int32{1, 2, 3}, got, "a second range carries on where the first stopped")
}

func TestEventsYieldsTerminalErrorOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var errs []error
	for _, err := range changestream.Events[numbered](ctx, cs) {
		errs = append(errs, err)
	}
	require.Len(t, errs, 1, "the context's end is yielded once, then the range stops")
	assert.ErrorIs(t, errs[0], context.DeadlineExceeded)
	assert.True(t, cs.Alive(), "a context error leaves the stream alive")
}

func TestEventsDecodeErrorIsPerEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := watch(t, e, nil)
	_, err := e.coll.InsertMany(context.Background(), []any{
		bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: "not a number"}},
		bson.D{{Key: "_id", Value: 2}, {Key: "n", Value: int32(2)}},
	})
	require.NoError(t, err)
	var decodeErrs int
	var good []int32
	for ev, err := range changestream.Events[numbered](ctxTimeout(t, 10*time.Second), cs) {
		if err != nil {
			decodeErrs++
			continue
		}
		good = append(good, ev.FullDocument.N)
		break
	}
	assert.Equal(t, 1, decodeErrs, "the undecodable event is reported")
	assert.Equal(t, []int32{2}, good, "and the range goes on past it")
}

func TestInvalidateEndsEventsQuietly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.insert(t, 0)
	cs := watch(t, e, nil)
	require.NoError(t, e.coll.Drop(context.Background()))
	var ops []changestream.OperationType
	for ev, err := range changestream.Events[numbered](ctxTimeout(t, 10*time.Second), cs) {
		require.NoError(t, err)
		ops = append(ops, ev.OperationType)
	}
	assert.Equal(t, []changestream.OperationType{changestream.OperationDrop, changestream.OperationInvalidate}, ops)
	assert.False(t, cs.Alive())
}
