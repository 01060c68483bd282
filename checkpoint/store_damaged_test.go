package checkpoint

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// damagedFiles are checkpoint files that are not positions. Before, the
// null token, the empty document and the time without a token loaded as
// "no checkpoint" (Run started from now and overwrote the file); the
// others failed with errors that named no fix.
var damagedFiles = []struct {
	name, content, problem string
}{
	{"null token", `{"key":"k","token":null,"clusterTime":{"t":5,"i":1},"spec":"s"}`, "a time (5, 1) and no token"},
	{"null token, no time", `{"key":"k","token":null,"spec":"s"}`, "no token"},
	{"no token", `{"key":"k","clusterTime":{"t":5,"i":1},"spec":"s"}`, "a time (5, 1) and no token"},
	{"empty document", `{}`, "no token"},
	{"token of the wrong type", `{"key":"k","token":"8264","spec":"s"}`, "token is not a document"},
	{"token an array", `{"key":"k","token":[1],"spec":"s"}`, "token is not a document"},
	{"empty token", `{"key":"k","token":{},"spec":"s"}`, "no _data"},
	{"token without _data", `{"key":"k","token":{"x":"1"},"spec":"s"}`, "no _data"},
	{"another key's file", `{"key":"other","token":{"_data":"82"},"spec":"s"}`, `the key "other"`},
	{"no spec", `{"key":"k","token":{"_data":"82"}}`, "names no stream"},
	{"not JSON", `{`, "not a checkpoint file"},
	{"empty file", ``, "not a checkpoint file"},
	{"JSON null", `null`, "no token"},
}

// TestFileStoreDamaged: every file that cannot be a position is a
// *DamagedError naming the key, the file and the fix, from Load and from
// Save, and the file is left as it was.
func TestFileStoreDamaged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range damagedFiles {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s, err := NewFileStore(dir)
			require.NoError(t, err)
			path := filepath.Join(dir, fileName("k"))
			require.NoError(t, os.WriteFile(path, []byte(tc.content), 0o600))
			_, ok, err := s.Load(ctx, "k")
			assert.False(t, ok)
			requireDamaged(t, err, "k", path, tc.problem)
			requireDamaged(t, s.Save(ctx, "k", Checkpoint{Position: pos(1), Spec: "s"}), "k", path, tc.problem)
			got, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, tc.content, string(got), "nothing overwritten")
		})
	}
}

func requireDamaged(t *testing.T, err error, key, where, problem string) {
	t.Helper()
	var de *DamagedError
	require.ErrorAs(t, err, &de)
	assert.ErrorIs(t, err, ErrDamaged)
	assert.Equal(t, key, de.Key)
	assert.Contains(t, de.Where, where)
	assert.Contains(t, de.Problem, problem)
	assert.NotEmpty(t, de.Fix)
	assert.Contains(t, err.Error(), fmt.Sprintf("%q", key))
}

// TestFileStoreNotThere: a store directory gone since NewFileStore and a
// checkpoint file that is a dangling symlink are errors, never "no
// checkpoint", and nothing is written. Before, both loaded as no
// checkpoint.
func TestFileStoreNotThere(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	dir := filepath.Join(t.TempDir(), "volume")
	s, err := NewFileStore(dir)
	require.NoError(t, err)
	require.NoError(t, s.Save(ctx, "k", Checkpoint{Position: pos(1), Spec: "s"}))
	require.NoError(t, os.RemoveAll(dir)) // unmounted
	_, ok, err := s.Load(ctx, "k")
	assert.False(t, ok)
	requireDamaged(t, err, "k", dir, "directory is not there")
	requireDamaged(t, s.Save(ctx, "k", Checkpoint{Position: pos(2), Spec: "s"}), "k", dir, "directory is not there")
	_, err = os.Stat(dir)
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing created")

	dir = t.TempDir()
	s, err = NewFileStore(dir)
	require.NoError(t, err)
	link := filepath.Join(dir, fileName("k"))
	require.NoError(t, os.Symlink(filepath.Join(dir, "gone.json"), link))
	_, ok, err = s.Load(ctx, "k")
	assert.False(t, ok)
	requireDamaged(t, err, "k", link, "symlink")
	requireDamaged(t, s.Save(ctx, "k", Checkpoint{Position: pos(2), Spec: "s"}), "k", link, "symlink")

	// A directory that is there and holds nothing for the key: no
	// checkpoint, the one case that is.
	_, ok, err = s.Load(ctx, "other")
	require.NoError(t, err)
	assert.False(t, ok)
}

