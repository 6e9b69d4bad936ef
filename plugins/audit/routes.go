package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	keel "github.com/keelhq/keel/abi/sdk"
)

// Page sizes.
const (
	defaultLimit = 50
	maxLimit     = 200
	verifyPage   = 1000 // rows per query while verifying
	maxArchive   = 10000
	maxPageBytes = 8 << 20 // response body budget of one search page (the manifest allows 16 MiB)
)

// recordColumns are the columns read for a record, in both tables.
const recordColumns = `tenant_id, seq, event_id, source, action, actor, resource, request_id, detail, at, prev_hash, hash`

func rowRecord(rows *keel.Rows, i int) *record {
	row := rows.Row(i)
	return &record{
		Tenant: row.String("tenant_id"), Seq: row.Int("seq"), EventID: row.String("event_id"),
		Source: row.String("source"), Action: row.String("action"), Actor: row.String("actor"),
		Resource: row.String("resource"), RequestID: row.String("request_id"), Detail: row.String("detail"),
		At: row.Time("at"), PrevHash: row.String("prev_hash"), Hash: row.String("hash"),
	}
}

// recordJSON is a record in responses.
type recordJSON struct {
	Seq       int64           `json:"seq"`
	EventID   string          `json:"event_id"`
	Source    string          `json:"source"`
	Action    string          `json:"action"`
	Actor     string          `json:"actor"`
	Resource  string          `json:"resource"`
	RequestID string          `json:"request_id"`
	Detail    json.RawMessage `json:"detail"`
	At        string          `json:"at"`
	PrevHash  string          `json:"prev_hash"`
	Hash      string          `json:"hash"`
}

func (r *record) json() recordJSON {
	d := json.RawMessage(r.Detail)
	if !json.Valid(d) {
		d = json.RawMessage(`null`)
	}
	return recordJSON{Seq: r.Seq, EventID: r.EventID, Source: r.Source, Action: r.Action, Actor: r.Actor,
		Resource: r.Resource, RequestID: r.RequestID, Detail: d, At: r.At.UTC().Format(atLayout), PrevHash: r.PrevHash, Hash: r.Hash}
}

// fieldError is a 400 in the platform's error shape that also names the offending
// query parameter under "fields".
func fieldError(r *keel.Request, field, msg string) *keel.Response {
	return keel.JSON(400, map[string]any{"error": map[string]any{
		"code": "invalid_query", "message": field + ": " + msg,
		"fields": map[string]string{field: msg}, "request_id": r.Call().RequestID(),
	}})
}

func internal(what string, err error) *keel.Response {
	keel.Log.Error(what, "err", err.Error())
	return keel.Error(500, "internal", what+" failed")
}

var searchParams = map[string]bool{"actor": true, "action": true, "resource": true, "source": true, "request_id": true,
	"from": true, "to": true, "limit": true, "cursor": true, "archived": true}

// likePrefix turns "customer.*" into a LIKE pattern matching the prefix literally.
func likePrefix(p string) string {
	p = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(strings.TrimSuffix(p, "*"))
	return p + "%"
}

