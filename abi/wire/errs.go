package wire

import "strconv"

// This package formats its errors without fmt: it is linked into every guest, and fmt
// (with the reflection it brings) adds about a megabyte to a plugin module, which the
// host pays for in validation time at every load (see RATIONALE.md, "Small guests").

// wrapError is an error message that wraps a sentinel or cause for errors.Is/As.
type wrapError struct {
	msg   string
	cause error
}

func (e *wrapError) Error() string { return e.msg }
func (e *wrapError) Unwrap() error { return e.cause }

// malformed returns ErrMalformed wrapped with a description, as
// fmt.Errorf("%w: %s", ErrMalformed, msg) would.
func malformed(msg string) error {
	return &wrapError{msg: ErrMalformed.Error() + ": " + msg, cause: ErrMalformed}
}

// itoa formats an integer for error messages.
func itoa[T ~int | ~int32 | ~int64 | ~uint8 | ~uint32 | ~uint64](n T) string {
	if n < 0 {
		return strconv.FormatInt(int64(n), 10)
	}
	return strconv.FormatUint(uint64(n), 10)
}
