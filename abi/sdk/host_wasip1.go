//go:build wasip1

package keel

import "unsafe"

// ABIVersion is the ABI level this SDK speaks.
const ABIVersion = 1

var (
	inbuf   []byte // the host writes each call's input here (see keel_buffer)
	outbuf  []byte // each export's output; valid until the next export call
	scratch = make([]byte, 16<<10)
)

// Buffers above this size are released after use so that one huge request does not
// pin its memory for the life of the instance.
const keepBuffer = 1 << 20

//go:wasmexport keel_abi_version
func exportABIVersion() int32 { return ABIVersion }

//go:wasmexport keel_buffer
func exportBuffer(n int32) int32 {
	if n < 0 {
		return 0
	}
	if cap(inbuf) < int(n) || (cap(inbuf) > keepBuffer && int(n) <= keepBuffer) {
		inbuf = make([]byte, max(int(n), 64<<10))
	}
	inbuf = inbuf[:cap(inbuf)]
	return int32(uintptr(unsafe.Pointer(unsafe.SliceData(inbuf))))
}

//go:wasmexport keel_http
func exportHTTP(n int32) int64 { return respond(dispatchHTTP, n) }

//go:wasmexport keel_event
func exportEvent(n int32) int64 { return respond(dispatchEvent, n) }

//go:wasmexport keel_health
func exportHealth(n int32) int64 { return respond(dispatchHealth, n) }

//go:wasmexport keel_init
func exportInit(n int32) int64 { return respond(dispatchInit, n) }

// respond runs a dispatcher on the input buffer and packs the output's address and
// length into one i64: address in the high 32 bits, length in the low 32.
func respond(d func(in, out []byte) []byte, n int32) int64 {
	if n < 0 || int(n) > len(inbuf) {
		n = 0
	}
	if cap(outbuf) > keepBuffer {
		outbuf = nil
	}
	outbuf = d(inbuf[:n], outbuf[:0])
	if len(outbuf) == 0 {
		return 0
	}
	return int64(uintptr(unsafe.Pointer(unsafe.SliceData(outbuf))))<<32 | int64(len(outbuf))
}

//go:wasmimport keel:env/v1 take
func hostTake(ptr unsafe.Pointer, n uint32) uint32

//go:wasmimport keel:log/v1 write
func hostLogWrite(in unsafe.Pointer, inLen uint32, out unsafe.Pointer, outCap uint32) uint64

//go:wasmimport keel:cache/v1 get
func hostCacheGet(in unsafe.Pointer, inLen uint32, out unsafe.Pointer, outCap uint32) uint64

//go:wasmimport keel:cache/v1 set
func hostCacheSet(in unsafe.Pointer, inLen uint32, out unsafe.Pointer, outCap uint32) uint64

//go:wasmimport keel:cache/v1 delete
func hostCacheDelete(in unsafe.Pointer, inLen uint32, out unsafe.Pointer, outCap uint32) uint64

//go:wasmimport keel:cache/v1 incr
func hostCacheIncr(in unsafe.Pointer, inLen uint32, out unsafe.Pointer, outCap uint32) uint64

//go:wasmimport keel:config/v1 get
func hostConfigGet(in unsafe.Pointer, inLen uint32, out unsafe.Pointer, outCap uint32) uint64

//go:wasmimport keel:metrics/v1 record
func hostMetricsRecord(in unsafe.Pointer, inLen uint32, out unsafe.Pointer, outCap uint32) uint64

//go:wasmimport keel:http/v1 fetch
func hostHTTPFetch(in unsafe.Pointer, inLen uint32, out unsafe.Pointer, outCap uint32) uint64

//go:wasmimport keel:plugin/v1 call
func hostPluginCall(in unsafe.Pointer, inLen uint32, out unsafe.Pointer, outCap uint32) uint64

//go:wasmimport keel:sql/v1 query
func hostSQLQuery(in unsafe.Pointer, inLen uint32, out unsafe.Pointer, outCap uint32) uint64

//go:wasmimport keel:sql/v1 exec
func hostSQLExec(in unsafe.Pointer, inLen uint32, out unsafe.Pointer, outCap uint32) uint64

//go:wasmimport keel:events/v1 publish
func hostEventsPublish(in unsafe.Pointer, inLen uint32, out unsafe.Pointer, outCap uint32) uint64

// callHost calls one import with the uniform ABI v1 signature
// (in_ptr, in_len, out_ptr, out_cap) -> (code << 32 | out_len) and returns its output.
// The returned slice is only valid until the next callHost.
func callHost(fn hostFn, in []byte) ([]byte, error) {
	ip, il := unsafe.Pointer(unsafe.SliceData(in)), uint32(len(in))
	op, oc := unsafe.Pointer(unsafe.SliceData(scratch)), uint32(len(scratch))
	var r uint64
	switch fn {
	case fnLogWrite:
		r = hostLogWrite(ip, il, op, oc)
	case fnCacheGet:
		r = hostCacheGet(ip, il, op, oc)
	case fnCacheSet:
		r = hostCacheSet(ip, il, op, oc)
	case fnCacheDelete:
		r = hostCacheDelete(ip, il, op, oc)
	case fnCacheIncr:
		r = hostCacheIncr(ip, il, op, oc)
	case fnConfigGet:
		r = hostConfigGet(ip, il, op, oc)
	case fnMetricsRecord:
		r = hostMetricsRecord(ip, il, op, oc)
	case fnHTTPFetch:
		r = hostHTTPFetch(ip, il, op, oc)
	case fnPluginCall:
		r = hostPluginCall(ip, il, op, oc)
	case fnSQLQuery:
		r = hostSQLQuery(ip, il, op, oc)
	case fnSQLExec:
		r = hostSQLExec(ip, il, op, oc)
	case fnEventsPublish:
		r = hostEventsPublish(ip, il, op, oc)
	default:
		return nil, &HostError{Code: 9, Op: "keel", Message: "unknown host function"}
	}
	code, n := uint32(r>>32), uint32(r)
	out := scratch[:min(n, oc)]
	if n > oc {
		out = make([]byte, n)
		if hostTake(unsafe.Pointer(unsafe.SliceData(out)), n) != 0 {
			return nil, &HostError{Code: 1, Op: importNames[fn], Message: "host lost the pending result"}
		}
	}
	if code != 0 {
		return nil, resultError(fn, code, out)
	}
	return out, nil
}
