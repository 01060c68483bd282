package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestCheckpointer(t *testing.T, store Store, opts ...Option) *Checkpointer {
	t.Helper()
	c, err := NewCheckpointer(store, "k", StreamSpec{Target: "d.c"}, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// TestCheckpointerOrderedCommit is a property test: for random
// acknowledgement orders and commit points, the committed position is
// always the highest one below which every marked event is acknowledged,
// and commits never go backwards.
func TestCheckpointerOrderedCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 42))
		store := newMemStore()
		bound := 1 + rng.IntN(16)
		c := newTestCheckpointer(t, store, MaxInFlight(bound))
		const events = 120
		acked := make([]bool, events)
		var pendingAcks []int
		acks := map[int]Ack{}
		next := 0
		for next < events || len(pendingAcks) > 0 {
			switch {
			case next < events && c.InFlight() < bound && rng.IntN(3) > 0:
				a, err := c.Mark(ctx, pos(next))
				require.NoError(t, err)
				acks[next] = a
				pendingAcks = append(pendingAcks, next)
				next++
			case len(pendingAcks) > 0:
				k := rng.IntN(len(pendingAcks))
				i := pendingAcks[k]
				pendingAcks = append(pendingAcks[:k], pendingAcks[k+1:]...)
				acks[i].Done()
				if rng.IntN(4) == 0 {
					acks[i].Done() // idempotent
				}
				acked[i] = true
			}
			if rng.IntN(5) == 0 {
				require.NoError(t, c.Commit(ctx))
				prefix := -1
				for prefix+1 < next && acked[prefix+1] {
					prefix++
				}
				if prefix >= 0 {
					assert.Equal(t, pos(prefix).Token, store.saved("k").Token, "seed %d: committed the highest acknowledged prefix", seed)
				} else {
					assert.Nil(t, store.saved("k").Token, "seed %d: nothing acknowledged from the start", seed)
				}
			}
		}
		require.NoError(t, c.Close(ctx))
		assert.Equal(t, pos(events-1).Token, store.saved("k").Token, "seed %d", seed)
		for i := 1; i < len(store.saves); i++ {
			assert.Positive(t, Compare(store.saves[i], store.saves[i-1]), "seed %d: saves only move forward", seed)
		}
	}
}

// TestCheckpointerBound: Mark blocks at the in-flight bound until an
// acknowledgement frees a slot, or its ctx ends.
func TestCheckpointerBound(t *testing.T) {
	t.Parallel()
	c := newTestCheckpointer(t, newMemStore(), MaxInFlight(2))
	ctx := context.Background()
	a0, err := c.Mark(ctx, pos(0))
	require.NoError(t, err)
	_, err = c.Mark(ctx, pos(1))
	require.NoError(t, err)

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = c.Mark(short, pos(2))
	assert.ErrorIs(t, err, context.DeadlineExceeded, "blocked at the bound")

	marked := make(chan error, 1)
	go func() {
		_, err := c.Mark(ctx, pos(2))
		marked <- err
	}()
	a0.Done()
	require.NoError(t, <-marked, "a slot freed by Done")
	assert.Equal(t, 2, c.InFlight())
}

// TestCheckpointerProgress: progress of a quiet stream is committable when
// nothing is in flight, waits for the in-flight events otherwise, and is
// dropped when an event is marked after it.
func TestCheckpointerProgress(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newMemStore()
	c := newTestCheckpointer(t, store)
	hw := func(i int) changestream.Position { p := pos(i); p.HighWater = true; return p }

	c.Progress(hw(1))
	require.NoError(t, c.Commit(ctx))
	assert.Equal(t, hw(1).Token, store.saved("k").Token, "idle: progress committed")

	a, err := c.Mark(ctx, pos(2))
	require.NoError(t, err)
	c.Progress(hw(3))
	require.NoError(t, c.Commit(ctx))
	assert.Equal(t, hw(1).Token, store.saved("k").Token, "an event in flight holds progress back")
	a.Done()
	require.NoError(t, c.Commit(ctx))
	assert.Equal(t, hw(3).Token, store.saved("k").Token, "applied once the event is acknowledged")

	b, err := c.Mark(ctx, pos(4))
	require.NoError(t, err)
	c.Progress(hw(5))
	b2, err := c.Mark(ctx, pos(6))
	require.NoError(t, err)
	b.Done()
	require.NoError(t, c.Commit(ctx))
	assert.Equal(t, pos(4).Token, store.saved("k").Token, "progress before a marked event is not past it")
	b2.Done()
	c.Progress(hw(5))
	require.NoError(t, c.Commit(ctx))
	assert.Equal(t, pos(6).Token, store.saved("k").Token, "progress behind the last event is ignored")
}

