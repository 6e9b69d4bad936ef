package main

import (
	"bytes"
	"encoding/json"
	"strconv"

	keel "github.com/keelhq/keel/abi/sdk"
)

// cachedFlag is what the cache holds under flag/<key>; absence is cached too.
type cachedFlag struct {
	Found bool  `json:"found"`
	Flag  *Flag `json:"flag,omitempty"`
}

const flagColumns = `key, enabled, description, rules, version, updated_by, created_at, updated_at`

func flagFromRow(row keel.Row) (*Flag, error) {
	f := &Flag{Key: row.String("key"), Enabled: row.Bool("enabled"), Description: row.String("description"),
		Version: row.Int("version"), UpdatedBy: row.String("updated_by"), CreatedAt: row.Time("created_at"), UpdatedAt: row.Time("updated_at")}
	if err := json.Unmarshal([]byte(row.String("rules")), &f.Rules); err != nil {
		return nil, err
	}
	return f, nil
}

// loadFlag reads a live flag through the cache.
func loadFlag(key string) (cachedFlag, error) {
	return keel.Cached(flagCacheKey(key), func() (cachedFlag, error) {
		rows, err := keel.DB.Query(`SELECT `+flagColumns+` FROM flags WHERE key = $1 AND deleted_at IS NULL`, key)
		if err != nil || rows.Len() == 0 {
			return cachedFlag{}, err
		}
		f, err := flagFromRow(rows.Row(0))
		if err != nil {
			return cachedFlag{}, err
		}
		return cachedFlag{Found: true, Flag: f}, nil
	}, keel.Class("config"))
}

