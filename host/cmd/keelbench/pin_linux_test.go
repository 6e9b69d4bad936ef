//go:build linux

package main

import (
	"fmt"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPinApartRestores pins this process and a child apart, checks both masks and
// GOMAXPROCS, and checks that restore gives every thread (including one started while
// pinned) and the child their masks back.
func TestPinApartRestores(t *testing.T) {
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil || orig.Count() < 2 {
		t.Skipf("needs two CPUs (have %d, %v)", orig.Count(), err)
	}
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Skip("no sleep command:", err)
	}
	defer func() { child.Process.Kill(); child.Wait() }() //nolint:errcheck // cleanup
	procs := runtime.GOMAXPROCS(0)
	p, err := pinApart([]int{child.Process.Pid})
	if err != nil {
		t.Skip("pinning not permitted here:", err)
	}
	mask := func(pid int) unix.CPUSet {
		var s unix.CPUSet
		if err := unix.SchedGetaffinity(pid, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := mask(0); s.Count() != 1 || !s.IsSet(p.self) {
		t.Fatalf("this thread is not on CPU %d alone", p.self)
	}
	if s := mask(child.Process.Pid); s.Count() != 1 || !s.IsSet(p.server) || p.server == p.self {
		t.Fatalf("the server process is not on CPU %d alone", p.server)
	}
	if runtime.GOMAXPROCS(0) != 1 {
		t.Fatalf("GOMAXPROCS %d while pinned", runtime.GOMAXPROCS(0))
	}
	// A thread started while pinned must be restored too.
	started := make(chan struct{})
	release := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		close(started)
		<-release
	}()
	<-started
	p.restore()
	close(release)
	if runtime.GOMAXPROCS(0) != procs {
		t.Fatalf("GOMAXPROCS %d after restore, want %d", runtime.GOMAXPROCS(0), procs)
	}
	if s := mask(child.Process.Pid); s != orig {
		t.Fatalf("the server process's mask was not restored")
	}
	if err := checkThreads(orig); err != nil {
		t.Fatal(err)
	}
}

// checkThreads reports a thread of this process whose mask is not want.
func checkThreads(want unix.CPUSet) error {
	var firstErr error
	eachThread(func(tid int) {
		var s unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &s); err == nil && s != want && firstErr == nil {
			firstErr = fmt.Errorf("thread %d keeps a pinned mask after restore", tid)
		}
	})
	return firstErr
}
