package gateway

import "testing"

func TestTenantLimits(t *testing.T) {
	if !(*tenantLimits)(nil).allow("x") {
		t.Fatal("no limiter must allow everything")
	}
	l := newTenantLimits(5) // bursts of 10
	allowed := 0
	for i := 0; i < 30; i++ {
		if l.allow("acme") {
			allowed++
		}
	}
	if allowed < 10 || allowed > 12 {
		t.Fatalf("30 immediate requests at 5 rps with bursts of 10: %d allowed", allowed)
	}
	if !l.allow("globex") {
		t.Fatal("one tenant's burst limited another tenant")
	}
}

func TestValidTenantAndRequestID(t *testing.T) {
	for s, want := range map[string]bool{"acme": true, "a.b-c_d": true, "": false, "a b": false, "x/../y": false} {
		if validTenant(s) != want {
			t.Errorf("validTenant(%q) != %v", s, want)
		}
	}
	for s, want := range map[string]bool{"abc-123": true, "trace:1.2": true, "": false, "a\nb": false, string(make([]byte, 200)): false} {
		if validRequestID(s) != want {
			t.Errorf("validRequestID(%q) != %v", s, want)
		}
	}
}
