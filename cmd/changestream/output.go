package main

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// output writes events, one per line, to a buffer that is flushed before
// every checkpoint save (and at once on a terminal), so that a saved
// position never covers a line a crash could lose.
type output struct {
	mu          sync.Mutex
	w           *bufio.Writer
	format      string   // relaxed, canonical or human
	fields      []string // dotted paths to print, all when empty
	interactive bool     // flush every line
	onEvent     func(bson.Raw)
}

// write prints one event.
func (o *output) write(_ context.Context, ev bson.Raw) error {
	line, err := o.render(ev)
	if err != nil {
		return err
	}
	if o.onEvent != nil {
		o.onEvent(ev)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, err := o.w.Write(line); err != nil {
		return err
	}
	if err := o.w.WriteByte('\n'); err != nil {
		return err
	}
	if o.interactive {
		return o.w.Flush()
	}
	return nil
}

// flush writes the buffered lines out.
func (o *output) flush(context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.w.Flush()
}

func (o *output) render(ev bson.Raw) ([]byte, error) {
	if len(o.fields) > 0 {
		var d bson.D
		for _, p := range o.fields {
			if v, err := ev.LookupErr(strings.Split(p, ".")...); err == nil {
				d = append(d, bson.E{Key: p, Value: v})
			}
		}
		var err error
		if ev, err = bson.Marshal(d); err != nil {
			return nil, err
		}
	}
	switch o.format {
	case "canonical":
		return bson.MarshalExtJSON(ev, true, false)
	case "human":
		if len(o.fields) == 0 {
			return human(ev), nil
		}
	}
	return bson.MarshalExtJSON(ev, false, false)
}

// human renders an event compactly: the wall time, the operation, the
// namespace, the document key and what changed.
func human(ev bson.Raw) []byte {
	var b strings.Builder
	if op, _ := ev.Lookup("operationType").StringValueOK(); op == "snapshotStart" || op == "snapshotEnd" {
		return []byte(op)
	}
	if wt, ok := ev.Lookup("wallTime").TimeOK(); ok {
		b.WriteString(wt.Local().Format("15:04:05.000 "))
	} else if t, _, ok := ev.Lookup("clusterTime").TimestampOK(); ok {
		b.WriteString(time.Unix(int64(t), 0).Local().Format("15:04:05.000 "))
	}
	op, _ := ev.Lookup("operationType").StringValueOK()
	b.WriteString(op)
	if db, ok := ev.Lookup("ns", "db").StringValueOK(); ok {
		b.WriteString(" " + db)
		if coll, ok := ev.Lookup("ns", "coll").StringValueOK(); ok {
			b.WriteString("." + coll)
		}
	}
	for _, part := range []struct{ label, field string }{
		{"", "documentKey"}, {"to ", "to"}, {"", "updateDescription"}, {"", "fullDocument"},
	} {
		if v, err := ev.LookupErr(part.field); err == nil {
			if js, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: v}}, false, false); err == nil {
				// {"v":X} -> X
				fmt.Fprintf(&b, " %s%s", part.label, js[5:len(js)-1])
			}
		}
	}
	return []byte(b.String())
}
