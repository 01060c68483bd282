package mongosim

import (
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Command is one command the server received, as recorded in its log.
type Command struct {
	// Name is the command name, e.g. "getMore".
	Name string
	// DB is the $db it ran on.
	DB string
	// Body is the whole command document (a copy).
	Body bson.Raw
	// ConnectionID is the connection it arrived on, as hello reports it.
	ConnectionID int64
	// AppName is the connection's appName, "" if none.
	AppName string
	// Time is when the server received it.
	Time time.Time
}

// commandLog keeps the newest commands: at most max, at least max/2.
type commandLog struct {
	mu   sync.Mutex
	max  int
	cmds []Command
}

func newCommandLog(max int) *commandLog { return &commandLog{max: max} }

func (l *commandLog) add(c *conn, db, name string, body bsoncore.Document) {
	if l.max == 0 {
		return
	}
	cmd := Command{Name: name, DB: db, Body: bson.Raw(cloneBytes(body)), ConnectionID: c.id, AppName: c.getAppName(), Time: time.Now()}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.cmds) >= l.max {
		// Drop the older half at once so that adding stays O(1) amortized.
		n := copy(l.cmds, l.cmds[len(l.cmds)/2+1:])
		clear(l.cmds[n:])
		l.cmds = l.cmds[:n]
	}
	l.cmds = append(l.cmds, cmd)
}

func (l *commandLog) snapshot() []Command {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Command(nil), l.cmds...)
}

func (l *commandLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cmds = nil
}
