package keel

import (
	"strconv"
	"time"
)

// unformatted is written for a value appendText has no rule for.
const unformatted = "(unformatted value of an unsupported type)"

// appendText appends a human-readable form of v for logs and panic messages, without
// fmt (see Logger for why). It covers what handlers log and panic with in practice.
func appendText(dst []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(dst, "<nil>"...)
	case string:
		return append(dst, v...)
	case []byte:
		return append(dst, v...)
	case bool:
		return strconv.AppendBool(dst, v)
	case int:
		return strconv.AppendInt(dst, int64(v), 10)
	case int8:
		return strconv.AppendInt(dst, int64(v), 10)
	case int16:
		return strconv.AppendInt(dst, int64(v), 10)
	case int32:
		return strconv.AppendInt(dst, int64(v), 10)
	case int64:
		return strconv.AppendInt(dst, v, 10)
	case uint:
		return strconv.AppendUint(dst, uint64(v), 10)
	case uint8:
		return strconv.AppendUint(dst, uint64(v), 10)
	case uint16:
		return strconv.AppendUint(dst, uint64(v), 10)
	case uint32:
		return strconv.AppendUint(dst, uint64(v), 10)
	case uint64:
		return strconv.AppendUint(dst, v, 10)
	case uintptr:
		return strconv.AppendUint(dst, uint64(v), 10)
	case float32:
		return strconv.AppendFloat(dst, float64(v), 'g', -1, 32)
	case float64:
		return strconv.AppendFloat(dst, v, 'g', -1, 64)
	case time.Time:
		return v.AppendFormat(dst, time.RFC3339Nano)
	case error:
		return append(dst, v.Error()...)
	case interface{ String() string }:
		return append(dst, v.String()...)
	default:
		return append(dst, unformatted...)
	}
}
