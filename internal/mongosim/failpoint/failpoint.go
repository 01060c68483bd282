// Package failpoint holds the simulator's fail points, as a server
// started with enableTestCommands keeps them: set with the
// configureFailPoint command, counted as they fire. Members and routers
// each keep a Set of their own and apply its points where the server
// does (src/mongo/util/fail_point.h; failCommand in
// src/mongo/db/commands.cpp and its mongos twin in src/mongo/s/commands/).
package failpoint

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Names of the fail points the simulator implements.
const (
	FailCommand              = "failCommand"
	FailGetMoreAfterCheckout = "failGetMoreAfterCursorCheckout"
)

// Point is one configured fail point.
type Point struct {
	Mode      string // "alwaysOn", "times", "skip"
	N         int64  // remaining times, or remaining skips
	Commands  []string
	Code      int32
	HasCode   bool
	Labels    []string
	HasLabels bool // errorLabels given (possibly empty): they replace the server's own
	CloseConn bool
	Block     time.Duration
	AppName   string
}

// Error is a configureFailPoint refused, with the server's code.
type Error struct {
	Code int32
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Error codes of configureFailPoint's refusals.
const (
	codeBadValue      = 2
	codeFailedToParse = 9
	codeTypeMismatch  = 14
)

func errorf(code int32, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

func typeMismatch(cmd, key string, got bsoncore.Type, want string) *Error {
	return errorf(codeTypeMismatch, "BSON field '%s.%s' is the wrong type '%s', expected type '%s'", cmd, key, query.TypeAlias(got), want)
}

// fire reports whether the point applies to this occurrence, counting it.
func (p *Point) fire() bool {
	switch p.Mode {
	case "alwaysOn":
		return true
	case "times":
		if p.N <= 0 {
			return false
		}
		p.N--
		return true
	case "skip":
		if p.N > 0 {
			p.N--
			return false
		}
		return true
	}
	return false
}

// Set is the fail points of one server.
type Set struct {
	mu     sync.Mutex
	points map[string]*Point
}

// NewSet returns a Set with no point configured.
func NewSet() *Set { return &Set{points: make(map[string]*Point)} }

// Configure sets the named point, or removes it when p is nil (mode off).
func (s *Set) Configure(name string, p *Point) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p == nil {
		delete(s.points, name)
	} else {
		s.points[name] = p
	}
}

// Take reports whether the named fail point is set, applies to this
// occurrence (applies) and fires by its mode, counting the occurrence; it
// returns a copy of the point as it was, and removes a point whose times
// are used up.
func (s *Set) Take(name string, applies func(*Point) bool) (Point, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.points[name]
	if p == nil || !applies(p) || !p.fire() {
		return Point{}, false
	}
	if p.Mode == "times" && p.N == 0 {
		delete(s.points, name)
	}
	return *p, true
}

// Parse reads configureFailPoint's mode and data; it returns nil for mode
// "off". hasMode is false when the command has no mode.
func Parse(mode bsoncore.Value, hasMode bool, data bsoncore.Document) (*Point, error) {
	if !hasMode {
		return nil, errorf(codeBadValue, "Missing mode")
	}
	p := &Point{}
	switch mode.Type {
	case bsoncore.TypeString:
		switch m := mode.StringValue(); m {
		case "off":
			return nil, nil
		case "alwaysOn":
			p.Mode = m
		default:
			return nil, errorf(codeBadValue, "unknown mode: %s", m)
		}
	case bsoncore.TypeEmbeddedDocument:
		md := mode.Document()
		if v, err := md.LookupErr("times"); err == nil {
			n, ok := integer(v)
			if !ok || n < 0 {
				return nil, errorf(codeBadValue, "'times' option to 'mode' must be a non-negative integer")
			}
			p.Mode, p.N = "times", n
		} else if v, err := md.LookupErr("skip"); err == nil {
			n, ok := integer(v)
			if !ok || n < 0 {
				return nil, errorf(codeBadValue, "'skip' option to 'mode' must be a non-negative integer")
			}
			p.Mode, p.N = "skip", n
		} else {
			return nil, errorf(codeBadValue, "mode must be 'alwaysOn', 'off', {times: n} or {skip: n}")
		}
	default:
		return nil, typeMismatch("configureFailPoint", "mode", mode.Type, "string or object")
	}
	if err := p.parseData(data); err != nil {
		return nil, err
	}
	return p, nil
}

// integer reads an int32, an int64 or a double holding an integer.
func integer(v bsoncore.Value) (int64, bool) {
	switch v.Type {
	case bsoncore.TypeInt32, bsoncore.TypeInt64:
		return v.AsInt64OK()
	case bsoncore.TypeDouble:
		f, ok := v.DoubleOK()
		if !ok || f != math.Trunc(f) || f < math.MinInt64 || f > math.MaxInt64 {
			return 0, false
		}
		return int64(f), true
	}
	return 0, false
}

func (p *Point) parseData(data bsoncore.Document) error {
	if data == nil {
		return nil
	}
	elems, err := data.Elements()
	if err != nil {
		return errorf(codeFailedToParse, "invalid data: %v", err)
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
					return errorf(codeTypeMismatch, "failCommands must contain only strings")
				}
				p.Commands = append(p.Commands, s)
			}
		case "errorCode":
			n, ok := integer(v)
			if !ok {
				return typeMismatch("data", "errorCode", v.Type, "int")
			}
			p.Code, p.HasCode = int32(n), true
		case "errorLabels":
			arr, ok := v.ArrayOK()
			if !ok {
				return typeMismatch("data", "errorLabels", v.Type, "array")
			}
			vals, _ := arr.Values()
			p.HasLabels = true
			p.Labels = []string{}
			for _, lv := range vals {
				s, ok := lv.StringValueOK()
				if !ok {
					return errorf(codeTypeMismatch, "errorLabels must contain only strings")
				}
				p.Labels = append(p.Labels, s)
			}
		case "closeConnection":
			b, ok := v.BooleanOK()
			if !ok {
				return typeMismatch("data", "closeConnection", v.Type, "bool")
			}
			p.CloseConn = b
		case "blockConnection":
			b, ok := v.BooleanOK()
			if !ok {
				return typeMismatch("data", "blockConnection", v.Type, "bool")
			}
			if !b {
				p.Block = 0
			} else if p.Block == 0 {
				p.Block = -1 // set once blockTimeMS is read
			}
		case "blockTimeMS":
			n, ok := integer(v)
			if !ok || n < 0 {
				return typeMismatch("data", "blockTimeMS", v.Type, "int")
			}
			if p.Block != 0 || blockRequested(data) {
				p.Block = time.Duration(n) * time.Millisecond
			}
		case "appName":
			s, ok := v.StringValueOK()
			if !ok {
				return typeMismatch("data", "appName", v.Type, "string")
			}
			p.AppName = s
		}
	}
	if p.Block < 0 {
		return errorf(codeBadValue, "blockConnection requires blockTimeMS")
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
