package wire

import "encoding/binary"

// Equal reports whether a and b hold the same bytes, as bytes.Equal does, but fast in
// a wasm guest. Go's wasm port compares memory one byte per loop turn, with its
// registers kept in wasm globals: about 40 machine instructions a byte once wazero has
// compiled it, which made comparisons the guest repeats on every call (a remembered
// permission list, a result's columns, a declared lookup's request) a visible share of
// its time. This compares eight bytes per turn; each Uint64 is one 64-bit load there.
// Hot callers check the lengths first themselves: a call is dear in wasm, and most
// mismatches differ in length.
func Equal(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for len(a) >= 8 {
		if binary.LittleEndian.Uint64(a) != binary.LittleEndian.Uint64(b) {
			return false
		}
		a, b = a[8:], b[8:]
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
