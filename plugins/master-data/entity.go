package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"sort"
	"strconv"
	"strings"

	keel "github.com/keelhq/keel/abi/sdk"
)

// entity describes one kind of master data: its table (plural), its writable fields
// and what its list endpoint can search and filter on.
type entity struct {
	name    string  // singular: "customer"; used in permissions, topics and event types
	plural  string  // table name and route segment: "customers"
	fields  []field // writable columns, in table order
	search  []string
	filters []string
	// check validates what needs the database (references) after the per-field
	// validation passed. id and cur are empty on create; vals holds the values being
	// written. It returns field errors, or an error for a failed statement.
	check func(e *entity, id string, cur, vals map[string]any) (map[string]string, error)
	// onDelete runs after the soft delete, in the same unit of work. A non-nil response
	// is returned instead of the success, which rolls the delete back.
	onDelete func(e *entity, id string) (*keel.Response, error)

	cols string // the select list, built on first use
	byID string // the statement reading one live row, built on first use
}

// readOnly names the fields a body may carry (a client may send back what it read)
// but never writes; "version" is the concurrency token on updates.
var readOnly = map[string]bool{"id": true, "version": true, "created_at": true, "updated_at": true}

func (e *entity) field(name string) *field {
	for i := range e.fields {
		if e.fields[i].name == name {
			return &e.fields[i]
		}
	}
	return nil
}

// columns returns "id, <fields>, version, created_at, updated_at".
func (e *entity) columns() string {
	if e.cols == "" {
		names := []string{"id"}
		for _, f := range e.fields {
			names = append(names, f.name)
		}
		e.cols = strings.Join(append(names, "version", "created_at", "updated_at"), ", ")
	}
	return e.cols
}

// selectByID is the statement that reads one live row by id.
func (e *entity) selectByID() string {
	if e.byID == "" {
		e.byID = `SELECT ` + e.columns() + ` FROM ` + e.plural + ` WHERE id = $1 AND deleted_at IS NULL`
	}
	return e.byID
}

func (e *entity) permission(action string) string { return "master-data." + e.name + "." + action }

// render turns row i into the entity's JSON object: decimals become JSON numbers,
// timestamps RFC 3339, ids strings.
func (e *entity) render(rows *keel.Rows, i int) map[string]any {
	m := make(map[string]any, len(rows.Columns))
	for j, c := range rows.Columns {
		v := rows.Data[i][j]
		if f := e.field(c.Name); f != nil && f.kind == kDecimal {
			if s, ok := v.(string); ok {
				v = json.Number(s)
			}
		}
		m[c.Name] = v
	}
	return m
}

// decodeObject reads a request body that must be one JSON object.
func decodeObject(r *keel.Request) (map[string]json.RawMessage, *keel.Response) {
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	var obj map[string]json.RawMessage
	if err := dec.Decode(&obj); err != nil || obj == nil {
		msg := "the body must be a JSON object"
		if err != nil && err != io.EOF {
			msg += ": " + err.Error()
		}
		return nil, keel.Error(400, "invalid_json", msg)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, keel.Error(400, "invalid_json", "the body must be a single JSON object")
	}
	return obj, nil
}

// values validates a body. On create (cur == nil) it returns a value for every field:
// absent fields get their default, absent required fields are errors. On update it
// returns only the fields present in the body (absent fields keep their value; null
// clears an optional field).
func (e *entity) values(obj map[string]json.RawMessage, cur map[string]any) (map[string]any, map[string]string) {
	vals := map[string]any{}
	bad := map[string]string{}
	for k := range obj {
		if !readOnly[k] && e.field(k) == nil {
			bad[k] = "is not a field of " + e.name
		}
	}
	for i := range e.fields {
		f := &e.fields[i]
		raw, present := obj[f.name]
		if !present {
			if cur == nil {
				if f.required {
					bad[f.name] = "is required"
				} else {
					vals[f.name] = f.def
				}
			}
			continue
		}
		v, msg := f.parse(raw)
		if msg != "" {
			bad[f.name] = msg
			continue
		}
		if v == nil && f.def != nil && cur == nil {
			v = f.def
		}
		vals[f.name] = v
	}
	return vals, bad
}

