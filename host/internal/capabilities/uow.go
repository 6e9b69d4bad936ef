package capabilities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keelhq/keel/abi/wire"
	"github.com/keelhq/keel/bridges/postgres"
	"github.com/keelhq/keel/host/internal/events"
	"github.com/keelhq/keel/host/internal/runtime"
)

// Limits on what one invocation may publish.
const (
	maxEventsPerCall = 1000
	maxEventPayload  = 256 << 10
)

// Field tags of keel:events/v1.publish.
const (
	evTopic   = 1
	evType    = 2
	evKey     = 3
	evPayload = 4
	evID      = 5 // optional idempotency key; output: the event id
)

// Data provides keel:sql/v1 and keel:events/v1, which share the invocation's unit of
// work: one transaction, opened on the first statement, committed when the plugin
// returns success and rolled back otherwise; events published during the invocation
// are written to the outbox in that same transaction, so nothing is published for
// work that rolled back.
type Data struct {
	mu  sync.RWMutex
	dbs map[string]pluginDBs // by plugin name, registered on activation
}

// pluginDBs is a plugin's database in both modes, made once at registration.
type pluginDBs struct {
	readWrite, readOnly postgres.PluginDB
}

// NewData creates the capability with no plugin databases registered.
func NewData() *Data { return &Data{dbs: map[string]pluginDBs{}} }

// Register makes a plugin's schema available to its calls.
func (d *Data) Register(plugin string, pdb postgres.PluginDB) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dbs[plugin] = pluginDBs{readWrite: pdb, readOnly: pdb.With(postgres.ReadOnly())}
}

// Funcs returns the host functions.
func (d *Data) Funcs() []runtime.HostFunc {
	return []runtime.HostFunc{
		{Module: "keel:sql/v1", Name: "query", Fn: d.query},
		{Module: "keel:sql/v1", Name: "exec", Fn: d.exec},
		{Module: "keel:events/v1", Name: "publish", Fn: d.publish},
	}
}

type unitKey struct{}

// unit is one invocation's unit of work.
type unit struct {
	pdb    postgres.PluginDB // read-only for a read_only route's call
	tenant string
	tx     *postgres.Tx
	events []postgres.OutboxEvent
}

// unitOf returns the call's unit of work, creating it (and registering its finisher)
// on first use.
func (d *Data) unitOf(call *runtime.Call) (*unit, error) {
	if u, ok := call.Value(unitKey{}).(*unit); ok {
		return u, nil
	}
	name := call.Manifest().Name
	d.mu.RLock()
	dbs, ok := d.dbs[name]
	d.mu.RUnlock()
	if !ok {
		return nil, runtime.Errorf(wire.CodeUnavailable, "no database is configured for plugin %s (set KEEL_DATABASE_URL)", name)
	}
	if call.Context.Tenant == "" {
		return nil, runtime.Errorf(wire.CodeInvalid, "this call acts for no tenant: database access and events are per tenant (authenticate, or send X-Tenant-ID on a public route)")
	}
	pdb := dbs.readWrite
	if call.ReadOnly() {
		pdb = dbs.readOnly
	}
	u := &unit{pdb: pdb, tenant: call.Context.Tenant}
	call.SetValue(unitKey{}, u)
	call.OnFinish(u)
	return u, nil
}

func (u *unit) begin(ctx context.Context) (*postgres.Tx, error) {
	if u.tx == nil {
		tx, err := u.pdb.Begin(ctx, u.tenant)
		if err != nil {
			return nil, err
		}
		u.tx = tx
	}
	return u.tx, nil
}

// Finish commits (with the outbox events) on success and rolls back otherwise.
func (u *unit) Finish(ctx context.Context, success bool) error {
	if !success {
		u.events = nil
		if u.tx != nil {
			return u.tx.Rollback(ctx)
		}
		return nil
	}
	if u.tx == nil && len(u.events) == 0 {
		return nil
	}
	tx, err := u.begin(ctx)
	if err != nil {
		return fmt.Errorf("unit of work: %w", err)
	}
	if err := tx.Commit(ctx, u.events); err != nil {
		return fmt.Errorf("unit of work: commit: %w", err)
	}
	return nil
}

func (d *Data) checkSQL(call *runtime.Call) error {
	if !call.Manifest().Capabilities.SQL {
		return runtime.Errorf(wire.CodeDenied, "plugin %s does not declare the sql capability", call.Manifest().Name)
	}
	return nil
}

func (d *Data) statement(ctx context.Context, call *runtime.Call, in []byte) (*postgres.Tx, *wire.SQLRequest, error) {
	if err := d.checkSQL(call); err != nil {
		return nil, nil, err
	}
	var req wire.SQLRequest
	if err := wire.DecodeSQLRequest(in, &req); err != nil {
		return nil, nil, runtime.Errorf(wire.CodeMalformed, "%v", err)
	}
	u, err := d.unitOf(call)
	if err != nil {
		return nil, nil, err
	}
	tx, err := u.begin(ctx)
	if err != nil {
		return nil, nil, sqlError(err)
	}
	return tx, &req, nil
}

