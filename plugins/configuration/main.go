// Command configuration is the platform's configuration service: configuration
// entries per tenant and environment with a change history and optimistic
// versioning, and feature flags with user, role and permission targeting and stable
// percentage rollouts. Reads go through the cache (class "config", 24 h); every
// change is published on configuration.changes, whose subscriber (this plugin, on
// whichever host receives it) drops the cached copies, and recorded on audit.events.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm .
// See README.md for the API.
package main

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	keel "github.com/keelhq/keel/abi/sdk"
)

// Topics and event types of the plugin.
const (
	changesTopic = "configuration.changes"
	changedType  = "configuration.changed"
	auditTopic   = "audit.events"
	auditType    = "audit.record"
)

// Size limits of what a request may store.
const (
	maxValueBytes = 64 << 10
	maxDescBytes  = 1000
	defaultLimit  = 100
	maxLimit      = 1000
)

func init() {
	keel.Handle("GET", "/entries/:env", listEntries)
	keel.Handle("GET", "/entries/:env/:key", getEntry)
	keel.Handle("PUT", "/entries/:env/:key", putEntry)
	keel.Handle("DELETE", "/entries/:env/:key", deleteEntry)
	keel.Handle("GET", "/entries/:env/:key/history", entryHistory)

	keel.Handle("GET", "/flags", listFlags)
	keel.Handle("GET", "/flags/:key", getFlag)
	keel.Handle("PUT", "/flags/:key", putFlag)
	keel.Handle("DELETE", "/flags/:key", deleteFlag)
	keel.Handle("GET", "/flags/:key/history", flagHistory)
	keel.Handle("POST", "/flags/:key/evaluate", evaluateFlag)

	keel.OnEvent(changesTopic, invalidate)
	keel.OnHealth(bucketSelfTest)
}

func main() {}

// change is the payload of a configuration.changed event.
type change struct {
	Kind    string `json:"kind"` // "entry" or "flag"
	Env     string `json:"env,omitempty"`
	Key     string `json:"key"`
	Action  string `json:"action"` // created, updated or deleted
	Version int64  `json:"version"`
	Actor   string `json:"actor"`
}

func entryCacheKey(env, key string) string { return "entry/" + env + "/" + key }
func flagCacheKey(key string) string       { return "flag/" + key }

// cacheKeys are the cache entries a change makes stale.
func (c change) cacheKeys() []string {
	switch {
	case c.Kind == "entry" && validEnv(c.Env) && validKey(c.Key):
		return []string{entryCacheKey(c.Env, c.Key)}
	case c.Kind == "flag" && validKey(c.Key):
		return []string{flagCacheKey(c.Key)}
	}
	return nil
}

// invalidate handles configuration.changed: it drops the cached copies of what
// changed. It runs with the event's tenant, so it reaches that tenant's keys. An
// error asks for redelivery (with backoff, then the dead-letter topic), so a cache
// outage does not leave a 24 h stale value behind silently.
func invalidate(ev *keel.Event) error {
	if ev.Type != changedType {
		return nil
	}
	var c change
	if err := ev.DecodeJSON(&c); err != nil {
		return errors.New("configuration.changed payload does not decode: " + err.Error())
	}
	keys := c.cacheKeys()
	if len(keys) == 0 {
		return errors.New("configuration.changed names no valid entry or flag")
	}
	if err := keel.Cache.Delete(keys...); err != nil {
		return err
	}
	_ = keel.M("cache_invalidations_total").Inc()
	return nil
}

