package checkpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
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
// Saves compare and swap under a lock: each takes an exclusive lock on
// the directory's lock file (.checkpoint.lock; flock on Unix, LockFileEx
// on Windows, released by the kernel when a process dies), reads the
// saved checkpoint, and writes only if that moves it forward. So a
// checkpoint never moves backwards even when several processes save the
// same key, though those processes still consume the same events: to let
// only one of several processes consume, use a [MongoStore] and a
// [Lease]. (On plan9, js, wasip1, aix and solaris there is no lock: there
// a FileStore serializes only its own process's saves.)
//
// A key's file is "checkpoint-" + the key + ".json", with every byte of
// the key other than a-z, 0-9, '.', '_' and '-' written as %XX (two
// upper-case hex digits): the key "tail:shop.Orders" is in
// checkpoint-tail%3Ashop.%4Frders.json. Such a name is valid on every
// operating system, and two keys never share one, even where names are
// compared without regard to case. Files written under the earlier
// mapping (url.PathEscape, which kept ':' and upper case) are still read,
// and replaced by the new name at the next save.
//
// Load never mistakes a store that is not there, or a file that is not a
// checkpoint, for "no checkpoint": a store directory gone since
// NewFileStore, a dangling symlink, an unreadable or damaged file are each
// a *DamagedError (see [ErrDamaged]).
type FileStore struct {
	dir string
	mu  sync.Mutex
	// beforeRename, when set (tests), runs between writing the temporary
	// file and renaming it; an error stops the save there, as a crash
	// would.
	beforeRename func(tmp string) error
}

// NewFileStore returns a store that keeps its files in dir, which it
// creates if needed. Once it is created, a store whose directory
// disappears (an unmounted volume, say) fails its loads and saves with a
// *DamagedError instead of starting over.
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
	ClusterTime *struct {
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

// fileName returns the name of key's file (see FileStore).
func fileName(key string) string {
	var b strings.Builder
	b.WriteString("checkpoint-")
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	b.WriteString(".json")
	return b.String()
}

// legacyFileName is the name the code before fileName gave key's file.
func legacyFileName(key string) string {
	return "checkpoint-" + url.PathEscape(key) + ".json"
}

// paths returns key's file, and the file an earlier version named it
// ("" when the names are the same).
func (s *FileStore) paths(key string) (path, legacy string, err error) {
	if err := checkKey(key); err != nil {
		return "", "", err
	}
	name := fileName(key)
	if len(name) > 255 {
		return "", "", fmt.Errorf("checkpoint: key %.40q... is too long for a file name", key)
	}
	path = filepath.Join(s.dir, name)
	if old := legacyFileName(key); old != name && len(old) <= 255 {
		legacy = filepath.Join(s.dir, old)
	}
	return path, legacy, nil
}

// Load returns the checkpoint saved under key, and false if the store's
// directory holds none. A store that is not there, or a file that is not
// a checkpoint, is a *DamagedError.
func (s *FileStore) Load(ctx context.Context, key string) (Checkpoint, bool, error) {
	if err := ctx.Err(); err != nil {
		return Checkpoint{}, false, err
	}
	path, legacy, err := s.paths(key)
	if err != nil {
		return Checkpoint{}, false, err
	}
	for _, p := range []string{path, legacy} {
		if p == "" {
			continue
		}
		cp, ok, err := s.loadFile(key, p)
		if err != nil || ok {
			return cp, ok, err
		}
	}
	if err := s.checkDir(key); err != nil {
		return Checkpoint{}, false, err
	}
	return Checkpoint{}, false, nil
}

// checkDir fails with a *DamagedError unless the store's directory is
// there: a missing one is an unmounted volume or a mistyped path, never
// an empty store.
func (s *FileStore) checkDir(key string) error {
	fi, err := os.Stat(s.dir)
	switch {
	case err != nil:
		return &DamagedError{Key: key, Where: s.dir, Problem: fmt.Sprintf("the store's directory is not there (%v): an unmounted volume, or a mistyped path?", err),
			Fix: "mount or restore it; to start afresh on purpose, create it empty"}
	case !fi.IsDir():
		return &DamagedError{Key: key, Where: s.dir, Problem: "the store's path is not a directory", Fix: "point the store at its directory"}
	}
	return nil
}

// loadFile reads one checkpoint file: false if there is no such file.
func (s *FileStore) loadFile(key, path string) (Checkpoint, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if target, lerr := os.Readlink(path); lerr == nil {
			return Checkpoint{}, false, &DamagedError{Key: key, Where: path,
				Problem: fmt.Sprintf("the file is a symlink to %s, which is not there", target), Fix: "restore its target, or remove the link to start the stream afresh"}
		}
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("checkpoint: loading %q from %s: %w", key, path, err)
	}
	damaged := func(format string, args ...any) (Checkpoint, bool, error) {
		return Checkpoint{}, false, &DamagedError{Key: key, Where: path, Problem: fmt.Sprintf(format, args...), Fix: fixDamaged}
	}
	var fc fileCheckpoint
	if err := json.Unmarshal(data, &fc); err != nil {
		return damaged("it is not a checkpoint file: %v", err)
	}
	if tok := bytes.TrimSpace(fc.Token); len(tok) == 0 || string(tok) == "null" {
		if fc.ClusterTime != nil && (fc.ClusterTime.T != 0 || fc.ClusterTime.I != 0) {
			return damaged("it has a time (%d, %d) and no token", fc.ClusterTime.T, fc.ClusterTime.I)
		}
		return damaged("it has no token")
	} else if tok[0] != '{' {
		return damaged("its token is not a document: %s", tok)
	}
	var token bson.Raw
	if err := bson.UnmarshalExtJSON(fc.Token, true, &token); err != nil {
		return damaged("its token is not extended JSON: %v", err)
	}
	if problem := checkToken(token); problem != "" {
		return damaged("%s", problem)
	}
	if fc.Key != key {
		return damaged("it holds the checkpoint of the key %q", fc.Key)
	}
	if fc.Spec == "" {
		return damaged("it names no stream (spec)")
	}
	cp := Checkpoint{
		Position: changestream.Position{Token: token, HighWater: fc.HighWater},
		Spec:     fc.Spec,
		Updated:  fc.Updated,
	}
	if fc.ClusterTime != nil {
		cp.ClusterTime = bson.Timestamp{T: fc.ClusterTime.T, I: fc.ClusterTime.I}
	} else if t, ok := changestream.TokenTime(token); ok {
		cp.ClusterTime = t
	}
	if fs := fc.Snapshot; fs != nil {
		cp.Snapshot = &SnapshotState{Namespace: fs.Namespace}
		if after := bytes.TrimSpace(fs.After); len(after) > 0 {
			if after[0] != '{' {
				return damaged("its snapshot's position is not a document: %s", after)
			}
			if err := bson.UnmarshalExtJSON(fs.After, true, &cp.Snapshot.After); err != nil {
				return damaged("its snapshot's position is not extended JSON: %v", err)
			}
		}
	}
	return cp, true, nil
}

