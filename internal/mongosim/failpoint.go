package mongosim

import (
	"slices"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Fail points the simulator implements, configured with the
// configureFailPoint command on admin, as on a real server started with
// enableTestCommands.
const (
	failPointFailCommand              = "failCommand"
	failPointFailGetMoreAfterCheckout = "failGetMoreAfterCursorCheckout"
)

// failPoint is one configured fail point.
type failPoint struct {
	mode      string // "alwaysOn", "times", "skip"
	n         int64  // remaining times, or remaining skips
	commands  []string
	code      int32
	hasCode   bool
	labels    []string
	hasLabel  bool // errorLabels given (possibly empty): it replaces the server's own labels
	closeConn bool
	block     time.Duration
	appName   string
}

type failPoints struct {
	mu     sync.Mutex
	points map[string]*failPoint
}

func newFailPoints() *failPoints { return &failPoints{points: make(map[string]*failPoint)} }

// fire reports whether the point applies to this occurrence, counting it.
func (fp *failPoint) fire() bool {
	switch fp.mode {
	case "alwaysOn":
		return true
	case "times":
		if fp.n <= 0 {
			return false
		}
		fp.n--
		return true
	case "skip":
		if fp.n > 0 {
			fp.n--
			return false
		}
		return true
	}
	return false
}

// take reports whether the named fail point is set, applies to this
// occurrence (applies) and fires by its mode, counting the occurrence; it
// returns a copy of the point as it was, and removes a point whose times
// are used up.
func (f *failPoints) take(name string, applies func(*failPoint) bool) (failPoint, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fp := f.points[name]
	if fp == nil || !applies(fp) || !fp.fire() {
		return failPoint{}, false
	}
	if fp.mode == "times" && fp.n == 0 {
		delete(f.points, name)
	}
	return *fp, true
}

// beforeCommand applies failCommand to the command in cc: it may block,
// close the connection (errCloseConnection) or fail the command.
func (f *failPoints) beforeCommand(cc *cmdCtx) error {
	p, ok := f.take(failPointFailCommand, func(fp *failPoint) bool {
		return slices.Contains(fp.commands, cc.name) && (fp.appName == "" || fp.appName == cc.conn.getAppName())
	})
	if !ok {
		return nil
	}

	if p.block > 0 {
		t := time.NewTimer(p.block)
		select {
		case <-t.C:
		case <-cc.ctx.Done():
			t.Stop()
			return errCloseConnection
		}
	}
	if p.closeConn {
		return errCloseConnection
	}
	if p.hasCode {
		// failCommand adds no labels of its own: only those configured.
		return &CommandError{Code: p.code, Message: "Failing command via 'failCommand' failpoint", Labels: p.labels}
	}
	return nil
}

// afterCursorCheckout applies failGetMoreAfterCursorCheckout to a getMore on
// c. Like a real server, it adds ResumableChangeStreamError to a
// change-stream cursor's error when the code is one a stream may resume from.
func (f *failPoints) afterCursorCheckout(c *serverCursor) error {
	p, ok := f.take(failPointFailGetMoreAfterCheckout, func(*failPoint) bool { return true })
	if !ok {
		return nil
	}
	err := &CommandError{Code: p.code, Message: "Failing getMore via 'failGetMoreAfterCursorCheckout' failpoint"}
	if c.changeStream && isResumableChangeStreamCode(p.code) {
		err.Labels = []string{labelResumableChangeStreamError}
	}
	return err
}

func handleConfigureFailPoint(cc *cmdCtx) (bsoncore.Document, error) {
	if cc.db != "admin" {
		return nil, cmdErr(13, "configureFailPoint may only be run against the admin database.")
	}
	name, _, err := cc.stringArg("configureFailPoint")
	if err != nil {
		return nil, err
	}
	if name != failPointFailCommand && name != failPointFailGetMoreAfterCheckout {
		return nil, cmdErr(codeBadValue, "Cannot find failpoint %s", name)
	}
	fp, err := parseFailPoint(cc)
	if err != nil {
		return nil, err
	}
	cc.s.failPoints.mu.Lock()
	defer cc.s.failPoints.mu.Unlock()
	if fp == nil {
		delete(cc.s.failPoints.points, name)
	} else {
		cc.s.failPoints.points[name] = fp
	}
	var dst []byte
	idx, dst := bsoncore.AppendDocumentStart(dst)
	dst = bsoncore.AppendInt64Element(dst, "count", 0)
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst, nil
}

// parseFailPoint reads mode and data; it returns nil for mode "off".
func parseFailPoint(cc *cmdCtx) (*failPoint, error) {
	modeVal, ok := cc.field("mode")
	if !ok {
		return nil, cmdErr(codeBadValue, "Missing mode")
	}
	fp := &failPoint{}
	switch modeVal.Type {
	case bsoncore.TypeString:
		switch m := modeVal.StringValue(); m {
		case "off":
			return nil, nil
		case "alwaysOn":
			fp.mode = m
		default:
			return nil, cmdErr(codeBadValue, "unknown mode: %s", m)
		}
	case bsoncore.TypeEmbeddedDocument:
		md := modeVal.Document()
		if v, err := md.LookupErr("times"); err == nil {
			n, ok := numberAsInt64(v)
			if !ok || n < 0 {
				return nil, cmdErr(codeBadValue, "'times' option to 'mode' must be a non-negative integer")
			}
			fp.mode, fp.n = "times", n
		} else if v, err := md.LookupErr("skip"); err == nil {
			n, ok := numberAsInt64(v)
			if !ok || n < 0 {
				return nil, cmdErr(codeBadValue, "'skip' option to 'mode' must be a non-negative integer")
			}
			fp.mode, fp.n = "skip", n
		} else {
			return nil, cmdErr(codeBadValue, "mode must be 'alwaysOn', 'off', {times: n} or {skip: n}")
		}
	default:
		return nil, typeMismatch("configureFailPoint", "mode", modeVal.Type, "string or object")
	}
	data, _, err := cc.docArg("data")
	if err != nil {
		return nil, err
	}
	return fp, fp.parseData(data)
}

func (fp *failPoint) parseData(data bsoncore.Document) error {
	if data == nil {
		return nil
	}
	elems, err := data.Elements()
	if err != nil {
		return cmdErr(codeFailedToParse, "invalid data: %v", err)
	}
	for _, e := range elems {
		v := e.Value()
		switch e.Key() {
		case "failCommands":
			arr, ok := v.ArrayOK()
			if !ok {
				return typeMismatch("data", "failCommands", v.Type, "array")
			}
			vals, _ := arr.Values()
			for _, cv := range vals {
				s, ok := cv.StringValueOK()
				if !ok {
					return cmdErr(codeTypeMismatch, "failCommands must contain only strings")
				}
				fp.commands = append(fp.commands, s)
			}
		case "errorCode":
			n, ok := numberAsInt64(v)
			if !ok {
				return typeMismatch("data", "errorCode", v.Type, "int")
			}
			fp.code, fp.hasCode = int32(n), true
		case "errorLabels":
			arr, ok := v.ArrayOK()
			if !ok {
				return typeMismatch("data", "errorLabels", v.Type, "array")
			}
			vals, _ := arr.Values()
			fp.hasLabel = true
			fp.labels = []string{}
			for _, lv := range vals {
				s, ok := lv.StringValueOK()
				if !ok {
					return cmdErr(codeTypeMismatch, "errorLabels must contain only strings")
				}
				fp.labels = append(fp.labels, s)
			}
		case "closeConnection":
			b, ok := v.BooleanOK()
			if !ok {
				return typeMismatch("data", "closeConnection", v.Type, "bool")
			}
			fp.closeConn = b
		case "blockConnection":
			b, ok := v.BooleanOK()
			if !ok {
				return typeMismatch("data", "blockConnection", v.Type, "bool")
			}
			if !b {
				fp.block = 0
			} else if fp.block == 0 {
				fp.block = -1 // set once blockTimeMS is read
			}
		case "blockTimeMS":
			n, ok := numberAsInt64(v)
			if !ok || n < 0 {
				return typeMismatch("data", "blockTimeMS", v.Type, "int")
			}
			if fp.block != 0 || blockRequested(data) {
				fp.block = time.Duration(n) * time.Millisecond
			}
		case "appName":
			s, ok := v.StringValueOK()
			if !ok {
				return typeMismatch("data", "appName", v.Type, "string")
			}
			fp.appName = s
		}
	}
	if fp.block < 0 {
		return cmdErr(codeBadValue, "blockConnection requires blockTimeMS")
	}
	return nil
}

func blockRequested(data bsoncore.Document) bool {
	v, err := data.LookupErr("blockConnection")
	if err != nil {
		return false
	}
	b, _ := v.BooleanOK()
	return b
}
