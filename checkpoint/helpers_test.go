package checkpoint

import (
	"context"
	"fmt"
	"sync"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// pos returns the position of the i-th event of a made-up stream, with a
// token shaped as a server's (its _data starts with the cluster time).
func pos(i int) changestream.Position {
	ts := bson.Timestamp{T: 1_700_000_000 + uint32(i/3), I: uint32(i%3 + 1)}
	token, _ := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("82%08X%08X2B0229", ts.T, ts.I)}})
	return changestream.Position{Token: token, ClusterTime: ts}
}

// memStore is a Store in memory that records every save.
type memStore struct {
	mu    sync.Mutex
	cps   map[string]Checkpoint
	saves []changestream.Position
	err   error // returned by every Save when set
}

func newMemStore() *memStore { return &memStore{cps: map[string]Checkpoint{}} }

func (m *memStore) Load(_ context.Context, key string) (Checkpoint, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cp, ok := m.cps[key]
	return cp, ok, nil
}

func (m *memStore) Save(_ context.Context, key string, cp Checkpoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	if old, ok := m.cps[key]; ok && Compare(old.Position, cp.Position) >= 0 {
		return nil
	}
	m.cps[key] = cp
	m.saves = append(m.saves, cp.Position)
	return nil
}

func (m *memStore) saved(key string) changestream.Position {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cps[key].Position
}
