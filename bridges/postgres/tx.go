package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrTxDone reports use of a Tx after Commit or Rollback.
var ErrTxDone = errors.New("transaction already committed or rolled back")

// ErrTxAborted reports a Commit of a transaction in which a statement failed; PostgreSQL has already
// discarded its work, so it is rolled back.
var ErrTxAborted = errors.New("transaction aborted by an earlier error; rolled back")

// ErrConnLost reports a statement whose database connection was lost; the server rolls back the
// transaction it was in.
var ErrConnLost = errors.New("database connection lost; the unit of work was rolled back")

// ErrReadOnly is returned by Commit when a read-only Tx is given outbox events.
var ErrReadOnly = errors.New("read-only unit of work cannot publish events")

// ErrResultTooLarge reports a Query whose result exceeds the plugin's row or byte limit.
var ErrResultTooLarge = errors.New("query result too large")

// ErrStatementChanged reports that a prepared statement's result no longer matches the
// plugin's tables: another host migrated them (this host's statement names move only
// with its own migrations; see statementGen). The plugin's statements are prepared
// again from the next one on, so running the work again succeeds.
var ErrStatementChanged = errors.New("the plugin's tables changed under a prepared statement; it is prepared again on the next call")

// maxTenantLen bounds tenant ids, which arrive from request headers and tokens.
const maxTenantLen = 200

// rollbackTimeout bounds the ROLLBACK sent when the caller's context is already done; past it the
// connection is closed instead, which ends the transaction just as surely.
const rollbackTimeout = 5 * time.Second

// setupSQL switches a fresh transaction to the plugin. set_config(..., true) is SET LOCAL: every value
// reverts at COMMIT or ROLLBACK, so nothing reaches the next user of the pooled connection.
// set_config('role', ...) is the function form of SET LOCAL ROLE.
const setupSQL = `SELECT set_config('role', $1, true), set_config('search_path', $2, true), ` +
	`set_config('app.tenant_id', $3, true), set_config('app.plugin', $4, true), set_config('statement_timeout', $5, true)`

// setupReadOnlySQL is setupSQL for a read-only unit of work: the transaction, implicit or not, also
// refuses writes. Setting transaction_read_only to on is allowed at any point of a transaction.
const setupReadOnlySQL = setupSQL + `, set_config('transaction_read_only', 'on', true)`

var textOIDs5 = []uint32{oidText, oidText, oidText, oidText, oidText}

// Tx is one plugin invocation's unit of work: a transaction on one pooled connection, running as the
// plugin's role, in its schema, for one tenant. Statements are checked by the SQL guard before they are
// sent. A Tx is not safe for concurrent use (a plugin instance is single-threaded); it must end with
// Commit or Rollback, after which its connection is back in the pool.
type Tx struct {
	p      PluginDB
	tenant string
	conn   *pgxpool.Conn // nil once the transaction has ended
	// setup holds the parameters of BEGIN and the switch to the plugin's role and
	// tenant until the first statement, which carries them in the same round trip.
	// A read-only Tx keeps it while its statements run in implicit transactions, each
	// carrying the setup (see ReadOnly); nil means an explicit transaction is open.
	setup [][]byte
	// deadline is the deadline set on the connection's socket (see bound), zero if none.
	deadline time.Time
}

// implicit reports whether the next statement runs in its own implicit transaction.
func (tx *Tx) implicit() bool { return tx.p.limits.readOnly && tx.setup != nil }