// TestFileStoreNames: every key maps to a name of the portable set (no
// ':' or upper case, which Windows refuses or folds), distinct for keys
// that differ only in case; files written under the earlier names are
// read, and replaced at the next save.
func TestFileStoreNames(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]string{
		"tail:shop.orders": "checkpoint-tail%3Ashop.orders.json",
		"Orders":           "checkpoint-%4Frders.json",
		"orders":           "checkpoint-orders.json",
		"a/b\\c":           "checkpoint-a%2Fb%5Cc.json",
		"100%":             "checkpoint-100%25.json",
		"ü":                "checkpoint-%C3%BC.json",
	} {
		assert.Equal(t, want, fileName(key), key)
	}

	ctx := context.Background()
	dir := t.TempDir()
	s, err := NewFileStore(dir)
	require.NoError(t, err)
	// A file as the code before wrote it for the key "tail:shop.Orders".
	key := "tail:shop.Orders"
	token, err := bson.MarshalExtJSON(pos(3).Token, true, false)
	require.NoError(t, err)
	legacy := filepath.Join(dir, "checkpoint-tail:shop.Orders.json")
	require.NoError(t, os.WriteFile(legacy, fmt.Appendf(nil, `{"key":%q,"token":%s,"clusterTime":{"t":%d,"i":%d},"spec":"s"}`,
		key, token, pos(3).ClusterTime.T, pos(3).ClusterTime.I), 0o600))
	cp, ok, err := s.Load(ctx, key)
	require.NoError(t, err)
	require.True(t, ok, "the earlier file is read")
	assert.Equal(t, pos(3).Token, cp.Token)
	require.NoError(t, s.Save(ctx, key, Checkpoint{Position: pos(4), Spec: "s"}))
	_, err = os.Stat(legacy)
	assert.ErrorIs(t, err, os.ErrNotExist, "replaced by the new name")
	_, err = os.Stat(filepath.Join(dir, "checkpoint-tail%3Ashop.%4Frders.json"))
	require.NoError(t, err)
	cp, ok, err = s.Load(ctx, key)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, pos(4).Token, cp.Token)
}

// saverEnv makes the test binary a saving process (TestFileStoreHelper).
const saverEnv = "CHANGESTREAM_FILESTORE_SAVER"

// TestFileStoreAcrossProcesses: two processes saving one key, each its
// own increasing positions interleaved with the other's, never move the
// checkpoint backwards: a reader polling it sees it only go forward, and
// it ends at the highest position saved. Before saves locked the
// directory, 2.8% of such saves moved it backwards.
func TestFileStoreAcrossProcesses(t *testing.T) {
	if !fileLocking {
		t.Skip("no file lock on this platform")
	}
	t.Parallel()
	dir := t.TempDir()
	const saves = 300
	var procs []*exec.Cmd
	for i := range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFileStoreHelper$")
		cmd.Env = append(os.Environ(), saverEnv+"="+dir+","+strconv.Itoa(i)+","+strconv.Itoa(saves))
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		procs = append(procs, cmd)
	}
	s, err := NewFileStore(dir)
	require.NoError(t, err)
	ctx := context.Background()
	done := make(chan error, 2)
	for _, p := range procs {
		go func() { done <- p.Wait() }()
	}
	var last Checkpoint
	backwards, reads := 0, 0
	for finished := 0; finished < 2; {
		select {
		case err := <-done:
			require.NoError(t, err)
			finished++
		default:
		}
		cp, ok, err := s.Load(ctx, "k")
		require.NoError(t, err)
		if !ok {
			continue
		}
		reads++
		if last.Token != nil && Compare(cp.Position, last.Position) < 0 {
			backwards++
		}
		last = cp
	}
	cp, _, err := s.Load(ctx, "k")
	require.NoError(t, err)
	t.Logf("%d reads, %d saw the checkpoint move backwards", reads, backwards)
	assert.Zero(t, backwards)
	assert.Equal(t, pos(2*saves-1).Token, cp.Token, "the highest position saved")
}

