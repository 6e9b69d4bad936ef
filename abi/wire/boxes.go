package wire

import (
	"encoding/binary"
	"math"
	"time"
	"unsafe"
)

// boxes puts the values of one aliased result into interfaces without an allocation
// per value. Go boxes a string, an int64 of 256 or more, a float64 or a time.Time by
// copying it to a new heap object; here the values are appended to arrays per type
// (see put), and each interface points at its element. An interface's data word may
// point into a larger object (the collector keeps the whole array alive while any of
// its values is referenced), and the elements are never written again, which is all
// the language's own boxing promises. When an array is full a new one is started, so
// elements never move.
type boxes struct {
	hint  int // values left in the result: the size of an array started now
	strs  []string
	ints  []int64
	flts  []float64
	times []time.Time
}

// eface is the layout of an empty interface: type word, then data word.
type eface struct {
	typ  unsafe.Pointer
	data unsafe.Pointer
}

// typeWord returns the type word of an interface holding a T.
func typeWord[T any]() unsafe.Pointer {
	var zero T
	var v any = zero
	return (*eface)(unsafe.Pointer(&v)).typ
}

var (
	stringType = typeWord[string]()
	int64Type  = typeWord[int64]()
	floatType  = typeWord[float64]()
	timeType   = typeWord[time.Time]()
)

// boxAt returns an interface of type typ whose data word is p.
func boxAt(typ, p unsafe.Pointer) (v any) {
	e := (*eface)(unsafe.Pointer(&v))
	e.typ, e.data = typ, p
	return v
}

// put appends x to *arr and returns its element's address. When the array is full
// it starts another, twice the size of the last (eight at first), but never larger
// than hint, the values left in the result: a result's arrays then hold at most about
// twice the values of their type, whatever the mix of types, in a few allocations.
func put[T any](arr *[]T, x T, hint int) unsafe.Pointer {
	if len(*arr) == cap(*arr) {
		*arr = make([]T, 0, max(min(hint, max(8, 2*cap(*arr))), 1))
	}
	*arr = append(*arr, x)
	return unsafe.Pointer(&(*arr)[len(*arr)-1])
}

// decode is decodeValue with aliasing, boxing through the arrays.
func (bx *boxes) decode(b []byte) (any, error) {
	hint := bx.hint
	if bx.hint > 1 {
		bx.hint--
	}
	if len(b) == 9 {
		u := binary.LittleEndian.Uint64(b[1:])
		switch b[0] {
		case ValInt:
			if u < 256 {
				return int64(u), nil // the runtime has these boxed already
			}
			return boxAt(int64Type, put(&bx.ints, int64(u), hint)), nil
		case ValFloat:
			return boxAt(floatType, put(&bx.flts, math.Float64frombits(u), hint)), nil
		case ValTime:
			return boxAt(timeType, put(&bx.times, time.Unix(0, int64(u)).UTC(), hint)), nil
		}
	}
	if len(b) > 1 && b[0] == ValString {
		return boxAt(stringType, put(&bx.strs, unsafe.String(&b[1], len(b)-1), hint)), nil
	}
	return decodeValue(b, true)
}