func pathFlag(r *keel.Request) (string, *keel.Response) {
	key := r.Param("key")
	if !validKey(key) {
		return "", invalid("flag key must be 1 to 128 characters: letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	return key, nil
}

func flagResponse(status int, f *Flag) *keel.Response {
	return keel.JSON(status, f).SetHeader("ETag", `"`+strconv.FormatInt(f.Version, 10)+`"`)
}

func flagNotFound(key string) *keel.Response {
	return keel.Error(404, "not_found", "no feature flag "+key)
}

// getFlag: GET /flags/:key.
func getFlag(r *keel.Request) *keel.Response {
	key, bad := pathFlag(r)
	if bad != nil {
		return bad
	}
	c, err := loadFlag(key)
	if err != nil {
		return fail(err)
	}
	if !c.Found {
		return flagNotFound(key)
	}
	return flagResponse(200, c.Flag)
}

// listFlags: GET /flags?after=&limit=, from the database.
func listFlags(r *keel.Request) *keel.Response {
	after, limit, bad := paging(r)
	if bad != nil {
		return bad
	}
	rows, err := keel.DB.Query(`SELECT `+flagColumns+` FROM flags WHERE deleted_at IS NULL AND key > $1 ORDER BY key LIMIT $2`,
		after, int64(limit+1))
	if err != nil {
		return fail(err)
	}
	list := make([]*Flag, 0, min(rows.Len(), limit))
	for i := 0; i < rows.Len() && i < limit; i++ {
		f, err := flagFromRow(rows.Row(i))
		if err != nil {
			return fail(err)
		}
		list = append(list, f)
	}
	out := map[string]any{"flags": list}
	if rows.Len() > limit {
		out["next"] = list[len(list)-1].Key
	}
	return keel.JSON(200, out)
}

// flagState is the part of a flag the history and the audit trail record.
type flagState struct {
	Enabled     bool   `json:"enabled"`
	Description string `json:"description"`
	Rules       Rules  `json:"rules"`
}

// putFlag: PUT /flags/:key {"enabled", "description", "rules", "version"}. A full
// replacement; version works as for entries.
func putFlag(r *keel.Request) *keel.Response {
	key, bad := pathFlag(r)
	if bad != nil {
		return bad
	}
	var in struct {
		Enabled     *bool  `json:"enabled"`
		Description string `json:"description"`
		Rules       Rules  `json:"rules"`
		Version     *int64 `json:"version"`
	}
	if err := r.DecodeJSON(&in); err != nil {
		return invalid(`body must be {"enabled": bool, "description": "...", "rules": {"users": [...], "roles": [...], "permissions": [...], "percentage": 0-100}, "version": n}: ` + err.Error())
	}
	if in.Enabled == nil {
		return invalid("enabled is required (true or false)")
	}
	if len(in.Description) > maxDescBytes {
		return invalid("description is longer than " + strconv.Itoa(maxDescBytes) + " bytes")
	}
	if err := in.Rules.normalize(); err != nil {
		return invalid(err.Error())
	}
	want, bad := expectedVersion(r, in.Version)
	if bad != nil {
		return bad
	}
	newState := flagState{Enabled: *in.Enabled, Description: in.Description, Rules: in.Rules}
	rulesJSON, err := json.Marshal(newState.Rules)
	if err != nil {
		return fail(err)
	}

	cur, err := keel.DB.Query(`SELECT id::text AS id, `+flagColumns+`, deleted_at IS NULL AS live FROM flags WHERE key = $1 FOR UPDATE`, key)
	if err != nil {
		return fail(err)
	}
	exists := cur.Len() > 0
	var id string
	var live bool
	var oldVersion int64
	var oldState []byte
	if exists {
		row := cur.Row(0)
		id, live, oldVersion = row.String("id"), row.Bool("live"), row.Int("version")
		if live {
			old, err := flagFromRow(row)
			if err != nil {
				return fail(err)
			}
			oldState, _ = json.Marshal(flagState{Enabled: old.Enabled, Description: old.Description, Rules: old.Rules})
		}
	}
	if resp := checkVersion(want, live, oldVersion); resp != nil {
		return resp
	}
	actor := r.Call().Subject()
	var res *keel.Rows
	if exists {
		res, err = keel.DB.Query(`UPDATE flags SET enabled = $2, description = $3, rules = $4, version = version + 1, updated_by = $5,
			updated_at = now(), deleted_at = NULL WHERE id = $1 RETURNING `+flagColumns, id, newState.Enabled, newState.Description, string(rulesJSON), actor)
	} else {
		res, err = keel.DB.Query(`INSERT INTO flags (key, enabled, description, rules, updated_by) VALUES ($1, $2, $3, $4, $5) RETURNING `+flagColumns,
			key, newState.Enabled, newState.Description, string(rulesJSON), actor)
	}
	if err != nil {
		return fail(err)
	}
	f, err := flagFromRow(res.Row(0))
	if err != nil {
		return fail(err)
	}
	action, status := "updated", 200
	if !live {
		action, status = "created", 201
	}
	newJSON, _ := json.Marshal(newState)
	detail := map[string]any{"key": key, "version": f.Version, "new": json.RawMessage(newJSON)}
	if oldState != nil {
		detail["old"] = json.RawMessage(oldState)
	}
	c := change{Kind: "flag", Key: key, Action: action, Version: f.Version, Actor: actor}
	if err := recordChange(r, c, oldState, newJSON, "flag/"+key, detail); err != nil {
		return fail(err)
	}
	return flagResponse(status, f)
}

// deleteFlag: DELETE /flags/:key (If-Match or ?version= optional). Evaluating a
// deleted flag answers 404.
func deleteFlag(r *keel.Request) *keel.Response {
	key, bad := pathFlag(r)
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
	cur, err := keel.DB.Query(`SELECT id::text AS id, `+flagColumns+` FROM flags WHERE key = $1 AND deleted_at IS NULL FOR UPDATE`, key)
	if err != nil {
		return fail(err)
	}
	if cur.Len() == 0 {
		return flagNotFound(key)
	}
	old, err := flagFromRow(cur.Row(0))
	if err != nil {
		return fail(err)
	}
	if resp := checkVersion(want, true, old.Version); resp != nil {
		return resp
	}
	res, err := keel.DB.Query(`UPDATE flags SET version = version + 1, updated_by = $2, updated_at = now(), deleted_at = now()
		WHERE id = $1 RETURNING version`, cur.Row(0).String("id"), r.Call().Subject())
	if err != nil {
		return fail(err)
	}
	v := res.Row(0).Int("version")
	oldState, _ := json.Marshal(flagState{Enabled: old.Enabled, Description: old.Description, Rules: old.Rules})
	c := change{Kind: "flag", Key: key, Action: "deleted", Version: v, Actor: r.Call().Subject()}
	if err := recordChange(r, c, oldState, nil, "flag/"+key,
		map[string]any{"key": key, "version": v, "old": json.RawMessage(oldState)}); err != nil {
		return fail(err)
	}
	return &keel.Response{Status: 204}
}

// flagHistory: GET /flags/:key/history?before=&limit=.
func flagHistory(r *keel.Request) *keel.Response {
	key, bad := pathFlag(r)
	if bad != nil {
		return bad
	}
	return history(r, "flag", "", key)
}

// evaluateFlag: POST /flags/:key/evaluate. With an empty body (or {}) it evaluates for
// the caller: user = the authenticated subject, permissions = the token's. With
// {"user", "roles", "permissions"} it evaluates for that subject instead.
func evaluateFlag(r *keel.Request) *keel.Response {
	key, bad := pathFlag(r)
	if bad != nil {
		return bad
	}
	var s Subject
	explicit := false
	if len(bytes.TrimSpace(r.Body)) > 0 {
		var in struct {
			User        *string  `json:"user"`
			Roles       []string `json:"roles"`
			Permissions []string `json:"permissions"`
		}
		if err := r.DecodeJSON(&in); err != nil {
			return invalid(`body must be empty or {"user": "...", "roles": [...], "permissions": [...]}: ` + err.Error())
		}
		if in.User != nil || in.Roles != nil || in.Permissions != nil {
			explicit = true
			s.Roles, s.Permissions = in.Roles, in.Permissions
			if in.User != nil {
				s.User = *in.User
			}
		}
	}
	if !explicit {
		s = Subject{User: r.Call().Subject(), Permissions: r.Call().Permissions()}
	}
	c, err := loadFlag(key)
	if err != nil {
		return fail(err)
	}
	if !c.Found {
		_ = keel.M("flag_evaluations_total").Inc("not_found")
		return flagNotFound(key)
	}
	ev := Evaluate(c.Flag, s)
	result := "off"
	if ev.Enabled {
		result = "on"
	}
	_ = keel.M("flag_evaluations_total").Inc(result)
	return keel.JSON(200, ev)
}
