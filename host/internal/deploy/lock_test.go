package deploy

import (
	"context"
	"testing"
	"time"
)

// Requested changes exclude each other at once (409), wait for a follow of the
// registry in progress, and give up when their context ends; follows never wait.
func TestChangeLocks(t *testing.T) {
	d := New(Config{})
	ctx := context.Background()

	if !d.lock(ctx, "p") {
		t.Fatal("first requested change refused")
	}
	if d.lock(ctx, "p") {
		t.Fatal("second requested change admitted while the first runs")
	}
	if d.lockFollow("p") {
		t.Fatal("follow admitted while a requested change runs")
	}
	if !d.lock(ctx, "other") {
		t.Fatal("a change of another plugin was refused")
	}
	d.unlock("p")
	d.unlock("other")

	// A requested change waits for a follow, then runs.
	if !d.lockFollow("p") {
		t.Fatal("follow refused on an idle plugin")
	}
	got := make(chan bool)
	go func() { got <- d.lock(ctx, "p") }()
	select {
	case <-got:
		t.Fatal("requested change did not wait for the follow")
	case <-time.After(50 * time.Millisecond):
	}
	d.unlock("p")
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("requested change refused after the follow ended")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("requested change still waiting after the follow ended")
	}
	d.unlock("p")

	// It gives up when its context ends.
	d.lockFollow("p")
	cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if d.lock(cctx, "p") {
		t.Fatal("requested change admitted while a follow still runs")
	}
	d.unlock("p")
	d.unlock("p") // unlocking an idle plugin is harmless
}
