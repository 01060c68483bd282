package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/proctest"
	"github.com/changestream-go/changestream/internal/testclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// The tests build the tool and run it against cmd/mongosim, both as
// processes of their own, as a user would.

var (
	buildOnce sync.Once
	toolBin   string
	simBin    string
)

func binaries(t *testing.T) (tool, sim string) {
	t.Helper()
	buildOnce.Do(func() {
		toolBin = proctest.Build(t, "./cmd/changestream")
		simBin = proctest.Build(t, "./cmd/mongosim")
		// The first test's temporary directory would vanish with it.
		toolBin, simBin = keep(t, toolBin), keep(t, simBin)
	})
	if toolBin == "" {
		t.Skip("no binaries")
	}
	return toolBin, simBin
}

// keep copies a binary out of a test's temporary directory.
func keep(t *testing.T, path string) string {
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	f, err := os.CreateTemp("", "changestream-test-*")
	require.NoError(t, err)
	_, err = f.Write(data)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, os.Chmod(f.Name(), 0o755))
	return f.Name()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if toolBin != "" {
		_ = os.Remove(toolBin)
		_ = os.Remove(simBin)
	}
	os.Exit(code)
}

// proc is one run of the tool.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
	done           chan struct{}
	code           int
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startTool(t *testing.T, args ...string) *proc {
	t.Helper()
	tool, _ := binaries(t)
	p := &proc{cmd: exec.Command(tool, args...), stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.Env = append(os.Environ(), "MONGODB_URI=")
	require.NoError(t, p.cmd.Start())
	go func() {
		err := p.cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.code = ee.ExitCode()
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// wait returns the exit code once the tool exits.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(30 * time.Second):
		t.Fatalf("the tool did not exit; stderr: %s", p.stderr.String())
		return -1
	}
}

func (p *proc) lines() []string {
	s := strings.TrimSpace(p.stdout.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// waitLines waits until the tool printed n lines.
func (p *proc) waitLines(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return len(p.lines()) >= n }, 30*time.Second, 10*time.Millisecond,
		"%d lines; stderr: %s", n, p.stderr.String())
}

func connect(t *testing.T, uri string) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(testclient.Options(uri))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

// waitCheckpoint waits for the tool's first save in a file store.
func waitCheckpoint(t *testing.T, dir string) {
	t.Helper()
	require.Eventually(t, func() bool {
		entries, _ := os.ReadDir(dir)
		return len(entries) > 0
	}, 30*time.Second, 10*time.Millisecond, "the tool saved its starting point")
}

func sim(t *testing.T, args ...string) string {
	t.Helper()
	_, bin := binaries(t)
	return proctest.WithOption(proctest.StartSim(t, bin, args...), heartbeatParam)
}

// heartbeatParam gives the tool's client testclient.Heartbeat through the
// URI, for the driver races it bounds.
var heartbeatParam = fmt.Sprintf("heartbeatFrequencyMS=%d", testclient.Heartbeat.Milliseconds())

// TestTailEventTypes: each kind of event is printed as relaxed Extended
// JSON, one per line; a drop invalidates the stream and exits 4.
func TestTailEventTypes(t *testing.T) {
	t.Parallel()
	uri := sim(t)
	dir := t.TempDir()
	p := startTool(t, "tail", "-uri", uri, "-db", "shop", "-coll", "orders", "-checkpoint", "file:"+dir, "-full-document", "updateLookup")
	waitCheckpoint(t, dir)
	ctx := context.Background()
	coll := connect(t, uri).Database("shop").Collection("orders")
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "item", Value: "apple"}})
	require.NoError(t, err)
	_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "qty", Value: 3}}}})
	require.NoError(t, err)
	_, err = coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "item", Value: "pear"}})
	require.NoError(t, err)
	_, err = coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)
	require.NoError(t, coll.Drop(ctx))

	assert.Equal(t, exitInvalidated, p.wait(t), "stderr: %s", p.stderr.String())
	var ops []string
	for _, line := range p.lines() {
		var ev bson.M
		require.NoError(t, bson.UnmarshalExtJSON([]byte(line), false, &ev), line)
		ops = append(ops, ev["operationType"].(string))
	}
	assert.Equal(t, []string{"insert", "update", "replace", "delete", "drop", "invalidate"}, ops)
	assert.Contains(t, p.lines()[1], `"updateDescription":{"updatedFields":{"qty":3}`)
	assert.Equal(t, "changestream: the stream was invalidated: the watched collection or database was dropped or renamed\n", p.stderr.String())
}

