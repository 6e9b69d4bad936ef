package main

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"regexp"
	"slices"
	"time"
)

// Rules are a flag's targeting. A caller matched by users, roles or permissions gets
// the flag; everyone else falls through to the percentage rollout.
type Rules struct {
	Users       []string `json:"users,omitempty"`
	Roles       []string `json:"roles,omitempty"`
	Permissions []string `json:"permissions,omitempty"`
	// Percentage of the callers not matched by a list who get the flag, 0-100. On
	// input it may be omitted: it then defaults to 100 when no list is given (the flag
	// is simply on) and to 0 when one is (only the listed callers get it).
	Percentage *int `json:"percentage,omitempty"`
}

// Flag is a stored feature flag.
type Flag struct {
	Key         string    `json:"key"`
	Enabled     bool      `json:"enabled"`
	Description string    `json:"description"`
	Rules       Rules     `json:"rules"`
	Version     int64     `json:"version"`
	UpdatedBy   string    `json:"updated_by"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Subject is who a flag is evaluated for: the caller (user = subject, permissions
// from the access token) or an explicit body.
type Subject struct {
	User        string   `json:"user"`
	Roles       []string `json:"roles"`
	Permissions []string `json:"permissions"`
}

// Evaluation is the answer of the evaluate endpoint.
type Evaluation struct {
	Key     string `json:"key"`
	Enabled bool   `json:"enabled"`
	// Reason says which rule decided: disabled, user_targeted, role_targeted,
	// permission_targeted, everyone (percentage 100), not_targeted (percentage 0),
	// in_rollout, outside_rollout, or no_user (a partial rollout needs a user id).
	Reason string `json:"reason"`
	User   string `json:"user,omitempty"`
	// Bucket is the caller's rollout bucket (0-99) when a partial rollout decided.
	Bucket  *int  `json:"bucket,omitempty"`
	Version int64 `json:"version"`
}

// Bucket places a user in one of 100 rollout buckets, stably: the first 8 bytes of
// SHA-256("<flag key>:<user>") read as a big-endian unsigned integer, modulo 100. The
// flag key is part of the input so that two flags at 10% do not select the same 10%
// of users. A user is in a rollout of p percent when Bucket < p. Any language can
// reproduce it; changing it would reshuffle every running rollout, which the health
// check guards against (see bucketSelfTest).
func Bucket(flagKey, user string) int {
	sum := sha256.Sum256([]byte(flagKey + ":" + user))
	return int(binary.BigEndian.Uint64(sum[:8]) % 100)
}

// bucketVectors are fixed answers of Bucket. If a change to the plugin alters them,
// every rollout would silently be reassigned; the health check then fails, so the
// activation of such a version fails before it serves traffic.
var bucketVectors = []struct {
	key, user string
	bucket    int
}{
	{"new-checkout", "user-1", 48},
	{"new-checkout", "user-2", 59},
	{"beta-ui", "alice", 78},
}

func bucketSelfTest() error {
	for _, v := range bucketVectors {
		if got := Bucket(v.key, v.user); got != v.bucket {
			return fmt.Errorf("rollout bucketing changed: Bucket(%q, %q) = %d, want %d; this would reassign every rollout", v.key, v.user, got, v.bucket)
		}
	}
	return nil
}

// Evaluate decides f for s. Order: the flag's kill switch, then user, role and
// permission targeting, then the percentage rollout.
func Evaluate(f *Flag, s Subject) Evaluation {
	ev := Evaluation{Key: f.Key, User: s.User, Version: f.Version}
	pct := f.Rules.percentage()
	switch {
	case !f.Enabled:
		ev.Reason = "disabled"
	case s.User != "" && slices.Contains(f.Rules.Users, s.User):
		ev.Enabled, ev.Reason = true, "user_targeted"
	case intersects(f.Rules.Roles, s.Roles):
		ev.Enabled, ev.Reason = true, "role_targeted"
	case intersects(f.Rules.Permissions, s.Permissions):
		ev.Enabled, ev.Reason = true, "permission_targeted"
	case pct >= 100:
		ev.Enabled, ev.Reason = true, "everyone"
	case pct <= 0:
		ev.Reason = "not_targeted"
	case s.User == "":
		ev.Reason = "no_user"
	default:
		b := Bucket(f.Key, s.User)
		ev.Bucket = &b
		if b < pct {
			ev.Enabled, ev.Reason = true, "in_rollout"
		} else {
			ev.Reason = "outside_rollout"
		}
	}
	return ev
}

// percentage returns the effective rollout percentage (see Rules.Percentage).
func (r Rules) percentage() int {
	if r.Percentage != nil {
		return *r.Percentage
	}
	if len(r.Users)+len(r.Roles)+len(r.Permissions) > 0 {
		return 0
	}
	return 100
}

// normalize validates r and makes its percentage explicit, so that what is stored
// and shown is what is evaluated.
func (r *Rules) normalize() error {
	for _, l := range []struct {
		name string
		vals []string
	}{{"rules.users", r.Users}, {"rules.roles", r.Roles}, {"rules.permissions", r.Permissions}} {
		if len(l.vals) > maxTargets {
			return fmt.Errorf("%s: at most %d entries", l.name, maxTargets)
		}
		for _, v := range l.vals {
			if v == "" || len(v) > 200 {
				return fmt.Errorf("%s: entries must be 1 to 200 characters", l.name)
			}
		}
	}
	p := r.percentage()
	if p < 0 || p > 100 {
		return fmt.Errorf("rules.percentage: %d is not between 0 and 100", p)
	}
	r.Percentage = &p
	return nil
}

const maxTargets = 1000

func intersects(rule, have []string) bool {
	for _, h := range have {
		if slices.Contains(rule, h) {
			return true
		}
	}
	return false
}

var (
	envRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	keyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

// validEnv and validKey bound what may appear in a path and a cache key.
func validEnv(s string) bool { return envRE.MatchString(s) }
func validKey(s string) bool { return keyRE.MatchString(s) }
