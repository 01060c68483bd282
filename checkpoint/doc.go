// Package checkpoint makes a change stream durable: it saves where a
// consumer got to, restarts it from there, and lets only one process
// consume at a time.
//
// The parts can be used alone or together:
//
//   - A [Store] saves a [Checkpoint] (a position and a fingerprint of the
//     stream it belongs to) under a key, and never moves it backwards.
//     [FileStore] keeps one file per key and survives a crash at any point
//     of a write; [MongoStore] keeps one document per key, written with
//     majority write concern. A store that is not there, or a saved value
//     that is not a position, is a [DamagedError], never "no checkpoint".
//   - A [Checkpointer] takes each event's position in stream order
//     ([Checkpointer.Mark]) and its acknowledgement in any order and from
//     any goroutine ([Ack.Done]), and commits the highest position below
//     which every event is acknowledged, so that a restart repeats at most
//     the events that were in flight and loses none.
//   - A [Lease] in a [MongoStore] lets one process consume a key; its epoch
//     fences every checkpoint save ([MongoStore.Fenced]), so that a process
//     that lost its lease (paused, partitioned) cannot overwrite the new
//     owner's checkpoint: its saves fail with [ErrLeaseLost].
//   - [Run] puts them together: acquire the lease (or wait for it as a
//     standby), load the checkpoint, open the stream after it, call the
//     handler, commit, renew, and commit and release on the way out, with
//     explicit policies for a position the server cannot resume from, for
//     invalidation, for transient errors, and for an event the handler
//     fails on (Config.HandlerRetries, [DeadLetter]).
//   - [Stats] counts what a Run did with failing events and says how it
//     is ([Stats.Health]: starting, standby, snapshot, its stream's state,
//     stopped, failed), for a readiness or liveness probe.
//
// Delivery is at least once: after a crash, even a SIGKILL, the events
// that were marked since the last save are delivered again, at most the
// Checkpointer's in-flight bound whatever the commit interval. A handler
// whose effects are idempotent, or that writes them with the lease's
// epoch, turns that into exactly once.
package checkpoint
