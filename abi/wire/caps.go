package wire

import (
	"encoding/binary"
	"errors"
	"math"
	"time"
	"unsafe"
)

// Value types of the SQL encoding: each value is one type byte followed by its data.
const (
	ValNull   = 0 // no data
	ValBool   = 1 // 1 byte
	ValInt    = 2 // 8 bytes little-endian two's complement
	ValFloat  = 3 // 8 bytes IEEE-754
	ValString = 4 // UTF-8 bytes
	ValBytes  = 5 // raw bytes
	ValTime   = 6 // 8 bytes: Unix nanoseconds, UTC
)

// AppendValue appends v as a field with the given tag. v must be nil, bool, int64,
// int, float64, string, []byte or time.Time.
func AppendValue(dst []byte, tag byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return AppendField(dst, tag, []byte{ValNull}), nil
	case bool:
		b := byte(0)
		if x {
			b = 1
		}
		return AppendField(dst, tag, []byte{ValBool, b}), nil
	case int64:
		return appendTyped8(dst, tag, ValInt, uint64(x)), nil
	case int:
		return appendTyped8(dst, tag, ValInt, uint64(int64(x))), nil
	case int32:
		return appendTyped8(dst, tag, ValInt, uint64(int64(x))), nil
	case float64:
		return appendTyped8(dst, tag, ValFloat, math.Float64bits(x)), nil
	case string:
		dst = append(dst, tag, 0, 0, 0, 0)
		binary.LittleEndian.PutUint32(dst[len(dst)-4:], uint32(1+len(x)))
		return append(append(dst, ValString), x...), nil
	case []byte:
		dst = append(dst, tag, 0, 0, 0, 0)
		binary.LittleEndian.PutUint32(dst[len(dst)-4:], uint32(1+len(x)))
		return append(append(dst, ValBytes), x...), nil
	case time.Time:
		return appendTyped8(dst, tag, ValTime, uint64(x.UnixNano())), nil
	default:
		return dst, errors.New("wire: unsupported value type (want nil, bool, int, int32, int64, float64, string, []byte or time.Time)")
	}
}

func appendTyped8(dst []byte, tag, typ byte, u uint64) []byte {
	dst = append(dst, tag, 9, 0, 0, 0, typ)
	return binary.LittleEndian.AppendUint64(dst, u)
}

// DecodeValue decodes a value field. Strings and bytes are copied.
func DecodeValue(b []byte) (any, error) { return decodeValue(b, false) }

// decodeValue decodes a value field; with alias, strings and bytes share b's memory.
func decodeValue(b []byte, alias bool) (any, error) {
	if len(b) == 0 {
		return nil, malformed("empty value")
	}
	data := b[1:]
	fixed := func() (uint64, error) {
		if len(data) != 8 {
			return 0, malformed("value type " + itoa(b[0]) + " needs 8 bytes, has " + itoa(len(data)))
		}
		return binary.LittleEndian.Uint64(data), nil
	}
	switch b[0] {
	case ValNull:
		if len(data) != 0 {
			return nil, malformed("null with data")
		}
		return nil, nil
	case ValBool:
		if len(data) != 1 || data[0] > 1 {
			return nil, malformed("bad bool value")
		}
		return data[0] == 1, nil
	case ValInt:
		u, err := fixed()
		return int64(u), err
	case ValFloat:
		u, err := fixed()
		return math.Float64frombits(u), err
	case ValString:
		if alias && len(data) > 0 {
			return unsafe.String(&data[0], len(data)), nil
		}
		return string(data), nil
	case ValBytes:
		if alias {
			return data[:len(data):len(data)], nil
		}
		return append([]byte{}, data...), nil
	case ValTime:
		u, err := fixed()
		return time.Unix(0, int64(u)).UTC(), err
	default:
		return nil, malformed("unknown value type " + itoa(b[0]))
	}
}

