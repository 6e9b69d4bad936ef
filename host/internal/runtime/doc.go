// Package runtime runs plugin versions as pools of sandboxed wasm instances.
//
// One Engine per host owns the on-disk compilation cache. Loading a plugin version
// compiles its module once (or fetches the compiled code from the cache), creates a
// wazero runtime with that version's memory cap, warms the instance pool and runs the
// guest's keel_init. A call borrows an instance exclusively (wasm instances are
// single-threaded), writes the input into the guest's buffer, calls one export, and
// reads the output. Any trap, timeout, exit or memory blow-up fails that call only;
// the instance is closed and replaced, and the failure is counted by reason.
//
// The hot path is deliberately free of per-call lookups: export handles, the guest
// input buffer's address and a call stack are cached per instance, which is why a call
// costs about as much as the wasm work itself.
package runtime
