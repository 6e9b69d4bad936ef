//go:build !wasip1

package keel

import "github.com/keelhq/keel/abi/wire"

// ABIVersion is the ABI level this SDK speaks.
const ABIVersion = 1

// callHost outside a wasm host: every capability reports CodeUnsupported, except
// logging, which is dropped, so plugin logic stays unit-testable natively.
func callHost(fn hostFn, in []byte) ([]byte, error) {
	if testHost != nil {
		return testHost(fn, in)
	}
	if fn == fnLogWrite {
		return nil, nil
	}
	return nil, &HostError{Code: wire.CodeUnsupported, Op: importNames[fn], Message: "not running inside a Keel host"}
}
