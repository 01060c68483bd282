// Package keystring encodes BSON values in the MongoDB server's KeyString
// format, version 1, ascending order: the byte form the server compares
// index keys and resume tokens in. It knows nothing of connections or
// commands; the simulator builds its resume tokens with it, and the
// changestream package reads them back (DecodeToken).
//
// The layout, as MongoDB's key_string.h defines it and as MongoDB's own
// decoder (the npm package mongodb-resumetoken-decoder) reads it back:
//
//   - each value is a type byte (CType) followed by its body, so that
//     comparing the bytes orders values as the server orders BSON values
//     (MinKey < null < numbers < strings < objects < arrays < binData <
//     ObjectId < bool < date < timestamp < regex < ... < MaxKey);
//   - numbers of every BSON type share one encoding (1, int64(1) and 1.0 are
//     the same key); the type is kept aside in the type bits;
//   - an object is kObject, then per element a generic type byte, the field
//     name as a C string and the value, then a 0 byte; an array is kArray,
//     its values, then a 0 byte;
//   - a whole key ends with kEnd (4).
//
// Only what the simulator produces is implemented: numbers that are
// integers of magnitude below 2^53 in any numeric type, strings, objects,
// arrays, binData, ObjectId, bool, date, timestamp, null, undefined, regex,
// code, MinKey and MaxKey. Other values (fractional or huge doubles,
// Decimal128, DBPointer, code with scope, a negative zero) fail with
// ErrUnsupported rather than being encoded differently from the server.
package keystring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Type bytes (CType in key_string.h).
const (
	typeMinKey                  = 10
	typeUndefined               = 15
	typeNullish                 = 20
	typeNumeric                 = 30
	typeNumericNeg1ByteInt      = typeNumeric + 9
	typeNumericZero             = typeNumeric + 11
	typeNumericPos1ByteInt      = typeNumeric + 13
	typeStringLike              = 60
	typeObject                  = 70
	typeArray                   = 80
	typeBinData                 = 90
	typeOID                     = 100
	typeBoolFalse               = 110
	typeBoolTrue                = 111
	typeDate                    = 120
	typeTimestamp               = 130
	typeRegEx                   = 140
	typeCode                    = 160
	typeMaxKey                  = 240
	typeNumericNeg8ByteInt      = typeNumeric + 2
	typeNumericPos8ByteInt      = typeNumeric + 20
	end                    byte = 4
)

// Type bits of numbers (two bits each) and strings (one bit).
const (
	numInt    = 0
	numDouble = 1
	numLong   = 2
)

// maxExactInteger bounds the doubles this package encodes: beyond 2^53 a
// double's KeyString form takes a path the simulator does not implement.
const maxExactInteger = 1 << 53

// ErrUnsupported reports a value this package does not encode.
var ErrUnsupported = errors.New("keystring: value not supported by the simulator's KeyString encoder")

// Builder appends values to a KeyString. The zero value is ready to use;
// Grow avoids reallocations when the size is known.
type Builder struct {
	buf  []byte
	bits typeBits
}

// Grow makes room for n more bytes.
func (b *Builder) Grow(n int) { b.buf = slices.Grow(b.buf, n) }

// AppendInt64 appends an int64 value.
func (b *Builder) AppendInt64(n int64) error {
	if n == math.MinInt64 {
		return fmt.Errorf("%w: the int64 minimum", ErrUnsupported)
	}
	b.bits.appendNumber(numLong)
	b.appendInteger(n)
	return nil
}

// AppendObjectID appends an ObjectId.
func (b *Builder) AppendObjectID(oid [12]byte) {
	b.buf = append(b.buf, typeOID)
	b.buf = append(b.buf, oid[:]...)
}

// StartObject begins an object whose fields follow (AppendField), closed
// by EndObject.
func (b *Builder) StartObject() { b.buf = append(b.buf, typeObject) }

// EndObject closes the object StartObject began.
func (b *Builder) EndObject() { b.buf = append(b.buf, 0) }