// TestTailFormats: canonical Extended JSON, a projection of fields, and
// the human format.
func TestTailFormats(t *testing.T) {
	t.Parallel()
	uri := sim(t)
	coll := connect(t, uri).Database("shop").Collection("orders")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-format", "canonical"}, `"fullDocument":{"_id":{"$numberInt":"7"},"qty":{"$numberInt":"2"}}`},
		{[]string{"-fields", "operationType,fullDocument.qty,ns.coll"}, `{"operationType":"insert","fullDocument.qty":2,"ns.coll":"orders"}`},
		{[]string{"-format", "human"}, ` insert shop.orders {"_id":7} {"_id":7,"qty":2}`},
	} {
		dir := t.TempDir()
		p := startTool(t, append([]string{"tail", "-uri", uri, "-db", "shop", "-coll", "orders", "-checkpoint", "file:" + dir}, tc.args...)...)
		waitCheckpoint(t, dir)
		_, err := coll.InsertOne(context.Background(), bson.D{{Key: "_id", Value: 7}, {Key: "qty", Value: 2}})
		require.NoError(t, err)
		p.waitLines(t, 1)
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
		assert.Equal(t, exitOK, p.wait(t))
		assert.Contains(t, p.lines()[0], tc.want, "%v", tc.args)
		assert.Empty(t, p.stderr.String(), "no progress when stderr is piped")
		_, err = coll.DeleteOne(context.Background(), bson.D{{Key: "_id", Value: 7}})
		require.NoError(t, err)
	}
}

// TestTailRestartAfterSIGKILL: a tail with a file checkpoint, killed with
// SIGKILL again and again while documents are written, prints every
// document across its runs: what it saved, it had written.
func TestTailRestartAfterSIGKILL(t *testing.T) {
	t.Parallel()
	uri := sim(t)
	dir := t.TempDir()
	coll := connect(t, uri).Database("shop").Collection("orders")
	args := []string{"tail", "-uri", uri, "-db", "shop", "-coll", "orders", "-checkpoint", "file:" + dir,
		"-fields", "fullDocument.n", "-commit-every", "20ms"}
	p := startTool(t, args...)
	waitCheckpoint(t, dir)
	const docs, kills = 400, 5
	written := make(chan error, 1)
	go func() {
		for i := range docs {
			if _, err := coll.InsertOne(context.Background(), bson.D{{Key: "n", Value: i}}); err != nil {
				written <- err
				return
			}
			if i%50 == 0 {
				time.Sleep(20 * time.Millisecond)
			}
		}
		written <- nil
	}()
	var out []string
	for range kills {
		time.Sleep(60 * time.Millisecond)
		require.NoError(t, p.cmd.Process.Kill())
		p.wait(t)
		out = append(out, p.lines()...)
		p = startTool(t, args...)
	}
	require.NoError(t, <-written)
	seen := func() map[string]int {
		m := map[string]int{}
		for _, l := range append(append([]string(nil), out...), p.lines()...) {
			m[l]++
		}
		return m
	}
	// One more document, printed by the last run: it is up, and SIGTERM
	// finds it handling signals.
	_, err := coll.InsertOne(context.Background(), bson.D{{Key: "n", Value: docs}})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(seen()) >= docs+1 }, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, exitOK, p.wait(t))
	m, repeated := seen(), 0
	for i := range docs {
		c := m[fmt.Sprintf(`{"fullDocument.n":%d}`, i)]
		assert.Positive(t, c, "document %d printed", i)
		repeated += max(c-1, 0)
	}
	t.Logf("%d documents, %d SIGKILLs: %d lines repeated, 0 lost", docs, kills, repeated)
}

