package cache

import (
	"testing"
	"time"
)

func TestKey(t *testing.T) {
	tests := []struct {
		plugin, tenant, key string
		want                string
	}{
		{"auth", "t1", "session:abc", "keel:auth:t1:session:abc"},
		{"auth", "", "", "keel:auth::"},
		{"a:b", "c", "d", "keel:a%3Ab:c:d"},
		{"a", "b:c", "d", "keel:a:b%3Ac:d"},
		{"a", "b", "c:d", "keel:a:b:c:d"},
		{"a%3Ab", "c", "d", "keel:a%253Ab:c:d"},
		{"%", "%%", "%", "keel:%25:%25%25:%"},
		{"master-data", "00000000-0000-0000-0000-000000000001", "customer/42",
			"keel:master-data:00000000-0000-0000-0000-000000000001:customer/42"},
	}
	seen := map[string]int{}
	for i, tt := range tests {
		got := Key(tt.plugin, tt.tenant, tt.key)
		if got != tt.want {
			t.Errorf("Key(%q, %q, %q) = %q, want %q", tt.plugin, tt.tenant, tt.key, got, tt.want)
		}
		if j, dup := seen[got]; dup {
			t.Errorf("cases %d and %d both map to %q", j, i, got)
		}
		seen[got] = i
		p, tn, k, ok := ParseKey(got)
		if !ok || p != tt.plugin || tn != tt.tenant || k != tt.key {
			t.Errorf("ParseKey(%q) = %q, %q, %q, %v; want the original triple", got, p, tn, k, ok)
		}
	}
}

// TestKeyCollisions lists triples that a naive "plugin:tenant:key" join
// would map onto one string.
func TestKeyCollisions(t *testing.T) {
	groups := [][3]string{
		{"a:b", "c", "d"},
		{"a", "b:c", "d"},
		{"a", "b", "c:d"},
		{"a:b:c", "", "d"},
		{"", "a:b:c", "d"},
		{"a", "", "b:c:d"},
	}
	seen := map[string][3]string{}
	for _, g := range groups {
		k := Key(g[0], g[1], g[2])
		if prev, dup := seen[k]; dup {
			t.Fatalf("%v and %v collide on %q", prev, g, k)
		}
		seen[k] = g
	}
}

func TestParseKeyRejectsForeignKeys(t *testing.T) {
	for _, s := range []string{"", "keel:", "keel:a", "other:a:b:c", "keel:a%3:b:c", "keel:a%zz:b:c", "keel:a:b%2:c"} {
		if _, _, _, ok := ParseKey(s); ok {
			t.Errorf("ParseKey(%q) accepted a key Key never produces", s)
		}
	}
}

// FuzzKey proves injectivity: Key is invertible, so two different triples
// can never produce the same string; and two triples the fuzzer makes differ
// in their keys.
func FuzzKey(f *testing.F) {
	f.Add("a:b", "c", "d", "a", "b:c", "d")
	f.Add("%3A", "", "x", ":", "", "x")
	f.Add("p", "t", "k", "p", "t", "k")
	f.Fuzz(func(t *testing.T, p1, t1, k1, p2, t2, k2 string) {
		a := Key(p1, t1, k1)
		gp, gt, gk, ok := ParseKey(a)
		if !ok || gp != p1 || gt != t1 || gk != k1 {
			t.Fatalf("ParseKey(Key(%q, %q, %q)) = %q, %q, %q, %v", p1, t1, k1, gp, gt, gk, ok)
		}
		b := Key(p2, t2, k2)
		same := p1 == p2 && t1 == t2 && k1 == k2
		if (a == b) != same {
			t.Fatalf("Key(%q,%q,%q) = %q and Key(%q,%q,%q) = %q", p1, t1, k1, a, p2, t2, k2, b)
		}
	})
}

func TestTTLClass(t *testing.T) {
	tests := []struct {
		name string
		want time.Duration
		ok   bool
	}{
		{"session", time.Hour, true},
		{"auth", 15 * time.Minute, true},
		{"user", 5 * time.Minute, true},
		{"config", 24 * time.Hour, true},
		{"short", time.Minute, true},
		{"default", 10 * time.Minute, true},
		{"Session", 0, false},
		{"", 0, false},
		{"forever", 0, false},
	}
	for _, tt := range tests {
		got, ok := TTLClass(tt.name)
		if got != tt.want || ok != tt.ok {
			t.Errorf("TTLClass(%q) = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}
