package mongosim_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the run when any goroutine outlives the tests: every test
// closes its server (StartTB does it in Cleanup) and disconnects its
// clients, and Server.Close promises that nothing it started survives.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := waitForNoLeaks(leakWait); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines outlived the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// leakWait bounds how long goroutines may take to end after the server
// closes and the clients disconnect. The driver's pool and monitor
// goroutines notice a Disconnect asynchronously, so goleak's own retry
// budget (well under a second) is too tight on a loaded machine; a leak is
// a goroutine that never ends, so a long bound costs nothing when all is
// well.
const leakWait = 20 * time.Second

// waitForNoLeaks polls goleak until no unexpected goroutine is left or
// timeout passes, and then returns goleak's report.
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
