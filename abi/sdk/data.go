package keel

import (
	"encoding/json"
	"time"

	"github.com/keelhq/keel/abi/wire"
)

// ---- keel:sql/v1 ---------------------------------------------------------------

type dbAPI struct{}

// DB is the plugin's database: its own PostgreSQL schema, reached inside one
// transaction per invocation, committed when the handler succeeds (HTTP status below
// 400, or a nil event handler error) and rolled back otherwise. Rows of tenant tables
// are filtered to the caller's tenant by the database itself.
//
// Arguments may be nil, bool, int, int64, float64, string, []byte or time.Time and
// are always sent as parameters ($1, $2, ...), never spliced into the SQL.
var DB dbAPI

// Rows is a query result.
type Rows struct {
	// Columns are the result's columns in order. They are shared with other
	// results that had the same columns: read them, do not modify them.
	Columns []wire.Column
	Data    [][]any
}

// Len is the number of rows.
func (r *Rows) Len() int { return len(r.Data) }

// Row returns row i.
func (r *Rows) Row(i int) Row { return Row{r, r.Data[i]} }

// Maps returns the rows as column-name maps, handy for JSON responses.
func (r *Rows) Maps() []map[string]any {
	out := make([]map[string]any, len(r.Data))
	for i, row := range r.Data {
		m := make(map[string]any, len(r.Columns))
		for j, c := range r.Columns {
			m[c.Name] = row[j]
		}
		out[i] = m
	}
	return out
}

// Row is one result row.
type Row struct {
	rows   *Rows
	values []any
}

// Value returns the value of a column by name (nil if NULL or unknown). Results have
// few columns, so it scans them: cheaper in a wasm guest than building a map per result.
func (r Row) Value(col string) any {
	for i, c := range r.rows.Columns {
		if c.Name == col {
			return r.values[i]
		}
	}
	return nil
}

// String returns a text column ("" when NULL).
func (r Row) String(col string) string { s, _ := r.Value(col).(string); return s }

// Int returns an integer column (0 when NULL).
func (r Row) Int(col string) int64 { n, _ := r.Value(col).(int64); return n }

// Float returns a float column (0 when NULL).
func (r Row) Float(col string) float64 { f, _ := r.Value(col).(float64); return f }

// Bool returns a boolean column (false when NULL).
func (r Row) Bool(col string) bool { b, _ := r.Value(col).(bool); return b }

// Time returns a timestamp column (zero when NULL).
func (r Row) Time(col string) time.Time { t, _ := r.Value(col).(time.Time); return t }

// Bytes returns a bytea column.
func (r Row) Bytes(col string) []byte { b, _ := r.Value(col).([]byte); return b }

// Query runs a statement that returns rows.
func (dbAPI) Query(sql string, args ...any) (*Rows, error) {
	var res wire.SQLResult
	if err := query("keel: DB.Query", &wire.SQLRequest{SQL: sql, Params: args}, &res); err != nil {
		return nil, err
	}
	return &Rows{Columns: res.Columns, Data: res.Rows}, nil
}

// query sends a query and decodes its result.
func query(op string, req *wire.SQLRequest, res *wire.SQLResult) error {
	b, err := queryRaw(op, req)
	if err != nil {
		return err
	}
	return decodeResult(b, res)
}

// decodeResult decodes a result queryRaw returned; its strings point into b (the
// result's own copy) instead of each being allocated, and columns seen in a recent
// result are not decoded again (resultColumns).
func decodeResult(b []byte, res *wire.SQLResult) error {
	resetColumnPositions()
	return wire.DecodeSQLResultCached(b, res, intern, &resultColumns)
}

// resultColumns remembers the columns of the statements this plugin ran lately.
var resultColumns wire.ColumnCache

// prefetchedReq and prefetchedRes are the route's declared lookup (manifest prefetch)
// that the host ran for the request being served: its encoded request and result,
// aliasing the call's input. The first query whose encoded request is the same bytes
// is answered from them, once; the host ran exactly that statement, with those
// arguments, for this tenant, just before the call.
var prefetchedReq, prefetchedRes []byte

