// Package mongosim is an in-process simulator of a MongoDB replica set,
// for tests. The unmodified v2 Go driver talks to it over loopback as it
// would to a real one: wire protocol (OP_QUERY handshake, OP_MSG, the
// streaming hello), a small document store, an oplog, change streams with
// resume tokens shaped like the real server's, and fail points. A [Server]
// on its own is the primary of a one-member set; [NewReplicaSet] runs
// several members.
//
// With [WithStandalone] it answers as a standalone mongod instead, for the
// tests that need one: no replica set in hello, no cluster time, and
// $changeStream refused with the server's own error.
//
// Start one per test with [NewServer] (or [StartTB], which also registers
// cleanup), connect with [Server.URI], and stop it with [Server.Close],
// which returns only after every goroutine the server started has ended.
//
// Faults can be injected the way the specification tests do
// (the configureFailPoint command) or from Go where no wire client can reach:
// [Server.CloseClientConnections], [Server.KillAllCursors] and
// [Server.TruncateOplog].
//
// [NewReplicaSet] starts a replica set of one, three or five members in one
// process, each a Server on its own port with its own data and oplog:
// replication with a settable lag, a majority commit point that bounds
// every change stream, write concern, elections, step-down, killed and
// restarted members, rollback, awaitable hello and retryable-write
// records. Not modelled: arbiters, priorities, tags and hidden members;
// chained replication; catch-up takeover; the ROLLBACK and RECOVERING
// states (a rolling-back member goes straight back to SECONDARY, having
// copied the primary's data and oplog, which ends where the server's
// rollback to the common point and re-application ends). A read with
// readConcern majority (or snapshot, or linearizable) on a member of a
// larger set waits until everything the member has applied is majority
// committed, then reads its data without letting go of the member's lock
// between the two, so that no write applied in between is read; if that
// moment does not come within a second the read is refused, since the
// simulator keeps no older snapshot to read instead.
//
// The simulator aims to answer as a real server (8.0) does; where the two
// differ it is a bug in the simulator.
package mongosim
