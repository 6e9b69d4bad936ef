package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	keel "github.com/keelhq/keel/abi/sdk"
)

// register installs the five routes of an entity. The manifest declares the same
// routes with their permissions; the gateway enforces them, and each handler checks
// again so that a route accidentally made public still refuses everyone.
func (e *entity) register() {
	base, item := "/"+e.plural, "/"+e.plural+"/:id"
	keel.Handle("POST", base, e.guard("write", e.create))
	keel.Handle("GET", base, e.guard("read", e.list))
	keel.Handle("GET", item, e.guard("read", e.get))
	keel.Handle("PUT", item, e.guard("write", e.update))
	keel.Handle("DELETE", item, e.guard("write", e.remove))
}

func (e *entity) guard(action string, h keel.HandlerFunc) keel.HandlerFunc {
	perm := e.permission(action)
	return func(r *keel.Request) *keel.Response {
		if !r.Call().HasPermission(perm) {
			return fail(r, 403, "forbidden", "this route requires the permission "+strconv.Quote(perm), nil, nil)
		}
		return h(r)
	}
}

// loadRows reads one live row by id; nil when it does not exist, is soft-deleted or
// belongs to another tenant (row-level security hides it: callers answer 404).
func (e *entity) loadRows(id string) (*keel.Rows, error) {
	if !validUUID(id) {
		return nil, nil
	}
	rows, err := keel.DB.Query(e.selectByID(), id)
	if err != nil || rows.Len() == 0 {
		return nil, err
	}
	return rows, nil
}

// load is loadRows rendered as the entity's object, for handlers that inspect it.
func (e *entity) load(id string) (map[string]any, error) {
	rows, err := e.loadRows(id)
	if rows == nil {
		return nil, err
	}
	return e.render(rows, 0), nil
}

func (e *entity) notFound(r *keel.Request) *keel.Response {
	return fail(r, 404, "not_found", "no "+e.name+" with id "+strconv.Quote(r.Param("id")), nil, nil)
}

func (e *entity) duplicate(r *keel.Request) *keel.Response {
	reject(e, "duplicate")
	return fail(r, 409, "duplicate_code", "another "+e.name+" already uses this code",
		map[string]string{"code": "is already used by another " + e.name}, nil)
}

// GET /<plural>/:id
//
// The host renders the row as JSON (DB.QueryJSON): the same object render and
// Rows.AppendJSON would give (decimals as numbers; keys in column order), without
// decoding or formatting values in the guest. The read path is the hot one.
func (e *entity) get(r *keel.Request) *keel.Response {
	id := r.Param("id")
	if !validUUID(id) {
		return e.notFound(r)
	}
	rows, err := keel.DB.QueryJSON(e.selectByID(), id)
	if err != nil {
		return dbFailure(r, "read "+e.name, err)
	}
	if rows.Len() == 0 {
		return e.notFound(r)
	}
	tag := etag(rows.Int(0, "version"))
	if inm := r.Header("If-None-Match"); inm != "" && strings.TrimPrefix(strings.TrimSpace(inm), "W/") == tag {
		return (&keel.Response{Status: 304}).SetHeader("ETag", tag)
	}
	return keel.Bytes(200, "application/json", rows.Object(0)).SetHeader("ETag", tag)
}

