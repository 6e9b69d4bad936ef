package main

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"
)

func TestCanonicalJSON(t *testing.T) {
	for in, want := range map[string]string{
		`{"b":1,"a":[true,null,"x"]}`:             `{"a":[true,null,"x"],"b":1}`,
		` { "n" : 1.50 , "e": 1e3 } `:             `{"e":1e3,"n":1.50}`,
		`{"s":"tab\tnl\n<&>\u0001é\"\\/"}`:        `{"s":"tab\tnl\n<&>\u0001é\"\\/"}`,
		`{"é":1,"z":2,"Z":3}`:                     `{"Z":3,"z":2,"é":1}`,
		`"just a string"`:                         `"just a string"`,
		`{"nested":{"y":{},"x":[]},"a":"\u2028"}`: "{\"a\":\"\u2028\",\"nested\":{\"x\":[],\"y\":{}}}",
	} {
		got, err := canonicalJSON(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if string(got) != want {
			t.Errorf("canonicalJSON(%s) = %s, want %s", in, got, want)
		}
	}
	for _, bad := range []string{``, `{`, `{} {}`, `{"a":}`} {
		if _, err := canonicalJSON(bad); err == nil {
			t.Errorf("canonicalJSON(%q) accepted", bad)
		}
	}
}

// TestHashIsDocumented pins the hash to the recipe in README.md, so that a change to
// the encoding (which would break every stored chain) cannot go unnoticed.
func TestHashIsDocumented(t *testing.T) {
	r := &record{Tenant: "acme", Seq: 1, EventID: "e1", Source: "master-data", Action: "customer.created",
		Actor: "u1", Resource: "customer/7", RequestID: "req-1", Detail: `{"name": "ACME", "n": 1.50}`,
		At: time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)}
	got, err := r.computeHash(genesisHash)
	if err != nil {
		t.Fatal(err)
	}
	doc := `{"action":"customer.created","actor":"u1","at":"2025-03-01T12:00:00.123456Z","detail":{"n":1.50,"name":"ACME"},` +
		`"event_id":"e1","request_id":"req-1","resource":"customer/7","seq":1,"source":"master-data","tenant":"acme"}`
	sum := sha256.Sum256([]byte(genesisHash + doc))
	if want := hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("hash %s, want %s (sha256 of prev_hash || %s)", got, want, doc)
	}
	r.Hash, r.PrevHash = got, genesisHash
	if l, err := r.check(1, genesisHash); l != linkOK || err != nil {
		t.Fatalf("check of an intact record: %v %v", l, err)
	}
	r.Actor = "mallory"
	if l, _ := r.check(1, genesisHash); l != linkHashMismatch {
		t.Fatalf("check of a changed record: %v", l)
	}
	if l, _ := r.check(2, genesisHash); l != linkSeqGap {
		t.Fatalf("check with a missing predecessor: %v", l)
	}
	if l, _ := r.check(1, got); l != linkPrevMismatch {
		t.Fatalf("check against another predecessor: %v", l)
	}
}

func TestMatchPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern, action string
		want            bool
	}{
		{"auth.login.failed", "auth.login.failed", true},
		{"auth.login.failed", "auth.login.failed2", false},
		{"*.deleted", "master-data.customer.deleted", true},
		{"*.deleted", "customer.deleted.not", false},
		{"master-data.*", "master-data.customer.created", true},
		{"*", "anything", true},
		{"auth.*.failed", "auth.login.failed", true},
		{"auth.*.failed", "auth.login.ok", false},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
		{"**", "", true},
		{"x", "", false},
	} {
		if got := matchPattern(tc.pattern, tc.action); got != tc.want {
			t.Errorf("matchPattern(%q, %q) = %v", tc.pattern, tc.action, got)
		}
	}
	pats, err := parsePatterns(" auth.login.failed, ,*.deleted,")
	if err != nil || len(pats) != 2 || firstMatch(pats, "x.deleted") != "*.deleted" || firstMatch(pats, "x.created") != "" {
		t.Fatalf("parsePatterns: %v %v", pats, err)
	}
	if _, err := parsePatterns("a b"); err == nil {
		t.Fatal("a pattern with a space was accepted")
	}
	for s, ok := range map[string]bool{"365": true, "0": true, " 30 ": true, "-1": false, "x": false, "36501": false} {
		if _, err := parseRetentionDays(s); (err == nil) != ok {
			t.Errorf("parseRetentionDays(%q): %v", s, err)
		}
	}
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"24h", 24 * time.Hour, true}, {" 0 ", 0, true}, {"1m", time.Minute, true}, {"720h", 720 * time.Hour, true},
		{"59s", 0, false}, {"721h", 0, false}, {"-1h", 0, false}, {"0s", 0, false}, {"daily", 0, false}, {"", 0, false},
	} {
		got, err := parseRetentionEvery(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseRetentionEvery(%q) = %v, %v", tc.in, got, err)
		}
	}
}

// TestMaybeArchiveOff checks that automatic retention does nothing, and touches no
// database (outside a host any SQL call fails), when it is not due or switched off.
func TestMaybeArchiveOff(t *testing.T) {
	for _, tc := range []struct {
		s   settings
		due bool
	}{
		{settings{retentionDays: 30, retentionEvery: time.Hour}, false},
		{settings{retentionDays: 0, retentionEvery: time.Hour}, true},
		{settings{retentionDays: 30, retentionEvery: 0}, true},
	} {
		if err := maybeArchive(&tc.s, tc.due, "ev"); err != nil {
			t.Errorf("maybeArchive(%+v, due=%v): %v", tc.s, tc.due, err)
		}
	}
	if err := maybeArchive(&settings{retentionDays: 30, retentionEvery: time.Hour}, true, "ev"); err == nil {
		t.Error("a due run outside a host reported no error: it did not reach the database")
	}
}

func TestLikePrefix(t *testing.T) {
	if got := likePrefix(`cust_%\.*`); got != `cust\_\%\\.%` {
		t.Fatalf("likePrefix = %s", got)
	}
}