// searchRecords answers GET /records: the tenant's records, newest first, filtered by
// actor, action, resource, source, request_id (exact; action and resource also as a
// prefix with a trailing '*') and a time range on "at" (from inclusive, to exclusive,
// RFC 3339), paginated by an opaque cursor. archived=true searches the archive.
func searchRecords(r *keel.Request) *keel.Response {
	q := r.Query()
	for k := range q {
		if !searchParams[k] {
			return fieldError(r, k, "unknown query parameter")
		}
	}
	table := "records"
	switch q.Get("archived") {
	case "", "false":
	case "true":
		table = "archive"
	default:
		return fieldError(r, "archived", "want true or false")
	}
	limit := defaultLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			return fieldError(r, "limit", fmt.Sprintf("want a whole number from 1 to %d", maxLimit))
		}
		limit = n
	}
	var where []string
	var args []any
	arg := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	for _, f := range []string{"actor", "action", "resource", "source", "request_id"} {
		v := q.Get(f)
		if v == "" {
			continue
		}
		if (f == "action" || f == "resource") && strings.HasSuffix(v, "*") {
			where = append(where, f+` LIKE `+arg(likePrefix(v))+` ESCAPE '\'`)
		} else {
			where = append(where, f+" = "+arg(v))
		}
	}
	for _, f := range []struct{ name, op string }{{"from", ">="}, {"to", "<"}} {
		s := q.Get(f.name)
		if s == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return fieldError(r, f.name, "want an RFC 3339 time such as 2025-01-31T00:00:00Z")
		}
		where = append(where, "at "+f.op+" "+arg(t.UTC()))
	}
	if c := q.Get("cursor"); c != "" {
		seq, err := strconv.ParseInt(c, 10, 64)
		if err != nil || seq < 1 {
			return fieldError(r, "cursor", "not a cursor returned by this endpoint")
		}
		where = append(where, "seq < "+arg(seq))
	}
	sql := `SELECT ` + recordColumns + ` FROM ` + table
	if len(where) > 0 {
		sql += ` WHERE ` + strings.Join(where, " AND ")
	}
	sql += ` ORDER BY seq DESC LIMIT ` + arg(nil)
	// One row more than the page tells whether there is a next page. If the rows
	// exceed the host's result limit (large details), fetch fewer: the page is then
	// shorter than asked and the cursor continues it.
	var rows *keel.Rows
	for fetch := limit + 1; ; fetch = max(2, fetch/4) {
		args[len(args)-1] = int64(fetch)
		var err error
		rows, err = keel.DB.Query(sql, args...)
		if errors.Is(err, keel.ErrTooLarge) && fetch > 2 {
			continue
		}
		if err != nil {
			return internal("search", err)
		}
		limit = min(limit, fetch-1)
		break
	}
	out := struct {
		Records    []recordJSON `json:"records"`
		NextCursor string       `json:"next_cursor,omitempty"`
	}{Records: []recordJSON{}}
	size := 0
	for i := 0; i < rows.Len() && i < limit; i++ {
		rec := rowRecord(rows, i)
		if size += len(rec.Detail) + len(rec.Actor) + len(rec.Resource) + 512; size > maxPageBytes && i > 0 {
			limit = i // keep the response well under max_response_bytes
			break
		}
		out.Records = append(out.Records, rec.json())
	}
	if rows.Len() > limit {
		out.NextCursor = strconv.FormatInt(out.Records[limit-1].Seq, 10)
	}
	return keel.JSON(200, out)
}

// chainHead is a tenant's chain_heads row.
type chainHead struct {
	lastSeq      int64
	lastHash     string
	archivedSeq  int64
	archivedHash string
}

// readHead reads the tenant's head with the given lock clause; ok is false when the
// tenant has no records yet.
func readHead(lock string) (h chainHead, ok bool, err error) {
	rows, err := keel.DB.Query(`SELECT last_seq, last_hash, archived_seq, archived_hash FROM chain_heads ` + lock)
	if err != nil || rows.Len() == 0 {
		return h, false, err
	}
	row := rows.Row(0)
	return chainHead{row.Int("last_seq"), row.String("last_hash"), row.Int("archived_seq"), row.String("archived_hash")}, true, nil
}