// Begin starts a transaction for tenant. BEGIN and the switch to the plugin's role, search_path,
// tenant, plugin name and statement timeout travel in one pipelined round trip.
func (p PluginDB) Begin(ctx context.Context, tenant string) (*Tx, error) {
	if p.db == nil {
		return nil, errors.New("postgres: PluginDB not initialised; use EnsurePlugin")
	}
	if err := p.limits.validate(); err != nil {
		return nil, fmt.Errorf("postgres: plugin %q: %w", p.names.name, err)
	}
	if tenant == "" || len(tenant) > maxTenantLen || !utf8.ValidString(tenant) || strings.IndexByte(tenant, 0) >= 0 {
		return nil, fmt.Errorf("postgres: plugin %q: invalid tenant id (1 to %d bytes of UTF-8 without NUL)", p.names.name, maxTenantLen)
	}
	conn, err := p.db.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: plugin %q: acquire connection: %w", p.names.name, err)
	}
	// Nothing is sent yet: BEGIN and the setup travel with the first statement (or
	// alone, if the first statement still has to be prepared), and a transaction that
	// runs no statement costs no round trip at all.
	// The tenant and the timeout share one allocation; the rest was encoded once.
	vary := append(make([]byte, 0, len(tenant)+20), tenant...)
	vary = strconv.AppendInt(vary, p.limits.statementTimeout.Milliseconds(), 10)
	return &Tx{p: p, tenant: tenant, conn: conn, setup: [][]byte{
		p.names.roleParam,
		p.names.searchPathParam,
		vary[:len(tenant):len(tenant)],
		p.names.nameParam,
		vary[len(tenant):],
	}}, nil
}

// queueBegin adds BEGIN and the setup, prepared on the connection as setup, to a batch.
func (tx *Tx) queueBegin(b *pgconn.Batch, setup *pgconn.StatementDescription) {
	b.ExecParams("BEGIN", nil, nil, nil, nil)
	b.ExecStatement(setup, tx.setup, nil, nil)
	tx.setup = nil
}

// beginNow sends BEGIN and the setup on their own.
func (tx *Tx) beginNow(ctx context.Context) error {
	if tx.setup == nil {
		return nil
	}
	setup, err := tx.ensureSetup(ctx)
	if err != nil {
		return fmt.Errorf("begin for tenant %q: %w", tx.tenant, err)
	}
	b := &pgconn.Batch{}
	tx.queueBegin(b, setup)
	if _, err := tx.conn.Conn().PgConn().ExecBatch(ctx, b).ReadAll(); err != nil {
		return fmt.Errorf("begin for tenant %q: %w", tx.tenant, err)
	}
	return nil
}

// Column describes one result column.
type Column struct {
	Name string
	// Type is the PostgreSQL type name as in pg_type.typname: int8, text, timestamptz, _int4 (an
	// array), or the name of an enum or domain.
	Type string
}

// Result is the outcome of Query. Every value is nil, bool, int64, float64, string, []byte or
// time.Time (see Tx.Query for the mapping).
type Result struct {
	Columns []Column
	Rows    [][]any
}

