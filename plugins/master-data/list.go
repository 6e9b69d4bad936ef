package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	keel "github.com/keelhq/keel/abi/sdk"
)

// Page sizes of the list endpoints.
const (
	defaultLimit = 50
	maxLimit     = 200
	maxSearch    = 200
)

// sortKeys are the orders a list can be read in, each made total by the id. The
// default, created_at, is stable under updates: a row keeps its place while pages are
// read, and rows created meanwhile appear at the end.
var sortKeys = map[string]string{"created_at": "timestamptz", "code": "text", "name": "text"}

// cursor is the position after the last row of a page: the sort key's value and the
// id. It travels as unpadded base64url of its JSON; clients treat it as opaque.
type cursor struct {
	Sort string `json:"s"`
	Key  string `json:"k"`
	ID   string `json:"i"`
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s, sort string) (cursor, bool) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil || json.Unmarshal(b, &c) != nil || c.Sort != sort || !validUUID(c.ID) {
		return c, false
	}
	if sort == "created_at" {
		if _, err := time.Parse(time.RFC3339Nano, c.Key); err != nil {
			return c, false
		}
	}
	return c, true
}

// escapeLike makes s match literally inside a LIKE pattern (backslash is the default escape).
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// GET /<plural>?q=&<filter>=&sort=&limit=&cursor=
func (e *entity) list(r *keel.Request) *keel.Response {
	q := r.Query()
	bad := map[string]string{}
	for k := range q {
		if k != "q" && k != "limit" && k != "cursor" && k != "sort" && !slices.Contains(e.filters, k) {
			bad[k] = "is not a parameter of this list (q, limit, cursor, sort, " + strings.Join(e.filters, ", ") + ")"
		}
	}
	limit := defaultLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			bad["limit"] = fmt.Sprintf("must be an integer between 1 and %d", maxLimit)
		}
		limit = min(n, maxLimit)
	}
	sort := q.Get("sort")
	if sort == "" {
		sort = "created_at"
	}
	if _, ok := sortKeys[sort]; !ok {
		bad["sort"] = "must be one of created_at, code, name"
	}

	where := []string{"deleted_at IS NULL"}
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if s := strings.TrimSpace(q.Get("q")); s != "" {
		if len([]rune(s)) > maxSearch {
			bad["q"] = fmt.Sprintf("must be at most %d characters", maxSearch)
		}
		p := arg("%" + escapeLike(s) + "%")
		var or []string
		for _, c := range e.search {
			or = append(or, c+" ILIKE "+p)
		}
		where = append(where, "("+strings.Join(or, " OR ")+")")
	}
	for _, name := range e.filters {
		s := q.Get(name)
		if s == "" {
			continue
		}
		v, msg := e.field(name).parseString(s)
		if msg != "" {
			bad[name] = msg
			continue
		}
		where = append(where, name+" = "+arg(v))
	}
	if s := q.Get("cursor"); s != "" && bad["sort"] == "" {
		c, ok := decodeCursor(s, sort)
		if !ok {
			bad["cursor"] = "is not a cursor of this list (use next_cursor as returned, with the same sort)"
		} else {
			where = append(where, fmt.Sprintf("(%s, id) > (%s::%s, %s::uuid)", sort, arg(c.Key), sortKeys[sort], arg(c.ID)))
		}
	}
	if len(bad) > 0 {
		return fail(r, 400, "invalid_query", "invalid query parameters", bad, nil)
	}
	sql := `SELECT ` + e.columns() + ` FROM ` + e.plural + ` WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY ` + sort + `, id LIMIT ` + arg(int64(limit+1))
	rows, err := keel.DB.QueryJSON(sql, args...)
	if err != nil {
		return dbFailure(r, "list "+e.plural, err)
	}
	n := min(rows.Len(), limit)
	var next string
	if rows.Len() > limit {
		// The sort key as the row renders it: text as is, a time as RFC 3339 in UTC.
		next = cursor{Sort: sort, ID: rows.String(n-1, "id"), Key: rows.String(n-1, sort)}.encode()
	}
	// {"items":[...],"next_cursor":"..."|null}, written directly from the rows the
	// host rendered (DB.QueryJSON).
	b := append(make([]byte, 0, 256+n*384), `{"items":`...)
	b = rows.AppendArray(b, 0, n)
	b = append(b, `,"next_cursor":`...)
	if next == "" {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendQuote(b, next) // base64url: nothing to escape
	}
	return keel.Bytes(200, "application/json", append(b, '}'))
}
