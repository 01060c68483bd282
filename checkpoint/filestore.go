package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// FileStore keeps each checkpoint in a file of its own in a directory. A
// save writes a temporary file, syncs it, renames it over the old one and
// syncs the directory, so that a crash at any point leaves either the old
// checkpoint or the new one, never a torn file.
//
// A FileStore serializes its own saves; it does not lock the directory
// against other processes. For several processes, use a [MongoStore] and a
// [Lease].
type FileStore struct {
	dir string
	mu  sync.Mutex
	// beforeRename, when set (tests), runs between writing the temporary
	// file and renaming it; an error stops the save there, as a crash
	// would.
	beforeRename func(tmp string) error
}

// NewFileStore returns a store that keeps its files in dir, which it
// creates if needed.
func NewFileStore(dir string) (*FileStore, error) {
	if dir == "" {
		return nil, errors.New("checkpoint: NewFileStore: empty directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("checkpoint: NewFileStore: %w", err)
	}
	return &FileStore{dir: dir}, nil
}

// fileCheckpoint is a checkpoint as a file holds it: JSON, with the token
// in MongoDB's canonical extended JSON, readable with any text tool.
type fileCheckpoint struct {
	Key         string          `json:"key"`
	Token       json.RawMessage `json:"token"`
	ClusterTime struct {
		T uint32 `json:"t"`
		I uint32 `json:"i"`
	} `json:"clusterTime"`
	HighWater bool          `json:"highWater,omitempty"`
	Spec      string        `json:"spec"`
	Updated   time.Time     `json:"updated"`
	Snapshot  *fileSnapshot `json:"snapshot,omitempty"`
}

// fileSnapshot is a SnapshotState in a file.
type fileSnapshot struct {
	Namespace string          `json:"namespace"`
	After     json.RawMessage `json:"after,omitempty"` // canonical extended JSON
}

// path returns the file of key. Keys are escaped so that any key names one
// file inside the directory.
func (s *FileStore) path(key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	name := "checkpoint-" + url.PathEscape(key) + ".json"
	if len(name) > 255 {
		return "", fmt.Errorf("checkpoint: key %.40q... is too long for a file name", key)
	}
	return filepath.Join(s.dir, name), nil
}

// Load returns the checkpoint saved under key.
func (s *FileStore) Load(ctx context.Context, key string) (Checkpoint, bool, error) {
	if err := ctx.Err(); err != nil {
		return Checkpoint{}, false, err
	}
	path, err := s.path(key)
	if err != nil {
		return Checkpoint{}, false, err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("checkpoint: loading %q: %w", key, err)
	}
	var fc fileCheckpoint
	if err := json.Unmarshal(data, &fc); err != nil {
		return Checkpoint{}, false, fmt.Errorf("checkpoint: %s is not a checkpoint file: %w", path, err)
	}
	var token bson.Raw
	if err := bson.UnmarshalExtJSON(fc.Token, true, &token); err != nil {
		return Checkpoint{}, false, fmt.Errorf("checkpoint: %s: token: %w", path, err)
	}
	cp := Checkpoint{
		Position: changestream.Position{Token: token, ClusterTime: bson.Timestamp{T: fc.ClusterTime.T, I: fc.ClusterTime.I}, HighWater: fc.HighWater},
		Spec:     fc.Spec,
		Updated:  fc.Updated,
	}
	if fs := fc.Snapshot; fs != nil {
		cp.Snapshot = &SnapshotState{Namespace: fs.Namespace}
		if len(fs.After) > 0 {
			if err := bson.UnmarshalExtJSON(fs.After, true, &cp.Snapshot.After); err != nil {
				return Checkpoint{}, false, fmt.Errorf("checkpoint: %s: snapshot: %w", path, err)
			}
		}
	}
	return cp, true, nil
}

// Save replaces the checkpoint of key with cp, unless the saved one is
// already at or past cp. A checkpoint of another stream (Spec) is not
// replaced: Save returns a *SpecMismatchError.
func (s *FileStore) Save(ctx context.Context, key string, cp Checkpoint) error {
	if err := checkSave(key, cp); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok, err := s.Load(ctx, key)
	if err != nil {
		return err
	}
	if ok && old.Spec != cp.Spec {
		return &SpecMismatchError{Key: key, Saved: old.Spec, Want: cp.Spec}
	}
	if c := Compare(old.Position, cp.Position); ok && (c > 0 || (c == 0 && sameSnapshot(old.Snapshot, cp.Snapshot))) {
		return nil
	}
	token, err := bson.MarshalExtJSON(cp.Token, true, false)
	if err != nil {
		return fmt.Errorf("checkpoint: token: %w", err)
	}
	fc := fileCheckpoint{Key: key, Token: token, HighWater: cp.HighWater, Spec: cp.Spec, Updated: time.Now().UTC()}
	fc.ClusterTime.T, fc.ClusterTime.I = cp.ClusterTime.T, cp.ClusterTime.I
	if ss := cp.Snapshot; ss != nil {
		fc.Snapshot = &fileSnapshot{Namespace: ss.Namespace}
		if ss.After != nil {
			if fc.Snapshot.After, err = bson.MarshalExtJSON(ss.After, true, false); err != nil {
				return fmt.Errorf("checkpoint: snapshot: %w", err)
			}
		}
	}
	data, err := json.MarshalIndent(fc, "", "  ")
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	path, _ := s.path(key)
	return s.replace(path, append(data, '\n'))
}

// Delete removes the checkpoint of key, if any: the next stream with that
// key starts afresh.
func (s *FileStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	path, err := s.path(key)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// replace writes data to path atomically and durably.
func (s *FileStore) replace(path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(s.dir, ".checkpoint-*.tmp")
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	renamed := false
	defer func() {
		if !renamed && !errors.Is(err, errCrashed) {
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("checkpoint: writing %s: %w", tmp.Name(), err)
	}
	// Without this sync, a crash after the rename could leave the new
	// name pointing at a file whose data never reached the disk.
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("checkpoint: syncing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if s.beforeRename != nil {
		if err := s.beforeRename(tmp.Name()); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	renamed = true
	// The rename is durable only once the directory is synced.
	dir, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("checkpoint: syncing %s: %w", s.dir, err)
	}
	return nil
}

// errCrashed is what a test's beforeRename returns to stop a save as a
// crash would: the temporary file stays behind.
var errCrashed = errors.New("checkpoint: simulated crash")