// Query runs one data-access statement with args and returns its rows.
//
// args may hold only nil, bool, int64, float64, string, []byte and time.Time. Strings are sent untyped,
// so PostgreSQL reads them as whatever the statement needs (uuid, jsonb, numeric, date, an enum);
// the others are sent as int8, float8, bool, bytea and timestamptz.
//
// Values come back as: NULL → nil; bool → bool; int2, int4, int8 → int64; float4, float8 → float64;
// bytea → []byte; timestamptz and timestamp → time.Time in UTC (infinity and years outside 1..9999 as
// their text); everything else, including numeric, uuid, json, jsonb, date, interval and arrays, as its
// PostgreSQL text form in a string. A result over the plugin's row or byte limit is an
// ErrResultTooLarge error; the transaction stays usable.
func (tx *Tx) Query(ctx context.Context, sql string, args []any) (*Result, error) {
	res := &Result{Rows: [][]any{}}
	fds, err := tx.run(ctx, "query", sql, args, nil, func(fds []pgconn.FieldDescription, raw [][]byte) error {
		row := make([]any, len(raw))
		for i, v := range raw {
			var err error
			if row[i], err = decodeText(fds[i].DataTypeOID, v); err != nil {
				return columnError(fds[i], err)
			}
		}
		res.Rows = append(res.Rows, row)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if res.Columns, err = tx.columns(ctx, fds); err != nil {
		return nil, err
	}
	return res, nil
}

// run runs one data-access statement with args and hands each row's values, in text
// format (nil for NULL, valid until the next row), to each, after start has seen the
// columns. It enforces the plugin's row and byte limits, and drains the result after
// a failure so the transaction stays usable; it returns the result's column
// descriptions. op names the operation in errors.
func (tx *Tx) run(ctx context.Context, op, sql string, args []any, start func([]pgconn.FieldDescription),
	each func(fds []pgconn.FieldDescription, raw [][]byte) error) ([]pgconn.FieldDescription, error) {
	if err := tx.check(sql); err != nil {
		return nil, err
	}
	ctx = tx.bound(ctx)
	values, oids, formats, err := encodeArgs(args)
	if err != nil {
		return nil, tx.errorf("%s: %w", op, err)
	}
	st, err := tx.execPrepared(ctx, sql, values, oids, formats)
	if err != nil {
		if err := tx.stillInTx(err); err != nil {
			return nil, err
		}
		return nil, tx.errorf("%s: %w", op, tx.changed(err))
	}
	rr := st.rr
	// Copy the descriptions: the connection reuses their memory for the next statement, and the type
	// name lookup after it is one.
	fds := slices.Clone(rr.FieldDescriptions())
	if start != nil {
		start(fds)
	}
	var rows int
	var size int64
	var failed error // a limit or a value each refused; the rest of the result is drained
	for rr.NextRow() {
		if failed != nil {
			continue
		}
		if rows >= tx.p.limits.maxRows {
			failed = fmt.Errorf("%w: more than %d rows", ErrResultTooLarge, tx.p.limits.maxRows)
			continue
		}
		raw := rr.Values()
		for _, v := range raw {
			size += int64(len(v))
		}
		if size > tx.p.limits.maxBytes {
			failed = fmt.Errorf("%w: more than %d bytes", ErrResultTooLarge, tx.p.limits.maxBytes)
			continue
		}
		if failed = each(fds, raw); failed == nil {
			rows++
		}
	}
	_, err = rr.Close()
	if derr := st.finish(); err == nil {
		err = derr
	}
	if err := tx.stillInTx(err); err != nil {
		return nil, err
	}
	if err == nil {
		err = failed
	}
	if err != nil {
		return nil, tx.errorf("%s: %w", op, tx.changed(err))
	}
	return fds, nil
}

// changed recognises PostgreSQL's refusal of a prepared statement whose result type
// changed (SQLSTATE 0A000, "cached plan must not change result type"), retires the
// plugin's prepared statements on this host so that each is prepared again, and marks
// err with ErrStatementChanged. Any other error is returned as it is.
func (tx *Tx) changed(err error) error {
	// The server function that raises it identifies the case whatever the server's
	// message language (lc_messages); the English text is the fallback.
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "0A000" ||
		(pe.Routine != "RevalidateCachedQuery" && !strings.Contains(pe.Message, "must not change result type")) {
		return err
	}
	tx.p.db.bumpStatements(tx.p.names.schema)
	tx.p.db.log.Warn("prepared statements retired: the plugin's tables changed under them", "schema", tx.p.names.schema)
	return fmt.Errorf("%w: %w", ErrStatementChanged, err)
}

// columns names and types the columns of a result.
func (tx *Tx) columns(ctx context.Context, fds []pgconn.FieldDescription) ([]Column, error) {
	cols := make([]Column, len(fds))
	for i, fd := range fds {
		cols[i] = Column{Name: fd.Name}
	}
	if err := tx.p.db.fillTypeNames(ctx, tx.conn.Conn().PgConn(), fds, cols); err != nil {
		return nil, tx.errorf("query: %w", err)
	}
	return cols, nil
}

// Exec runs one data-access statement with args (see Query) and returns the number of rows it
// inserted, updated or deleted. Rows it returns (RETURNING) are discarded.
func (tx *Tx) Exec(ctx context.Context, sql string, args []any) (rowsAffected int64, err error) {
	if err := tx.check(sql); err != nil {
		return 0, err
	}
	ctx = tx.bound(ctx)
	values, oids, formats, err := encodeArgs(args)
	if err != nil {
		return 0, tx.errorf("exec: %w", err)
	}
	st, err := tx.execPrepared(ctx, sql, values, oids, formats)
	if err != nil {
		if err := tx.stillInTx(err); err != nil {
			return 0, err
		}
		return 0, tx.errorf("exec: %w", tx.changed(err))
	}
	for st.rr.NextRow() {
	}
	tag, err := st.rr.Close()
	if derr := st.finish(); err == nil {
		err = derr
	}
	if err := tx.stillInTx(err); err != nil {
		return 0, err
	}
	if err != nil {
		return 0, tx.errorf("exec: %w", tx.changed(err))
	}
	return tag.RowsAffected(), nil
}

// Commit commits the transaction. When events is non-empty they are written to keel_host.outbox in
// the same transaction, after the plugin's deferred triggers have fired and the role is reset (the
// plugin's role has no privilege on keel_host, so only this path can write there), and a NOTIFY wakes
// the relays once the commit is visible. All of it, COMMIT included, travels in one round trip. Events whose ID is already in the outbox are skipped, so
// an ID works as an idempotency key; an empty ID gets a random one.
//
// If a statement of the transaction failed, Commit rolls back and returns ErrTxAborted. Whatever the
// outcome, the Tx is finished afterwards.
func (tx *Tx) Commit(ctx context.Context, events []OutboxEvent) error {
	if tx.conn == nil {
		return tx.errorf("commit: %w", ErrTxDone)
	}
	defer tx.end(ctx)
	if tx.p.limits.readOnly && len(events) > 0 {
		return tx.errorf("commit: %w", ErrReadOnly)
	}
	if tx.setup != nil && len(events) == 0 {
		return nil // no explicit transaction is open: there is nothing to commit
	}
	ctx = tx.bound(ctx)
	if err := tx.beginNow(ctx); err != nil {
		return tx.errorf("commit: %w", err)
	}
	pc := tx.conn.Conn().PgConn()
	switch pc.TxStatus() {
	case 'T':
	case 'E':
		return tx.errorf("commit: %w", ErrTxAborted)
	default:
		return tx.errorf("commit: connection left the transaction (status %q)", pc.TxStatus())
	}
	b := &pgconn.Batch{}
	if len(events) > 0 {
		queueLeavePlugin(b)
		if err := queueOutboxInsert(b, events); err != nil {
			return tx.errorf("commit: %w", err)
		}
		b.ExecParams("SELECT pg_catalog.pg_notify('"+outboxChannel+"', '')", nil, nil, nil, nil)
	}
	b.ExecParams("COMMIT", nil, nil, nil, nil)
	results, err := pc.ExecBatch(ctx, b).ReadAll()
	if err != nil {
		return tx.errorf("commit: %w", err)
	}
	if tag := results[len(results)-1].CommandTag.String(); tag != "COMMIT" {
		return tx.errorf("commit: server answered %s: %w", tag, ErrTxAborted)
	}
	return nil
}

// Rollback discards the transaction. It is safe to call after Commit (it then does nothing), so it
// can be deferred.
func (tx *Tx) Rollback(ctx context.Context) error {
	if tx.conn == nil {
		return nil
	}
	tx.end(ctx)
	return nil
}

// leavePluginSQL ends the plugin's part of a transaction so the host can write keel_host in it.
//
// SET CONSTRAINTS ALL IMMEDIATE comes first and matters: deferred constraint triggers otherwise fire at
// COMMIT, after RESET ROLE, and a plugin could plant one to run its own function as the privileged
// user. Firing them now runs them as the plugin. search_path then drops the plugin's schema, so nothing
// the plugin defined can be picked up by name in the host's statements.
var leavePluginSQL = []string{
	"SET CONSTRAINTS ALL IMMEDIATE",
	"RESET ROLE",
	"SET LOCAL search_path TO pg_catalog",
}

func queueLeavePlugin(b *pgconn.Batch) {
	for _, sql := range leavePluginSQL {
		b.ExecParams(sql, nil, nil, nil, nil)
	}
}

// check refuses statements on a finished Tx and statements the guard denies.
func (tx *Tx) check(sql string) error {
	if tx.conn == nil {
		return tx.errorf("%w", ErrTxDone)
	}
	if err := tx.p.db.guard.check(sql); err != nil {
		return tx.errorf("%w", err)
	}
	return nil
}

// bound applies ctx's deadline to the connection's socket and returns a context
// without cancellation for pgconn. The deadline stays on the socket for the next
// statement (a call's statements share its deadline, so it is set once per unit of
// work, not twice per statement) and is cleared when the Tx ends.
//
// pgconn watches a cancellable context with a goroutine per operation; on this
// platform's small machines that hand-off cost more than the query (86 µs for begin,
// query and commit with a background context, 269 µs with a deadline). A socket
// deadline bounds the operation as well: when it passes, the read fails, the
// connection is discarded and the transaction reports the error. statement_timeout
// still bounds the server side.
func (tx *Tx) bound(ctx context.Context) context.Context {
	if ctx.Err() != nil {
		return ctx // fail fast, as pgconn would
	}
	d, _ := ctx.Deadline() // zero without one: the socket then has none either
	if ctx.Done() == nil {
		d = time.Time{}
	}
	if !d.Equal(tx.deadline) {
		_ = tx.conn.Conn().PgConn().Conn().SetDeadline(d)
		tx.deadline = d
	}
	if ctx.Done() == nil {
		return ctx
	}
	return context.WithoutCancel(ctx)
}

func (tx *Tx) closedConn() bool { return tx.conn == nil || tx.conn.Conn().PgConn().IsClosed() }

// stillInTx is the backstop behind the guard: if a statement somehow ended the transaction, the
// session is back to the privileged user, so the connection is destroyed rather than used again.
// After a statement in an implicit transaction (read-only Tx) the connection must instead be idle:
// a transaction still open there was opened by the plugin's statement. A connection that was lost
// (the server went away, a failover, a terminated backend) is reported as ErrConnLost with the
// statement's error, cause, which may be nil if the loss surfaced only when the result was read.
func (tx *Tx) stillInTx(cause error) error {
	pc := tx.conn.Conn().PgConn()
	if pc.IsClosed() {
		tx.conn.Release() // the pool destroys a closed connection
		tx.conn = nil
		if cause == nil {
			cause = errors.New("connection closed")
		}
		return tx.errorf("%w: %w", ErrConnLost, cause)
	}
	s := pc.TxStatus()
	ok := s == 'T' || s == 'E'
	if tx.implicit() {
		ok = s == 'I'
	}
	if !ok {
		tx.conn.Conn().Close(context.Background()) //nolint:errcheck // the pool discards the closed connection
		tx.conn.Release()
		tx.conn = nil
		return tx.errorf("statement left the connection in the wrong transaction state (status %q); connection discarded", s)
	}
	return nil
}

// end rolls back if still inside the transaction and returns the connection to the pool.
func (tx *Tx) end(ctx context.Context) {
	endConn(ctx, tx.conn, !tx.deadline.IsZero())
	tx.conn = nil
}

// endConn ends whatever transaction conn is in and releases it; the pool destroys it if that
// failed. hasDeadline says a deadline may be set on its socket, which is cleared first.
func endConn(ctx context.Context, conn *pgxpool.Conn, hasDeadline bool) {
	pc := conn.Conn().PgConn()
	if !pc.IsClosed() && pc.TxStatus() != 'I' {
		// Bounded by a socket deadline rather than a cancellable context (see bound).
		_ = pc.Conn().SetDeadline(time.Now().Add(rollbackTimeout))
		hasDeadline = true
		pc.Exec(context.WithoutCancel(ctx), "ROLLBACK").Close() //nolint:errcheck // on failure the pool destroys the connection
	}
	if hasDeadline && !pc.IsClosed() {
		_ = pc.Conn().SetDeadline(time.Time{}) // never hand the pool a connection with a deadline
	}
	conn.Release()
}

func (tx *Tx) errorf(format string, args ...any) error {
	return fmt.Errorf("postgres: plugin %q tenant %q: "+format, append([]any{tx.p.names.name, tx.tenant}, args...)...)
}