// SQLRequest is the input of keel:sql/v1.query and exec.
type SQLRequest struct {
	SQL    string
	Params []any
	// JSON asks query to answer with each row rendered as a JSON object
	// (SQLResult.JSONRows) instead of typed values.
	JSON bool
}

// Field tags of SQLRequest.
const (
	sqlText  = 1
	sqlParam = 2
	sqlJSON  = 3
)

// MaxSQLParams bounds the parameters of one statement (PostgreSQL's own limit).
const MaxSQLParams = 65535

// AppendSQLRequest appends the encoding of r.
func AppendSQLRequest(dst []byte, r *SQLRequest) ([]byte, error) {
	dst = AppendString(dst, sqlText, r.SQL)
	var err error
	for _, p := range r.Params {
		if dst, err = AppendValue(dst, sqlParam, p); err != nil {
			return dst, err
		}
	}
	if r.JSON {
		dst = AppendBool(dst, sqlJSON, true)
	}
	return dst, nil
}

// DecodeSQLRequest decodes a query or exec input.
func DecodeSQLRequest(b []byte, r *SQLRequest) error {
	*r = SQLRequest{}
	rd := NewReader(b)
	for tag, v, ok := rd.Next(); ok; tag, v, ok = rd.Next() {
		switch tag {
		case sqlText:
			r.SQL = string(v)
		case sqlParam:
			if len(r.Params) >= MaxSQLParams {
				rd.Fail(malformed("more than " + itoa(MaxSQLParams) + " parameters"))
				break
			}
			val, err := DecodeValue(v)
			rd.Fail(err)
			r.Params = append(r.Params, val)
		case sqlJSON:
			b, err := Bool(v)
			rd.Fail(err)
			r.JSON = b
		}
	}
	if rd.Err() == nil && r.SQL == "" {
		rd.Fail(malformed("empty statement"))
	}
	return wrap("sql request", rd.Err())
}

// Column describes one result column.
type Column struct {
	Name string
	Type string // the PostgreSQL type name, e.g. "int8", "text", "timestamptz"
}

// SQLResult is the output of keel:sql/v1.query (and of exec, with only RowsAffected).
type SQLResult struct {
	Columns      []Column
	Rows         [][]any
	RowsAffected int64
	// JSONRows holds each row as one JSON object (AppendRowJSON) when the request
	// asked for JSON; Rows is then empty.
	JSONRows [][]byte
}

// Field tags of SQLResult and its nested messages.
const (
	resColumn   = 1 // nested: 1 name, 2 type
	resRow      = 2 // nested: one value field (tag 1) per column
	resAffected = 3
	resRowJSON  = 4 // one JSON object per row, instead of resRow
	colName     = 1
	colType     = 2
	rowValue    = 1
)

// AppendSQLResult appends the encoding of r.
func AppendSQLResult(dst []byte, r *SQLResult) ([]byte, error) {
	for _, c := range r.Columns {
		var mark int
		dst, mark = BeginNested(dst, resColumn)
		dst = AppendString(dst, colName, c.Name)
		dst = AppendString(dst, colType, c.Type)
		dst = EndNested(dst, mark)
	}
	var err error
	for _, row := range r.Rows {
		var mark int
		dst, mark = BeginNested(dst, resRow)
		for _, v := range row {
			if dst, err = AppendValue(dst, rowValue, v); err != nil {
				return dst, err
			}
		}
		dst = EndNested(dst, mark)
	}
	for _, obj := range r.JSONRows {
		dst = AppendField(dst, resRowJSON, obj)
	}
	return AppendInt(dst, resAffected, r.RowsAffected), nil
}

// DecodeSQLResult decodes a query result. Every row must have one value per column.
func DecodeSQLResult(b []byte, r *SQLResult) error { return DecodeSQLResultInterned(b, r, nil) }

// Interner field ids for result column names and types.
const (
	InternColumnName = 110
	InternColumnType = 111
)

// DecodeSQLResultInterned is DecodeSQLResult with column names and types going
// through intern (when not nil): a guest reads the same columns call after call.
func DecodeSQLResultInterned(b []byte, r *SQLResult, intern Interner) error {
	return decodeSQLResult(b, r, intern, false, nil)
}