// TestTailErrors: each failure exits with its documented code and one
// line on stderr naming the cause.
func TestTailErrors(t *testing.T) {
	t.Parallel()
	uri := sim(t)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, exitUsage, "usage: changestream <command>"},
		{"unknown command", []string{"follow"}, exitUsage, `unknown command "follow"`},
		{"unknown flag", []string{"tail", "-frobnicate"}, exitUsage, "flag provided but not defined: -frobnicate"},
		{"no uri", []string{"tail"}, exitUsage, "no deployment: pass -uri or set MONGODB_URI"},
		{"coll without db", []string{"tail", "-uri", uri, "-coll", "c"}, exitUsage, `-coll "c" needs -db`},
		{"bad uri", []string{"tail", "-uri", "postgres://x"}, exitUsage, "bad -uri"},
		{"unreachable", []string{"tail", "-uri", "mongodb://127.0.0.1:1/?directConnection=true", "-connect-timeout", "300ms"}, exitFailure, "cannot reach the deployment in 300ms"},
		{"bad pipeline", []string{"tail", "-uri", uri, "-pipeline", "[{"}, exitUsage, "-pipeline is not an Extended JSON array"},
		{"refused stage", []string{"tail", "-uri", uri, "-db", "d", "-pipeline", `[{"$frobnicate": 1}]`}, exitUsage, "Unrecognized pipeline stage name: '$frobnicate'"},
		{"bad mode", []string{"tail", "-uri", uri, "-full-document", "always"}, exitUsage, `-full-document "always"`},
		{"bad token", []string{"tail", "-uri", uri, "-start-after", "zz"}, exitUsage, "-start-after"},
		{"lease without a mongodb checkpoint", []string{"tail", "-uri", uri, "-lease", "1s"}, exitUsage, "-lease needs -checkpoint mongodb:"},
		{"bad checkpoint", []string{"tail", "-uri", uri, "-checkpoint", "s3:bucket"}, exitUsage, `-checkpoint "s3:bucket"`},
		{"commit-every 0", []string{"tail", "-uri", uri, "-commit-every", "0"}, exitUsage, "changestream: -commit-every 0s: must be positive\n"},
		{"negative batch size", []string{"tail", "-uri", uri, "-batch-size", "-1"}, exitUsage, "changestream: -batch-size -1: cannot be negative\n"},
		{"help", []string{"tail", "-h"}, exitOK, "Exit codes: 0 interrupted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startTool(t, tc.args...)
			assert.Equal(t, tc.code, p.wait(t), "stderr: %s", p.stderr.String())
			assert.Contains(t, p.stderr.String(), tc.want)
			if tc.code != exitOK && tc.name != "no command" && tc.name != "unknown command" && tc.name != "unknown flag" {
				assert.Equal(t, 1, strings.Count(p.stderr.String(), "\n"), "one line: %q", p.stderr.String())
			}
		})
	}
}