// POST /<plural>
func (e *entity) create(r *keel.Request) *keel.Response {
	obj, bad := decodeObject(r)
	if bad != nil {
		return bad
	}
	vals, fields := e.values(obj, nil)
	if len(fields) == 0 && e.check != nil {
		more, err := e.check(e, "", nil, vals)
		if err != nil {
			return dbFailure(r, "check "+e.name, err)
		}
		fields = more
	}
	if len(fields) > 0 {
		reject(e, "validation")
		return validationFailed(r, fields)
	}
	names := make([]string, 0, len(e.fields))
	marks := make([]string, 0, len(e.fields))
	args := make([]any, 0, len(e.fields))
	for _, f := range e.fields {
		names = append(names, f.name)
		args = append(args, vals[f.name])
		marks = append(marks, fmt.Sprintf("$%d", len(args)))
	}
	rows, err := keel.DB.Query(`INSERT INTO `+e.plural+` (`+strings.Join(names, ", ")+`) VALUES (`+
		strings.Join(marks, ", ")+`) RETURNING `+e.columns(), args...)
	if isUniqueViolation(err) {
		return e.duplicate(r)
	}
	if err != nil {
		return dbFailure(r, "create "+e.name, err)
	}
	ent := e.render(rows, 0)
	if err := e.emit(r, "created", ent, map[string]any{"version": ent["version"], "code": ent["code"], "name": ent["name"]}); err != nil {
		return dbFailure(r, "publish "+e.name+".created", err)
	}
	id := ent["id"].(string)
	return keel.JSON(201, ent).SetHeader("ETag", etag(ent["version"].(int64))).
		SetHeader("Location", "/api/"+r.Call().Plugin()+"/"+e.plural+"/"+id)
}

// PUT /<plural>/:id changes the fields present in the body; absent fields keep their
// value and null clears an optional field. It needs the version the client read.
func (e *entity) update(r *keel.Request) *keel.Response {
	obj, bad := decodeObject(r)
	if bad != nil {
		return bad
	}
	want, bad := expectedVersion(r, obj)
	if bad != nil {
		return bad
	}
	id := r.Param("id")
	cur, err := e.load(id)
	if err != nil {
		return dbFailure(r, "read "+e.name, err)
	}
	if cur == nil {
		return e.notFound(r)
	}
	vals, fields := e.values(obj, cur)
	if raw, ok := obj["id"]; ok {
		var s string
		if json.Unmarshal(raw, &s) != nil || !strings.EqualFold(s, id) {
			fields["id"] = "must be the id in the URL (ids cannot change)"
		}
	}
	if len(fields) > 0 {
		reject(e, "validation")
		return validationFailed(r, fields)
	}
	if cur["version"].(int64) != want {
		return e.conflict(r, cur["version"].(int64))
	}
	// Only what differs is written; an update that changes nothing keeps the version.
	changed := map[string]any{}
	for k, v := range vals {
		if !sameValue(e.field(k), cur[k], v) {
			changed[k] = v
		}
	}
	if len(changed) == 0 {
		return keel.JSON(200, cur).SetHeader("ETag", etag(want))
	}
	if e.check != nil {
		more, err := e.check(e, id, cur, changed)
		if err != nil {
			return dbFailure(r, "check "+e.name, err)
		}
		if len(more) > 0 {
			reject(e, "validation")
			return validationFailed(r, more)
		}
	}
	sets := make([]string, 0, len(changed)+2)
	args := []any{id, want}
	for _, f := range e.fields { // field order, so the statement text is stable
		if v, ok := changed[f.name]; ok {
			args = append(args, v)
			sets = append(sets, fmt.Sprintf("%s = $%d", f.name, len(args)))
		}
	}
	sets = append(sets, "version = version + 1", "updated_at = now()")
	rows, err := keel.DB.Query(`UPDATE `+e.plural+` SET `+strings.Join(sets, ", ")+
		` WHERE id = $1 AND version = $2 AND deleted_at IS NULL RETURNING `+e.columns(), args...)
	if isUniqueViolation(err) {
		return e.duplicate(r)
	}
	if err != nil {
		return dbFailure(r, "update "+e.name, err)
	}
	if rows.Len() == 0 { // changed or deleted since we read it
		return e.staleOrGone(r, id)
	}
	ent := e.render(rows, 0)
	diff := map[string]any{}
	for k := range changed {
		if f := e.field(k); !sameValue(f, cur[k], ent[k]) {
			diff[k] = map[string]any{"from": cur[k], "to": ent[k]}
		}
	}
	if err := e.emit(r, "updated", ent, map[string]any{"version": ent["version"], "changes": diff}); err != nil {
		return dbFailure(r, "publish "+e.name+".updated", err)
	}
	return keel.JSON(200, ent).SetHeader("ETag", etag(ent["version"].(int64)))
}

