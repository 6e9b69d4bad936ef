package postgres

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// Type OIDs the bridge encodes or decodes itself. They are fixed by PostgreSQL's catalog.
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidJSONB       = 3802
	oidFloat4      = 700
	oidFloat8      = 701
	oidTimestamp   = 1114
	oidTimestamptz = 1184
)

// builtinTypes names built-in types without a round trip. Only TypeForOID is called on it, which
// reads and never writes, so sharing it between goroutines is safe.
var builtinTypes = pgtype.NewMap()

// pgEpoch is PostgreSQL's timestamp epoch; binary timestamps count microseconds from it.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// encodeArgs turns plugin arguments into protocol parameters. Typed values go in binary, which is
// exact and needs no escaping; strings go as untyped text so the server infers their type from the
// statement.
func encodeArgs(args []any) (values [][]byte, oids []uint32, formats []int16, err error) {
	values = make([][]byte, len(args))
	oids = make([]uint32, len(args))
	formats = make([]int16, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case nil:
		case bool:
			oids[i], formats[i] = oidBool, 1
			if v {
				values[i] = []byte{1}
			} else {
				values[i] = []byte{0}
			}
		case int64:
			oids[i], formats[i] = oidInt8, 1
			values[i] = binary.BigEndian.AppendUint64(nil, uint64(v))
		case float64:
			oids[i], formats[i] = oidFloat8, 1
			values[i] = binary.BigEndian.AppendUint64(nil, math.Float64bits(v))
		case string:
			values[i] = []byte(v)
		case []byte:
			oids[i], formats[i] = oidBytea, 1
			if v != nil {
				values[i] = v
			}
		case time.Time:
			if y := v.Year(); y < -4712 || y > 294275 {
				return nil, nil, nil, fmt.Errorf("argument %d: time %s outside PostgreSQL's timestamptz range", i+1, v)
			}
			oids[i], formats[i] = oidTimestamptz, 1
			us := v.Unix()*1_000_000 + int64(v.Nanosecond())/1000 - pgEpoch.Unix()*1_000_000
			values[i] = binary.BigEndian.AppendUint64(nil, uint64(us))
		default:
			return nil, nil, nil, fmt.Errorf("argument %d: unsupported type %T (want nil, bool, int64, float64, string, []byte or time.Time)", i+1, a)
		}
	}
	return values, oids, formats, nil
}

// Layouts of timestamps in text form with DateStyle ISO, which Open pins. The zone offset is printed
// as +hh, +hh:mm or +hh:mm:ss depending on the zone; with TimeZone UTC it is +00.
var timestamptzLayouts = []string{
	"2006-01-02 15:04:05.999999999-07",
	"2006-01-02 15:04:05.999999999-07:00",
	"2006-01-02 15:04:05.999999999-07:00:00",
}

// decodeText converts one text-format value to the plugin-facing Go type. src is only valid until the
// next row, so every result is a copy.
func decodeText(oid uint32, src []byte) (any, error) {
	if src == nil {
		return nil, nil
	}
	s := string(src)
	switch oid {
	case oidBool:
		switch s {
		case "t":
			return true, nil
		case "f":
			return false, nil
		}
		return nil, fmt.Errorf("bad bool %q", s)
	case oidInt2, oidInt4, oidInt8:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad integer %q", s)
		}
		return n, nil
	case oidFloat4, oidFloat8:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("bad float %q", s)
		}
		return f, nil
	case oidBytea:
		h, ok := strings.CutPrefix(s, `\x`)
		if !ok {
			return nil, fmt.Errorf("bytea not in hex format")
		}
		b, err := hex.DecodeString(h)
		if err != nil {
			return nil, fmt.Errorf("bad bytea: %w", err)
		}
		return b, nil
	case oidTimestamptz:
		for _, layout := range timestamptzLayouts {
			if t, err := time.Parse(layout, s); err == nil && wireTime(t) {
				return t.UTC(), nil
			}
		}
		return s, nil // infinity, BC dates, times the wire cannot carry
	case oidTimestamp:
		if t, err := time.Parse("2006-01-02 15:04:05.999999999", s); err == nil && wireTime(t) {
			return t, nil
		}
		return s, nil
	}
	return s, nil
}

// wireTime reports whether t survives the ABI's time encoding, nanoseconds since 1970
// in an int64 (the years 1678 to 2261); other times are passed on as their text.
func wireTime(t time.Time) bool { return time.Unix(0, t.UnixNano()).Equal(t) }

// fillTypeNames names each column's type: built-ins from pgx's table, anything else (enums, domains,
// composite types) from pg_type once per DB, on the same connection and transaction.
func (db *DB) fillTypeNames(ctx context.Context, pc *pgconn.PgConn, fds []pgconn.FieldDescription, cols []Column) error {
	var missing []string
	for i, fd := range fds {
		if t, ok := builtinTypes.TypeForOID(fd.DataTypeOID); ok {
			cols[i].Type = t.Name
		} else if name, ok := db.typeNames.Load(fd.DataTypeOID); ok {
			cols[i].Type = name.(string)
		} else {
			missing = append(missing, strconv.FormatUint(uint64(fd.DataTypeOID), 10))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	rr := pc.ExecParams(ctx, `SELECT oid::int8, typname::text FROM pg_catalog.pg_type WHERE oid = ANY($1::oid[])`,
		[][]byte{[]byte("{" + strings.Join(missing, ",") + "}")}, nil, nil, nil)
	for rr.NextRow() {
		v := rr.Values()
		oid, err := strconv.ParseUint(string(v[0]), 10, 32)
		if err != nil {
			continue
		}
		db.typeNames.Store(uint32(oid), string(v[1]))
	}
	if _, err := rr.Close(); err != nil {
		return fmt.Errorf("look up column types: %w", err)
	}
	for i, fd := range fds {
		if cols[i].Type != "" {
			continue
		}
		if name, ok := db.typeNames.Load(fd.DataTypeOID); ok {
			cols[i].Type = name.(string)
		} else {
			cols[i].Type = "oid:" + strconv.FormatUint(uint64(fd.DataTypeOID), 10)
		}
	}
	return nil
}
