package checkpoint

import (
	"context"
	"fmt"
	"sync"
)

// dispatcher runs the handler: inline with one worker, otherwise on a
// pool of workers that take any ready event. An event whose document key
// has an earlier event still queued or running waits behind it, and only
// behind it, so that one document's events keep their order while a slow
// one holds up no other document. An event without a key runs inline,
// after every event before it. How many events wait is bounded by the
// callers: the Checkpointer's in-flight bound for the stream, the batch
// size for a snapshot.
type dispatcher struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	pool    bool           // several workers
	running sync.WaitGroup // the workers
	pending sync.WaitGroup // jobs handed to workers and not finished

	mu    sync.Mutex
	wake  *sync.Cond // a job became ready, or the pool stops
	ready jobQueue   // jobs any worker may run, in stream order
	// queued has an entry for every key with a job ready or running:
	// the jobs of that key that wait for it, oldest first. Emptied
	// queues go to free, to be used again.
	queued  map[string]*jobQueue
	free    []*jobQueue
	stopped bool
	// guard, if set, wraps each job in the handler policy (runner.guard).
	guard func(job) job
}

// jobQueue is a FIFO of jobs that reuses its array once emptied.
type jobQueue struct {
	jobs []job
	head int
}

func (q *jobQueue) push(j job) { q.jobs = append(q.jobs, j) }

func (q *jobQueue) empty() bool { return q.head == len(q.jobs) }

func (q *jobQueue) pop() job {
	j := q.jobs[q.head]
	q.jobs[q.head] = job{}
	if q.head++; q.empty() {
		q.jobs, q.head = q.jobs[:0], 0
	}
	return j
}

func newDispatcher(ctx context.Context, cancel context.CancelCauseFunc, workers int) *dispatcher {
	d := &dispatcher{ctx: ctx, cancel: cancel}
	if workers <= 1 {
		return d
	}
	d.pool = true
	d.wake = sync.NewCond(&d.mu)
	d.queued = map[string]*jobQueue{}
	for range workers {
		d.running.Add(1)
		go d.work()
	}
	return d
}

// handlerError wraps an error from the handler.
func handlerError(err error) error {
	return fmt.Errorf("checkpoint: the handler failed: %w", err)
}

// dispatch hands j to the handler: it returns the handler's error when j
// runs inline, or the cause that stopped the workers.
func (d *dispatcher) dispatch(j job) error {
	if d.guard != nil {
		j = d.guard(j)
	}
	if !d.pool || j.key == nil {
		// One worker, or an event without a document key: after every
		// event before it, alone.
		if err := d.wait(); err != nil {
			return err
		}
		if err := j.run(d.ctx); err != nil {
			return handlerError(err)
		}
		j.ack.Done()
		return nil
	}
	if err := d.ctx.Err(); err != nil {
		return context.Cause(d.ctx)
	}
	d.pending.Add(1)
	d.mu.Lock()
	if q := d.queued[string(j.key)]; q != nil {
		q.push(j)
	} else {
		if n := len(d.free); n > 0 {
			q, d.free = d.free[n-1], d.free[:n-1]
		} else {
			q = &jobQueue{}
		}
		d.queued[string(j.key)] = q
		d.ready.push(j)
		d.wake.Signal()
	}
	d.mu.Unlock()
	return nil
}

func (d *dispatcher) work() {
	defer d.running.Done()
	d.mu.Lock()
	for {
		for d.ready.empty() && !d.stopped {
			d.wake.Wait()
		}
		if d.ready.empty() {
			d.mu.Unlock()
			return
		}
		j := d.ready.pop()
		d.mu.Unlock()

		if d.ctx.Err() == nil {
			if err := j.run(d.ctx); err != nil {
				d.cancel(handlerError(err))
			} else {
				j.ack.Done()
			}
		}

		d.mu.Lock()
		if q := d.queued[string(j.key)]; !q.empty() {
			// The key's next event is ready now; this worker runs it
			// unless another idle one takes it first.
			d.ready.push(q.pop())
			d.wake.Signal()
		} else {
			delete(d.queued, string(j.key))
			d.free = append(d.free, q)
		}
		d.pending.Done()
	}
}

// wait returns once every job handed to a worker has finished, with the
// cause if a handler failed or the run was stopped.
func (d *dispatcher) wait() error {
	d.pending.Wait()
	if d.ctx.Err() != nil {
		return context.Cause(d.ctx)
	}
	return nil
}

// stop ends the workers once every job handed to them has finished (or,
// with the run stopped, been skipped).
func (d *dispatcher) stop() {
	if !d.pool {
		return
	}
	d.mu.Lock()
	d.stopped = true
	d.wake.Broadcast()
	d.mu.Unlock()
	d.running.Wait()
	d.pool = false
}
