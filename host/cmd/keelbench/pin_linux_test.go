//go:build linux

package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// serverProcess skips the test without two CPUs, and otherwise returns this process's
// CPU mask and a child process that stands for a server until the test ends.
func serverProcess(t *testing.T) (unix.CPUSet, *exec.Cmd) {
	t.Helper()
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil || orig.Count() < 2 {
		t.Skipf("needs two CPUs (have %d, %v)", orig.Count(), err)
	}
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Skip("no sleep command:", err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() }) //nolint:errcheck // cleanup
	return orig, child
}

// TestPinApartRestores pins this process and a child apart, checks both masks and
// GOMAXPROCS, and checks that restore gives every thread (including one started while
// pinned) and the child their masks back.
func TestPinApartRestores(t *testing.T) {
	orig, child := serverProcess(t)
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

// TestPinApartInterrupted: keelbench interrupted while a server process is pinned
// (the helper below, in a child process) gives that process its mask back before it
// exits.
func TestPinApartInterrupted(t *testing.T) {
	_, server := serverProcess(t)
	var before unix.CPUSet
	if err := unix.SchedGetaffinity(server.Process.Pid, &before); err != nil {
		t.Fatal(err)
	}
	helper := exec.Command(os.Args[0], "-test.run=^TestPinApartHelper$")
	helper.Env = append(os.Environ(), "KEELBENCH_PIN_HELPER="+strconv.Itoa(server.Process.Pid))
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.HasPrefix(line, "skip") {
		helper.Wait() //nolint:errcheck // it skipped
		t.Skip("helper:", strings.TrimSpace(line))
	}
	if err != nil || !strings.HasPrefix(line, "pinned") {
		t.Fatalf("helper said %q, %v", line, err)
	}
	var during unix.CPUSet
	if err := unix.SchedGetaffinity(server.Process.Pid, &during); err != nil || during.Count() != 1 {
		t.Fatalf("the server process is not pinned while the helper runs (%d CPUs, %v)", during.Count(), err)
	}
	helper.Process.Signal(os.Interrupt) //nolint:errcheck // checked by Wait
	err = helper.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("the helper ended with %v, want exit status 130", err)
	}
	var after unix.CPUSet
	if err := unix.SchedGetaffinity(server.Process.Pid, &after); err != nil || after != before {
		t.Fatalf("the server process's mask was not restored on interrupt (%d CPUs, %v)", after.Count(), err)
	}
}

// TestPinApartHelper is the child of TestPinApartInterrupted; alone it does nothing.
func TestPinApartHelper(t *testing.T) {
	pid, err := strconv.Atoi(os.Getenv("KEELBENCH_PIN_HELPER"))
	if err != nil {
		t.Skip("only run by TestPinApartInterrupted")
	}
	p, err := pinApart([]int{pid})
	if err != nil {
		fmt.Println("skip:", err)
		return
	}
	defer p.restore()
	fmt.Println("pinned")
	time.Sleep(30 * time.Second) // until interrupted
	t.Fatal("not interrupted")
}