// lock takes the directory's lock against other processes' saves; the
// caller holds s.mu, and calls unlock when done.
func (s *FileStore) lock(key string) (unlock func(), err error) {
	if err := s.checkDir(key); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(s.dir, ".checkpoint.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: opening the store's lock file: %w", err)
	}
	if err := lockFile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("checkpoint: locking %s: %w", f.Name(), err)
	}
	return func() { _ = f.Close() }, nil // closing releases the lock
}

// Save replaces the checkpoint of key with cp, unless the saved one is
// already at or past cp: it reads, compares and writes under the lock
// that every process's saves take, so that the checkpoint never moves
// backwards. A checkpoint of another stream (Spec) is not replaced: Save
// returns a *SpecMismatchError; nor is a damaged one (*DamagedError).
func (s *FileStore) Save(ctx context.Context, key string, cp Checkpoint) error {
	if err := checkSave(key, cp); err != nil {
		return err
	}
	if problem := checkToken(cp.Token); problem != "" {
		return fmt.Errorf("checkpoint: Save %q: %s", key, problem)
	}
	path, legacy, err := s.paths(key)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	unlock, err := s.lock(key)
	if err != nil {
		return err
	}
	defer unlock()
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
	fc.ClusterTime = &struct {
		T uint32 `json:"t"`
		I uint32 `json:"i"`
	}{cp.ClusterTime.T, cp.ClusterTime.I}
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
	if err := s.replace(path, append(data, '\n')); err != nil {
		return err
	}
	if legacy != "" {
		// The new file is durable: the one under the earlier name goes.
		if err := os.Remove(legacy); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("checkpoint: removing the earlier file %s: %w", legacy, err)
		}
	}
	return nil
}

// Delete removes the checkpoint of key, if any (under both its file names,
// see FileStore): the next stream with that key starts afresh.
func (s *FileStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	path, legacy, err := s.paths(key)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	unlock, err := s.lock(key)
	if err != nil {
		return err
	}
	defer unlock()
	for _, p := range []string{path, legacy} {
		if p == "" {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("checkpoint: %w", err)
		}
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
