package mongosim_test

import (
	"encoding/binary"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// TestLargeClaimedLengthsCostNothing: headers that claim the largest
// message allowed (48 MB) but send only a few bytes must not make the
// server allocate what they claim. 100 such connections would otherwise
// pin 4.8 GB; the heap must grow by far less. Not parallel, so that no
// other test's allocations blur the measurement.
func TestLargeClaimedLengthsCostNothing(t *testing.T) {
	s := mongosim.StartTB(t)
	c := rbClient(t, s, "hardening")
	rbPing(t, c)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	const conns = 100
	for i := 0; i < conns; i++ {
		nc := rbDial(t, s)
		var hdr [16]byte
		binary.LittleEndian.PutUint32(hdr[:], 48_000_000)
		binary.LittleEndian.PutUint32(hdr[12:], uint32(wiremessage.OpMsg))
		_, err := nc.Write(hdr[:])
		require.NoError(t, err)
	}
	// Give the server's readers time to reach their stall; the bound
	// below holds however far they got.
	rbPing(t, c)
	time.Sleep(100 * time.Millisecond)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapInuse) - int64(before.HeapInuse)
	assert.Less(t, grown, int64(200<<20), "heap grew by %d MB for %d stalled 48 MB claims", grown>>20, conns)
	rbPing(t, c)
}

// TestSlowClientIsDropped: a client that starts a message and stalls is
// disconnected once the message timeout passes; one that idles between
// messages is not.
func TestSlowClientIsDropped(t *testing.T) {
	t.Parallel()
	s := mongosim.StartTB(t, mongosim.WithMessageTimeout(100*time.Millisecond))

	stalled := rbDial(t, s)
	_, err := stalled.Write([]byte{0x20}) // one byte of a header
	require.NoError(t, err)
	require.NoError(t, stalled.SetReadDeadline(time.Now().Add(rbTimeout)))
	_, err = io.ReadAll(stalled)
	require.NoError(t, err, "the server closed the connection (EOF) before our deadline")

	idle := rbDial(t, s)
	time.Sleep(300 * time.Millisecond)
	reply, err := rbRoundTrip(t, idle, rbOpMsg(1, 0, rbDoc(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})))
	require.NoError(t, err, "idle time between messages is not limited")
	assert.Equal(t, 1.0, reply.body.Lookup("ok").Double())
}

// TestWildcardAddress: listening on every interface advertises a loopback
// address a client can connect to, and the server says it is not
// loopback-only.
func TestWildcardAddress(t *testing.T) {
	t.Parallel()
	s, err := mongosim.NewServer(mongosim.WithAddr("0.0.0.0:0"))
	require.NoError(t, err)
	defer s.Close()
	assert.True(t, strings.HasPrefix(s.Addr(), "127.0.0.1:"), s.Addr())
	assert.False(t, s.IsLoopback())
	c := rbClient(t, s, "wildcard")
	rbPing(t, c)

	local := mongosim.StartTB(t)
	assert.True(t, local.IsLoopback())
}

func TestMessageTimeoutMustBePositive(t *testing.T) {
	t.Parallel()
	_, err := mongosim.NewServer(mongosim.WithMessageTimeout(0))
	assert.ErrorContains(t, err, "message timeout must be positive")
}
