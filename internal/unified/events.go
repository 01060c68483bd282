package unified

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
)

// recordedEvent is one command-monitoring or connection-pool event a client
// entity observed.
type recordedEvent struct {
	name         string // as the format names it: commandStartedEvent, poolClearedEvent, ...
	commandName  string
	databaseName string
	command      bson.Raw // started
	reply        bson.Raw // succeeded
	hasServiceID bool
	hasServerCID bool
	pool         *event.PoolEvent
}

// recorder keeps the events a client observes, filtered as the entity's
// observeEvents, ignoreCommandMonitoringEvents and observeSensitiveCommands
// say.
type recorder struct {
	observe   map[string]bool
	ignore    map[string]bool
	sensitive bool

	mu      sync.Mutex
	stopped bool
	events  []recordedEvent
	skipped map[int64]bool // request ids whose started event was left out
}

func newRecorder() *recorder {
	return &recorder{observe: map[string]bool{}, ignore: map[string]bool{}, skipped: map[int64]bool{}}
}

// securitySensitive are the commands the format hides from monitoring
// unless observeSensitiveCommands is set.
var securitySensitive = map[string]bool{
	"authenticate": true, "saslstart": true, "saslcontinue": true, "getnonce": true,
	"createuser": true, "updateuser": true, "copydbgetnonce": true, "copydbsaslstart": true, "copydb": true,
}

// skipCommand reports whether a command's events are left out. The
// configureFailPoint commands the runner sends for failPoint operations are
// its own, not the test's; hello with speculative authentication is
// sensitive, and the driver sends it with an empty (redacted) body.
func (r *recorder) skipCommand(name string, cmd bson.Raw) bool {
	if r.ignore[name] || name == "configureFailPoint" {
		return true
	}
	if r.sensitive {
		return false
	}
	lower := strings.ToLower(name)
	if securitySensitive[lower] {
		return true
	}
	if lower == "hello" || lower == "ismaster" {
		return len(cmd) <= 5
	}
	return false
}

func (r *recorder) add(ev recordedEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped || !r.observe[ev.name] {
		return
	}
	r.events = append(r.events, ev)
}

// wasSkipped reports whether the started event of a request was left out,
// so that its outcome is left out too.
func (r *recorder) wasSkipped(id int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	skip := r.skipped[id]
	delete(r.skipped, id)
	return skip
}

func (r *recorder) stop() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
}

func (r *recorder) snapshot() []recordedEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recordedEvent(nil), r.events...)
}

func (r *recorder) commandMonitor() *event.CommandMonitor {
	return &event.CommandMonitor{
		Started: func(_ context.Context, e *event.CommandStartedEvent) {
			if r.skipCommand(e.CommandName, e.Command) {
				r.mu.Lock()
				r.skipped[e.RequestID] = true
				r.mu.Unlock()
				return
			}
			r.add(recordedEvent{name: "commandStartedEvent", commandName: e.CommandName, databaseName: e.DatabaseName,
				command: append(bson.Raw(nil), e.Command...), hasServiceID: e.ServiceID != nil, hasServerCID: e.ServerConnectionID != nil})
		},
		Succeeded: func(_ context.Context, e *event.CommandSucceededEvent) {
			if r.wasSkipped(e.RequestID) {
				return
			}
			r.add(recordedEvent{name: "commandSucceededEvent", commandName: e.CommandName, databaseName: e.DatabaseName,
				reply: append(bson.Raw(nil), e.Reply...), hasServiceID: e.ServiceID != nil, hasServerCID: e.ServerConnectionID != nil})
		},
		Failed: func(_ context.Context, e *event.CommandFailedEvent) {
			if r.wasSkipped(e.RequestID) {
				return
			}
			r.add(recordedEvent{name: "commandFailedEvent", commandName: e.CommandName, databaseName: e.DatabaseName,
				hasServiceID: e.ServiceID != nil, hasServerCID: e.ServerConnectionID != nil})
		},
	}
}

// poolEventNames maps the driver's pool event types to the format's names.
var poolEventNames = map[string]string{
	event.ConnectionPoolCreated:     "poolCreatedEvent",
	event.ConnectionPoolReady:       "poolReadyEvent",
	event.ConnectionPoolCleared:     "poolClearedEvent",
	event.ConnectionPoolClosed:      "poolClosedEvent",
	event.ConnectionCreated:         "connectionCreatedEvent",
	event.ConnectionReady:           "connectionReadyEvent",
	event.ConnectionClosed:          "connectionClosedEvent",
	event.ConnectionCheckOutStarted: "connectionCheckOutStartedEvent",
	event.ConnectionCheckOutFailed:  "connectionCheckOutFailedEvent",
	event.ConnectionCheckedOut:      "connectionCheckedOutEvent",
	event.ConnectionCheckedIn:       "connectionCheckedInEvent",
}