// queryRaw sends a query and returns the encoded result, copied out of the shared
// scratch buffer (or the prefetched result): the caller owns it and may alias it.
func queryRaw(op string, req *wire.SQLRequest) ([]byte, error) {
	in, err := wire.AppendSQLRequest(request(), req)
	if err != nil {
		return nil, wrapErr(op, err)
	}
	if prefetchedReq != nil && len(in) == len(prefetchedReq) && wire.Equal(in, prefetchedReq) {
		out := append([]byte(nil), prefetchedRes...)
		prefetchedReq, prefetchedRes = nil, nil
		sent(in)
		return out, nil
	}
	out, err := callHost(fnSQLQuery, in)
	sent(in)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), out...), nil
}

// QueryJSON runs a statement that returns rows, like Query, and has the host render
// each row as a JSON object (column names as keys, in result order, values as
// Rows.AppendJSON writes them). A handler that answers with the rows, as most read
// handlers do, then neither decodes typed values nor formats them in the guest,
// which is most of such a handler's time in wasm; it can still read single columns
// (JSONRows.Int, String, Value). The columns' names and types are decoded only if
// JSONRows.Columns is called.
func (dbAPI) QueryJSON(sql string, args ...any) (*JSONRows, error) {
	b, err := queryRaw("keel: DB.QueryJSON", &wire.SQLRequest{SQL: sql, Params: args, JSON: true})
	if err != nil {
		return nil, err
	}
	rows := &JSONRows{}
	cols, objs, ok, err := wire.SplitSQLResultJSON(b, rows.one[:0])
	if err != nil {
		return nil, err
	}
	if ok {
		rows.colsRaw, rows.objs = cols, objs
		return rows, nil
	}
	var res wire.SQLResult
	if err := decodeResult(b, &res); err != nil {
		return nil, err
	}
	objs = res.JSONRows
	if len(objs) == 0 && len(res.Rows) > 0 { // a host that predates JSON results answered with values
		objs = make([][]byte, len(res.Rows))
		for i, row := range res.Rows {
			objs[i] = wire.AppendRowJSON(nil, res.Columns, row)
		}
	}
	rows.cols, rows.objs = res.Columns, objs
	return rows, nil
}

// Exec runs a statement and returns the number of rows it affected.
func (dbAPI) Exec(sql string, args ...any) (int64, error) {
	in, err := wire.AppendSQLRequest(request(), &wire.SQLRequest{SQL: sql, Params: args})
	if err != nil {
		return 0, wrapErr("keel: DB.Exec", err)
	}
	out, err := callHost(fnSQLExec, in)
	sent(in)
	if err != nil {
		return 0, err
	}
	v, ok, err := wire.Field(out, 3)
	if err != nil || !ok {
		return 0, err
	}
	return wire.Int(v)
}

// ---- keel:events/v1 ------------------------------------------------------------

type eventsAPI struct{}

// Events publishes events. Publishing is part of the invocation's unit of work: the
// event is written to the outbox in the invocation's transaction and delivered only
// if the handler succeeds; nothing is published for work that rolled back.
var Events eventsAPI

// PublishOption refines a publish.
type PublishOption func(*[]byte)

// Key sets the ordering key: events with the same key keep their order.
func Key(k string) PublishOption { return func(b *[]byte) { *b = wire.AppendString(*b, 3, k) } }

// IdempotencyKey makes publishing idempotent: a second event with the same key from
// this plugin is dropped.
func IdempotencyKey(id string) PublishOption {
	return func(b *[]byte) { *b = wire.AppendString(*b, 5, id) }
}

// Publish sends payload (encoded as JSON) as an event of type typ on topic, which
// the manifest must declare under capabilities.publish. It returns the event id.
func (eventsAPI) Publish(topic, typ string, payload any, opts ...PublishOption) (string, error) {
	p, err := json.Marshal(payload)
	if err != nil {
		return "", wrapErr("keel: Events.Publish: payload", err)
	}
	b := wire.AppendField(wire.AppendString(wire.AppendString(nil, 1, topic), 2, typ), 4, p)
	for _, o := range opts {
		o(&b)
	}
	out, err := callHost(fnEventsPublish, b)
	if err != nil {
		return "", err
	}
	f, err := wire.DecodeFields(out)
	if err != nil {
		return "", err
	}
	return f.String(5), nil
}
