package keystring

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrFormat reports bytes that are not a KeyString this package can read.
var ErrFormat = errors.New("keystring: format error")

// Reader reads the top-level values of a KeyString one at a time.
type Reader struct {
	b   []byte
	off int
}

// NewReader returns a Reader over key, which must end with the end byte.
func NewReader(key []byte) *Reader { return &Reader{b: key} }

// AtEnd reports whether the next byte is the end byte (and only it is left).
func (r *Reader) AtEnd() bool { return r.off == len(r.b)-1 && r.b[r.off] == end }

// Done reports whether the end byte was the last thing left; use it after
// the last expected value to check nothing trails.
func (r *Reader) Done() error {
	if !r.AtEnd() {
		return fmt.Errorf("%w: %d unexpected trailing bytes", ErrFormat, len(r.b)-r.off)
	}
	return nil
}

// Offset returns how many bytes have been read.
func (r *Reader) Offset() int { return r.off }

// Timestamp reads a timestamp.
func (r *Reader) Timestamp() (t, i uint32, err error) {
	if err := r.expect(typeTimestamp, "timestamp"); err != nil {
		return 0, 0, err
	}
	p, err := r.take(8)
	if err != nil {
		return 0, 0, err
	}
	return binary.BigEndian.Uint32(p), binary.BigEndian.Uint32(p[4:]), nil
}

// Integer reads a number that must be an integer.
func (r *Reader) Integer() (int64, error) {
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	if c == typeNumericZero {
		return 0, nil
	}
	neg := c >= typeNumericNeg8ByteInt && c <= typeNumericNeg1ByteInt
	pos := c >= typeNumericPos1ByteInt && c <= typeNumericPos8ByteInt
	if !neg && !pos {
		return 0, fmt.Errorf("%w: type %d where an integer was expected", ErrFormat, c)
	}
	size := int(c) - typeNumericPos1ByteInt + 1
	if neg {
		size = typeNumericNeg1ByteInt - int(c) + 1
	}
	p, err := r.take(size)
	if err != nil {
		return 0, err
	}
	var v uint64
	for _, x := range p {
		if neg {
			x = ^x
		}
		v = v<<8 | uint64(x)
	}
	if v&1 != 0 {
		return 0, fmt.Errorf("%w: a number with a fraction where an integer was expected", ErrFormat)
	}
	n := int64(v >> 1)
	if neg {
		n = -n
	}
	return n, nil
}

// Bool reads a boolean.
func (r *Reader) Bool() (bool, error) {
	c, err := r.byte()
	if err != nil {
		return false, err
	}
	switch c {
	case typeBoolFalse:
		return false, nil
	case typeBoolTrue:
		return true, nil
	}
	return false, fmt.Errorf("%w: type %d where a boolean was expected", ErrFormat, c)
}

// Binary reads a binData value.
func (r *Reader) Binary() (sub byte, data []byte, err error) {
	if err := r.expect(typeBinData, "binData"); err != nil {
		return 0, nil, err
	}
	return r.binaryBody()
}

// Peek returns the type byte of the next value without reading it.
func (r *Reader) Peek() (byte, bool) {
	if r.off >= len(r.b) {
		return 0, false
	}
	return r.b[r.off], true
}

// IsBinary, IsObject and IsNumber report the kind of the next value.
func (r *Reader) IsBinary() bool { c, ok := r.Peek(); return ok && c == typeBinData }

// IsObject reports whether the next value is an object.
func (r *Reader) IsObject() bool { c, ok := r.Peek(); return ok && c == typeObject }

// IsNumber reports whether the next value is a number.
func (r *Reader) IsNumber() bool {
	c, ok := r.Peek()
	return ok && c >= typeNumeric && c <= typeNumeric+21
}

// Skip reads over one value of any kind this package writes and returns
// its bytes.
func (r *Reader) Skip() ([]byte, error) {
	start := r.off
	if err := r.skipValue(0); err != nil {
		return nil, err
	}
	return r.b[start:r.off], nil
}

const maxDepth = 200

func (r *Reader) skipValue(depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: nested too deeply", ErrFormat)
	}
	c, err := r.byte()
	if err != nil {
		return err
	}
	switch {
	case c == typeMinKey, c == typeMaxKey, c == typeNullish, c == typeUndefined,
		c == typeBoolFalse, c == typeBoolTrue, c == typeNumericZero:
		return nil
	case c == typeDate, c == typeTimestamp:
		_, err = r.take(8)
		return err
	case c == typeOID:
		_, err = r.take(12)
		return err
	case c == typeStringLike, c == typeCode:
		return r.skipStringLike()
	case c == typeRegEx:
		if err := r.skipCString(); err != nil {
			return err
		}
		return r.skipCString()
	case c == typeBinData:
		_, _, err = r.binaryBody()
		return err
	case c == typeObject:
		for {
			t, err := r.byte()
			if err != nil {
				return err
			}
			if t == 0 {
				return nil
			}
			if err := r.skipCString(); err != nil {
				return err
			}
			if err := r.skipValue(depth + 1); err != nil {
				return err
			}
		}
	case c == typeArray:
		for {
			t, ok := r.Peek()
			if !ok {
				return fmt.Errorf("%w: unterminated array", ErrFormat)
			}
			if t == 0 {
				r.off++
				return nil
			}
			if err := r.skipValue(depth + 1); err != nil {
				return err
			}
		}
	case (c >= typeNumericNeg8ByteInt && c <= typeNumericNeg1ByteInt) || (c >= typeNumericPos1ByteInt && c <= typeNumericPos8ByteInt):
		r.off--
		_, err := r.Integer()
		return err
	}
	return fmt.Errorf("%w: type %d is not one the simulator writes", ErrFormat, c)
}

func (r *Reader) binaryBody() (byte, []byte, error) {
	n, err := r.byte()
	if err != nil {
		return 0, nil, err
	}
	size := int(n)
	if n == 0xff {
		p, err := r.take(4)
		if err != nil {
			return 0, nil, err
		}
		size = int(binary.BigEndian.Uint32(p))
	}
	sub, err := r.byte()
	if err != nil {
		return 0, nil, err
	}
	data, err := r.take(size)
	return sub, data, err
}

func (r *Reader) skipStringLike() error {
	for {
		c, err := r.byte()
		if err != nil {
			return err
		}
		if c != 0 {
			continue
		}
		// A NUL followed by 0xFF is an escaped NUL inside the string.
		if t, ok := r.Peek(); ok && t == 0xff {
			r.off++
			continue
		}
		return nil
	}
}

func (r *Reader) skipCString() error {
	for {
		c, err := r.byte()
		if err != nil {
			return err
		}
		if c == 0 {
			return nil
		}
	}
}

func (r *Reader) expect(t byte, what string) error {
	c, err := r.byte()
	if err != nil {
		return err
	}
	if c != t {
		return fmt.Errorf("%w: type %d where a %s was expected", ErrFormat, c, what)
	}
	return nil
}

func (r *Reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, fmt.Errorf("%w: unexpected end", ErrFormat)
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *Reader) take(n int) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.off {
		return nil, fmt.Errorf("%w: unexpected end", ErrFormat)
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p, nil
}
