package unified

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// driverWatch switches to the control mode: the same files, with the
// driver's own Watch as the change stream. A test that fails in both modes
// points at the simulator; one that fails only in the default mode points
// at the package.
var driverWatch = flag.Bool("driver-watch", false,
	"run the spec tests with the driver's own Watch instead of this package (also CHANGESTREAM_DRIVER_WATCH=1)")

// results collects the outcome of every spec test for the summary that
// TestMain prints once all tests have run.
var results = newTally()

// TestMain prints the spec summary and fails the run if any goroutine
// outlives the tests: every client, stream and simulator a test starts must
// be stopped by it.
func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if p, f, s := results.totals(); p+f+s > 0 {
		fmt.Println(results.summary())
	}
	if code == 0 {
		if err := waitForNoLeaks(20 * time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines outlived the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// waitForNoLeaks polls goleak until nothing unexpected is left: the
// driver's pool and monitor goroutines end asynchronously after Disconnect.
func waitForNoLeaks(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := goleak.Find()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestChangeStreamSpec runs every Unified Test Format file of the Change
// Streams specification found in CHANGESTREAM_SPEC_TESTS.
func TestChangeStreamSpec(t *testing.T) {
	dir, err := specDir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		msg := fmt.Sprintf("spec tests not found at %s (%v). Get them from https://github.com/mongodb/specifications "+
			"(source/change-streams/tests/unified/*.json) and point CHANGESTREAM_SPEC_TESTS at that directory; "+
			"their license (CC BY-NC-SA) keeps them out of this repository.", dir, err)
		// A line of its own that starts with "spec:", so that make spec,
		// which shows only those, says the files were missing instead of
		// printing nothing.
		fmt.Println("spec: NOT RUN: " + msg)
		t.Skip(msg)
	}
	cfg := config{
		dir:         dir,
		uri:         os.Getenv("MONGODB_URI"),
		driverWatch: *driverWatch || os.Getenv("CHANGESTREAM_DRIVER_WATCH") == "1",
		members:     1,
	}
	if m := os.Getenv("CHANGESTREAM_SPEC_MEMBERS"); m != "" {
		n, err := strconv.Atoi(m)
		if err != nil || (n != 1 && n != 3 && n != 5) {
			t.Fatalf("CHANGESTREAM_SPEC_MEMBERS=%q: want 1, 3 or 5", m)
		}
		cfg.members = n
	}
	switch topo := os.Getenv("CHANGESTREAM_SPEC_TOPOLOGY"); topo {
	case "", "replicaset":
	case "sharded":
		cfg.shards = 2
	default:
		t.Fatalf("CHANGESTREAM_SPEC_TOPOLOGY=%q: want replicaset or sharded", topo)
	}
	runSpecDir(t, cfg, results)
	t.Log("\n" + results.summary())
}
