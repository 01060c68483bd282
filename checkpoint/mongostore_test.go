package checkpoint

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMongoStoreSave(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newDeployment(t).store(t)
	_, ok, err := s.Load(ctx, "k")
	require.NoError(t, err)
	assert.False(t, ok)

	p := pos(5)
	p.HighWater = true
	require.NoError(t, s.Save(ctx, "k", Checkpoint{Position: p, Spec: "s"}))
	got, ok, err := s.Load(ctx, "k")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, p.Token, got.Token)
	assert.Equal(t, p.ClusterTime, got.ClusterTime)
	assert.True(t, got.HighWater)
	assert.Equal(t, "s", got.Spec)
	assert.WithinDuration(t, time.Now(), got.Updated, time.Minute, "the server's time")

	for _, back := range []int{5, 4, 0} {
		require.NoError(t, s.Save(ctx, "k", Checkpoint{Position: pos(back), Spec: "s"}), "a backward save is a no-op")
	}
	require.NoError(t, s.Save(ctx, "k", Checkpoint{Position: pos(6), Spec: "s"}), "same second, later token")
	got, _, err = s.Load(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, pos(6).Token, got.Token)

	err = s.Save(ctx, "k", Checkpoint{Position: pos(9), Spec: "other"})
	assert.ErrorIs(t, err, ErrSpecMismatch)
	got, _, err = s.Load(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, pos(6).Token, got.Token, "untouched")

	require.NoError(t, s.Delete(ctx, "k"))
	_, ok, err = s.Load(ctx, "k")
	require.NoError(t, err)
	assert.False(t, ok)

	_, err = NewMongoStore(nil)
	assert.Error(t, err)
	assert.ErrorContains(t, s.Save(ctx, "", Checkpoint{Position: pos(1)}), "empty key")
}

// TestLease: acquisition by the server's clock, standby refusal, renewal,
// release, and fencing: a former holder's save fails with ErrLeaseLost
// and leaves the new owner's checkpoint alone.
func TestLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newDeployment(t)
	s := d.store(t)
	const ttl = 300 * time.Millisecond

	a, err := s.Acquire(ctx, "k", "a", ttl)
	require.NoError(t, err)
	assert.EqualValues(t, 1, a.Epoch())
	assert.Positive(t, a.Remaining())
	assert.WithinDuration(t, time.Now().Add(ttl), a.Until(), time.Minute)
	fa := s.Fenced(a)
	require.NoError(t, fa.Save(ctx, "k", Checkpoint{Position: pos(1), Spec: "s"}))

	_, err = s.Acquire(ctx, "k", "b", ttl)
	var held *LeaseHeldError
	require.ErrorAs(t, err, &held)
	assert.ErrorIs(t, err, ErrLeaseHeld)
	assert.Equal(t, "a", held.Owner)

	require.NoError(t, a.Renew(ctx))
	time.Sleep(ttl + 100*time.Millisecond) // a is paused past its lease
	assert.Zero(t, a.Remaining())

	b, err := s.Acquire(ctx, "k", "b", ttl)
	require.NoError(t, err, "expired by the server's clock")
	assert.EqualValues(t, 2, b.Epoch())
	fb := s.Fenced(b)
	require.NoError(t, fb.Save(ctx, "k", Checkpoint{Position: pos(2), Spec: "s"}))

	assert.ErrorIs(t, fa.Save(ctx, "k", Checkpoint{Position: pos(3), Spec: "s"}), ErrLeaseLost, "the former holder is fenced")
	assert.ErrorIs(t, a.Renew(ctx), ErrLeaseLost)
	assert.ErrorIs(t, a.Release(ctx), ErrLeaseLost)
	got, _, err := s.Load(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, pos(2).Token, got.Token, "the new owner's checkpoint stands")
	assert.Contains(t, fb.Save(ctx, "other", Checkpoint{Position: pos(3), Spec: "s"}).Error(), "cannot save")

	require.NoError(t, b.Release(ctx))
	c, err := s.Acquire(ctx, "k", "c", ttl)
	require.NoError(t, err, "released: free at once")
	assert.EqualValues(t, 3, c.Epoch())
	got, _, err = s.Load(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, pos(2).Token, got.Token, "acquiring keeps the checkpoint")

	again, err := s.Acquire(ctx, "k", "c", ttl)
	require.NoError(t, err, "an owner re-acquires its own lease")
	assert.EqualValues(t, 4, again.Epoch())
	assert.ErrorIs(t, s.Fenced(c).Save(ctx, "k", Checkpoint{Position: pos(4), Spec: "s"}), ErrLeaseLost, "and fences its earlier incarnation")

	_, err = s.Acquire(ctx, "k", "", ttl)
	assert.ErrorContains(t, err, "empty owner")
	_, err = s.Acquire(ctx, "k", "x", 0)
	assert.ErrorContains(t, err, "below 1ms")
	assert.NotEmpty(t, DefaultOwner())
	assert.NotEqual(t, DefaultOwner(), DefaultOwner())
}
