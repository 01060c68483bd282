package changestream_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// recorder implements every hook interface.
type recorder struct {
	mu      sync.Mutex
	resumes []changestream.ResumeEvent
	errs    []changestream.ErrorEvent
	batches []changestream.BatchEvent
}

func (r *recorder) OnResume(ev changestream.ResumeEvent) {
	r.mu.Lock()
	r.resumes = append(r.resumes, ev)
	r.mu.Unlock()
}

func (r *recorder) OnError(ev changestream.ErrorEvent) {
	r.mu.Lock()
	r.errs = append(r.errs, ev)
	r.mu.Unlock()
}

func (r *recorder) OnBatch(ev changestream.BatchEvent) {
	r.mu.Lock()
	r.batches = append(r.batches, ev)
	r.mu.Unlock()
}

// TestHooks: batches, resumes (with their cause) and errors (survivable
// or terminal) reach the hooks.
func TestHooks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.needSim(t)
	ctx := ctxTimeout(t, 10*time.Second)
	var r recorder
	cs := watch(t, e, nil, changestream.WithHooks(&r))
	e.insert(t, 1, 2)
	require.True(t, cs.Next(ctx))
	require.True(t, cs.Next(ctx))
	r.mu.Lock()
	require.NotEmpty(t, r.batches)
	assert.Equal(t, "aggregate", r.batches[0].Command)
	var events int
	for _, b := range r.batches {
		events += b.Events
	}
	assert.Equal(t, 2, events)
	r.mu.Unlock()

	e.killAllCursors()
	e.insert(t, 3)
	require.True(t, cs.Next(ctx), "%v", cs.Err())
	r.mu.Lock()
	require.Len(t, r.resumes, 1)
	assert.NoError(t, r.resumes[0].Err)
	assert.Error(t, r.resumes[0].Cause, "the error that made it resume")
	assert.Equal(t, "resumeAfter", r.resumes[0].Option)
	assert.Equal(t, cs.ResumeToken() != nil, true)
	r.mu.Unlock()

	// A non-resumable error ends the stream: one terminal error.
	e.failPoint(t, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "errorCode", Value: 2}})
	require.False(t, cs.Next(ctx))
	r.mu.Lock()
	require.NotEmpty(t, r.errs)
	last := r.errs[len(r.errs)-1]
	assert.True(t, last.Terminal)
	assert.Equal(t, cs.Err(), last.Err)
	r.mu.Unlock()
}

// TestLogger: a resume is logged at Info, the end of the stream at Error,
// and nothing per event.
func TestLogger(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.needSim(t)
	ctx := ctxTimeout(t, 10*time.Second)
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cs := watch(t, e, nil, changestream.WithLogger(logger))
	e.insert(t, 1, 2, 3)
	for i := 0; i < 3; i++ {
		require.True(t, cs.Next(ctx))
	}
	assert.Empty(t, buf.String(), "nothing per event")

	e.killAllCursors()
	e.insert(t, 4)
	require.True(t, cs.Next(ctx), "%v", cs.Err())
	assert.Contains(t, buf.String(), "level=INFO msg=\"changestream: resumed\"")
	assert.Contains(t, buf.String(), "option=resumeAfter")

	e.failPoint(t, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "errorCode", Value: 2}})
	require.False(t, cs.Next(ctx))
	assert.Contains(t, buf.String(), "level=ERROR msg=\"changestream: stream ended\"")
	assert.Equal(t, 2, strings.Count(buf.String(), "\n"), "one line each: %s", buf.String())
}

func TestHooksBadOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxTimeout(t, 10*time.Second)
	_, err := changestream.WatchCollection(ctx, e.coll, nil, changestream.WithHooks(42))
	assert.ErrorContains(t, err, "implements none of")
	_, err = changestream.WatchCollection(ctx, e.coll, nil, changestream.WithLogger(nil))
	assert.ErrorContains(t, err, "WithLogger: nil logger")
}

// syncBuffer is a bytes.Buffer safe for a logger and a test.
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