// recordChange is the common tail of every write, inside the request's transaction:
// the history row, the change event, the audit record, and the local cache delete.
// oldVal/newVal are JSON documents or nil.
func recordChange(r *keel.Request, c change, oldVal, newVal []byte, resource string, detail map[string]any) error {
	call := r.Call()
	if _, err := keel.DB.Exec(`INSERT INTO changes (kind, env, key, version, action, old_value, new_value, actor, request_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		c.Kind, c.Env, c.Key, c.Version, c.Action, jsonParam(oldVal), jsonParam(newVal), c.Actor, call.RequestID()); err != nil {
		return err
	}
	if _, err := keel.Events.Publish(changesTopic, changedType, c, keel.Key(c.Kind+"/"+c.Env+"/"+c.Key)); err != nil {
		return err
	}
	action := c.Kind + "." + c.Action
	if c.Kind == "entry" {
		action = "config." + c.Action
	}
	audit := map[string]any{"action": action, "actor": c.Actor, "resource": resource, "request_id": call.RequestID(), "detail": detail}
	if _, err := keel.Events.Publish(auditTopic, auditType, audit); err != nil {
		return err
	}
	_ = keel.M("changes_total").Inc(c.Kind, c.Action)
	// Read-your-writes on this host. The delete happens before the commit, so a
	// concurrent reader may still cache the old row; the event, published after the
	// commit, removes that copy too.
	_ = keel.Cache.Delete(c.cacheKeys()...)
	return nil
}

// jsonParam passes a JSON document to a jsonb parameter, or NULL.
func jsonParam(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

// fail turns a capability error into the platform's error response.
func fail(err error) *keel.Response {
	switch {
	case errors.Is(err, keel.ErrConflict):
		return keel.Error(409, "conflict", "a concurrent change to the same item won; read it again and retry")
	case errors.Is(err, keel.ErrDeadline):
		return keel.Error(504, "timeout", "the operation did not finish in time")
	case errors.Is(err, keel.ErrUnavailable):
		return keel.Error(503, "unavailable", "a dependency is unavailable; retry shortly")
	case errors.Is(err, keel.ErrInvalid):
		return keel.Error(400, "invalid_request", err.Error())
	}
	keel.Log.Error("configuration request failed", "err", err)
	return keel.Error(500, "internal", "internal error")
}

func invalid(msg string) *keel.Response { return keel.Error(400, "invalid_request", msg) }

// expectedVersion reads the optimistic-concurrency precondition: the body's version
// or an If-Match header ("3" or 3). nil means unconditional.
func expectedVersion(r *keel.Request, body *int64) (*int64, *keel.Response) {
	h := strings.TrimSpace(r.Header("If-Match"))
	if h == "" {
		if body != nil && *body < 0 {
			return nil, invalid("version must be 0 (create only) or a positive version")
		}
		return body, nil
	}
	v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(h, "W/"), `"`), 10, 64)
	if err != nil || v < 0 {
		return nil, invalid(`If-Match must be a version such as "3"`)
	}
	if body != nil && *body != v {
		return nil, invalid("If-Match and the body's version disagree")
	}
	return &v, nil
}

// checkVersion applies the precondition to the current state: live is whether the
// item exists now and cur its version.
func checkVersion(want *int64, live bool, cur int64) *keel.Response {
	switch {
	case want == nil:
		return nil
	case *want == 0 && live:
		return keel.Error(409, "version_conflict", "it already exists (version "+strconv.FormatInt(cur, 10)+"); version 0 means create only")
	case *want != 0 && !live:
		return keel.Error(409, "version_conflict", "it does not exist; version "+strconv.FormatInt(*want, 10)+" is stale")
	case *want != 0 && *want != cur:
		return keel.Error(409, "version_conflict", "stale version "+strconv.FormatInt(*want, 10)+": the current version is "+strconv.FormatInt(cur, 10))
	}
	return nil
}

// paging reads ?after= and ?limit=.
func paging(r *keel.Request) (string, int, *keel.Response) {
	q := r.Query()
	limit := defaultLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			return "", 0, invalid("limit must be between 1 and " + strconv.Itoa(maxLimit))
		}
		limit = n
	}
	return q.Get("after"), limit, nil
}

// historyItem is one row of a change history.
type historyItem struct {
	Version   int64           `json:"version"`
	Action    string          `json:"action"`
	Old       json.RawMessage `json:"old"`
	New       json.RawMessage `json:"new"`
	Actor     string          `json:"actor"`
	RequestID string          `json:"request_id"`
	At        time.Time       `json:"at"`
}

// history lists the changes of one entry or flag, newest first; ?before=<version>
// pages back. It answers 404 when the item never existed for this tenant.
func history(r *keel.Request, kind, env, key string) *keel.Response {
	_, limit, bad := paging(r)
	if bad != nil {
		return bad
	}
	before := int64(1 << 62)
	if s := r.Query().Get("before"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return invalid("before must be a positive version")
		}
		before = n
	}
	rows, err := keel.DB.Query(`SELECT version, action, old_value, new_value, actor, request_id, created_at FROM changes
		WHERE kind = $1 AND env = $2 AND key = $3 AND version < $4 ORDER BY version DESC LIMIT $5`,
		kind, env, key, before, int64(limit))
	if err != nil {
		return fail(err)
	}
	if rows.Len() == 0 && r.Query().Get("before") == "" {
		return keel.Error(404, "not_found", kind+" "+strings.TrimPrefix(env+"/"+key, "/")+" has no history")
	}
	out := make([]historyItem, rows.Len())
	for i := range out {
		row := rows.Row(i)
		out[i] = historyItem{Version: row.Int("version"), Action: row.String("action"),
			Old: rawOrNull(row.String("old_value")), New: rawOrNull(row.String("new_value")),
			Actor: row.String("actor"), RequestID: row.String("request_id"), At: row.Time("created_at")}
	}
	return keel.JSON(200, map[string]any{"history": out})
}

func rawOrNull(s string) json.RawMessage {
	if s == "" {
		return json.RawMessage("null")
	}
	return json.RawMessage(s)
}
