package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/checkpoint"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// progress reports on stderr, once a second: events and their rate,
// resumes, lag and the position's cluster time. On a terminal it rewrites
// one line; otherwise (-progress) it prints a line each time.
type progress struct {
	w        io.Writer
	terminal bool

	mu       sync.Mutex
	events   int
	resumes  int
	last     bson.Timestamp
	lastWall time.Time
	caughtUp bool
	snap     *checkpoint.SnapshotReport // a snapshot under way
}

// snapshot notes how a snapshot progresses (checkpoint.Config.OnSnapshot).
func (p *progress) snapshot(r checkpoint.SnapshotReport) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.Done {
		p.snap = nil
		return
	}
	p.snap = &r
}

func newProgress(w io.Writer, terminal bool) *progress { return &progress{w: w, terminal: terminal} }

// event counts an event the output printed.
func (p *progress) event(ev bson.Raw) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events++
	if t, i, ok := ev.Lookup("clusterTime").TimestampOK(); ok {
		p.last = bson.Timestamp{T: t, I: i}
	}
	if wt, ok := ev.Lookup("wallTime").TimeOK(); ok {
		p.lastWall = wt
	}
}

// OnResume counts resumes (changestream.HookResume).
func (p *progress) OnResume(changestream.ResumeEvent) {
	p.mu.Lock()
	p.resumes++
	p.mu.Unlock()
}

// OnBatch notes a reply that brought nothing: the stream is caught up
// (changestream.HookBatch).
func (p *progress) OnBatch(b changestream.BatchEvent) {
	p.mu.Lock()
	p.caughtUp = b.Events == 0
	p.mu.Unlock()
}

// start reports every second until the returned function is called.
func (p *progress) start() (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		prev := 0
		for {
			select {
			case <-done:
				if p.terminal {
					fmt.Fprintln(p.w)
				}
				return
			case <-t.C:
				prev = p.report(prev)
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

func (p *progress) report(prev int) int {
	p.mu.Lock()
	events, resumes, last, wall, caught := p.events, p.resumes, p.last, p.lastWall, p.caughtUp
	var snap string
	if p.snap != nil {
		snap = fmt.Sprintf("snapshot of %s: %d of about %d documents, ", p.snap.Namespace, p.snap.Read, p.snap.Estimated)
	}
	p.mu.Unlock()
	lag := "caught up"
	if !caught && !wall.IsZero() {
		lag = "lag " + time.Since(wall).Round(100*time.Millisecond).String()
	}
	at := "-"
	if last.T != 0 {
		at = fmt.Sprintf("%s (%d,%d)", time.Unix(int64(last.T), 0).UTC().Format(time.RFC3339), last.T, last.I)
	}
	line := fmt.Sprintf("%s%d events, %d/s, %d resumes, %s, at %s", snap, events, events-prev, resumes, lag, at)
	if p.terminal {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
	return events
}