func (r *recorder) poolMonitor() *event.PoolMonitor {
	return &event.PoolMonitor{Event: func(e *event.PoolEvent) {
		if name, ok := poolEventNames[e.Type]; ok {
			cp := *e
			r.add(recordedEvent{name: name, pool: &cp, hasServiceID: e.ServiceID != nil})
		}
	}}
}

// checkExpectedEvents compares one expectEvents entry with what the client
// recorded: the same events in the same order, or, with ignoreExtraEvents,
// the expected ones first and anything after them.
func checkExpectedEvents(m *matcher, em *entityMap, spec bson.Raw) error {
	a := newArgs(spec)
	c, err := entityAs[*clientEntity](em, a.str("client"))
	if err != nil {
		return err
	}
	kind := a.str("eventType")
	if kind == "" {
		kind = "command"
	}
	extra, _ := a.boolean("ignoreExtraEvents")
	want, _ := a.docs("events")
	if err := a.done(); err != nil {
		return err
	}
	var got []recordedEvent
	for _, ev := range c.rec.snapshot() {
		isCommand := strings.HasPrefix(ev.name, "command")
		if (kind == "command") == isCommand {
			got = append(got, ev)
		}
	}
	if kind != "command" && kind != "cmap" {
		return fmt.Errorf("eventType %q is not supported", kind)
	}
	if len(got) < len(want) || (!extra && len(got) != len(want)) {
		return fmt.Errorf("client %s: expected %d %s events, got %d:\n%s", c.id, len(want), kind, len(got), describeEvents(got))
	}
	for i, w := range want {
		if err := matchEvent(m, w, got[i]); err != nil {
			return fmt.Errorf("client %s: event %d: %w\nrecorded events:\n%s", c.id, i, err, describeEvents(got))
		}
	}
	return nil
}

// matchEvent matches one expected event ({commandStartedEvent: {...}}) with
// a recorded one.
func matchEvent(m *matcher, want bson.Raw, got recordedEvent) error {
	elems, err := want.Elements()
	if err != nil || len(elems) != 1 {
		return fmt.Errorf("an expected event is a document with one key: %s", want)
	}
	name := elems[0].Key()
	if name != got.name {
		return fmt.Errorf("expected a %s, got a %s (%s)", name, got.name, got.commandName)
	}
	body, _ := elems[0].Value().DocumentOK()
	a := newArgs(body)
	if v, ok := a.get("command"); ok {
		if err := m.matchRoot(v, docValue(got.command)); err != nil {
			return fmt.Errorf("%s %s command: %w", name, got.commandName, err)
		}
	}
	if v, ok := a.get("reply"); ok {
		if err := m.matchRoot(v, docValue(got.reply)); err != nil {
			return fmt.Errorf("%s %s reply: %w", name, got.commandName, err)
		}
	}
	if s := a.str("commandName"); s != "" && s != got.commandName {
		return fmt.Errorf("%s: expected commandName %q, got %q", name, s, got.commandName)
	}
	if s := a.str("databaseName"); s != "" && s != got.databaseName {
		return fmt.Errorf("%s %s: expected databaseName %q, got %q", name, got.commandName, s, got.databaseName)
	}
	if b, ok := a.boolean("hasServiceId"); ok && b != got.hasServiceID {
		return fmt.Errorf("%s: expected hasServiceId %v", name, b)
	}
	if b, ok := a.boolean("hasServerConnectionId"); ok && b != got.hasServerCID {
		return fmt.Errorf("%s: expected hasServerConnectionId %v", name, b)
	}
	if got.pool != nil {
		if s := a.str("reason"); s != "" && s != got.pool.Reason {
			return fmt.Errorf("%s: expected reason %q, got %q", name, s, got.pool.Reason)
		}
		if v, ok := a.boolean("interruptInUseConnections"); ok && v != got.pool.Interruption {
			return fmt.Errorf("%s: expected interruptInUseConnections %v", name, v)
		}
		a.get("connectionId")
		a.get("address")
	}
	if err := a.done(); err != nil {
		return errors.New(name + ": " + err.Error())
	}
	return nil
}

func docValue(d bson.Raw) bson.RawValue {
	if d == nil {
		return bson.RawValue{}
	}
	return bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: d}
}

func describeEvents(evs []recordedEvent) string {
	var b strings.Builder
	for i, e := range evs {
		fmt.Fprintf(&b, "  %d %s %s", i, e.name, e.commandName)
		if e.command != nil {
			fmt.Fprintf(&b, " on %s: %s", e.databaseName, e.command)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
