//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// placement keeps the two ends of a client/server comparison on different CPUs: this
// process on one, the server's processes (PostgreSQL backends, redis-server) on
// another. On two vCPUs a round trip costs very differently depending on whether the
// client thread and the server process share a CPU, and the kernel decides that per
// connection: the plugin and the native side of a comparison use different
// connections, so unpinned, a ratio partly measured where each side's server process
// happened to run (bench/RESULTS.md, 2026-12-07). Pinned, both sides meet the same
// placement. It needs two CPUs and the right to set another process's affinity (root
// or CAP_SYS_NICE); without them the scenario runs unpinned and says so.
//
// The server processes are shared services (redis-server outlives the benchmark), so an
// interrupt or termination while they are pinned restores them before keelbench exits.
type placement struct {
	self, server int         // the CPUs
	procs        int         // GOMAXPROCS before
	orig         unix.CPUSet // this process's mask before
	mu           sync.Mutex
	servers      map[int]unix.CPUSet // pinned server pids and their masks before
	sigs         chan os.Signal
	done         chan struct{}
	once         sync.Once
}

// pinApart pins this process to one CPU (and GOMAXPROCS to 1) and the given server
// processes to another.
func pinApart(serverPIDs []int) (*placement, error) {
	if len(serverPIDs) == 0 {
		return nil, errors.New("no server process found to pin")
	}
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		return nil, fmt.Errorf("read this process's CPU affinity: %w", err)
	}
	var cpus []int
	for c := 0; c < 1024 && len(cpus) < 2; c++ {
		if orig.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) < 2 {
		return nil, fmt.Errorf("only %d CPU available", len(cpus))
	}
	p := &placement{self: cpus[0], server: cpus[1], orig: orig, servers: map[int]unix.CPUSet{},
		sigs: make(chan os.Signal, 1), done: make(chan struct{})}
	signal.Notify(p.sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case sig := <-p.sigs:
			p.restoreServers()
			fmt.Fprintf(os.Stderr, "keelbench: %v; the server processes' CPU affinity is restored\n", sig)
			os.Exit(130)
		case <-p.done:
		}
	}()
	if err := p.pinServers(serverPIDs); err != nil {
		p.restore()
		return nil, err
	}
	var one unix.CPUSet
	one.Set(p.self)
	if err := setThreads(&one); err != nil {
		p.restore()
		return nil, err
	}
	p.procs = runtime.GOMAXPROCS(1)
	return p, nil
}

// pinServers pins server processes not pinned yet (a pool may have opened a
// connection since).
func (p *placement) pinServers(pids []int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var set unix.CPUSet
	set.Set(p.server)
	for _, pid := range pids {
		if _, done := p.servers[pid]; done {
			continue
		}
		var before unix.CPUSet
		err := unix.SchedGetaffinity(pid, &before)
		if err == nil {
			err = unix.SchedSetaffinity(pid, &set)
		}
		if err == unix.ESRCH {
			continue // the connection closed since it was listed
		}
		if err != nil {
			return fmt.Errorf("pin server process %d: %w", pid, err)
		}
		p.servers[pid] = before
	}
	return nil
}

// restore gives every pinned process its mask back (a server process that has
// exited meanwhile is skipped) and this process its GOMAXPROCS.
func (p *placement) restore() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		signal.Stop(p.sigs)
		close(p.done)
	})
	p.restoreServers()
	setThreads(&p.orig) //nolint:errcheck // best effort: the mask it replaces is a subset
	if p.procs > 0 {
		runtime.GOMAXPROCS(p.procs)
	}
}

// restoreServers gives the pinned server processes their masks back.
func (p *placement) restoreServers() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pid, before := range p.servers {
		unix.SchedSetaffinity(pid, &before) //nolint:errcheck // the process may be gone
	}
}

// setThreads sets the affinity of every thread of this process; threads started later
// inherit it from the thread that starts them.
func setThreads(set *unix.CPUSet) error {
	var firstErr error
	err := eachThread(func(tid int) {
		if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH && firstErr == nil {
			firstErr = fmt.Errorf("pin thread %d: %w", tid, err)
		}
	})
	if err != nil {
		return err
	}
	return firstErr
}

// eachThread calls f with the id of every thread of this process.
func eachThread(f func(tid int)) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("list this process's threads: %w", err)
	}
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			f(tid)
		}
	}
	return nil
}

func (p *placement) String() string {
	if p == nil {
		return "not pinned"
	}
	return fmt.Sprintf("this process on CPU %d (GOMAXPROCS 1), %d server process(es) on CPU %d", p.self, len(p.servers), p.server)
}