// TestTailPositionErrors: a checkpoint whose history left the oplog exits
// 3 and says when the position was; a checkpoint of another stream exits
// 2 and says how to fix it.
func TestTailPositionErrors(t *testing.T) {
	t.Parallel()
	uri := sim(t, "-oplog-max", "5")
	dir := t.TempDir()
	args := []string{"tail", "-uri", uri, "-db", "shop", "-coll", "orders", "-checkpoint", "file:" + dir}
	p := startTool(t, args...)
	waitCheckpoint(t, dir)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, exitOK, p.wait(t))

	p = startTool(t, append(args, "-pipeline", `[{"$match": {"operationType": "insert"}}]`)...)
	assert.Equal(t, exitUsage, p.wait(t))
	assert.Contains(t, p.stderr.String(), "was saved by another stream")

	coll := connect(t, uri).Database("shop").Collection("orders")
	for i := range 10 {
		_, err := coll.InsertOne(context.Background(), bson.D{{Key: "n", Value: i}})
		require.NoError(t, err)
	}
	p = startTool(t, args...)
	assert.Equal(t, exitUnresumable, p.wait(t))
	assert.Regexp(t, `the checkpoint "tail:shop.orders"'s position \(\d{4}-\d\d-\d\dT[\d:]+Z\) has left the oplog`, p.stderr.String())
	assert.Contains(t, p.stderr.String(), "delete the checkpoint")

	// Without a checkpoint, the message names the flag that gave the
	// position, and no checkpoint.
	p = startTool(t, "tail", "-uri", uri, "-db", "shop", "-coll", "orders", "-start-at", "1")
	assert.Equal(t, exitUnresumable, p.wait(t))
	assert.Contains(t, p.stderr.String(), "the -start-at time")
	assert.NotContains(t, p.stderr.String(), "checkpoint")
	assert.NotContains(t, p.stderr.String(), "changestream: changestream:")
}

// TestTailProgress: -progress reports on stderr even when it is piped.
func TestTailProgress(t *testing.T) {
	t.Parallel()
	uri := sim(t)
	p := startTool(t, "tail", "-uri", uri, "-db", "shop", "-progress")
	require.Eventually(t, func() bool { return strings.Contains(p.stderr.String(), "events, ") }, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, exitOK, p.wait(t))
	assert.Regexp(t, `\d+ events, \d+/s, \d+ resumes, `, p.stderr.String())
}

// manualToken is the insert token MongoDB's manual gives as its example.
const manualToken = "82635019A0000000012B042C0100296E5A1004AB1154ACACD849A48C61756D70D3B21F" +
	"463C6F7065726174696F6E54797065003C696E736572740046646F63756D656E744B65790046645F69640064635019A078BE67426D7CF4D2000004"

// TestToken: the manual's token decodes to what the manual says, as lines
// and as JSON, from hex and from the {_data} JSON; bad input exits 2.
func TestToken(t *testing.T) {
	t.Parallel()
	p := startTool(t, "token", manualToken)
	require.Equal(t, exitOK, p.wait(t), p.stderr.String())
	out := p.stdout.String()
	for _, want := range []string{
		"clusterTime      Timestamp(1666193824, 1)  2022-10-19T15:37:04Z",
		"version          2",
		"tokenType        event (128)",
		"txnOpIndex       0",
		"fromInvalidate   false",
		"uuid             ab1154ac-acd8-49a4-8c61-756d70d3b21f",
		`eventIdentifier  {"operationType":"insert","documentKey":{"_id":{"$oid":"635019a078be67426d7cf4d2"}}}`,
		"fragmentNum      -",
	} {
		assert.Contains(t, out, want+"\n")
	}

	p = startTool(t, "token", "-json", `{"_data": "`+manualToken+`"}`)
	require.Equal(t, exitOK, p.wait(t), p.stderr.String())
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(p.stdout.String()), &got))
	assert.EqualValues(t, 1666193824, got["clusterTime"].(map[string]any)["t"])
	assert.EqualValues(t, 128, got["tokenType"])
	assert.Equal(t, "insert", got["eventIdentifier"].(map[string]any)["operationType"])

	for _, bad := range [][]string{{"token"}, {"token", "zz"}, {"token", `{"_data": 1}`}, {"token", "82635019A00000000129"}} {
		p = startTool(t, bad...)
		assert.Equal(t, exitUsage, p.wait(t), "%v", bad)
		assert.Equal(t, 1, strings.Count(p.stderr.String(), "\n"), "%v: %q", bad, p.stderr.String())
	}
}

