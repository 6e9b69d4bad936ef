// Package cachetest holds the conformance tests every cache.Store
// implementation must pass, so that the in-process cache and Redis behave
// the same for plugins whichever one the host runs with.
//
// It imports package testing and is meant to be used only from tests:
//
//	cachetest.Run(t, cachetest.Harness{Store: s, Advance: clock.Add})
package cachetest