// DecodeSQLResultAliased is DecodeSQLResultInterned whose string and bytes values
// alias b instead of being copied one by one: the guest copies a result once and
// decodes it without an allocation per value. The caller must own b and never
// modify it afterwards (the strings would change).
func DecodeSQLResultAliased(b []byte, r *SQLResult, intern Interner) error {
	return decodeSQLResult(b, r, intern, true, nil)
}

// DecodeSQLResultCached is DecodeSQLResultAliased that takes the result's columns
// from cache when it has decoded the same encoded columns before, and remembers them
// otherwise. The columns are then shared by every result that found them there: the
// caller must not modify them.
func DecodeSQLResultCached(b []byte, r *SQLResult, intern Interner, cache *ColumnCache) error {
	return decodeSQLResult(b, r, intern, true, cache)
}

// ColumnCache remembers the decoded columns of the last few distinct results, by
// their encoding. A guest's handlers run the same few statements call after call, and
// decoding a result's columns (a nested message each, with name and type) was a
// third of a one-row read's decoding in wasm; comparing their encoding with a
// remembered one is a memory comparison. The zero value is ready to use; it is not
// safe for concurrent use.
type ColumnCache struct {
	entries [columnCacheSize]struct {
		enc  []byte
		cols []Column
	}
	next int // the entry to replace next (round robin)
}

const (
	columnCacheSize = 8
	// maxCachedColumns bounds the encoding an entry keeps (a copy): results with
	// more columns than this takes are decoded every time.
	maxCachedColumns = 4096
)

// lookup returns the columns remembered for enc, or nil.
func (c *ColumnCache) lookup(enc []byte) []Column {
	for i := range c.entries {
		if e := &c.entries[i]; len(e.enc) == len(enc) && Equal(e.enc, enc) {
			return e.cols
		}
	}
	return nil
}

// remember keeps a copy of enc with the columns decoded from it.
func (c *ColumnCache) remember(enc []byte, cols []Column) {
	if len(enc) > maxCachedColumns || len(cols) == 0 {
		return
	}
	e := &c.entries[c.next]
	e.enc, e.cols = append(e.enc[:0], enc...), cols
	c.next = (c.next + 1) % len(c.entries)
}