// TestFileStoreHelper is the saving process of TestFileStoreAcrossProcesses:
// process i saves positions i, i+2, i+4, ...
func TestFileStoreHelper(t *testing.T) {
	env := os.Getenv(saverEnv)
	if env == "" {
		t.Skip("a helper process of TestFileStoreAcrossProcesses")
	}
	parts := strings.Split(env, ",")
	require.Len(t, parts, 3)
	dir := parts[0]
	i, _ := strconv.Atoi(parts[1])
	saves, _ := strconv.Atoi(parts[2])
	s, err := NewFileStore(dir)
	require.NoError(t, err)
	for n := range saves {
		require.NoError(t, s.Save(context.Background(), "k", Checkpoint{Position: pos(2*n + i), Spec: "s"}))
	}
}

// TestMongoStoreDamaged: every document whose checkpoint fields cannot be
// a position is a *DamagedError naming the key, the document and the fix,
// from Load and from Save, and the document is left as it was; one that
// holds only a lease has no checkpoint. Before, a null token, and a time
// without a token, loaded as "no checkpoint", and Save overwrote them.
func TestMongoStoreDamaged(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	s := d.store(t)
	coll := d.db.Collection("checkpoints")
	ctx := context.Background()
	ts := bson.Timestamp{T: 1_700_000_000, I: 1}
	for i, tc := range []struct {
		name    string
		doc     bson.D
		problem string
	}{
		{"null token", bson.D{{Key: "token", Value: nil}, {Key: "clusterTime", Value: ts}, {Key: "spec", Value: "s"}}, "token is a null"},
		{"token of the wrong type", bson.D{{Key: "token", Value: "8264"}, {Key: "clusterTime", Value: ts}, {Key: "spec", Value: "s"}}, "token is a string"},
		{"empty token", bson.D{{Key: "token", Value: bson.D{}}, {Key: "clusterTime", Value: ts}, {Key: "spec", Value: "s"}}, "no _data"},
		{"token without _data", bson.D{{Key: "token", Value: bson.D{{Key: "x", Value: "1"}}}, {Key: "clusterTime", Value: ts}, {Key: "spec", Value: "s"}}, "no _data"},
		{"a time without a token", bson.D{{Key: "clusterTime", Value: ts}, {Key: "spec", Value: "s"}}, "clusterTime and no token"},
		{"a time of the wrong type", bson.D{{Key: "token", Value: bson.D{{Key: "_data", Value: "82"}}}, {Key: "clusterTime", Value: int32(5)}, {Key: "spec", Value: "s"}}, "not a timestamp"},
		{"no spec", bson.D{{Key: "token", Value: bson.D{{Key: "_data", Value: "82"}}}, {Key: "clusterTime", Value: ts}}, "names no stream"},
	} {
		key := fmt.Sprint("k", i)
		doc := append(bson.D{{Key: "_id", Value: key}}, tc.doc...)
		_, err := coll.InsertOne(ctx, doc)
		require.NoError(t, err, tc.name)
		where := fmt.Sprintf("{_id: %q} in %s.checkpoints", key, d.db.Name())
		_, ok, err := s.Load(ctx, key)
		assert.False(t, ok, tc.name)
		requireDamaged(t, err, key, where, tc.problem)
		requireDamaged(t, s.Save(ctx, key, Checkpoint{Position: pos(1), Spec: "s"}), key, where, tc.problem)
		var after bson.D
		require.NoError(t, coll.FindOne(ctx, bson.D{{Key: "_id", Value: key}}).Decode(&after))
		assert.Equal(t, doc, after, "%s: nothing overwritten", tc.name)
	}

	// A document with a lease and no checkpoint yet: no checkpoint.
	l, err := s.Acquire(ctx, "leased", "a", DefaultLeaseTTL)
	require.NoError(t, err)
	_, ok, err := s.Load(ctx, "leased")
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, s.Fenced(l).Save(ctx, "leased", Checkpoint{Position: pos(1), Spec: "s"}))
	cp, ok, err := s.Load(ctx, "leased")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, pos(1).Token, cp.Token)
}
