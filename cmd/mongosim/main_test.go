package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// runAsMainEnv makes the test binary behave as the mongosim program, so the
// signal tests exercise the real main (signal.NotifyContext, os.Exit) in a
// child process without building a separate binary.
const runAsMainEnv = "MONGOSIM_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of run and
// reads of the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pingURI connects the real driver to uri and pings the primary.
func pingURI(t *testing.T, uri string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := mongo.Connect(testclient.Options(uri))
	require.NoError(t, err)
	defer func() { assert.NoError(t, c.Disconnect(ctx)) }()
	require.NoError(t, c.Ping(ctx, nil))
}

// TestRunServesUntilCancelled runs the program on loopback and on every
// interface: either way the URI is one a client connects to, and only the
// second warns that the unauthenticated simulator is reachable from
// elsewhere.
func TestRunServesUntilCancelled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr string
		warn bool
	}{
		{"127.0.0.1:0", false},
		{"0.0.0.0:0", true},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pr, pw := io.Pipe()
			stderr := &syncBuffer{}
			done := make(chan int, 1)
			go func() {
				code := run(ctx, []string{"-addr", tc.addr, "-replset", "rsTest", "-oplog-max", "100", "-noop-interval", "1s"}, pw, stderr)
				_ = pw.Close()
				done <- code
			}()

			line, err := bufio.NewReader(pr).ReadString('\n')
			require.NoError(t, err, "stderr: %s", stderr.String())
			uri := strings.TrimSuffix(line, "\n")
			assert.Regexp(t, `^mongodb://127\.0\.0\.1:[1-9][0-9]*/\?replicaSet=rsTest$`, uri)
			go func() { _, _ = io.Copy(io.Discard, pr) }()

			pingURI(t, uri)

			cancel()
			select {
			case code := <-done:
				assert.Equal(t, 0, code, "stderr: %s", stderr.String())
			case <-time.After(30 * time.Second):
				t.Fatal("run did not return after its context was cancelled")
			}
			assert.Contains(t, stderr.String(), "listening on")
			if tc.warn {
				assert.Contains(t, stderr.String(), "warning: -addr 0.0.0.0:0 is not a loopback address and the simulator has no authentication")
			} else {
				assert.NotContains(t, stderr.String(), "warning")
			}
		})
	}
}

// TestRunReplicaSet runs a three-member set: the URI names every member
// and the set, and the driver finds its primary.
func TestRunReplicaSet(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	stderr := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"-members", "3", "-replset", "rs3"}, pw, stderr)
		_ = pw.Close()
		done <- code
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err, "stderr: %s", stderr.String())
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	uri := strings.TrimSuffix(line, "\n")
	assert.Regexp(t, `^mongodb://127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+/\?replicaSet=rs3$`, uri)
	pingURI(t, uri)
	cancel()
	assert.Equal(t, 0, <-done, "stderr: %s", stderr.String())
	assert.Contains(t, stderr.String(), "replica set \"rs3\" of 3 member(s), listening on")
}

// TestRunShardedCluster: -shards 2 -mongos 2 prints a URI listing both
// routers, without a replicaSet, and the driver finds a mongos there.
func TestRunShardedCluster(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	stderr := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"-shards", "2", "-mongos", "2"}, pw, stderr)
		_ = pw.Close()
		done <- code
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err, "stderr: %s", stderr.String())
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	uri := strings.TrimSuffix(line, "\n")
	assert.Regexp(t, `^mongodb://127\.0\.0\.1:\d+,127\.0\.0\.1:\d+/$`, uri)
	pingURI(t, uri)
	cancel()
	assert.Equal(t, 0, <-done, "stderr: %s", stderr.String())
	assert.Contains(t, stderr.String(), "sharded cluster of 2 shard(s) of 1 member(s), mongos listening on")
}

func TestRunVersion(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-version"}, &stdout, &stderr)
	assert.Equal(t, 0, code)
	assert.Equal(t, mongosim.ServerVersion+"\n", stdout.String())
	assert.Empty(t, stderr.String())
}

func TestRunBadFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"unknown flag", []string{"-nope"}, "flag provided but not defined: -nope"},
		{"oplog-max not a number", []string{"-oplog-max", "many"}, `invalid value "many" for flag -oplog-max`},
		{"negative oplog-max", []string{"-oplog-max", "-1"}, "-oplog-max must be 0 or more"},
		{"empty replset", []string{"-replset", ""}, "-replset must not be empty"},
		{"negative noop-interval", []string{"-noop-interval", "-1s"}, "-noop-interval must be 0 or more"},
		{"positional argument", []string{"serve"}, `unexpected argument "serve"`},
		{"missing value", []string{"-addr"}, "flag needs an argument: -addr"},
		{"two members", []string{"-members", "2"}, "-members must be 1, 3 or 5, got 2"},
		{"members with an address", []string{"-members", "3", "-addr", "127.0.0.1:0"}, "-addr does not apply with -members 3"},
		{"negative shards", []string{"-shards", "-1"}, "-shards must be 0 or more"},
		{"shards with an address", []string{"-shards", "2", "-addr", "127.0.0.1:0"}, "-addr and -replset do not apply with -shards"},
		{"no mongos", []string{"-shards", "2", "-mongos", "0"}, "-mongos must be at least 1"},
		{"mongos without shards", []string{"-mongos", "2"}, "-mongos needs -shards"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			assert.Equal(t, 2, code)
			assert.Empty(t, stdout.String(), "nothing but the URI may reach stdout")
			assert.Contains(t, stderr.String(), tc.want)
			assert.Contains(t, stderr.String(), "usage: mongosim")
		})
	}
}

func TestRunHelp(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	assert.Equal(t, 0, run(context.Background(), []string{"-h"}, &stdout, &stderr))
	assert.Empty(t, stdout.String())
	assert.Contains(t, stderr.String(), "-oplog-max")
}

func TestRunListenError(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-addr", "256.0.0.1:bad"}, &stdout, &stderr)
	assert.Equal(t, 1, code)
	assert.Empty(t, stdout.String())
	assert.Contains(t, stderr.String(), "listen")
}

// TestProgramExitsOnSignal runs the real main in a child process and stops
// it with each signal it promises to handle.
func TestProgramExitsOnSignal(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("POSIX signals cannot be sent to a process on Windows")
	}
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-addr", "127.0.0.1:0")
			cmd.Env = append(os.Environ(), runAsMainEnv+"=1")
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			stderr := &syncBuffer{}
			cmd.Stderr = stderr
			require.NoError(t, cmd.Start())
			waited := false
			defer func() {
				if !waited {
					_ = cmd.Process.Kill()
					_ = cmd.Wait()
				}
			}()

			r := bufio.NewReader(stdout)
			line, err := r.ReadString('\n')
			require.NoError(t, err, "stderr: %s", stderr.String())
			uri := strings.TrimSuffix(line, "\n")
			require.True(t, strings.HasPrefix(uri, "mongodb://127.0.0.1:"), "first line: %q", line)
			require.True(t, strings.HasSuffix(uri, "/?replicaSet=rs0"), "first line: %q", line)

			pingURI(t, uri)

			require.NoError(t, cmd.Process.Signal(sig))
			rest, _ := io.ReadAll(r) // ends when the child exits
			err = cmd.Wait()
			waited = true
			var exitErr *exec.ExitError
			if errors.As(err, &exitErr) {
				t.Fatalf("exit: %v; stderr: %s", err, stderr.String())
			}
			require.NoError(t, err)
			assert.Empty(t, string(rest), "only the URI may reach stdout")
			assert.Contains(t, stderr.String(), "shutting down")
		})
	}
}
