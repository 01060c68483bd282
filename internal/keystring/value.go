package keystring

import (
	"encoding/binary"
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Value reads the next value of any kind this package writes and returns
// it as a Go BSON value: bson.D for an object, bson.A for an array, int64
// for every number (a KeyString keeps no number type but in its separate
// type bits), string, bson.ObjectID, bool, bson.DateTime, bson.Timestamp,
// bson.Binary, bson.Regex, bson.JavaScript, nil, bson.Undefined,
// bson.MinKey and bson.MaxKey.
func (r *Reader) Value() (any, error) { return r.value(0) }

func (r *Reader) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nested too deeply", ErrFormat)
	}
	c, ok := r.Peek()
	if !ok {
		return nil, fmt.Errorf("%w: unexpected end", ErrFormat)
	}
	if c >= typeNumeric && c <= typeNumeric+21 {
		return r.Integer()
	}
	r.off++
	switch c {
	case typeMinKey:
		return bson.MinKey{}, nil
	case typeMaxKey:
		return bson.MaxKey{}, nil
	case typeNullish:
		return nil, nil
	case typeUndefined:
		return bson.Undefined{}, nil
	case typeBoolFalse:
		return false, nil
	case typeBoolTrue:
		return true, nil
	case typeDate:
		p, err := r.take(8)
		if err != nil {
			return nil, err
		}
		return bson.DateTime(int64(binary.BigEndian.Uint64(p) ^ (1 << 63))), nil
	case typeTimestamp:
		p, err := r.take(8)
		if err != nil {
			return nil, err
		}
		return bson.Timestamp{T: binary.BigEndian.Uint32(p), I: binary.BigEndian.Uint32(p[4:])}, nil
	case typeOID:
		p, err := r.take(12)
		if err != nil {
			return nil, err
		}
		var oid bson.ObjectID
		copy(oid[:], p)
		return oid, nil
	case typeStringLike:
		return r.stringLike()
	case typeCode:
		s, err := r.stringLike()
		return bson.JavaScript(s), err
	case typeRegEx:
		pattern, err := r.cString()
		if err != nil {
			return nil, err
		}
		opts, err := r.cString()
		return bson.Regex{Pattern: pattern, Options: opts}, err
	case typeBinData:
		sub, data, err := r.binaryBody()
		if err != nil {
			return nil, err
		}
		return bson.Binary{Subtype: sub, Data: append([]byte(nil), data...)}, nil
	case typeObject:
		var d bson.D
		for {
			t, err := r.byte()
			if err != nil {
				return nil, err
			}
			if t == 0 {
				return d, nil
			}
			name, err := r.cString()
			if err != nil {
				return nil, err
			}
			v, err := r.value(depth + 1)
			if err != nil {
				return nil, err
			}
			d = append(d, bson.E{Key: name, Value: v})
		}
	case typeArray:
		a := bson.A{}
		for {
			t, ok := r.Peek()
			if !ok {
				return nil, fmt.Errorf("%w: unterminated array", ErrFormat)
			}
			if t == 0 {
				r.off++
				return a, nil
			}
			v, err := r.value(depth + 1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
	}
	return nil, fmt.Errorf("%w: type %d is not one this package reads", ErrFormat, c)
}

// stringLike reads a string body: NULs escaped as 0x00 0xFF, ended by a
// NUL.
func (r *Reader) stringLike() (string, error) {
	var b strings.Builder
	for {
		c, err := r.byte()
		if err != nil {
			return "", err
		}
		if c == 0 {
			if t, ok := r.Peek(); ok && t == 0xff {
				r.off++
				b.WriteByte(0)
				continue
			}
			return b.String(), nil
		}
		b.WriteByte(c)
	}
}

func (r *Reader) cString() (string, error) {
	start := r.off
	if err := r.skipCString(); err != nil {
		return "", err
	}
	return string(r.b[start : r.off-1]), nil
}
