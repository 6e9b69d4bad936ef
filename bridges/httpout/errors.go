package httpout

import "errors"

// Every error from [Client.Do] matches exactly one of these with errors.Is,
// or context.Canceled when the caller cancelled. The host maps them to the
// ABI's numeric error codes, so their meaning must not change.
var (
	// ErrInvalidRequest means the request was malformed: bad URL, method or
	// header syntax.
	ErrInvalidRequest = errors.New("httpout: invalid request")
	// ErrSchemeNotAllowed means the URL's scheme is not in the policy.
	ErrSchemeNotAllowed = errors.New("httpout: scheme not allowed")
	// ErrHostNotAllowed means the URL's host (or a redirect's) is not in
	// the policy's allowlist.
	ErrHostNotAllowed = errors.New("httpout: host not allowed")
	// ErrAddressNotAllowed means the host resolved to, or is, an address
	// plugins may not reach (loopback, private, metadata, ...).
	ErrAddressNotAllowed = errors.New("httpout: address not allowed")
	// ErrTooManyRedirects means the redirect chain was longer than allowed.
	ErrTooManyRedirects = errors.New("httpout: too many redirects")
	// ErrTooLarge means the request or response body exceeded its limit.
	ErrTooLarge = errors.New("httpout: body too large")
	// ErrTimeout means the total or connect deadline passed.
	ErrTimeout = errors.New("httpout: timeout")
	// ErrUpstream means the exchange failed in transit: DNS, connection
	// refused or reset, TLS, or a malformed response.
	ErrUpstream = errors.New("httpout: upstream failure")
	// ErrInvalidPolicy is returned by [Policy.Validate]; Do never returns it.
	ErrInvalidPolicy = errors.New("httpout: invalid policy")
)
