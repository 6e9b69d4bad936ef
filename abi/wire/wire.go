// Package wire is the byte encoding shared by the Keel host and its guests (ABI v1).
//
// Every message is a flat sequence of fields. A field is one tag byte, a little-endian
// uint32 length and that many bytes of value. Readers skip tags they do not know, which
// is how later ABI levels add fields without breaking older plugins. Lists are repeated
// fields with the same tag; key/value pairs are encoded by AppendPair. The format is
// deliberately simple so that a plugin in any language can speak it from ABI.md alone,
// and cheap enough that encoding a request costs far less than the call it rides on.
//
// The package has no dependencies beyond the standard library and must build for
// GOOS=wasip1 GOARCH=wasm, because guests link it.
package wire

import (
	"encoding/binary"
	"errors"
	"math"
)

// HeaderSize is the size of a field header: one tag byte and a uint32 length.
const HeaderSize = 5

// MaxMessage bounds any single message so that a corrupt length cannot make a reader
// allocate or walk gigabytes.
const MaxMessage = 64 << 20

// ErrMalformed is returned (wrapped) for every decoding failure.
var ErrMalformed = errors.New("wire: malformed message")

// AppendField appends one field to dst.
func AppendField(dst []byte, tag byte, val []byte) []byte {
	dst = append(dst, tag, 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(dst[len(dst)-4:], uint32(len(val)))
	return append(dst, val...)
}

// AppendString appends a string field without converting it to a byte slice first.
func AppendString(dst []byte, tag byte, s string) []byte {
	dst = append(dst, tag, 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(dst[len(dst)-4:], uint32(len(s)))
	return append(dst, s...)
}

// AppendUint appends an unsigned integer as an 8-byte little-endian field.
func AppendUint(dst []byte, tag byte, v uint64) []byte {
	dst = append(dst, tag, 8, 0, 0, 0)
	return binary.LittleEndian.AppendUint64(dst, v)
}

// AppendInt appends a signed integer as an 8-byte little-endian two's complement field.
func AppendInt(dst []byte, tag byte, v int64) []byte { return AppendUint(dst, tag, uint64(v)) }

// AppendFloat appends an IEEE-754 float64 as an 8-byte little-endian field.
func AppendFloat(dst []byte, tag byte, v float64) []byte {
	return AppendUint(dst, tag, math.Float64bits(v))
}

// AppendBool appends a one-byte field: 1 for true, 0 for false.
func AppendBool(dst []byte, tag byte, v bool) []byte {
	b := byte(0)
	if v {
		b = 1
	}
	return append(dst, tag, 1, 0, 0, 0, b)
}

// AppendPair appends a key/value field: uint32 key length, key bytes, value bytes.
func AppendPair(dst []byte, tag byte, k, v string) []byte {
	dst = append(dst, tag, 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(dst[len(dst)-4:], uint32(4+len(k)+len(v)))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(k)))
	dst = append(dst, k...)
	return append(dst, v...)
}

// BeginNested starts a field whose value is itself a message. It returns the offset
// that EndNested needs to fill in the length once the nested fields are appended.
func BeginNested(dst []byte, tag byte) ([]byte, int) {
	dst = append(dst, tag, 0, 0, 0, 0)
	return dst, len(dst)
}

// EndNested completes a field started by BeginNested.
func EndNested(dst []byte, mark int) []byte {
	binary.LittleEndian.PutUint32(dst[mark-4:mark], uint32(len(dst)-mark))
	return dst
}

// Reader walks the fields of one message. The zero value reads nothing.
type Reader struct {
	b   []byte
	err error
}

// NewReader returns a Reader over b. It does not copy b.
func NewReader(b []byte) Reader {
	if len(b) > MaxMessage {
		return Reader{err: oversize(len(b))}
	}
	return Reader{b: b}
}

// oversize is the error for a message of n bytes, over MaxMessage.
func oversize(n int) error {
	return malformed(itoa(n) + " bytes exceeds the " + itoa(MaxMessage) + " byte limit")
}

// Next returns the next field. It returns ok=false at the end of the message or on
// error; Err tells which.
//
// Next is small enough for the compiler to inline into each decoder's loop
// (TestReaderNextInlines): in a wasm guest a call costs far more than the few loads
// a field takes, and every decoder of the ABI runs through here. So a malformed field
// header only stops it, leaving r.b at that header, and Err describes the fault when
// asked; after an error r.b is empty.
func (r *Reader) Next() (tag byte, val []byte, ok bool) {
	b := r.b
	if len(b) < HeaderSize {
		return 0, nil, false
	}
	n := uint(b[1]) | uint(b[2])<<8 | uint(b[3])<<16 | uint(b[4])<<24
	if n > uint(len(b)-HeaderSize) {
		return 0, nil, false
	}
	r.b = b[HeaderSize+n:]
	return b[0], b[HeaderSize : HeaderSize+n], true
}

// Err reports the first decoding error, if any.
func (r *Reader) Err() error {
	if r.err == nil && len(r.b) > 0 {
		if err := headerFault(r.b); err != nil {
			r.err, r.b = err, nil
		}
	}
	return r.err
}

// headerFault describes what is wrong with the field header at the start of b, or
// returns nil when it is well-formed.
func headerFault(b []byte) error {
	if len(b) < HeaderSize {
		return malformed("truncated field header")
	}
	if n := binary.LittleEndian.Uint32(b[1:5]); uint64(n) > uint64(len(b)-HeaderSize) {
		return malformed("field " + itoa(b[0]) + " declares " + itoa(n) + " bytes, " + itoa(len(b)-HeaderSize) + " remain")
	}
	return nil
}

// Fail records a decoding error found by the caller (for example a bad integer field),
// so that message decoders can report through one path. A fault Next stopped at
// comes first; decoding stops either way.
func (r *Reader) Fail(err error) {
	if err == nil {
		return
	}
	if r.Err() == nil {
		r.err = err
	}
	r.b = nil
}

// Uint decodes an integer field written by AppendUint.
func Uint(val []byte) (uint64, error) {
	if len(val) != 8 {
		return 0, malformed("integer field has " + itoa(len(val)) + " bytes, want 8")
	}
	return binary.LittleEndian.Uint64(val), nil
}

// Int decodes a signed integer field written by AppendInt.
func Int(val []byte) (int64, error) {
	u, err := Uint(val)
	return int64(u), err
}

// Float decodes a float field written by AppendFloat.
func Float(val []byte) (float64, error) {
	u, err := Uint(val)
	return math.Float64frombits(u), err
}

// Bool decodes a field written by AppendBool.
func Bool(val []byte) (bool, error) {
	if len(val) != 1 || val[0] > 1 {
		return false, malformed("bool field must be one byte 0 or 1")
	}
	return val[0] == 1, nil
}

// Pair decodes a field written by AppendPair. The returned slices alias val.
func Pair(val []byte) (k, v []byte, err error) {
	if len(val) < 4 {
		return nil, nil, malformed("pair shorter than its key length")
	}
	n := binary.LittleEndian.Uint32(val)
	if uint64(n) > uint64(len(val)-4) {
		return nil, nil, malformed("pair key length " + itoa(n) + " exceeds the field")
	}
	return val[4 : 4+n], val[4+n:], nil
}
