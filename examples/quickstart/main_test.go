package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestQuickstart runs the program's logic and checks what it promises to
// show: every event once, in order, across a cut connection. It also
// checks that run leaves no goroutine behind (its simulator, client and
// reader are all stopped before it returns).
func TestQuickstart(t *testing.T) {
	before := goleak.IgnoreCurrent()
	ctx, cancel := context.WithTimeout(context.Background(), overallTimeout)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	text := out.String()
	if !strings.Contains(text, "6 events, none lost") {
		t.Errorf("the output does not say that nothing was lost")
	}
	for _, item := range []string{"apple", "pear", "plum", "kiwi", "lime", "mango"} {
		if strings.Count(text, `"item":"`+item+`"`) != 1 {
			t.Errorf("%s is not printed exactly once", item)
		}
	}
	if os.Getenv("MONGODB_URI") == "" && !strings.Contains(text, "the stream resumed by itself: a new aggregate with resumeAfter") {
		t.Errorf("on the simulator the cut must cause a resume with resumeAfter")
	}

	// The driver's goroutines notice a Disconnect asynchronously.
	deadline := time.Now().Add(20 * time.Second)
	for goleak.Find(before) != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	goleak.VerifyNone(t, before)
}
