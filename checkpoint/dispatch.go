package checkpoint

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
)

// dispatcher runs the handler: inline with one worker, otherwise on
// workers chosen by document key, so that one document's events keep
// their order.
type dispatcher struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	workers []chan job
	running sync.WaitGroup // the workers
	pending sync.WaitGroup // jobs handed to workers and not finished
}

// workerQueue is how many jobs wait for each worker.
const workerQueue = 64

func newDispatcher(ctx context.Context, cancel context.CancelCauseFunc, workers int) *dispatcher {
	d := &dispatcher{ctx: ctx, cancel: cancel}
	if workers <= 1 {
		return d
	}
	d.workers = make([]chan job, workers)
	for i := range d.workers {
		ch := make(chan job, workerQueue)
		d.workers[i] = ch
		d.running.Add(1)
		go d.work(ch)
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
	if d.workers == nil || j.key == nil {
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
	h := fnv.New64a()
	_, _ = h.Write(j.key)
	ch := d.workers[h.Sum64()%uint64(len(d.workers))]
	d.pending.Add(1)
	select {
	case ch <- j:
		return nil
	case <-d.ctx.Done():
		d.pending.Done()
		return context.Cause(d.ctx)
	}
}

func (d *dispatcher) work(ch chan job) {
	defer d.running.Done()
	for j := range ch {
		if d.ctx.Err() == nil {
			if err := j.run(d.ctx); err != nil {
				d.cancel(handlerError(err))
			} else {
				j.ack.Done()
			}
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

// stop ends the workers once their queues are empty.
func (d *dispatcher) stop() {
	for _, ch := range d.workers {
		close(ch)
	}
	d.running.Wait()
	d.workers = nil
}