// TestCheckpointerFatal: a commit that lost the lease makes Mark fail.
func TestCheckpointerFatal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newMemStore()
	c := newTestCheckpointer(t, store, CommitEvery(5*time.Millisecond))
	a, err := c.Mark(ctx, pos(0))
	require.NoError(t, err)
	store.mu.Lock()
	store.err = ErrLeaseLost
	store.mu.Unlock()
	a.Done()
	assert.Eventually(t, func() bool {
		_, err := c.Mark(ctx, pos(1))
		return err != nil
	}, 5*time.Second, time.Millisecond)
	_, err = c.Mark(ctx, pos(2))
	assert.ErrorIs(t, err, ErrLeaseLost)
	assert.ErrorIs(t, c.Close(ctx), ErrLeaseLost)
}

func TestCheckpointerLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newMemStore()
	c := newTestCheckpointer(t, store)
	_, ok, err := c.Load(ctx)
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, store.Save(ctx, "k", Checkpoint{Position: pos(7), Spec: c.Spec()}))
	p, ok, err := c.Load(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, pos(7).Token, p.Token)
	assert.Equal(t, pos(7).Token, c.Saved().Token)

	other, err := NewCheckpointer(store, "k", StreamSpec{Target: "d.other"})
	require.NoError(t, err)
	_, _, err = other.Load(ctx)
	assert.ErrorIs(t, err, ErrSpecMismatch)
	assert.ErrorContains(t, err, "collection d.other")
}

func TestCheckpointerBadInput(t *testing.T) {
	t.Parallel()
	_, err := NewCheckpointer(nil, "k", StreamSpec{})
	assert.ErrorContains(t, err, "nil store")
	_, err = NewCheckpointer(newMemStore(), "", StreamSpec{})
	assert.ErrorContains(t, err, "empty key")
	_, err = NewCheckpointer(newMemStore(), "k", StreamSpec{}, MaxInFlight(0))
	assert.ErrorContains(t, err, "at least 1")
	_, err = NewCheckpointer(newMemStore(), "k", StreamSpec{}, CommitEvery(0))
	assert.ErrorContains(t, err, "must be positive")
	_, err = NewCheckpointer(newMemStore(), "k", StreamSpec{}, nil)
	assert.ErrorContains(t, err, "nil option")
	_, err = NewCheckpointer(newMemStore(), "k", StreamSpec{Pipeline: 3})
	assert.ErrorContains(t, err, "pipeline")

	c := newTestCheckpointer(t, newMemStore())
	_, err = c.Mark(context.Background(), changestream.Position{})
	assert.ErrorContains(t, err, "without a token")
	_, err = c.Mark(context.Background(), pos(5))
	require.NoError(t, err)
	_, err = c.Mark(context.Background(), pos(4))
	assert.ErrorContains(t, err, "stream order")
	assert.Equal(t, 1, c.InFlight(), "a refused Mark takes no slot")
	Ack{}.Done() // the zero Ack does nothing
}

