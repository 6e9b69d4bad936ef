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