func decodeSQLResult(b []byte, r *SQLResult, intern Interner, alias bool, cache *ColumnCache) error {
	*r = SQLResult{}
	// Size the lists once: grown by append, a result of fourteen columns cost five
	// allocations and copies for its columns alone, the largest share of a one-row
	// read's decoding in a wasm guest. Counting the top-level fields is cheap.
	// Lists stay nil when empty, as before.
	cols, rows, objs := countResultFields(b)
	rd := NewReader(b)
	var colRun []byte // the encoded columns, to remember once decoded
	if cache != nil && cols > 0 {
		// The columns come first, as the host writes them; a result whose columns are
		// not one run at the start is decoded without the cache.
		if n, end := fieldRun(b, resColumn); n == cols {
			if known := cache.lookup(b[:end]); known != nil {
				r.Columns, rd.b = known, b[end:]
			} else {
				colRun = b[:end]
			}
		}
	}
	if cols > 0 && r.Columns == nil {
		r.Columns = make([]Column, 0, cols)
	}
	if rows > 0 {
		r.Rows = make([][]any, 0, rows)
	}
	if objs > 0 {
		r.JSONRows = make([][]byte, 0, objs)
	}
	// Aliased (the guest's decoding), all rows' values share one backing array, and
	// values boxed into interfaces share one array per type (see boxes): a typed row
	// of a few columns otherwise cost an allocation per row and one per text, integer
	// or time value, the largest share of a statement's time in a wasm guest.
	var vals []any
	var bx *boxes
	if alias && rows > 0 && cols > 0 {
		vals = make([]any, rows*cols)
		bx = &boxes{hint: rows * cols}
	}
	for tag, v, ok := rd.Next(); ok; tag, v, ok = rd.Next() {
		switch tag {
		case resColumn:
			if len(r.Rows) > 0 { // rows are checked against the columns before them
				rd.Fail(malformed("column after rows"))
				break
			}
			c, err := decodeColumn(v, intern)
			rd.Fail(err)
			r.Columns = append(r.Columns, c)
		case resRow:
			var row []any
			if n := len(r.Rows) * cols; vals != nil && len(r.Columns) == cols && n+cols <= len(vals) {
				row = vals[n : n : n+cols] // a row with too many values grows out of the backing, and fails below
			} else {
				row = make([]any, 0, len(r.Columns))
			}
			vr := NewReader(v)
			for t, vv, ok := vr.Next(); ok; t, vv, ok = vr.Next() {
				if t == rowValue {
					var val any
					var err error
					if bx != nil {
						val, err = bx.decode(vv)
					} else {
						val, err = decodeValue(vv, alias)
					}
					vr.Fail(err)
					row = append(row, val)
				}
			}
			rd.Fail(vr.Err())
			if rd.Err() == nil && len(row) != len(r.Columns) {
				rd.Fail(malformed("row has " + itoa(len(row)) + " values for " + itoa(len(r.Columns)) + " columns"))
			}
			r.Rows = append(r.Rows, row)
		case resRowJSON:
			if !alias {
				v = append(make([]byte, 0, len(v)), v...) // empty, not nil, as an aliased one
			}
			r.JSONRows = append(r.JSONRows, v)
		case resAffected:
			n, err := Int(v)
			rd.Fail(err)
			r.RowsAffected = n
		}
	}
	if colRun != nil && rd.Err() == nil {
		cache.remember(colRun, r.Columns[:cols:cols]) // full: appending to a shared list copies
	}
	return wrap("sql result", rd.Err())
}

// SplitSQLResultJSON reads a result of JSON rows (SQLRequest.JSON) without decoding
// its columns: it returns the encoded run of column fields, for DecodeSQLColumns if
// the columns are ever needed, and the rows appended to rows, aliasing b. A guest
// answering with the rows never needs them (the objects carry the names), and
// decoding a dozen nested columns was most of a one-row read's decoding in wasm.
//
// It reads b once: the caller passes storage for the rows it expects (the guest
// passes room for one, which a read by id fills without allocating), and a larger
// result grows it as append does. An earlier version counted the fields first to
// size the rows exactly; that second walk over the columns cost more in wasm than
// the growth it saved, for one row and for a page of fifty.
//
// ok is false, with no error, when b holds typed rows (a host that predates JSON
// results) or column fields that are not one run: decode it whole then.
func SplitSQLResultJSON(b []byte, rows [][]byte) (columns []byte, rowsOut [][]byte, ok bool, err error) {
	if len(b) > MaxMessage {
		return nil, rows, false, wrap("sql result", oversize(len(b)))
	}
	// The walk keeps its position in locals rather than a Reader: in wasm a Reader's
	// fields live in memory and every step reloads and stores them.
	start, end, runs := 0, 0, 0
	prevColumn := false
	i := 0
	for len(b)-i >= HeaderSize {
		n := int(binary.LittleEndian.Uint32(b[i+1 : i+HeaderSize]))
		if n > len(b)-i-HeaderSize {
			break
		}
		tag, v := b[i], b[i+HeaderSize:i+HeaderSize+n]
		switch tag {
		case resColumn:
			if !prevColumn {
				runs++
				start = i
			}
			end = i + HeaderSize + n
		case resRowJSON:
			rows = append(rows, v)
		case resRow:
			return nil, rows, false, nil
		case resAffected:
			if _, err := Int(v); err != nil {
				return nil, rows, false, wrap("sql result", err)
			}
		}
		prevColumn = tag == resColumn
		i += HeaderSize + n
	}
	if i < len(b) {
		return nil, rows, false, wrap("sql result", headerFault(b[i:]))
	}
	if runs > 1 {
		return nil, rows, false, nil
	}
	return b[start:end], rows, true, nil
}

