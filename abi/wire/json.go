package wire

import (
	"encoding/base64"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// JSON rendering of result values, shared by the host (keel:sql/v1.query with json
// set renders rows itself) and the guest SDK (Rows.AppendJSON), so that a row reads
// the same whichever side rendered it. The rules are ABI.md's "Rows as JSON".

// AppendRowJSON appends one result row as a JSON object, {"column": value, ...}, with
// the columns in result order. Values must be of the types a query result holds (nil,
// bool, int64, float64, string, []byte, time.Time); any other is written as null.
func AppendRowJSON(dst []byte, cols []Column, row []any) []byte {
	dst = append(dst, '{')
	for j, c := range cols {
		if j > 0 {
			dst = append(dst, ',')
		}
		dst = AppendJSONString(dst, c.Name)
		dst = append(dst, ':')
		var v any
		if j < len(row) {
			v = row[j]
		}
		var ok bool
		if dst, ok = AppendJSONResultValue(dst, v, c.Type == "numeric"); !ok {
			dst = append(dst, "null"...)
		}
	}
	return append(dst, '}')
}

// AppendJSONResultValue appends v, one of the types a query result holds, as JSON:
// nil → null, bool, int64 and float64 → numbers (a NaN or infinite float as the
// string "NaN", "+Inf" or "-Inf"), string → string, except that the text of a numeric
// column (numeric set) that is a JSON number is written as that number, []byte →
// base64 string, time.Time → RFC 3339 string with nanoseconds as needed. It reports
// false, appending nothing, for any other type.
func AppendJSONResultValue(dst []byte, v any, numeric bool) ([]byte, bool) {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...), true
	case bool:
		return strconv.AppendBool(dst, v), true
	case int64:
		return strconv.AppendInt(dst, v, 10), true
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return AppendJSONString(dst, strconv.FormatFloat(v, 'g', -1, 64)), true
		}
		return AppendJSONFloat(dst, v), true
	case string:
		if numeric && IsJSONNumber(v) {
			return append(dst, v...), true
		}
		return AppendJSONString(dst, v), true
	case []byte:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, v)
		return append(dst, '"'), true
	case time.Time:
		dst = append(dst, '"')
		dst = v.AppendFormat(dst, time.RFC3339Nano)
		return append(dst, '"'), true
	}
	return dst, false
}

// AppendJSONFloat formats like encoding/json: the shortest representation, in
// exponent form only for very large or very small magnitudes.
func AppendJSONFloat(dst []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' { // clean up e-09 to e-9, as encoding/json does
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// IsJSONNumber reports whether s is a number in JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func IsJSONNumber[T ~string | ~[]byte](s T) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i == len(s) || s[i] < '0' || s[i] > '9' {
			return false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i == len(s) || s[i] < '0' || s[i] > '9' {
			return false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	return i == len(s)
}

const hexDigits = "0123456789abcdef"

// JSONPlain reports whether AppendJSONString copies b as it is: printable ASCII other
// than the quote, the backslash and the HTML-sensitive <, > and &. The guest relies on
// it to know which keys appear verbatim in the objects the host renders.
func JSONPlain(b byte) bool { return jsonPlain[b] }

// jsonPlain is JSONPlain's table.
var jsonPlain = func() (t [256]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
	}
	return t
}()

// AppendJSONString writes s as a JSON string the way encoding/json does: control
// characters, quotes and backslashes escaped; <, > and & escaped so the output is safe
// inside HTML; U+2028 and U+2029 escaped for JavaScript; invalid UTF-8 replaced by
// U+FFFD.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		// Most bytes of most strings are copied as they are: one table lookup each
		// (the host renders every text column of a JSON result through here).
		for i < len(s) && jsonPlain[s[i]] {
			i++
		}
		if i == len(s) {
			break
		}
		if b := s[i]; b < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
