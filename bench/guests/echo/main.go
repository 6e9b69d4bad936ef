// Command echo is the benchmark guest: POST /raw returns its body untouched, so a
// call measures the host→plugin→host round trip and nothing else.
package main

import keel "github.com/keelhq/keel/abi/sdk"

func init() {
	keel.Handle("POST", "/raw", func(r *keel.Request) *keel.Response {
		return keel.Bytes(200, "application/octet-stream", r.Body)
	})
}

func main() {}