// decodeColumn decodes one nested column field.
func decodeColumn(v []byte, intern Interner) (Column, error) {
	var c Column
	cr := NewReader(v)
	for t, cv, ok := cr.Next(); ok; t, cv, ok = cr.Next() {
		switch {
		case t == colName && intern != nil:
			c.Name = intern(InternColumnName, cv)
		case t == colName:
			c.Name = string(cv)
		case t == colType && intern != nil:
			c.Type = intern(InternColumnType, cv)
		case t == colType:
			c.Type = string(cv)
		}
	}
	return c, cr.Err()
}

// DecodeSQLColumns decodes the column fields SplitSQLResultJSON returned.
func DecodeSQLColumns(b []byte, intern Interner) ([]Column, error) {
	var r SQLResult
	err := decodeSQLResult(b, &r, intern, true, nil)
	return r.Columns, err
}

// countResultFields counts the columns, typed rows and JSON rows of an encoded
// result, stopping at the first malformed field (the decoder reports it).
func countResultFields(b []byte) (cols, rows, objs int) {
	rd := NewReader(b)
	for tag, _, ok := rd.Next(); ok; tag, _, ok = rd.Next() {
		switch tag {
		case resColumn:
			cols++
		case resRow:
			rows++
		case resRowJSON:
			objs++
		}
	}
	return cols, rows, objs
}

// Fields holds a small flat message decoded by tag: the inputs and outputs of the
// cache, config, events, metrics, http and plugin imports. ABI.md lists each one's
// tags. Repeated tags keep every value in order.
type Fields struct {
	vals [16][][]byte
}

// DecodeFields decodes a flat message whose tags are below 16; higher tags are
// skipped as unknown.
func DecodeFields(b []byte) (*Fields, error) {
	f := &Fields{}
	rd := NewReader(b)
	for tag, v, ok := rd.Next(); ok; tag, v, ok = rd.Next() {
		if int(tag) < len(f.vals) {
			f.vals[tag] = append(f.vals[tag], v)
		}
	}
	return f, wrap("message", rd.Err())
}

// Field returns the first value of tag in a flat message without building Fields: the
// guest reads one-field results this way on its hot paths (a cache value, a row count),
// where DecodeFields' allocations showed. The value aliases b; ok is false when the
// tag is absent. A malformed message is an error even if the tag came before the fault.
func Field(b []byte, tag byte) (val []byte, ok bool, err error) {
	rd := NewReader(b)
	for t, v, more := rd.Next(); more; t, v, more = rd.Next() {
		if t == tag && !ok {
			val, ok = v, true
		}
	}
	if err := rd.Err(); err != nil {
		return nil, false, wrap("message", err)
	}
	return val, ok, nil
}

// Has reports whether the tag is present.
func (f *Fields) Has(tag byte) bool { return int(tag) < len(f.vals) && len(f.vals[tag]) > 0 }

// Bytes returns the first value of tag (nil if absent). It aliases the input.
func (f *Fields) Bytes(tag byte) []byte {
	if !f.Has(tag) {
		return nil
	}
	return f.vals[tag][0]
}

// String returns the first value of tag as a string.
func (f *Fields) String(tag byte) string { return string(f.Bytes(tag)) }

// All returns every value of tag.
func (f *Fields) All(tag byte) [][]byte {
	if int(tag) >= len(f.vals) {
		return nil
	}
	return f.vals[tag]
}

// Int returns the integer value of tag, def if absent.
func (f *Fields) Int(tag byte, def int64) (int64, error) {
	if !f.Has(tag) {
		return def, nil
	}
	return Int(f.Bytes(tag))
}

// Float returns the float value of tag, def if absent.
func (f *Fields) Float(tag byte, def float64) (float64, error) {
	if !f.Has(tag) {
		return def, nil
	}
	return Float(f.Bytes(tag))
}
