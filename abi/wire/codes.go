package wire

// Code is a stable numeric error code of ABI v1. Codes never change meaning; new codes
// are only ever added. The host returns them from imports and the SDK maps them to
// errors; HTTP status mapping lives in the host.
type Code uint32

// Error codes of ABI v1. See abi/ABI.md, section "Error codes".
const (
	OK               Code = 0
	CodeInternal     Code = 1  // a bug or unexpected failure in the host
	CodeMalformed    Code = 2  // the guest sent bytes that do not decode
	CodeDenied       Code = 3  // the capability or resource is not declared in the manifest
	CodeNotFound     Code = 4  // the thing asked for does not exist
	CodeUnavailable  Code = 5  // a dependency (database, cache, broker, remote) is down
	CodeDeadline     Code = 6  // the call's deadline passed
	CodeTooLarge     Code = 7  // input or output exceeds a limit
	CodeConflict     Code = 8  // unique violation, serialization failure, version conflict
	CodeUnsupported  Code = 9  // the import exists but this operation is not supported
	CodeInvalid      Code = 10 // well-formed but invalid arguments (bad topic name, bad key)
	CodeDatabase     Code = 11 // any other database error; Detail carries the SQLSTATE
	CodeRemote       Code = 12 // outbound HTTP failed (DNS, connect, TLS, status read)
	CodeRateLimited  Code = 13 // a quota or rate limit refused the call
	CodeGuestPanic   Code = 14 // the guest recovered from a panic (used in results)
	CodeGuestFailure Code = 15 // the guest reported an ordinary failure (used in results)
)

var codeNames = [...]string{
	OK:               "ok",
	CodeInternal:     "internal",
	CodeMalformed:    "malformed",
	CodeDenied:       "denied",
	CodeNotFound:     "not_found",
	CodeUnavailable:  "unavailable",
	CodeDeadline:     "deadline_exceeded",
	CodeTooLarge:     "too_large",
	CodeConflict:     "conflict",
	CodeUnsupported:  "unsupported",
	CodeInvalid:      "invalid",
	CodeDatabase:     "database",
	CodeRemote:       "remote",
	CodeRateLimited:  "rate_limited",
	CodeGuestPanic:   "guest_panic",
	CodeGuestFailure: "guest_failure",
}

// String returns the code's stable name, e.g. "denied".
func (c Code) String() string {
	if int(c) < len(codeNames) && codeNames[c] != "" {
		return codeNames[c]
	}
	return "unknown"
}
