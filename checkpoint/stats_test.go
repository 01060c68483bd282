package checkpoint

import (
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRunHealth: Stats.Health follows a Run: the holder of a lease
// streams (caught up, its epoch known) while the other Run stands by; a
// handler that blocks makes the Run stuck; a snapshot reports itself;
// a Run that returns is stopped, or failed with its error.
func TestRunHealth(t *testing.T) {
	t.Parallel()
	th := changestream.HealthThresholds{Stuck: 200 * time.Millisecond}
	health := func(st *Stats) func() changestream.HealthState {
		return func() changestream.HealthState { return st.Health(th).State }
	}

	t.Run("lease holder and standby, then stopped", func(t *testing.T) {
		t.Parallel()
		d := newDeployment(t)
		store := d.store(t)
		stats := map[string]*Stats{"a": {}, "b": {}}
		stops := map[string]func() error{}
		for _, owner := range []string{"a", "b"} {
			cfg := Config{Key: "k", Collection: d.db.Collection("items"), Stats: stats[owner],
				Lease: &LeaseConfig{Store: store, Owner: owner, TTL: time.Second, RetryEvery: 20 * time.Millisecond}}
			stops[owner], _ = start(t, cfg, &recorder{})
		}
		var holder, standby string
		require.Eventually(t, func() bool {
			a, b := stats["a"].Health(th), stats["b"].Health(th)
			switch {
			case a.State == changestream.HealthCaughtUp && b.State == HealthStandby:
				holder, standby = "a", "b"
			case b.State == changestream.HealthCaughtUp && a.State == HealthStandby:
				holder, standby = "b", "a"
			}
			return holder != ""
		}, 10*time.Second, 5*time.Millisecond)
		assert.Positive(t, stats[holder].Health(th).LeaseEpoch)
		assert.Zero(t, stats[standby].Health(th).LeaseEpoch)
		assert.True(t, stats[standby].Health(th).State.Healthy())
		require.NoError(t, stops[holder]())
		h := stats[holder].Health(th)
		assert.Equal(t, HealthStopped, h.State)
		assert.NoError(t, h.Err)
	})

	t.Run("a blocked handler is stuck, a failed Run failed", func(t *testing.T) {
		t.Parallel()
		d := newDeployment(t)
		coll := d.db.Collection("items")
		store := newMemStore()
		st := &Stats{}
		release := make(chan struct{})
		r := &recorder{fail: func(n int32) error {
			if n == 1 {
				<-release
				return errPoison
			}
			return nil
		}}
		stop, ended := start(t, Config{Key: "k", Collection: coll, Store: store, Stats: st}, r)
		require.Eventually(t, func() bool { return health(st)() == changestream.HealthCaughtUp }, 10*time.Second, 5*time.Millisecond)
		insertN(t, coll, 0, 2)
		require.Eventually(t, func() bool { return health(st)() == changestream.HealthStuck }, 10*time.Second, 5*time.Millisecond)
		assert.Contains(t, st.Health(th).Reason, "no call to Next")
		close(release)
		require.ErrorIs(t, ends(t, stop, ended), errPoison)
		h := st.Health(th)
		assert.Equal(t, changestream.HealthFailed, h.State)
		assert.ErrorIs(t, h.Err, errPoison)
		assert.False(t, h.State.Healthy())
	})

	t.Run("snapshot", func(t *testing.T) {
		t.Parallel()
		d := newDeployment(t)
		coll := d.db.Collection("items")
		insertN(t, coll, 0, 3)
		st := &Stats{}
		during := make(chan changestream.HealthState, 10)
		cfg := Config{Key: "k", Collection: coll, Store: newMemStore(), Stats: st, Snapshot: SnapshotInitial,
			OnSnapshot: func(SnapshotReport) { during <- st.Health(th).State }}
		r := &recorder{}
		stop, _ := start(t, cfg, r)
		// The three documents between the snapshot's start and end events.
		require.Eventually(t, func() bool { return r.count() == 5 }, 10*time.Second, 5*time.Millisecond)
		require.NoError(t, stop())
		assert.Equal(t, HealthSnapshot, <-during)
	})
}

// TestStatsHealthBeforeRun: a Stats no Run has used says so.
func TestStatsHealthBeforeRun(t *testing.T) {
	t.Parallel()
	h := (&Stats{}).Health(changestream.HealthThresholds{})
	assert.Equal(t, HealthStarting, h.State)
	assert.Equal(t, "not started", h.Reason)
}
