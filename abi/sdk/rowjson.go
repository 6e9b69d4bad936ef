package keel

import (
	"encoding/json"
	"strconv"

	"github.com/keelhq/keel/abi/wire"
)

// AppendJSON appends row i as one JSON object, {"column": value, ...}, with the columns
// in result order, and returns the extended buffer.
//
// It exists because rendering rows is what most read handlers do, and encoding/json
// on a map[string]any costs reflection, a key sort and an allocation per value; in a
// wasm guest that code and data is rarely in the CPU caches, and switching the
// master-data plugin's GET to this function raised its throughput by 14-23 %
// (bench/RESULTS.md). Values are written as encoding/json would write them, except:
//
//   - columns of PostgreSQL type numeric are written as JSON numbers (their exact
//     decimal text), not strings, unless the value is NaN or an infinity;
//   - a float64 that is NaN or infinite is written as a string ("NaN", "+Inf",
//     "-Inf") instead of failing.
//
// nil → null, bool, int64 and float64 → numbers, string → string, []byte → base64
// string, time.Time → RFC 3339 string with nanoseconds as needed.
func (r *Rows) AppendJSON(dst []byte, i int) []byte {
	dst = append(dst, '{')
	for j, c := range r.Columns {
		if j > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, c.Name)
		dst = append(dst, ':')
		dst = appendJSONValue(dst, r.Data[i][j], c.Type == "numeric")
	}
	return append(dst, '}')
}

// AppendJSONArray appends rows [from, to) as a JSON array of objects (see AppendJSON).
func (r *Rows) AppendJSONArray(dst []byte, from, to int) []byte {
	dst = append(dst, '[')
	for i := from; i < to; i++ {
		if i > from {
			dst = append(dst, ',')
		}
		dst = r.AppendJSON(dst, i)
	}
	return append(dst, ']')
}

func appendJSONValue(dst []byte, v any, numeric bool) []byte {
	if s, ok := v.(string); ok && numeric && wire.IsJSONNumber(s) {
		return append(dst, s...)
	}
	if out, ok := appendJSONScalar(dst, v); ok {
		return out
	}
	// Not produced by DB.Query (Rows built by hand): as encoding/json writes it.
	b, err := json.Marshal(v)
	if err != nil {
		return append(dst, "null"...)
	}
	return append(dst, b...)
}

// appendJSONScalar appends v if it is one of the types the SDK renders itself: those
// of a query result (wire.AppendJSONResultValue: nil, bool, int64, float64, string,
// []byte as base64, time.Time as RFC 3339), the other integer types and RawJSON. It
// reports false, appending nothing, for any other type.
func appendJSONScalar(dst []byte, v any) ([]byte, bool) {
	if out, ok := wire.AppendJSONResultValue(dst, v, false); ok {
		return out, true
	}
	switch v := v.(type) {
	case int:
		return strconv.AppendInt(dst, int64(v), 10), true
	case int32:
		return strconv.AppendInt(dst, int64(v), 10), true
	case uint32:
		return strconv.AppendUint(dst, uint64(v), 10), true
	case uint64:
		return strconv.AppendUint(dst, v, 10), true
	case RawJSON:
		if !ValidJSON(v) {
			return dst, false
		}
		return append(dst, v...), true
	}
	return dst, false
}

// appendJSONString is the wire package's, which the host shares for rows it renders.
func appendJSONString(dst []byte, s string) []byte { return wire.AppendJSONString(dst, s) }
