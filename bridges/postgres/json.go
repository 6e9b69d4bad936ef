package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keelhq/keel/abi/wire"
)

// JSONResult is the outcome of QueryJSON: the result's columns and each row as one
// JSON object.
type JSONResult struct {
	Columns []Column
	Rows    [][]byte
}

// QueryJSON runs one data-access statement like Query and renders each row as the JSON
// object wire.AppendRowJSON writes for the row Query would return: the same bytes.
//
// Why not Query and then AppendRowJSON: read handlers ask for JSON (keel:sql/v1's json
// flag) on their hot path, and the values Query returns exist only to be rendered
// again. Rendering from the server's text form skips a boxed value per column, a copy
// of every string and a layout-driven parse of every timestamp. The common shapes
// (integers, text, numerics, UTC timestamps) are written directly; any other value
// goes through decodeText and wire.AppendJSONResultValue, so every value renders
// exactly as it would have (FuzzJSONValue checks the two paths agree).
//
// A column whose type the bridge cannot name before the first row (a user-defined type
// not seen yet) makes the whole result take the decoded path, since how a value
// renders depends on its type's name.
func (tx *Tx) QueryJSON(ctx context.Context, sql string, args []any) (*JSONResult, error) {
	res := &JSONResult{Rows: [][]byte{}}
	var (
		keys    [][]byte // each column's `"name":`
		kinds   []jsonKind
		decoded [][]any // the rows, when a type could not be named up front
		buf     []byte  // all rows' objects, one after another
		ends    []int
	)
	start := func(fds []pgconn.FieldDescription) {
		keys, kinds = make([][]byte, len(fds)), make([]jsonKind, len(fds))
		// All keys in one buffer, so that a wide row costs one allocation, not one or
		// two per column. Sized for names that need no escaping (quotes and colon
		// added); one that does grows it, and the keys cut before stay valid.
		size := 0
		for _, fd := range fds {
			size += len(fd.Name) + 3
		}
		kb := make([]byte, 0, size)
		for i, fd := range fds {
			from := len(kb)
			kb = append(wire.AppendJSONString(kb, fd.Name), ':')
			keys[i] = kb[from:len(kb):len(kb)]
			var ok bool
			if kinds[i], ok = tx.p.db.jsonKindOf(fd.DataTypeOID); !ok {
				kinds = nil
				decoded = [][]any{}
				return
			}
		}
	}
	fds, err := tx.run(ctx, "query", sql, args, start, func(fds []pgconn.FieldDescription, raw [][]byte) error {
		if kinds == nil {
			row := make([]any, len(raw))
			for i, v := range raw {
				var err error
				if row[i], err = decodeText(fds[i].DataTypeOID, v); err != nil {
					return columnError(fds[i], err)
				}
			}
			decoded = append(decoded, row)
			return nil
		}
		if buf == nil {
			// Room for this row and a little more: the keys, the values' text and the
			// punctuation, rendered values being rarely longer than their text.
			size := 2 + 2*len(raw)
			for i, v := range raw {
				size += len(keys[i]) + len(v)
			}
			buf = make([]byte, 0, size+size/4)
		}
		mark := len(buf)
		buf = append(buf, '{')
		for i, v := range raw {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, keys[i]...)
			var err error
			if buf, err = appendJSONValue(buf, kinds[i], fds[i].DataTypeOID, v); err != nil {
				buf = buf[:mark]
				return columnError(fds[i], err)
			}
		}
		buf = append(buf, '}')
		ends = append(ends, len(buf))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if res.Columns, err = tx.columns(ctx, fds); err != nil {
		return nil, err
	}
	if kinds == nil {
		cols := make([]wire.Column, len(res.Columns))
		for i, c := range res.Columns {
			cols[i] = wire.Column{Name: c.Name, Type: c.Type}
		}
		for _, row := range decoded {
			buf = wire.AppendRowJSON(buf, cols, row)
			ends = append(ends, len(buf))
		}
	}
	res.Rows = make([][]byte, len(ends))
	from := 0
	for i, end := range ends {
		res.Rows[i] = buf[from:end:end]
		from = end
	}
	return res, nil
}

// jsonKind is how appendJSONValue renders a column's values.
type jsonKind uint8

const (
	jsonDecoded     jsonKind = iota // decodeText, then wire.AppendJSONResultValue
	jsonInteger                     // int2, int4, int8: the text is the JSON number
	jsonBool                        // t or f
	jsonNumeric                     // the text as a number when it is one, else as a string
	jsonString                      // the text as a JSON string
	jsonTimestamptz                 // RFC 3339 in UTC
	jsonTimestamp                   // RFC 3339, the wall time read as UTC
)

// jsonKindOf returns how a column of type oid renders, and false when the type has no
// name yet (see fillTypeNames), which decides how its values render.
func (db *DB) jsonKindOf(oid uint32) (jsonKind, bool) {
	switch oid {
	case oidInt2, oidInt4, oidInt8:
		return jsonInteger, true
	case oidBool:
		return jsonBool, true
	case oidTimestamptz:
		return jsonTimestamptz, true
	case oidTimestamp:
		return jsonTimestamp, true
	case oidFloat4, oidFloat8, oidBytea:
		return jsonDecoded, true
	}
	// Every other type decodes to its text; a type named numeric renders it as a number
	// when it is one (wire.AppendRowJSON).
	var name string
	if t, ok := builtinTypes.TypeForOID(oid); ok {
		name = t.Name
	} else if v, ok := db.typeNames.Load(oid); ok {
		name = v.(string)
	} else {
		return 0, false
	}
	if name == "numeric" {
		return jsonNumeric, true
	}
	return jsonString, true
}

// appendJSONValue appends the text-format value raw of a column of type oid (nil for
// NULL) as JSON, exactly as wire.AppendJSONResultValue renders what decodeText returns
// for it.
func appendJSONValue(dst []byte, kind jsonKind, oid uint32, raw []byte) ([]byte, error) {
	if raw == nil {
		return append(dst, "null"...), nil
	}
	switch kind {
	case jsonInteger:
		if canonicalInt(raw) {
			return append(dst, raw...), nil
		}
	case jsonBool:
		switch string(raw) {
		case "t":
			return append(dst, "true"...), nil
		case "f":
			return append(dst, "false"...), nil
		}
	case jsonNumeric:
		if wire.IsJSONNumber(raw) {
			return append(dst, raw...), nil
		}
		return wire.AppendJSONString(dst, string(raw)), nil
	case jsonString:
		return wire.AppendJSONString(dst, string(raw)), nil
	case jsonTimestamptz, jsonTimestamp:
		if out, ok := appendRFC3339(dst, raw, kind == jsonTimestamptz); ok {
			return out, nil
		}
	}
	v, err := decodeText(oid, raw)
	if err != nil {
		return dst, err
	}
	out, ok := wire.AppendJSONResultValue(dst, v, kind == jsonNumeric)
	if !ok {
		out = append(dst, "null"...)
	}
	return out, nil
}

// canonicalInt reports whether b is an integer as PostgreSQL prints one that surely
// fits an int64: an optional minus, no leading zero, at most 18 digits. Longer ones
// take the decoding path, which checks the range.
func canonicalInt(b []byte) bool {
	digits := b
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 18 || (digits[0] == '0' && (len(digits) > 1 || len(b) > 1)) {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// appendRFC3339 appends, quoted, the RFC 3339 form (time.RFC3339Nano, in UTC) of a
// timestamp PostgreSQL printed with DateStyle ISO: "2006-01-02 15:04:05", an optional
// fraction of up to nine digits, and for a timestamptz the zone "+00" (TimeZone is
// UTC, pinned by Open). It reports false for anything else, including years outside
// 1678-2261, where decodeText's range check applies, and out-of-range fields, which
// decodeText leaves as text.
func appendRFC3339(dst, b []byte, zoned bool) ([]byte, bool) {
	n := len(b)
	if zoned {
		if n < 3 || string(b[n-3:]) != "+00" {
			return dst, false
		}
		n -= 3
	}
	if n < 19 || b[4] != '-' || b[7] != '-' || b[10] != ' ' || b[13] != ':' || b[16] != ':' {
		return dst, false
	}
	num := func(i, w int) int {
		v := 0
		for _, c := range b[i : i+w] {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day := num(0, 4), num(5, 2), num(8, 2)
	hour, minute, second := num(11, 2), num(14, 2), num(17, 2)
	if year < 1678 || year > 2261 || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59 {
		return dst, false
	}
	frac := b[19:n]
	if len(frac) > 0 {
		if len(frac) < 2 || len(frac) > 10 || frac[0] != '.' || num(20, len(frac)-1) < 0 {
			return dst, false
		}
		frac = frac[1:]
		for len(frac) > 0 && frac[len(frac)-1] == '0' {
			frac = frac[:len(frac)-1]
		}
	}
	dst = append(dst, '"')
	dst = append(dst, b[:10]...)
	dst = append(dst, 'T')
	dst = append(dst, b[11:19]...)
	if len(frac) > 0 {
		dst = append(dst, '.')
		dst = append(dst, frac...)
	}
	return append(dst, 'Z', '"'), true
}

// daysIn is the number of days in month of year (Gregorian).
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// columnError names the column whose value failed to decode.
func columnError(fd pgconn.FieldDescription, err error) error {
	return fmt.Errorf("column %q: %w", fd.Name, err)
}