// TestTokenOfTail: the token of an event printed by tail decodes to that
// event's cluster time and document key.
func TestTokenOfTail(t *testing.T) {
	t.Parallel()
	uri := sim(t)
	dir := t.TempDir()
	p := startTool(t, "tail", "-uri", uri, "-db", "shop", "-coll", "orders", "-checkpoint", "file:"+dir, "-fields", "_id,clusterTime")
	waitCheckpoint(t, dir)
	_, err := connect(t, uri).Database("shop").Collection("orders").InsertOne(context.Background(), bson.D{{Key: "_id", Value: "x"}})
	require.NoError(t, err)
	p.waitLines(t, 1)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	p.wait(t)
	var ev struct {
		ID          bson.Raw       `bson:"_id"`
		ClusterTime bson.Timestamp `bson:"clusterTime"`
	}
	require.NoError(t, bson.UnmarshalExtJSON([]byte(p.lines()[0]), false, &ev))
	data := ev.ID.Lookup("_data").StringValue()
	d := startTool(t, "token", data)
	require.Equal(t, exitOK, d.wait(t), d.stderr.String())
	assert.Contains(t, d.stdout.String(), fmt.Sprintf("Timestamp(%d, %d)", ev.ClusterTime.T, ev.ClusterTime.I))
	assert.Contains(t, d.stdout.String(), `{"operationType":"insert","documentKey":{"_id":"x"}}`)
}

// TestTailLeaseLost: a tail holding a lease exits 5 when another process
// takes the lease over.
func TestTailLeaseLost(t *testing.T) {
	t.Parallel()
	uri := sim(t)
	p := startTool(t, "tail", "-uri", uri, "-db", "shop", "-checkpoint", "mongodb:ops.checkpoints", "-lease", "2s")
	coll := connect(t, uri).Database("ops").Collection("checkpoints")
	require.Eventually(t, func() bool {
		n, _ := coll.CountDocuments(context.Background(), bson.D{{Key: "token", Value: bson.D{{Key: "$exists", Value: true}}}})
		return n == 1
	}, 30*time.Second, 10*time.Millisecond, "the tail took the lease and saved its start")
	_, err := coll.UpdateOne(context.Background(), bson.D{}, bson.D{{Key: "$inc", Value: bson.D{{Key: "epoch", Value: 1}}},
		{Key: "$set", Value: bson.D{{Key: "owner", Value: "another"}}}})
	require.NoError(t, err)
	assert.Equal(t, exitLeaseLost, p.wait(t), p.stderr.String())
	assert.Contains(t, p.stderr.String(), "changestream: another process took the lease over; this one stopped\n")
}

// TestTailSnapshot: -snapshot initial prints the documents, between the
// start and end markers, then the changes.
func TestTailSnapshot(t *testing.T) {
	t.Parallel()
	uri := sim(t)
	coll := connect(t, uri).Database("shop").Collection("orders")
	for i := range 3 {
		_, err := coll.InsertOne(context.Background(), bson.D{{Key: "_id", Value: i}})
		require.NoError(t, err)
	}
	dir := t.TempDir()
	p := startTool(t, "tail", "-uri", uri, "-db", "shop", "-coll", "orders", "-checkpoint", "file:"+dir, "-snapshot", "initial",
		"-fields", "operationType,documentKey._id")
	p.waitLines(t, 5)
	_, err := coll.DeleteOne(context.Background(), bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)
	p.waitLines(t, 6)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, exitOK, p.wait(t), p.stderr.String())
	assert.Equal(t, []string{
		`{"operationType":"snapshotStart"}`,
		`{"operationType":"snapshot","documentKey._id":0}`,
		`{"operationType":"snapshot","documentKey._id":1}`,
		`{"operationType":"snapshot","documentKey._id":2}`,
		`{"operationType":"snapshotEnd"}`,
		`{"operationType":"delete","documentKey._id":1}`,
	}, p.lines())

	bad := startTool(t, "tail", "-uri", uri, "-snapshot", "sometimes")
	assert.Equal(t, exitUsage, bad.wait(t))
}
