//go:build !linux

package main

import "errors"

// placement is Linux-only (sched_setaffinity); elsewhere scenarios run unpinned.
type placement struct{}

func pinApart([]int) (*placement, error)    { return nil, errors.New("CPU pinning needs Linux") }
func (p *placement) pinServers([]int) error { return nil }
func (p *placement) restore()               {}
func (p *placement) String() string         { return "not pinned" }
