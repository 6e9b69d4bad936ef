package runtime

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/keelhq/keel/abi/wire"
)

// Failure reasons, the values of keel_plugin_failures_total's "reason" label.
const (
	ReasonTrap          = "trap"           // the guest trapped (unreachable, out-of-bounds, stack overflow)
	ReasonTimeout       = "timeout"        // the call passed its deadline and was stopped
	ReasonMemory        = "memory"         // the guest ran out of memory under its cap
	ReasonExit          = "exit"           // the guest exited (Go runtime fatal error, os.Exit)
	ReasonPanic         = "panic"          // the guest recovered from a panic; the instance is retired
	ReasonOversized     = "oversized"      // the output exceeded max_response_bytes
	ReasonMalformed     = "malformed"      // the output did not decode
	ReasonPoolExhausted = "pool_exhausted" // no instance became free before the deadline
	ReasonInit          = "init"           // a new instance failed to start or initialise
	ReasonCanceled      = "canceled"       // the caller went away mid-call
	ReasonCommit        = "commit"         // the unit of work (transaction, outbox) failed to finish
)

// CallError is a failed call into a plugin. It says why (Reason), what the client
// should see (Status, Code) and wraps the underlying error.
type CallError struct {
	Plugin string
	Export string
	Reason string
	Err    error
}

func (e *CallError) Error() string {
	return fmt.Sprintf("plugin %s: %s: %s: %v", e.Plugin, e.Export, e.Reason, e.Err)
}

func (e *CallError) Unwrap() error { return e.Err }

// Status is the HTTP status a gateway should answer with.
func (e *CallError) Status() int {
	switch e.Reason {
	case ReasonTimeout:
		return http.StatusGatewayTimeout
	case ReasonPoolExhausted, ReasonCommit:
		return http.StatusServiceUnavailable
	case ReasonOversized, ReasonMalformed:
		return http.StatusBadGateway
	case ReasonCanceled:
		return 499
	default:
		return http.StatusInternalServerError
	}
}

// Code is the stable error code string for the JSON error body.
func (e *CallError) Code() string { return "plugin_" + e.Reason }

// ErrClosed is returned for calls on a generation that has been closed.
var ErrClosed = errors.New("plugin generation closed")

// CapError is an error a host function returns to the guest with a stable code.
type CapError struct {
	Code    wire.Code
	Message string
	Detail  string
}

func (e *CapError) Error() string { return e.Code.String() + ": " + e.Message }

// Errorf builds a CapError.
func Errorf(code wire.Code, format string, args ...any) *CapError {
	return &CapError{Code: code, Message: fmt.Sprintf(format, args...)}
}