// sameValue reports whether a validated value equals the stored (rendered) one.
func sameValue(f *field, stored, val any) bool {
	if stored == nil || val == nil {
		return stored == nil && val == nil
	}
	switch f.kind {
	case kDecimal:
		a, ok1 := new(big.Rat).SetString(toString(stored))
		b, ok2 := new(big.Rat).SetString(toString(val))
		return ok1 && ok2 && a.Cmp(b) == 0
	case kInt:
		a, _ := stored.(int64)
		b, _ := val.(int64)
		return a == b
	}
	return toString(stored) == toString(val)
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case int64:
		return strconv.FormatInt(x, 10)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// ---- responses -------------------------------------------------------------------

// fail is the platform's error body with optional field messages and extra members.
func fail(r *keel.Request, status int, code, message string, fields map[string]string, extra map[string]any) *keel.Response {
	e := map[string]any{"code": code, "message": message}
	if rid := r.Call().RequestID(); rid != "" {
		e["request_id"] = rid
	}
	if len(fields) > 0 {
		e["fields"] = fields
	}
	for k, v := range extra {
		e[k] = v
	}
	return keel.JSON(status, map[string]any{"error": e})
}

func validationFailed(r *keel.Request, fields map[string]string) *keel.Response {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	return fail(r, 422, "validation_failed", "invalid fields: "+strings.Join(names, ", "), fields, nil)
}

func etag(v int64) string { return `"` + strconv.FormatInt(v, 10) + `"` }

// dbFailure maps a failed statement to a response (and logs what the client does not see).
func dbFailure(r *keel.Request, what string, err error) *keel.Response {
	switch {
	case errors.Is(err, keel.ErrConflict):
		return fail(r, 409, "conflict", "a concurrent change conflicted with this request; retry", nil, nil)
	case errors.Is(err, keel.ErrDeadline):
		return fail(r, 504, "timeout", "the database did not answer in time", nil, nil)
	case errors.Is(err, keel.ErrUnavailable):
		return fail(r, 503, "unavailable", "the database is unavailable; retry", nil, nil)
	}
	keel.Log.Error(what+" failed", "error", err.Error())
	return fail(r, 500, "internal", "the request could not be completed", nil, nil)
}

// isUniqueViolation reports a unique_violation (SQLSTATE 23505).
func isUniqueViolation(err error) bool {
	var he *keel.HostError
	return errors.As(err, &he) && he.Detail == "23505"
}

// ---- versions --------------------------------------------------------------------

// parseVersion reads an ETag ("3", W/"3") or a bare version number.
func parseVersion(s string) (int64, bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "W/")
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil && v >= 1
}

// expectedVersion returns the version the client last saw, from If-Match, the body's
// "version" field or (for DELETE) the "version" query parameter. Missing: 428.
func expectedVersion(r *keel.Request, obj map[string]json.RawMessage) (int64, *keel.Response) {
	var have []int64
	if h := strings.TrimSpace(r.Header("If-Match")); h != "" {
		if h == "*" {
			return 0, fail(r, 428, "precondition_required", `If-Match must carry the row's ETag (its version), not "*"`, nil, nil)
		}
		v, ok := parseVersion(h)
		if !ok {
			return 0, fail(r, 400, "invalid_if_match", `If-Match must be the ETag returned by GET, e.g. "3"`, nil, nil)
		}
		have = append(have, v)
	}
	if raw, ok := obj["version"]; ok {
		var n json.Number
		v, err := int64(0), json.Unmarshal(raw, &n)
		if err == nil {
			v, err = strconv.ParseInt(n.String(), 10, 64)
		}
		if err != nil || v < 1 {
			return 0, validationFailed(r, map[string]string{"version": "must be a positive integer"})
		}
		have = append(have, v)
	}
	if s := r.Query().Get("version"); s != "" {
		v, ok := parseVersion(s)
		if !ok {
			return 0, fail(r, 400, "invalid_query", "invalid query parameters", map[string]string{"version": "must be a positive integer"}, nil)
		}
		have = append(have, v)
	}
	if len(have) == 0 {
		return 0, fail(r, 428, "precondition_required", "send If-Match with the ETag from GET (or a version field) to change this record", nil, nil)
	}
	for _, v := range have[1:] {
		if v != have[0] {
			return 0, fail(r, 400, "version_mismatch", "If-Match and the version field name different versions", nil, nil)
		}
	}
	return have[0], nil
}
