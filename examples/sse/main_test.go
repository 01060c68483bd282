package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestDemo: three real HTTP clients get the events through one hub, each
// as its filter says; nothing outlives the demonstration.
func TestDemo(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out bytes.Buffer
	if err := demo(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	t.Log(out.String())
	for _, want := range []string{
		"client 1 received 3 events: insert 0, insert 1, delete 0",
		"client 2 received 3 events: insert 0, insert 1, delete 0",
		"client 3 (deletes) received 1 events: delete 0",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the output lacks %q", want)
		}
	}
}
