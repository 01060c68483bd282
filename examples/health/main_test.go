package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestDemo: the probes answer as the consumer goes from caught up to
// stuck on a stalled handler, back to caught up, and stopped; nothing
// outlives the demonstration.
func TestDemo(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out bytes.Buffer
	require.NoError(t, demo(context.Background(), &out))
	t.Log(out.String())
	assert.Equal(t, `before any write: state caught-up, /livez 200, /readyz 200
the handler stalls: state stuck, /livez 503, /readyz 503
released: state caught-up, /livez 200, /readyz 200
Run returned: state stopped, /livez 200, /readyz 503
`, out.String())
}
