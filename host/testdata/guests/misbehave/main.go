// Command misbehave is a test guest that does every bad thing a plugin can do, one per
// route, so tests can prove each fails only its own request.
package main

import (
	"os"
	"strings"
	"unsafe"

	keel "github.com/keelhq/keel/abi/sdk"
)

var sink [][]byte

func init() {
	keel.Handle("GET", "/ok", func(r *keel.Request) *keel.Response { return keel.Text(200, "ok") })
	keel.Handle("GET", "/loop", func(r *keel.Request) *keel.Response {
		for i := 0; ; i++ {
			if i < 0 {
				break
			}
		}
		return keel.Text(200, "unreachable")
	})
	keel.Handle("GET", "/bomb", func(r *keel.Request) *keel.Response {
		for {
			sink = append(sink, make([]byte, 1<<20))
		}
	})
	keel.Handle("GET", "/panic", func(r *keel.Request) *keel.Response { panic("deliberate panic") })
	keel.Handle("GET", "/trap", func(r *keel.Request) *keel.Response {
		// A store far outside linear memory: a genuine wasm trap, not a Go panic.
		*(*byte)(unsafe.Pointer(uintptr(0xfffffff0))) = 1
		return keel.Text(200, "unreachable")
	})
	keel.Handle("GET", "/overflow", func(r *keel.Request) *keel.Response { return keel.Text(200, recurse(1)) })
	keel.Handle("GET", "/exit", func(r *keel.Request) *keel.Response { os.Exit(3); return nil })
	keel.Handle("GET", "/huge", func(r *keel.Request) *keel.Response {
		return keel.Text(200, strings.Repeat("x", 2<<20))
	})
	keel.Handle("GET", "/print", func(r *keel.Request) *keel.Response {
		os.Stdout.WriteString("hello from stdout\n")
		return keel.Text(200, "printed")
	})
}

// recurse overflows the goroutine stack, a fatal Go runtime error that no recover
// can catch.
func recurse(n int) string {
	var pad [256]byte
	pad[n%256] = byte(n)
	return recurse(n+1) + string(pad[:1])
}

func main() {}
