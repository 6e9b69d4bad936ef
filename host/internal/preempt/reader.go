package preempt

import "fmt"

// reader decodes the wasm binary format. Errors are sticky: after the first one,
// every read returns zero values and err says what went wrong.
type reader struct {
	b   []byte
	err error
}

func (r *reader) done() bool { return len(r.b) == 0 || r.err != nil }

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.fail("unexpected end")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || n > len(r.b) {
		r.fail("length %d exceeds the %d bytes left", n, len(r.b))
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u32() uint32 {
	var v uint64
	for shift := uint(0); shift < 35; shift += 7 {
		c := r.byte()
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			if v > 0xffffffff {
				r.fail("u32 overflow")
			}
			return uint32(v)
		}
	}
	r.fail("u32 LEB128 too long")
	return 0
}

func (r *reader) s64() int64 {
	var v int64
	var shift uint
	for shift < 70 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v
		}
	}
	r.fail("s64 LEB128 too long")
	return 0
}

func (r *reader) name() []byte { return r.bytes(int(r.u32())) }

func (r *reader) limits() {
	switch flags := r.byte(); flags {
	case 0:
		r.u32()
	case 1:
		r.u32()
		r.u32()
	default:
		r.fail("limits flags %d", flags)
	}
}

func (r *reader) tableType() {
	r.byte()
	r.limits()
}

// blockType copies a block type: 0x40, a value type, or a signed type index.
func (r *reader) blockType(out []byte) []byte {
	if len(r.b) == 0 {
		r.fail("unexpected end in block type")
		return out
	}
	c := r.b[0]
	if c == 0x40 || (c >= 0x6f && c <= 0x7f) {
		r.b = r.b[1:]
		return append(out, c)
	}
	return appendS64(out, r.s64())
}

// memarg copies alignment and offset.
func (r *reader) memarg(out []byte) []byte {
	out = appendU32(out, r.u32())
	return appendU32(out, r.u32())
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func appendS64(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendS32(b []byte, v int32) []byte { return appendS64(b, int64(v)) }

func appendName(b, name []byte) []byte { return append(appendU32(b, uint32(len(name))), name...) }
