package checkpoint

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFileStoreRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := NewFileStore(t.TempDir())
	require.NoError(t, err)
	_, ok, err := s.Load(ctx, "k")
	require.NoError(t, err)
	assert.False(t, ok, "nothing saved yet")

	p := pos(5)
	p.HighWater = true
	require.NoError(t, s.Save(ctx, "k", Checkpoint{Position: p, Spec: "spec"}))
	got, ok, err := s.Load(ctx, "k")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, p.Token, got.Token)
	assert.Equal(t, p.ClusterTime, got.ClusterTime)
	assert.True(t, got.HighWater)
	assert.Equal(t, "spec", got.Spec)
	assert.False(t, got.Updated.IsZero())

	require.NoError(t, s.Delete(ctx, "k"))
	_, ok, err = s.Load(ctx, "k")
	require.NoError(t, err)
	assert.False(t, ok, "deleted")
	require.NoError(t, s.Delete(ctx, "k"), "deleting nothing is fine")
}

func TestFileStoreNeverBackwards(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := NewFileStore(t.TempDir())
	require.NoError(t, err)
	require.NoError(t, s.Save(ctx, "k", Checkpoint{Position: pos(10), Spec: "s"}))
	require.NoError(t, s.Save(ctx, "k", Checkpoint{Position: pos(4), Spec: "s"}), "a backward save is a no-op")
	got, _, err := s.Load(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, pos(10).Token, got.Token)

	err = s.Save(ctx, "k", Checkpoint{Position: pos(11), Spec: "other"})
	var mismatch *SpecMismatchError
	require.ErrorAs(t, err, &mismatch)
	assert.ErrorIs(t, err, ErrSpecMismatch)
	assert.Equal(t, "s", mismatch.Saved)
}

// TestFileStoreCrashBeforeRename: a crash between writing the temporary
// file and renaming it, even with the temporary file torn, leaves the
// previous checkpoint readable by a new store on the same directory.
func TestFileStoreCrashBeforeRename(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := NewFileStore(dir)
	require.NoError(t, err)
	require.NoError(t, s.Save(ctx, "k", Checkpoint{Position: pos(1), Spec: "s"}))

	for _, torn := range []bool{false, true} {
		s.beforeRename = func(tmp string) error {
			if torn {
				data, err := os.ReadFile(tmp)
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(tmp, data[:len(data)/2], 0o600))
			}
			return errCrashed
		}
		require.ErrorIs(t, s.Save(ctx, "k", Checkpoint{Position: pos(2), Spec: "s"}), errCrashed)

		after, err := NewFileStore(dir) // the process restarted
		require.NoError(t, err)
		got, ok, err := after.Load(ctx, "k")
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, pos(1).Token, got.Token, "the previous checkpoint survives (torn: %v)", torn)
		require.NoError(t, after.Save(ctx, "k", Checkpoint{Position: pos(3), Spec: "s"}), "and the next save works")
		got, _, err = after.Load(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, pos(3).Token, got.Token)
		require.NoError(t, after.Delete(ctx, "k"))
		require.NoError(t, after.Save(ctx, "k", Checkpoint{Position: pos(1), Spec: "s"}))
	}
	leftovers, err := filepath.Glob(filepath.Join(dir, ".checkpoint-*.tmp"))
	require.NoError(t, err)
	assert.Len(t, leftovers, 2, "a crash leaves its temporary file, which Load ignores")

	s.beforeRename = func(string) error { return errors.New("disk full") }
	require.Error(t, s.Save(ctx, "k", Checkpoint{Position: pos(9), Spec: "s"}))
	after, err := filepath.Glob(filepath.Join(dir, ".checkpoint-*.tmp"))
	require.NoError(t, err)
	assert.Len(t, after, 2, "a failed save removes its own temporary file")
}

func TestFileStoreKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := NewFileStore(dir)
	require.NoError(t, err)
	for i, key := range []string{"a/b", "..", "x y", "ü", "a\\b"} {
		require.NoError(t, s.Save(ctx, key, Checkpoint{Position: pos(i), Spec: "s"}), key)
		got, ok, err := s.Load(ctx, key)
		require.NoError(t, err)
		require.True(t, ok, key)
		assert.Equal(t, pos(i).Token, got.Token, key)
	}
	entries, err := filepath.Glob(filepath.Join(dir, "checkpoint-*.json"))
	require.NoError(t, err)
	assert.Len(t, entries, 5, "one file per key, all inside the directory")

	assert.ErrorContains(t, s.Save(ctx, "", Checkpoint{Position: pos(1)}), "empty key")
	assert.ErrorContains(t, s.Save(ctx, "k", Checkpoint{}), "without a token")
	assert.ErrorContains(t, s.Save(ctx, strings.Repeat("k", 300), Checkpoint{Position: pos(1)}), "too long")
	_, err = NewFileStore("")
	assert.ErrorContains(t, err, "empty directory")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "checkpoint-bad.json"), []byte("{"), 0o600))
	_, _, err = s.Load(ctx, "bad")
	assert.ErrorContains(t, err, "it is not a checkpoint file")
	assert.ErrorIs(t, err, ErrDamaged)
}

// TestFileStoreConcurrentSaves: saves from many goroutines leave the
// highest position.
func TestFileStoreConcurrentSaves(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := NewFileStore(t.TempDir())
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, s.Save(ctx, "k", Checkpoint{Position: pos(i), Spec: "s"}))
		}()
	}
	wg.Wait()
	got, _, err := s.Load(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, pos(19).Token, got.Token)
}