// StartField begins a field of an open object whose value the caller
// appends next (StartObject for a document).
func (b *Builder) StartField(name string, t bsoncore.Type) {
	b.buf = append(b.buf, genericType(t))
	b.buf = append(append(b.buf, name...), 0)
}

// AppendStringField appends a string field of an open object.
func (b *Builder) AppendStringField(name, s string) {
	b.buf = append(b.buf, typeStringLike)
	b.buf = append(append(b.buf, name...), 0)
	b.bits.append(0)
	b.buf = append(b.buf, typeStringLike)
	b.appendStringLike(s)
}

// AppendField appends one field of an open object.
func (b *Builder) AppendField(name string, v bsoncore.Value) error {
	t := genericType(v.Type)
	if t == 0 {
		return fmt.Errorf("%w: BSON type %s in field %q", ErrUnsupported, v.Type, name)
	}
	b.buf = append(b.buf, t)
	b.buf = append(append(b.buf, name...), 0)
	return b.AppendValue(v)
}

// AppendTimestamp appends a BSON timestamp.
func (b *Builder) AppendTimestamp(t, i uint32) {
	b.buf = append(b.buf, typeTimestamp)
	b.buf = binary.BigEndian.AppendUint32(b.buf, t)
	b.buf = binary.BigEndian.AppendUint32(b.buf, i)
}

// AppendInt appends an int32 value (the type the server's appendNumber
// gives a small integer).
func (b *Builder) AppendInt(n int32) {
	b.bits.appendNumber(numInt)
	b.appendInteger(int64(n))
}

// AppendBool appends a boolean.
func (b *Builder) AppendBool(v bool) {
	if v {
		b.buf = append(b.buf, typeBoolTrue)
	} else {
		b.buf = append(b.buf, typeBoolFalse)
	}
}

// AppendUUID appends a binData of subtype 4.
func (b *Builder) AppendUUID(u [16]byte) {
	b.appendBinary(4, u[:])
}

// AppendValue appends any supported BSON value.
func (b *Builder) AppendValue(v bsoncore.Value) error {
	if t := genericType(v.Type); t == 0 {
		return fmt.Errorf("%w: BSON type %s", ErrUnsupported, v.Type)
	}
	switch v.Type {
	case bsoncore.TypeMinKey:
		b.buf = append(b.buf, typeMinKey)
	case bsoncore.TypeMaxKey:
		b.buf = append(b.buf, typeMaxKey)
	case bsoncore.TypeNull:
		b.buf = append(b.buf, typeNullish)
	case bsoncore.TypeUndefined:
		b.buf = append(b.buf, typeUndefined)
	case bsoncore.TypeBoolean:
		x, ok := v.BooleanOK()
		if !ok {
			return errMalformed(v)
		}
		b.AppendBool(x)
	case bsoncore.TypeInt32:
		n, ok := v.Int32OK()
		if !ok {
			return errMalformed(v)
		}
		b.AppendInt(n)
	case bsoncore.TypeInt64:
		n, ok := v.Int64OK()
		if !ok {
			return errMalformed(v)
		}
		return b.AppendInt64(n)
	case bsoncore.TypeDouble:
		f, ok := v.DoubleOK()
		if !ok {
			return errMalformed(v)
		}
		if f != math.Trunc(f) || math.Abs(f) >= maxExactInteger || f == 0 {
			// Zero is left out too: its type bits also record its sign,
			// in a form this package does not reproduce.
			return fmt.Errorf("%w: the double %v (only non-zero integers below 2^53)", ErrUnsupported, f)
		}
		b.bits.appendNumber(numDouble)
		b.appendInteger(int64(f))
	case bsoncore.TypeString:
		s, ok := v.StringValueOK()
		if !ok {
			return errMalformed(v)
		}
		b.bits.append(0)
		b.buf = append(b.buf, typeStringLike)
		b.appendStringLike(s)
	case bsoncore.TypeJavaScript:
		s, ok := v.JavaScriptOK()
		if !ok {
			return errMalformed(v)
		}
		b.buf = append(b.buf, typeCode)
		b.appendStringLike(s)
	case bsoncore.TypeEmbeddedDocument:
		doc, ok := v.DocumentOK()
		if !ok {
			return errMalformed(v)
		}
		return b.AppendDocument(doc)
	case bsoncore.TypeArray:
		arr, ok := v.ArrayOK()
		if !ok {
			return errMalformed(v)
		}
		vals, err := arr.Values()
		if err != nil {
			return errMalformed(v)
		}
		b.buf = append(b.buf, typeArray)
		for _, ev := range vals {
			if err := b.AppendValue(ev); err != nil {
				return err
			}
		}
		b.buf = append(b.buf, 0)
	case bsoncore.TypeBinary:
		sub, data, ok := v.BinaryOK()
		if !ok {
			return errMalformed(v)
		}
		if sub == 2 {
			return fmt.Errorf("%w: binData of the old binary subtype 2", ErrUnsupported)
		}
		b.appendBinary(sub, data)
	case bsoncore.TypeObjectID:
		oid, ok := v.ObjectIDOK()
		if !ok {
			return errMalformed(v)
		}
		b.buf = append(b.buf, typeOID)
		b.buf = append(b.buf, oid[:]...)
	case bsoncore.TypeDateTime:
		ms, ok := v.DateTimeOK()
		if !ok {
			return errMalformed(v)
		}
		b.buf = append(b.buf, typeDate)
		b.buf = binary.BigEndian.AppendUint64(b.buf, uint64(ms)^(1<<63))
	case bsoncore.TypeTimestamp:
		t, i, ok := v.TimestampOK()
		if !ok {
			return errMalformed(v)
		}
		b.AppendTimestamp(t, i)
	case bsoncore.TypeRegex:
		pattern, options, ok := v.RegexOK()
		if !ok {
			return errMalformed(v)
		}
		b.buf = append(b.buf, typeRegEx)
		b.buf = append(append(b.buf, pattern...), 0)
		b.buf = append(append(b.buf, options...), 0)
	default:
		return fmt.Errorf("%w: BSON type %s", ErrUnsupported, v.Type)
	}
	return nil
}

