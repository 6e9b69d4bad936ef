package main

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	keel "github.com/keelhq/keel/abi/sdk"
)

// Entry is one configuration value of a tenant in an environment.
type Entry struct {
	Env       string          `json:"env"`
	Key       string          `json:"key"`
	Value     json.RawMessage `json:"value"`
	Version   int64           `json:"version"`
	UpdatedBy string          `json:"updated_by"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// cachedEntry is what the cache holds under entry/<env>/<key>: absence is cached
// too, and invalidated by the same events.
type cachedEntry struct {
	Found bool   `json:"found"`
	Entry *Entry `json:"entry,omitempty"`
}

const entryColumns = `env, key, value, version, updated_by, created_at, updated_at`

func entryFromRow(row keel.Row) *Entry {
	return &Entry{Env: row.String("env"), Key: row.String("key"), Value: json.RawMessage(row.String("value")),
		Version: row.Int("version"), UpdatedBy: row.String("updated_by"),
		CreatedAt: row.Time("created_at"), UpdatedAt: row.Time("updated_at")}
}

// loadEntry reads a live entry through the cache.
func loadEntry(env, key string) (cachedEntry, error) {
	return keel.Cached(entryCacheKey(env, key), func() (cachedEntry, error) {
		rows, err := keel.DB.Query(`SELECT `+entryColumns+` FROM entries WHERE env = $1 AND key = $2 AND deleted_at IS NULL`, env, key)
		if err != nil || rows.Len() == 0 {
			return cachedEntry{}, err
		}
		return cachedEntry{Found: true, Entry: entryFromRow(rows.Row(0))}, nil
	}, keel.Class("config"))
}

func pathEntry(r *keel.Request) (string, string, *keel.Response) {
	env, key := r.Param("env"), r.Param("key")
	if !validEnv(env) {
		return "", "", invalid("env must be 1 to 32 characters: a lower-case letter, then lower-case letters, digits, '_' or '-'")
	}
	if key != "" && !validKey(key) {
		return "", "", invalid("key must be 1 to 128 characters: letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	return env, key, nil
}

func entryResponse(status int, e *Entry) *keel.Response {
	return keel.JSON(status, e).SetHeader("ETag", `"`+strconv.FormatInt(e.Version, 10)+`"`)
}

// getEntry: GET /entries/:env/:key.
func getEntry(r *keel.Request) *keel.Response {
	env, key, bad := pathEntry(r)
	if bad != nil {
		return bad
	}
	c, err := loadEntry(env, key)
	if err != nil {
		return fail(err)
	}
	if !c.Found {
		return keel.Error(404, "not_found", "no configuration entry "+key+" in "+env)
	}
	return entryResponse(200, c.Entry)
}

// listEntries: GET /entries/:env?after=&limit=, live entries by key. Lists are read
// from the database, not the cache.
func listEntries(r *keel.Request) *keel.Response {
	env, _, bad := pathEntry(r)
	if bad != nil {
		return bad
	}
	after, limit, bad := paging(r)
	if bad != nil {
		return bad
	}
	rows, err := keel.DB.Query(`SELECT `+entryColumns+` FROM entries WHERE env = $1 AND deleted_at IS NULL AND key > $2
		ORDER BY key LIMIT $3`, env, after, int64(limit+1))
	if err != nil {
		return fail(err)
	}
	out := map[string]any{}
	list := make([]*Entry, 0, min(rows.Len(), limit))
	for i := 0; i < rows.Len() && i < limit; i++ {
		list = append(list, entryFromRow(rows.Row(i)))
	}
	out["entries"] = list
	if rows.Len() > limit {
		out["next"] = list[len(list)-1].Key
	}
	return keel.JSON(200, out)
}

// putEntry: PUT /entries/:env/:key {"value": <JSON>, "version": n}. Without a version
// (body or If-Match) the write is unconditional; version 0 creates only; version n
// updates only if n is current, else 409.
func putEntry(r *keel.Request) *keel.Response {
	env, key, bad := pathEntry(r)
	if bad != nil {
		return bad
	}
	var in struct {
		Value   json.RawMessage `json:"value"`
		Version *int64          `json:"version"`
	}
	if err := r.DecodeJSON(&in); err != nil {
		return invalid("body must be {\"value\": <JSON>, \"version\": <optional number>}: " + err.Error())
	}
	if len(in.Value) == 0 || bytes.Equal(in.Value, []byte("null")) {
		return invalid("value is required (null is not a value: DELETE the entry instead)")
	}
	if len(in.Value) > maxValueBytes {
		return invalid("value is larger than " + strconv.Itoa(maxValueBytes) + " bytes")
	}
	want, bad := expectedVersion(r, in.Version)
	if bad != nil {
		return bad
	}
	value := bytes.Clone(in.Value) // the request body is reused after the handler

	// Lock the key's row (live or deleted) so the version check and the write are one step.
	cur, err := keel.DB.Query(`SELECT id::text AS id, value, version, deleted_at IS NULL AS live FROM entries
		WHERE env = $1 AND key = $2 FOR UPDATE`, env, key)
	if err != nil {
		return fail(err)
	}
	exists := cur.Len() > 0
	var id string
	var live bool
	var oldVersion int64
	var oldValue []byte
	if exists {
		row := cur.Row(0)
		id, live, oldVersion = row.String("id"), row.Bool("live"), row.Int("version")
		if live {
			oldValue = []byte(row.String("value"))
		}
	}
	if resp := checkVersion(want, live, oldVersion); resp != nil {
		return resp
	}
	actor := r.Call().Subject()
	var res *keel.Rows
	if exists {
		res, err = keel.DB.Query(`UPDATE entries SET value = $2, version = version + 1, updated_by = $3, updated_at = now(), deleted_at = NULL
			WHERE id = $1 RETURNING `+entryColumns, id, string(value), actor)
	} else {
		// A concurrent first write of the same key makes this a unique violation: 409.
		res, err = keel.DB.Query(`INSERT INTO entries (env, key, value, updated_by) VALUES ($1, $2, $3, $4) RETURNING `+entryColumns,
			env, key, string(value), actor)
	}
	if err != nil {
		return fail(err)
	}
	e := entryFromRow(res.Row(0))
	action, status := "updated", 200
	if !live {
		action, status = "created", 201
	}
	c := change{Kind: "entry", Env: env, Key: key, Action: action, Version: e.Version, Actor: actor}
	if err := recordChange(r, c, oldValue, []byte(e.Value), "config/"+env+"/"+key,
		map[string]any{"env": env, "key": key, "version": e.Version, "previous_version": oldVersion}); err != nil {
		return fail(err)
	}
	return entryResponse(status, e)
}

// deleteEntry: DELETE /entries/:env/:key, optionally conditional (If-Match or
// ?version=). The row is soft-deleted; its history stays.
func deleteEntry(r *keel.Request) *keel.Response {
	env, key, bad := pathEntry(r)
	if bad != nil {
		return bad
	}
	var qv *int64
	if s := r.Query().Get("version"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return invalid("version must be a positive number")
		}
		qv = &n
	}
	want, bad := expectedVersion(r, qv)
	if bad != nil {
		return bad
	}
	cur, err := keel.DB.Query(`SELECT id::text AS id, value, version FROM entries
		WHERE env = $1 AND key = $2 AND deleted_at IS NULL FOR UPDATE`, env, key)
	if err != nil {
		return fail(err)
	}
	if cur.Len() == 0 {
		return keel.Error(404, "not_found", "no configuration entry "+key+" in "+env)
	}
	row := cur.Row(0)
	if resp := checkVersion(want, true, row.Int("version")); resp != nil {
		return resp
	}
	res, err := keel.DB.Query(`UPDATE entries SET version = version + 1, updated_by = $2, updated_at = now(), deleted_at = now()
		WHERE id = $1 RETURNING version`, row.String("id"), r.Call().Subject())
	if err != nil {
		return fail(err)
	}
	v := res.Row(0).Int("version")
	c := change{Kind: "entry", Env: env, Key: key, Action: "deleted", Version: v, Actor: r.Call().Subject()}
	if err := recordChange(r, c, []byte(row.String("value")), nil, "config/"+env+"/"+key,
		map[string]any{"env": env, "key": key, "version": v, "previous_version": row.Int("version")}); err != nil {
		return fail(err)
	}
	return &keel.Response{Status: 204}
}

// entryHistory: GET /entries/:env/:key/history?before=&limit=.
func entryHistory(r *keel.Request) *keel.Response {
	env, key, bad := pathEntry(r)
	if bad != nil {
		return bad
	}
	return history(r, "entry", env, key)
}