// verifyResult is the answer of GET /verify.
type verifyResult struct {
	Valid    bool   `json:"valid"`
	Records  int64  `json:"records"`
	Scope    string `json:"scope"`
	FromSeq  int64  `json:"from_seq,omitempty"`
	HeadSeq  int64  `json:"head_seq"`
	HeadHash string `json:"head_hash,omitempty"`
	BrokenAt int64  `json:"broken_at,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Table    string `json:"table,omitempty"`
}

// verifyChain answers GET /verify: it recomputes the tenant's chain and reports the
// first record that does not fit. scope=live (default) checks the live records from
// the retention checkpoint on; scope=all checks the archive from the genesis hash and
// then the live records.
//
// It holds a KEY SHARE lock on the tenant's head: appends (which never change the
// key) go on, while a retention run (FOR UPDATE) waits, so no record moves between
// tables under the verification.
func verifyChain(r *keel.Request) *keel.Response {
	scope := r.Query().Get("scope")
	switch scope {
	case "":
		scope = "live"
	case "live", "all":
	default:
		return fieldError(r, "scope", "want live or all")
	}
	head, ok, err := readHead("FOR KEY SHARE")
	if err != nil {
		return internal("verify: read chain head", err)
	}
	res := verifyResult{Valid: true, Scope: scope}
	if !ok {
		return keel.JSON(200, res)
	}
	res.HeadSeq, res.HeadHash = head.lastSeq, head.lastHash

	seq, prev := head.archivedSeq, head.archivedHash
	if head.archivedSeq == 0 {
		prev = genesisHash
	}
	if scope == "all" {
		seq, prev = 0, genesisHash
		err := walk("archive", head.archivedSeq, &seq, &prev, &res.Records)
		if res.broken(err) {
			return verified(r, res)
		} else if err != nil {
			return internal("verify: read archive", err)
		}
		if seq != head.archivedSeq || (head.archivedSeq > 0 && prev != head.archivedHash) {
			res.Valid, res.BrokenAt, res.Reason, res.Table = false, seq+1, "checkpoint_mismatch", "archive"
			return verified(r, res)
		}
	} else if head.archivedSeq > 0 {
		// The checkpoint must still name the last archived record.
		rows, err := keel.DB.Query(`SELECT hash FROM archive WHERE seq = $1`, head.archivedSeq)
		if err != nil {
			return internal("verify: read checkpoint", err)
		}
		if rows.Len() != 1 || rows.Row(0).String("hash") != head.archivedHash {
			res.Valid, res.BrokenAt, res.Reason, res.Table = false, head.archivedSeq, "checkpoint_mismatch", "archive"
			return verified(r, res)
		}
	}
	res.FromSeq = seq + 1
	err = walk("records", head.lastSeq, &seq, &prev, &res.Records)
	if res.broken(err) {
		return verified(r, res)
	} else if err != nil {
		return internal("verify: read records", err)
	}
	if seq != head.lastSeq || prev != head.lastHash {
		// Records missing at the end, or a head that does not match the last record.
		res.Valid, res.BrokenAt, res.Reason, res.Table = false, seq+1, "head_mismatch", "records"
	}
	return verified(r, res)
}

// breakErr reports where a chain breaks.
type breakErr struct {
	seq    int64
	reason string
	table  string
}

func (b *breakErr) Error() string {
	return fmt.Sprintf("%s: broken at %d (%s)", b.table, b.seq, b.reason)
}

// broken records a walk's outcome in res and reports whether verification must stop.
// Only a *breakErr is a broken chain; other errors (the database) are returned by
// verifyChain as a 500, never as valid=false.
func (res *verifyResult) broken(err error) bool {
	var b *breakErr
	if errors.As(err, &b) {
		res.Valid, res.BrokenAt, res.Reason, res.Table = false, b.seq, b.reason, b.table
		return true
	}
	return false
}

// walk checks table's records after *seq up to and including upTo, page by page,
// advancing *seq and *prev past every record that fits and counting them in *n.
func walk(table string, upTo int64, seq *int64, prev *string, n *int64) error {
	page := int64(verifyPage)
	for *seq < upTo {
		rows, err := keel.DB.Query(`SELECT `+recordColumns+` FROM `+table+` WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3`,
			*seq, upTo, page)
		if errors.Is(err, keel.ErrTooLarge) && page > 1 {
			page = max(1, page/4) // large details: fewer rows per query
			continue
		}
		if err != nil {
			return err
		}
		if rows.Len() == 0 {
			return &breakErr{*seq + 1, "missing", table}
		}
		for i := 0; i < rows.Len(); i++ {
			rec := rowRecord(rows, i)
			want := *seq + 1
			l, err := rec.check(want, *prev)
			if err != nil {
				keel.Log.Warn("verify: record does not decode", "seq", rec.Seq, "err", err.Error())
			}
			if l != linkOK {
				at := rec.Seq
				if l == linkSeqGap {
					at = want // the first missing seq
				}
				return &breakErr{at, l.String(), table}
			}
			*seq, *prev = rec.Seq, rec.Hash
			*n++
		}
	}
	return nil
}

// verified answers with res; a broken chain is also logged and alerted once (per
// break) on audit.alerts, since nobody may be watching the response.
func verified(r *keel.Request, res verifyResult) *keel.Response {
	if !res.Valid {
		_ = keel.M("verify_failures_total").Inc()
		keel.Log.Error("audit chain broken", "tenant", r.Call().Tenant(), "broken_at", res.BrokenAt, "reason", res.Reason, "table", res.Table)
		_, err := keel.Events.Publish(alertTopic, "audit.chain_broken", map[string]any{
			"broken_at": res.BrokenAt, "reason": res.Reason, "table": res.Table, "head_seq": res.HeadSeq,
			"detected_by": r.Call().Subject(), "request_id": r.Call().RequestID(),
		}, keel.IdempotencyKey(shortKey("chain_broken", r.Call().Tenant(), res.Table, strconv.FormatInt(res.BrokenAt, 10), res.Reason)))
		if err != nil {
			keel.Log.Error("could not publish the chain_broken alert", "err", err.Error())
		}
	}
	return keel.JSON(200, res)
}
