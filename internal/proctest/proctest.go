// Package proctest runs the project's programs as separate processes in
// tests: it builds them and starts cmd/mongosim, stopping everything at
// the test's cleanup.
package proctest

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// root is the module's directory, found from this file's path.
func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Build compiles the package at pkg (relative to the module root, such as
// "./cmd/mongosim") into the test's temporary directory and returns the
// binary's path. It skips the test under -short.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// StartSim starts the simulator binary bin with args (after a loopback
// address on a free port) and returns its connection string; it is
// stopped at the test's cleanup. With CHANGESTREAM_TEST_TOPOLOGY=sharded it starts a
// sharded cluster of 2 shards behind 2 mongos instead, the shards' no-op
// writer at 100 ms unless args set another (mongosim.StartDeploymentTB
// says why), and the connection string lists both mongos.
func StartSim(t testing.TB, bin string, args ...string) string {
	t.Helper()
	first := []string{"-addr", "127.0.0.1:0"}
	if os.Getenv("CHANGESTREAM_TEST_TOPOLOGY") == "sharded" {
		first = []string{"-shards", "2", "-mongos", "2", "-noop-interval", "100ms"}
	}
	return StartSimArgs(t, bin, append(first, args...)...)
}

// StartSimArgs starts the simulator binary bin with exactly args, whatever
// CHANGESTREAM_TEST_TOPOLOGY says, and returns its connection string; it
// is stopped at the test's cleanup.
func StartSimArgs(t testing.TB, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("mongosim printed no connection string: %v", err)
	}
	return strings.TrimSpace(line)
}

// WithOption returns uri with the option kv ("name=value") added to its
// query part.
func WithOption(uri, kv string) string {
	if strings.Contains(uri, "?") {
		return uri + "&" + kv
	}
	return uri + "?" + kv
}
