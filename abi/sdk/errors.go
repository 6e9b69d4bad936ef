package keel

import (
	"errors"

	"github.com/keelhq/keel/abi/wire"
)

// HostError is a failure reported by the host for a capability call. Code is one of the
// stable ABI error codes; compare with errors.Is against the sentinel values below.
type HostError struct {
	Code    wire.Code
	Op      string // the import that failed, e.g. "keel:sql/v1.query"
	Message string
	Detail  string // machine-readable detail such as a SQLSTATE, may be empty
}

func (e *HostError) Error() string {
	if e.Detail != "" {
		return e.Op + ": " + e.Code.String() + " (" + e.Detail + "): " + e.Message
	}
	return e.Op + ": " + e.Code.String() + ": " + e.Message
}

// Is makes errors.Is(err, keel.ErrDenied) and friends work by code.
func (e *HostError) Is(target error) bool {
	var t *HostError
	if errors.As(target, &t) && t.Op == "" && t.Message == "" {
		return t.Code == e.Code
	}
	return false
}

// Sentinels for errors.Is. They match any *HostError with the same code.
var (
	ErrDenied      error = &HostError{Code: wire.CodeDenied}
	ErrNotFound    error = &HostError{Code: wire.CodeNotFound}
	ErrUnavailable error = &HostError{Code: wire.CodeUnavailable}
	ErrDeadline    error = &HostError{Code: wire.CodeDeadline}
	ErrTooLarge    error = &HostError{Code: wire.CodeTooLarge}
	ErrConflict    error = &HostError{Code: wire.CodeConflict}
	ErrInvalid     error = &HostError{Code: wire.CodeInvalid}
	ErrUnsupported error = &HostError{Code: wire.CodeUnsupported}
)

// sdkError is an SDK failure that wraps its cause for errors.Is and errors.As
// (fmt.Errorf's %w without fmt; see Logger for why the SDK avoids fmt).
type sdkError struct {
	msg   string
	cause error
}

func (e *sdkError) Error() string { return e.msg + ": " + e.cause.Error() }
func (e *sdkError) Unwrap() error { return e.cause }

// wrapErr prefixes err with msg, keeping err reachable through errors.Is/As.
func wrapErr(msg string, err error) error { return &sdkError{msg: msg, cause: err} }