// AppendDocument appends an embedded document.
func (b *Builder) AppendDocument(doc bsoncore.Document) error {
	elems, err := doc.Elements()
	if err != nil {
		return fmt.Errorf("keystring: malformed document: %w", err)
	}
	b.StartObject()
	for _, e := range elems {
		// (generic type, name, value): objects order by the kind of each
		// field's value before its name, as the server orders them.
		if err := b.AppendField(e.Key(), e.Value()); err != nil {
			return err
		}
	}
	b.EndObject()
	return nil
}

// Key returns the KeyString with its end byte, and the serialized type
// bits, nil when every bit is zero (the server then sends none). The key
// shares the builder's buffer: the builder must not be used afterwards
// except through Snapshot.
func (b *Builder) Key() (key, typeBits []byte, err error) {
	tb, err := b.bits.serialize()
	if err != nil {
		return nil, nil, err
	}
	return append(b.buf, end), tb, nil
}

// Snapshot returns a copy of the key so far, with its end byte, and leaves
// the builder usable.
func (b *Builder) Snapshot() []byte {
	out := make([]byte, len(b.buf)+1)
	copy(out, b.buf)
	out[len(b.buf)] = end
	return out
}

func (b *Builder) appendBinary(sub byte, data []byte) {
	b.buf = append(b.buf, typeBinData)
	if len(data) < 0xff {
		b.buf = append(b.buf, byte(len(data)))
	} else {
		b.buf = append(b.buf, 0xff)
		b.buf = binary.BigEndian.AppendUint32(b.buf, uint32(len(data)))
	}
	b.buf = append(b.buf, sub)
	b.buf = append(b.buf, data...)
}

// appendStringLike writes s with each NUL escaped as 0x00 0xFF, then a NUL.
func (b *Builder) appendStringLike(s string) {
	for i := 0; i < len(s); i++ {
		b.buf = append(b.buf, s[i])
		if s[i] == 0 {
			b.buf = append(b.buf, 0xff)
		}
	}
	b.buf = append(b.buf, 0)
}

