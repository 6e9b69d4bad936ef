package keel

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"strconv"

	"github.com/keelhq/keel/abi/wire"
)

// JSONRows is a query result whose rows the host rendered as JSON objects
// (DB.QueryJSON).
type JSONRows struct {
	colsRaw []byte // the encoded columns until Columns decodes them into cols
	cols    []wire.Column
	objs    [][]byte
	one     [1][]byte // objs' storage for a result of one row (a read by id)
}

// Columns returns the result's columns (names and types, in order). They are decoded
// on the first call: answering with the rows, or reading columns by name, needs none.
func (r *JSONRows) Columns() []wire.Column {
	if r.colsRaw != nil {
		resetColumnPositions()
		r.cols, _ = wire.DecodeSQLColumns(r.colsRaw, intern) // the host's encoding; checked by SplitSQLResultJSON's framing
		r.colsRaw = nil
	}
	return r.cols
}

// Len is the number of rows.
func (r *JSONRows) Len() int { return len(r.objs) }

// Object returns row i as one JSON object. The bytes belong to the result: they may be
// used as a response body but must not be modified.
func (r *JSONRows) Object(i int) []byte { return r.objs[i] }

// AppendArray appends rows [from, to) as a JSON array of objects.
func (r *JSONRows) AppendArray(dst []byte, from, to int) []byte {
	dst = append(dst, '[')
	for i := from; i < to; i++ {
		if i > from {
			dst = append(dst, ',')
		}
		dst = append(dst, r.objs[i]...)
	}
	return append(dst, ']')
}

// Value returns the JSON text of column col in row i ("null" for NULL), or nil when
// the result has no such column.
func (r *JSONRows) Value(i int, col string) []byte {
	if v, ok := findMember(r.objs[i], col); ok {
		return v
	}
	return jsonMember(r.objs[i], col)
}

// findMember is jsonMember by pattern, for the objects the host renders: it looks for
// the key, quoted and followed by a colon, right after the object's '{' or after a
// ',', and reads the value there. In such an object that sequence only occurs where a
// member starts. A '"' is either escaped (inside a string) or a string's opening or
// closing quote, and a closing quote is followed by ',', ':' or '}'; the key's first
// byte is none of those, so the matched quote opens a string, the ',' before it lies
// outside any string (a member separator), and the string after a separator is a key.
// Commas are found eight bytes at a time and only a candidate whose quotes and colon
// sit where the key's would is compared, where jsonMember steps through every byte of
// every key and value; in a wasm guest that walk was a sixth of master-data's GET.
//
// ok is false when key is not a plain name (empty, longer than 128 bytes, starting
// with ',', ':' or '}', or holding a byte the host's JSON writes escaped or that is not
// ASCII): the caller then scans with jsonMember. When ok is true, v is what
// jsonMember returns for the host's objects (TestFindMember, and
// FuzzFindMember against jsonMember).
func findMember(obj []byte, key string) (v []byte, ok bool) {
	if key == "" || len(key) > 128 || key[0] == ',' || key[0] == ':' || key[0] == '}' {
		// A closing quote is followed by one of those: with a key starting so, the
		// pattern could match a string value's last comma and closing quote.
		return nil, false
	}
	for i := 0; i < len(key); i++ {
		if !wire.JSONPlain(key[i]) { // the host writes such a key escaped
			return nil, false
		}
	}
	if len(obj) < 2 || obj[0] != '{' {
		return nil, true
	}
	at := 0 // obj[at] is '{' or ',' before a candidate member
	for {
		if rest := obj[at+1:]; len(rest) >= len(key)+3 && rest[0] == '"' && rest[len(key)+1] == '"' && rest[len(key)+2] == ':' &&
			string(rest[1:len(key)+1]) == key {
			return memberValue(obj, at+1+len(key)+3), true
		}
		// The next ',', eight bytes per turn: a byte of x is zero where obj has a
		// comma, and the lowest byte the expression flags is the first such (a borrow
		// only flags bytes above a zero one). Inline, because a call per member (to
		// bytes.IndexByte) cost more than the scan in wasm.
		i := at + 1
		for ; i+8 <= len(obj); i += 8 {
			x := binary.LittleEndian.Uint64(obj[i:]) ^ commas
			if t := (x - 0x0101010101010101) &^ x & 0x8080808080808080; t != 0 {
				i += bits.TrailingZeros64(t) / 8
				break
			}
		}
		for i < len(obj) && obj[i] != ',' {
			i++
		}
		if i >= len(obj) {
			return nil, true
		}
		at = i
	}
}

