// Package mongosim is an in-process simulator of a MongoDB replica-set
// primary, for tests. The unmodified v2 Go driver talks to it over loopback
// as it would to a one-member replica set: wire protocol (OP_QUERY handshake,
// OP_MSG), a small document store, an oplog, change streams with resume
// tokens shaped like the real server's, and fail points.
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
// The simulator aims to answer as a real server (8.0) does; where the two
// differ it is a bug in the simulator.
package mongosim
