package mongosim

import (
	"math"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Typed access to command fields. Each reader returns present=false when the
// field is absent (or null, which a real server treats as absent for
// optional fields) and a TypeMismatch CommandError, worded as the server
// words it, when the field has the wrong type.

func (cc *cmdCtx) field(key string) (bsoncore.Value, bool) {
	v, err := cc.cmd.LookupErr(key)
	if err != nil || v.Type == bsoncore.TypeNull || v.Type == bsoncore.TypeUndefined {
		return bsoncore.Value{}, false
	}
	return v, true
}

func typeMismatch(cmd, key string, got bsoncore.Type, want string) *CommandError {
	return cmdErr(codeTypeMismatch, "BSON field '%s.%s' is the wrong type '%s', expected type '%s'",
		cmd, key, query.TypeAlias(got), want)
}

// stringArg reads a string field.
func (cc *cmdCtx) stringArg(key string) (string, bool, error) {
	v, ok := cc.field(key)
	if !ok {
		return "", false, nil
	}
	s, ok := v.StringValueOK()
	if !ok {
		return "", true, typeMismatch(cc.name, key, v.Type, "string")
	}
	return s, true, nil
}

// docArg reads an embedded-document field.
func (cc *cmdCtx) docArg(key string) (bsoncore.Document, bool, error) {
	v, ok := cc.field(key)
	if !ok {
		return nil, false, nil
	}
	d, ok := v.DocumentOK()
	if !ok {
		return nil, true, typeMismatch(cc.name, key, v.Type, "object")
	}
	return d, true, nil
}

// arrayArg reads an array field.
func (cc *cmdCtx) arrayArg(key string) (bsoncore.Array, bool, error) {
	v, ok := cc.field(key)
	if !ok {
		return nil, false, nil
	}
	a, ok := v.ArrayOK()
	if !ok {
		return nil, true, typeMismatch(cc.name, key, v.Type, "array")
	}
	return a, true, nil
}

// boolArg reads a boolean field; numbers are accepted as the server does.
func (cc *cmdCtx) boolArg(key string) (bool, bool, error) {
	v, ok := cc.field(key)
	if !ok {
		return false, false, nil
	}
	if b, ok := v.BooleanOK(); ok {
		return b, true, nil
	}
	if f, ok := v.AsFloat64OK(); ok {
		return f != 0, true, nil
	}
	return false, true, typeMismatch(cc.name, key, v.Type, "bool")
}

// int64Arg reads an integral number field (int, long, or a whole double).
func (cc *cmdCtx) int64Arg(key string) (int64, bool, error) {
	v, ok := cc.field(key)
	if !ok {
		return 0, false, nil
	}
	n, ok := numberAsInt64(v)
	if !ok {
		return 0, true, typeMismatch(cc.name, key, v.Type, "long")
	}
	return n, true, nil
}

// numberAsInt64 converts int32, int64 and whole, in-range doubles.
func numberAsInt64(v bsoncore.Value) (int64, bool) {
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