// commas is eight ',' bytes, for findMember's word-at-a-time search.
const commas = 0x2c2c2c2c2c2c2c2c

// memberValue returns the scalar value starting at obj[start], or nil if there is none
// or nothing follows it (a member's value is followed by ',' or '}').
func memberValue(obj []byte, start int) []byte {
	if start >= len(obj) {
		return nil
	}
	end := start
	if obj[start] == '"' {
		end = skipJSONString(obj, start)
	} else {
		for end < len(obj) && obj[end] != ',' && obj[end] != '}' {
			end++
		}
	}
	if end < 0 || end >= len(obj) || end == start {
		return nil
	}
	return obj[start:end]
}

// Int returns an integer column of row i (0 when NULL, not an integer or unknown).
func (r *JSONRows) Int(i int, col string) int64 {
	v := r.Value(i, col)
	neg := len(v) > 0 && v[0] == '-'
	if neg {
		v = v[1:]
	}
	if len(v) == 0 || len(v) > 19 {
		return 0
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + uint64(c-'0')
	}
	switch {
	case neg && n <= 1<<63:
		return -int64(n-1) - 1
	case !neg && n < 1<<63:
		return int64(n)
	}
	return 0
}

// String returns a text column of row i ("" when NULL, not a string or unknown).
func (r *JSONRows) String(i int, col string) string {
	v := r.Value(i, col)
	if len(v) < 2 || v[0] != '"' {
		return ""
	}
	inner := v[1 : len(v)-1]
	for _, c := range inner {
		if c == '\\' {
			// The host writes only escapes Go's quoted-string syntax shares with JSON.
			s, err := strconv.Unquote(string(v))
			if err != nil {
				return ""
			}
			return s
		}
	}
	return string(inner)
}

// jsonMember returns the value of the first member of obj named key, where obj is an
// object as the host renders rows: one string key (a column name) and one scalar
// value (null, true, false, a number or a string) per column, no whitespace. It
// returns nil when there is no such member and for anything else. Keys are the
// columns' names in order, so the first match is the column Rows.Value would find.
func jsonMember(obj []byte, key string) []byte {
	if len(obj) < 2 || obj[0] != '{' {
		return nil
	}
	i := 1
	for {
		end := skipJSONString(obj, i)
		if end < 0 || end >= len(obj) || obj[end] != ':' {
			return nil
		}
		v := memberValue(obj, end+1)
		if v == nil {
			return nil
		}
		if jsonKeyIs(obj[i:end], key) {
			return v
		}
		end += 1 + len(v)
		if obj[end] != ',' {
			return nil // the object ended without the member
		}
		i = end + 1
	}
}

// jsonKeyIs reports whether the quoted JSON string q (quotes included) is key.
//
// Every escape is longer than the bytes it stands for, so a quoted name shorter than
// key never matches, one of key's length matches byte for byte only if it holds no
// escape, and only a longer one holding an escape needs unquoting. Most keys are
// rejected by length alone, which matters in wasm, where this runs per member.
func jsonKeyIs(q []byte, key string) bool {
	inner := q[1 : len(q)-1]
	switch {
	case len(inner) < len(key):
		return false
	case len(inner) == len(key):
		return string(inner) == key && bytes.IndexByte(inner, '\\') < 0
	case bytes.IndexByte(inner, '\\') < 0:
		return false
	}
	// The host writes only escapes Go's quoted-string syntax shares with JSON.
	s, err := strconv.Unquote(string(q))
	return err == nil && s == key
}

// skipJSONString returns the index just past the string that starts at b[i], or -1.
func skipJSONString(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}
