// Package testclient holds the client settings the project's tests and
// examples use against the simulator or MONGODB_URI, and why.
package testclient

import (
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Heartbeat is the test clients' heartbeat, the driver's shortest. It
// bounds two races of the driver (v2.10.0) in which a client learns that
// the server is selectable only when its monitor's awaitable hello ends,
// a heartbeat later (10 s by default, as long as the tests' waits):
//
//   - After a network error on an application connection, the driver
//     marks the server Unknown and cancels the monitor's hello with a send
//     that is dropped when the monitor's listening goroutine has not
//     started yet. Seen: a resume after a closed connection waiting 10 s
//     with the monitor's hello outstanding.
//   - A server selection that finds no suitable server subscribes to the
//     topology's updates by reading the current description and then
//     registering, under separate locks; an update published in between
//     never reaches it, and its request for an immediate check waits for
//     the monitor's hello. Seen: a fresh client's first operation failing
//     after 10 s with the server Unknown, while the driver's own log showed
//     the primary found 8 ms after the selection began.
//
// Both happen only on a loaded host, and both cost an application one
// heartbeat, once; README.md ("Guarantees") tells users.
const Heartbeat = 500 * time.Millisecond

// Options returns client options for uri with Heartbeat.
func Options(uri string) *options.ClientOptions {
	return options.Client().ApplyURI(uri).SetHeartbeatInterval(Heartbeat)
}