// DELETE /<plural>/:id soft-deletes: the row keeps its data with deleted_at set and
// disappears from reads and lists; its code becomes free again.
func (e *entity) remove(r *keel.Request) *keel.Response {
	var obj map[string]json.RawMessage
	if len(strings.TrimSpace(string(r.Body))) > 0 {
		var bad *keel.Response
		if obj, bad = decodeObject(r); bad != nil {
			return bad
		}
		for k := range obj {
			if k != "version" {
				return validationFailed(r, map[string]string{k: "is not accepted by DELETE (only version)"})
			}
		}
	}
	want, bad := expectedVersion(r, obj)
	if bad != nil {
		return bad
	}
	id := r.Param("id")
	if !validUUID(id) {
		return e.notFound(r)
	}
	rows, err := keel.DB.Query(`UPDATE `+e.plural+` SET deleted_at = now(), updated_at = now(), version = version + 1`+
		` WHERE id = $1 AND version = $2 AND deleted_at IS NULL RETURNING `+e.columns()+`, deleted_at`, id, want)
	if err != nil {
		return dbFailure(r, "delete "+e.name, err)
	}
	if rows.Len() == 0 {
		return e.staleOrGone(r, id)
	}
	if e.onDelete != nil {
		resp, err := e.onDelete(e, id)
		if err != nil {
			return dbFailure(r, "delete "+e.name, err)
		}
		if resp != nil {
			return resp
		}
	}
	ent := e.render(rows, 0)
	if err := e.emit(r, "deleted", ent, map[string]any{"version": ent["version"], "code": ent["code"]}); err != nil {
		return dbFailure(r, "publish "+e.name+".deleted", err)
	}
	return &keel.Response{Status: 204}
}

// staleOrGone explains an UPDATE that matched no row: 404 if the row is gone, else 409.
func (e *entity) staleOrGone(r *keel.Request, id string) *keel.Response {
	rows, err := keel.DB.Query(`SELECT version FROM `+e.plural+` WHERE id = $1 AND deleted_at IS NULL`, id)
	if err != nil {
		return dbFailure(r, "read "+e.name, err)
	}
	if rows.Len() == 0 {
		return e.notFound(r)
	}
	return e.conflict(r, rows.Row(0).Int("version"))
}

func (e *entity) conflict(r *keel.Request, current int64) *keel.Response {
	reject(e, "version_conflict")
	return fail(r, 409, "version_conflict", "the "+e.name+" was changed by someone else; read it again and retry with its current ETag",
		nil, map[string]any{"current_version": current})
}

// audit is the payload every plugin publishes on audit.events.
type audit struct {
	Action    string         `json:"action"`
	Actor     string         `json:"actor"`
	Resource  string         `json:"resource"`
	RequestID string         `json:"request_id"`
	Detail    map[string]any `json:"detail"`
}

// emit publishes the change event and its audit record in the invocation's unit of
// work (they reach the bus only if the change commits) and counts the change.
// Idempotency keys name the row version, so one version yields one event of each.
func (e *entity) emit(r *keel.Request, action string, ent map[string]any, detail map[string]any) error {
	id, _ := ent["id"].(string)
	key := fmt.Sprintf("%s/%s/%d/%s", e.name, id, ent["version"], action)
	if _, err := keel.Events.Publish("master-data."+e.name, "master-data."+e.name+"."+action, ent,
		keel.Key(id), keel.IdempotencyKey(key)); err != nil {
		return err
	}
	c := r.Call()
	rec := audit{Action: e.name + "." + action, Actor: c.Subject(), Resource: e.name + "/" + id, RequestID: c.RequestID(), Detail: detail}
	if _, err := keel.Events.Publish("audit.events", "audit.record", rec, keel.Key(c.Tenant()), keel.IdempotencyKey("audit/"+key)); err != nil {
		return err
	}
	_ = keel.M("master_data_changes_total").Inc(e.name, action)
	return nil
}

// reject counts a refused change by reason.
func reject(e *entity, reason string) { _ = keel.M("master_data_rejections_total").Inc(e.name, reason) }