// TestCheckpointerConcurrentAcks: acknowledgements from many goroutines.
func TestCheckpointerConcurrentAcks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newMemStore()
	c := newTestCheckpointer(t, store, MaxInFlight(8), CommitEvery(time.Millisecond))
	work := make(chan Ack)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range work {
				a.Done()
			}
		}()
	}
	for i := range 500 {
		a, err := c.Mark(ctx, pos(i))
		require.NoError(t, err)
		work <- a
	}
	close(work)
	wg.Wait()
	require.NoError(t, c.Close(ctx))
	assert.Equal(t, pos(499).Token, store.saved("k").Token)
}

// TestCheckpointerBoundsRedelivery: with a commit interval far longer
// than the test, what a crash would deliver again (the events marked
// since the last save) never exceeds MaxInFlight: Mark saves at the
// bound. On the code before this bound counted saves, the 60 events
// below were all unsaved.
func TestCheckpointerBoundsRedelivery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, every := range []time.Duration{0, time.Hour} {
		t.Run(fmt.Sprint("every=", every), func(t *testing.T) {
			t.Parallel()
			store := newMemStore()
			opts := []Option{MaxInFlight(5)}
			if every > 0 {
				opts = append(opts, CommitEvery(every))
			}
			c := newTestCheckpointer(t, store, opts...)
			for i := range 60 {
				a, err := c.Mark(ctx, pos(i))
				require.NoError(t, err)
				a.Done()
				// A crash now repeats the events after the saved position.
				repeated := i + 1
				if saved := store.saved("k"); saved.Token != nil {
					repeated = 0
					for j := 0; j <= i; j++ {
						if Compare(pos(j), saved) > 0 {
							repeated++
						}
					}
				}
				require.LessOrEqual(t, repeated, 5, "after event %d", i)
				require.LessOrEqual(t, c.InFlight(), 5)
			}
		})
	}
}

// TestCheckpointerBoundWaitsForTheOldest: at the bound, with the oldest
// event unacknowledged, Mark waits (nothing newer can be saved past it),
// and goes on once it is acknowledged.
func TestCheckpointerBoundWaitsForTheOldest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newMemStore()
	c := newTestCheckpointer(t, store, MaxInFlight(3))
	first, err := c.Mark(ctx, pos(0))
	require.NoError(t, err)
	for i := 1; i < 3; i++ {
		a, err := c.Mark(ctx, pos(i))
		require.NoError(t, err)
		a.Done()
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = c.Mark(short, pos(3))
	require.ErrorIs(t, err, context.DeadlineExceeded, "the oldest holds the window")
	assert.Nil(t, store.saved("k").Token, "nothing is committable past the oldest")

	marked := make(chan error, 1)
	go func() {
		_, err := c.Mark(ctx, pos(3))
		marked <- err
	}()
	first.Done()
	require.NoError(t, <-marked)
	assert.Equal(t, pos(2).Token, store.saved("k").Token, "Mark saved the acknowledged prefix to make room")
	assert.Equal(t, 1, c.InFlight())
}

// TestCheckpointerBoundSaveFails: a save that fails at the bound for a
// while is retried by the blocked Mark; one that fails for good ends it.
func TestCheckpointerBoundSaveFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newMemStore()
	store.err = errors.New("store unreachable")
	c := newTestCheckpointer(t, store, MaxInFlight(1))
	a, err := c.Mark(ctx, pos(0))
	require.NoError(t, err)
	a.Done()
	marked := make(chan error, 1)
	go func() {
		_, err := c.Mark(ctx, pos(1))
		marked <- err
	}()
	time.Sleep(3 * markRetry / 2) // at least one retry fails
	store.mu.Lock()
	store.err = nil
	store.mu.Unlock()
	require.NoError(t, <-marked, "a retry succeeded")

	// pos(1) is marked: acknowledge it, and let its save fail for good.
	store.mu.Lock()
	store.err = ErrLeaseLost
	store.mu.Unlock()
	c.ack(1)
	_, err = c.Mark(ctx, pos(2))
	require.ErrorIs(t, err, ErrLeaseLost, "a save that fails for good ends the blocked Mark")
}
