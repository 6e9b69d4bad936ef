package main

import (
	"fmt"
	"testing"
)

func pct(n int) *int { return &n }

func TestBucketVectors(t *testing.T) {
	if err := bucketSelfTest(); err != nil {
		t.Fatal(err)
	}
}

func TestRolloutIsStableAndEven(t *testing.T) {
	f := &Flag{Key: "new-checkout", Enabled: true, Rules: Rules{Percentage: pct(30)}}
	on := 0
	for i := 0; i < 10000; i++ {
		s := Subject{User: fmt.Sprintf("user-%d", i)}
		a, b := Evaluate(f, s), Evaluate(f, s)
		if a.Enabled != b.Enabled || *a.Bucket != *b.Bucket {
			t.Fatalf("unstable for %s", s.User)
		}
		if a.Enabled {
			on++
		}
	}
	if on < 2800 || on > 3200 {
		t.Fatalf("30%% rollout enabled %d of 10000", on)
	}
	// Raising the percentage only adds users: everyone in at 30% stays in at 60%.
	g := *f
	g.Rules.Percentage = pct(60)
	for i := 0; i < 1000; i++ {
		s := Subject{User: fmt.Sprintf("user-%d", i)}
		if Evaluate(f, s).Enabled && !Evaluate(&g, s).Enabled {
			t.Fatalf("%s dropped out when the rollout grew", s.User)
		}
	}
}

func TestEvaluateOrder(t *testing.T) {
	f := &Flag{Key: "beta", Enabled: true, Rules: Rules{Users: []string{"u1"}, Roles: []string{"beta-tester"}, Permissions: []string{"beta.access"}}}
	if err := f.Rules.normalize(); err != nil || *f.Rules.Percentage != 0 {
		t.Fatalf("lists without a percentage default to 0%%: %v %v", err, f.Rules.Percentage)
	}
	for _, tc := range []struct {
		s      Subject
		on     bool
		reason string
	}{
		{Subject{User: "u1"}, true, "user_targeted"},
		{Subject{User: "u2", Roles: []string{"staff", "beta-tester"}}, true, "role_targeted"},
		{Subject{User: "u2", Permissions: []string{"beta.access"}}, true, "permission_targeted"},
		{Subject{User: "u2", Roles: []string{"beta.access"}}, false, "not_targeted"},
		{Subject{User: "u2"}, false, "not_targeted"},
	} {
		ev := Evaluate(f, tc.s)
		if ev.Enabled != tc.on || ev.Reason != tc.reason {
			t.Errorf("%+v: %v %s, want %v %s", tc.s, ev.Enabled, ev.Reason, tc.on, tc.reason)
		}
	}
	f.Enabled = false
	if ev := Evaluate(f, Subject{User: "u1"}); ev.Enabled || ev.Reason != "disabled" {
		t.Errorf("disabled flag: %+v", ev)
	}
	all := &Flag{Key: "x", Enabled: true}
	if err := all.Rules.normalize(); err != nil || *all.Rules.Percentage != 100 {
		t.Fatalf("no rules default to 100%%")
	}
	if ev := Evaluate(all, Subject{}); !ev.Enabled || ev.Reason != "everyone" {
		t.Errorf("everyone: %+v", ev)
	}
	half := &Flag{Key: "x", Enabled: true, Rules: Rules{Percentage: pct(50)}}
	if ev := Evaluate(half, Subject{}); ev.Enabled || ev.Reason != "no_user" {
		t.Errorf("partial rollout without a user: %+v", ev)
	}
	if err := (&Rules{Percentage: pct(101)}).normalize(); err == nil {
		t.Error("percentage 101 accepted")
	}
}
