package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestDemo runs the demonstration: a standby takes over and the copy
// matches the source; nothing outlives it.
func TestDemo(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out bytes.Buffer
	err := demo(context.Background(), &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mirror-b took the lease over", "the copy matches the source (5 orders)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the output lacks %q", want)
		}
	}
}
