package keel

import "github.com/keelhq/keel/abi/wire"

// hostFn names a host import. The wasip1 build maps each to its //go:wasmimport; other
// builds report CodeUnsupported.
type hostFn int

const (
	fnLogWrite hostFn = iota
	fnCacheGet
	fnCacheSet
	fnCacheDelete
	fnCacheIncr
	fnConfigGet
	fnMetricsRecord
	fnHTTPFetch
	fnPluginCall
	fnSQLQuery
	fnSQLExec
	fnEventsPublish
	numHostFns
)

// importNames are the imports' "module.name", used in error messages.
var importNames = [numHostFns]string{
	fnLogWrite:      "keel:log/v1.write",
	fnCacheGet:      "keel:cache/v1.get",
	fnCacheSet:      "keel:cache/v1.set",
	fnCacheDelete:   "keel:cache/v1.delete",
	fnCacheIncr:     "keel:cache/v1.incr",
	fnConfigGet:     "keel:config/v1.get",
	fnMetricsRecord: "keel:metrics/v1.record",
	fnHTTPFetch:     "keel:http/v1.fetch",
	fnPluginCall:    "keel:plugin/v1.call",
	fnSQLQuery:      "keel:sql/v1.query",
	fnSQLExec:       "keel:sql/v1.exec",
	fnEventsPublish: "keel:events/v1.publish",
}

// resultError converts a failed import's payload into a *HostError.
func resultError(fn hostFn, code uint32, payload []byte) error {
	var r wire.Result
	e := &HostError{Code: wire.Code(code), Op: importNames[fn]}
	if err := wire.DecodeResult(payload, &r); err != nil {
		e.Message = "undecodable error payload: " + err.Error()
		return e
	}
	e.Message, e.Detail = r.Message, r.Detail
	return e
}

// reqBuf is reused to encode small capability requests: an instance runs one call at a
// time and the host has read the input when the import returns, so one buffer serves
// every request of the instance. It is dropped after a request larger than
// keepRequest so that one large cache value does not pin its memory.
var reqBuf []byte

const keepRequest = 64 << 10

// request returns reqBuf emptied, for appending one request.
func request() []byte {
	if cap(reqBuf) > keepRequest {
		reqBuf = nil
	}
	return reqBuf[:0]
}

// sent keeps b's storage as reqBuf for the next request.
func sent(b []byte) { reqBuf = b[:0] }

// testHost, when set by a test of this package, answers the capability calls in place
// of a host, so that handler paths that use capabilities can be tested and benchmarked
// natively (allocations per call are the same as in the wasm build). The wasm build
// never consults it.
var testHost func(fn hostFn, in []byte) ([]byte, error)