// appendInteger writes n as the server writes an integer: a type byte that
// says the sign and how many bytes follow, then the magnitude shifted left
// by one (the low bit says whether a fraction follows), big-endian, with
// the bytes inverted for a negative number.
func (b *Builder) appendInteger(n int64) {
	if n == 0 {
		b.buf = append(b.buf, typeNumericZero)
		return
	}
	neg := n < 0
	mag := uint64(n)
	if neg {
		mag = uint64(-n)
	}
	v := mag << 1
	size := (64 - bits.LeadingZeros64(v) + 7) / 8
	if neg {
		b.buf = append(b.buf, byte(typeNumericNeg1ByteInt-(size-1)))
	} else {
		b.buf = append(b.buf, byte(typeNumericPos1ByteInt+(size-1)))
	}
	for i := size - 1; i >= 0; i-- {
		c := byte(v >> (8 * i))
		if neg {
			c = ^c
		}
		b.buf = append(b.buf, c)
	}
}

// genericType is the type byte written before a field name: one per kind
// of value, so every number shares one.
func genericType(t bsoncore.Type) byte {
	switch t {
	case bsoncore.TypeMinKey:
		return typeMinKey
	case bsoncore.TypeNull:
		return typeNullish
	case bsoncore.TypeUndefined:
		return typeUndefined
	case bsoncore.TypeInt32, bsoncore.TypeInt64, bsoncore.TypeDouble:
		return typeNumeric
	case bsoncore.TypeString:
		return typeStringLike
	case bsoncore.TypeEmbeddedDocument:
		return typeObject
	case bsoncore.TypeArray:
		return typeArray
	case bsoncore.TypeBinary:
		return typeBinData
	case bsoncore.TypeObjectID:
		return typeOID
	case bsoncore.TypeBoolean:
		return typeBoolFalse
	case bsoncore.TypeDateTime:
		return typeDate
	case bsoncore.TypeTimestamp:
		return typeTimestamp
	case bsoncore.TypeRegex:
		return typeRegEx
	case bsoncore.TypeJavaScript:
		return typeCode
	case bsoncore.TypeMaxKey:
		return typeMaxKey
	}
	return 0
}

func errMalformed(v bsoncore.Value) error {
	return fmt.Errorf("keystring: malformed BSON %s value", v.Type)
}

// typeBits records what the shared encodings lose: the numeric type of
// each number (2 bits) and string versus symbol (1 bit), packed from the low
// bit of each byte up.
type typeBits struct {
	// low holds the first 64 bits, so the common key (a few numbers and
	// strings) costs no allocation; more spill into high.
	low  uint64
	high []byte
	n    int // bits written
	any  bool
}

func (t *typeBits) append(bit byte) {
	if t.n >= 64 && (t.n-64)%8 == 0 {
		t.high = append(t.high, 0)
	}
	if bit != 0 {
		t.any = true
		if t.n < 64 {
			t.low |= 1 << t.n
		} else {
			t.high[(t.n-64)/8] |= 1 << ((t.n - 64) % 8)
		}
	}
	t.n++
}

func (t *typeBits) appendNumber(kind byte) {
	t.append(kind >> 1)
	t.append(kind & 1)
}

// serialize returns the type bits as the server stores them: nothing when
// every bit is zero; a single byte when the bits fit in one byte whose high
// bit is clear; otherwise a size byte (0x80 | length) and the data bytes.
func (t *typeBits) serialize() ([]byte, error) {
	if !t.any {
		return nil, nil
	}
	nbytes := (t.n + 7) / 8
	switch {
	case nbytes == 1 && t.low&0x80 == 0:
		return []byte{byte(t.low)}, nil
	case nbytes > maxShortTypeBits:
		return nil, fmt.Errorf("%w: more than %d bytes of type bits", ErrUnsupported, maxShortTypeBits)
	}
	out := make([]byte, 1, 1+nbytes)
	out[0] = 0x80 | byte(nbytes)
	for i := 0; i < min(nbytes, 8); i++ {
		out = append(out, byte(t.low>>(8*i)))
	}
	return append(out, t.high...), nil
}

// maxShortTypeBits is the most data bytes a size byte can announce.
const maxShortTypeBits = 127
