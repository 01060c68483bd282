// Package query is the simulator's document algebra: comparison in the
// server's BSON order, query filters, projections, update operators with
// the change each one logs, aggregation stages and the expressions they
// evaluate. It knows nothing of connections, commands, the oplog or
// cursors (package mongosim), so each part can be read and tested alone.
// It fails with the server's errors (package mongoerr), and with
// NotImplemented, naming the simulator, for what it does not implement.
package query