func (d *Data) query(ctx context.Context, call *runtime.Call, in []byte) ([]byte, error) {
	tx, req, err := d.statement(ctx, call, in)
	if err != nil {
		return nil, err
	}
	var out wire.SQLResult
	var cols []postgres.Column
	if req.JSON {
		// Rendered natively from the server's text, which spares the guest decoding
		// typed values and formatting them in wasm, most of a read handler's guest time.
		res, err := tx.QueryJSON(ctx, req.SQL, req.Params)
		if err != nil {
			return nil, sqlError(err)
		}
		cols, out.JSONRows = res.Columns, res.Rows
		out.RowsAffected = int64(len(res.Rows))
	} else {
		res, err := tx.Query(ctx, req.SQL, req.Params)
		if err != nil {
			return nil, sqlError(err)
		}
		cols, out.Rows = res.Columns, res.Rows
		out.RowsAffected = int64(len(res.Rows))
	}
	out.Columns = make([]wire.Column, len(cols))
	size := wire.HeaderSize + 8 // the rows-affected field
	for i, c := range cols {
		out.Columns[i] = wire.Column{Name: c.Name, Type: c.Type}
		size += 3*wire.HeaderSize + len(c.Name) + len(c.Type)
	}
	for _, row := range out.JSONRows {
		size += wire.HeaderSize + len(row)
	}
	// Sized for JSON results, so that a declared lookup's result (which has no
	// instance buffer to borrow) is built in one allocation rather than by doubling.
	b, err := wire.AppendSQLResult(call.OutBuf(size), &out)
	if err != nil {
		return nil, runtime.Errorf(wire.CodeInternal, "encode result: %v", err)
	}
	return b, nil
}

func (d *Data) exec(ctx context.Context, call *runtime.Call, in []byte) ([]byte, error) {
	tx, req, err := d.statement(ctx, call, in)
	if err != nil {
		return nil, err
	}
	n, err := tx.Exec(ctx, req.SQL, req.Params)
	if err != nil {
		return nil, sqlError(err)
	}
	return wire.AppendInt(nil, 3, n), nil
}

// sqlError maps database failures to stable ABI codes; Detail carries the SQLSTATE.
func sqlError(err error) error {
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, postgres.ErrStatementDenied):
		return runtime.Errorf(wire.CodeDenied, "%v", err)
	case errors.Is(err, postgres.ErrResultTooLarge):
		return runtime.Errorf(wire.CodeTooLarge, "%v", err)
	case errors.Is(err, context.DeadlineExceeded):
		return runtime.Errorf(wire.CodeDeadline, "%v", err)
	case errors.Is(err, postgres.ErrConnLost), errors.Is(err, postgres.ErrStatementChanged):
		return runtime.Errorf(wire.CodeUnavailable, "%v", err)
	case errors.As(err, &pe):
		code := wire.CodeDatabase
		switch {
		case pe.Code == "23505" || pe.Code == "40001" || pe.Code == "40P01":
			code = wire.CodeConflict
		case pe.Code == "57014":
			code = wire.CodeDeadline
		case pe.Code == "42501", pe.Code == "25006": // insufficient privilege; a write in a read_only route
			code = wire.CodeDenied
		case len(pe.Code) == 2 && pe.Code[:2] == "08":
			code = wire.CodeUnavailable
		}
		return &runtime.CapError{Code: code, Message: pe.Message, Detail: pe.Code}
	case errors.Is(err, postgres.ErrTxAborted), errors.Is(err, postgres.ErrTxDone):
		return runtime.Errorf(wire.CodeDatabase, "%v", err)
	default:
		var ce *pgconn.ConnectError
		if errors.As(err, &ce) || pgconn.SafeToRetry(err) {
			return runtime.Errorf(wire.CodeUnavailable, "database unavailable: %v", err)
		}
		return runtime.Errorf(wire.CodeUnavailable, "database: %v", err)
	}
}

func (d *Data) publish(_ context.Context, call *runtime.Call, in []byte) ([]byte, error) {
	f, err := decode(in)
	if err != nil {
		return nil, err
	}
	m := call.Manifest()
	topic := f.String(evTopic)
	if !m.Capabilities.Publishes(topic) {
		return nil, runtime.Errorf(wire.CodeDenied, "plugin %s does not declare publishing to topic %q", m.Name, topic)
	}
	if call.ReadOnly() {
		return nil, runtime.Errorf(wire.CodeDenied, "plugin %s: this route is declared read_only and cannot publish events", m.Name)
	}
	typ := f.String(evType)
	if typ == "" || len(typ) > 200 {
		return nil, runtime.Errorf(wire.CodeInvalid, "event type must be 1 to 200 characters")
	}
	payload := f.Bytes(evPayload)
	if len(payload) > maxEventPayload {
		return nil, runtime.Errorf(wire.CodeTooLarge, "event payload of %d bytes exceeds %d", len(payload), maxEventPayload)
	}
	if !json.Valid(payload) {
		return nil, runtime.Errorf(wire.CodeInvalid, "event payload must be JSON")
	}
	u, err := d.unitOf(call)
	if err != nil {
		return nil, err
	}
	if len(u.events) >= maxEventsPerCall {
		return nil, runtime.Errorf(wire.CodeTooLarge, "more than %d events in one invocation", maxEventsPerCall)
	}
	id := f.String(evID)
	if id == "" {
		id = events.NewID()
	} else if len(id) > 128 {
		return nil, runtime.Errorf(wire.CodeInvalid, "event id longer than 128")
	} else {
		id = m.Name + ":" + id // idempotency keys are per plugin, so plugins cannot suppress each other's events
	}
	env := events.Envelope{ID: id, Type: typ, Tenant: call.Context.Tenant, Source: m.Name, Time: time.Now().UTC(),
		RequestID: call.Context.RequestID, Payload: append(json.RawMessage(nil), payload...)}
	b, err := env.Encode()
	if err != nil {
		return nil, runtime.Errorf(wire.CodeInternal, "encode envelope: %v", err)
	}
	u.events = append(u.events, postgres.OutboxEvent{ID: id, Topic: topic, Key: append([]byte(nil), f.Bytes(evKey)...), Payload: b,
		Headers: map[string]string{"keel-type": typ, "keel-source": m.Name}})
	return wire.AppendString(nil, evID, id), nil
}
