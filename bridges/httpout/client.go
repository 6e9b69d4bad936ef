package httpout

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Defaults for [Options].
const (
	DefaultTimeout         = 10 * time.Second
	DefaultConnectTimeout  = 3 * time.Second
	DefaultMaxRequestBody  = 1 << 20
	DefaultMaxResponseBody = 4 << 20
	DefaultMaxRedirects    = 5
	DefaultUserAgent       = "keel-httpout/1"
	maxResponseHeaderBytes = 64 << 10
)

// Resolver resolves host names to addresses. *net.Resolver implements it;
// tests substitute one that maps names to local servers.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options tunes a [Client]. The zero value gives the defaults.
type Options struct {
	// Timeout bounds a whole call, redirects and body included.
	Timeout time.Duration
	// ConnectTimeout bounds each TCP connect and TLS handshake.
	ConnectTimeout time.Duration
	// MaxRequestBody and MaxResponseBody cap the bodies in bytes; a larger
	// body fails the call with ErrTooLarge.
	MaxRequestBody  int64
	MaxResponseBody int64
	// MaxRedirects is the number of redirects followed; negative follows
	// none and returns the 3xx response itself.
	MaxRedirects int
	// Resolver replaces the system resolver.
	Resolver Resolver
	// TLSConfig is cloned and used for https; nil means the system roots
	// with TLS 1.2 or newer.
	TLSConfig *tls.Config
	// UserAgent is sent when the request sets none.
	UserAgent string
	// Logger receives refusals, at Warn. Nil means slog.Default().
	Logger *slog.Logger
}

// Request is an outbound request as a plugin describes it.
type Request struct {
	Method  string // empty means GET
	URL     string
	Headers map[string][]string
	Body    []byte
}

// Response is the complete answer, body included.
type Response struct {
	Status  int
	Headers map[string][]string
	Body    []byte
}

// Client performs requests for one plugin under its [Policy]. It is safe for
// concurrent use and keeps a connection pool, so the host builds one per
// plugin version and closes it when that version is retired.
type Client struct {
	policy  compiledPolicy
	opts    Options
	logger  *slog.Logger
	hc      *http.Client
	tr      *http.Transport
	dialer  *net.Dialer
	resolve Resolver
}

// New returns a client enforcing policy. Malformed policy entries are
// ignored, which denies what they were meant to allow; call
// [Policy.Validate] first to report them.
func New(policy Policy, opts Options) *Client {
	cp, _ := compilePolicy(policy)
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.MaxRequestBody <= 0 {
		opts.MaxRequestBody = DefaultMaxRequestBody
	}
	if opts.MaxResponseBody <= 0 {
		opts.MaxResponseBody = DefaultMaxResponseBody
	}
	if opts.MaxRedirects == 0 {
		opts.MaxRedirects = DefaultMaxRedirects
	}
	if opts.UserAgent == "" {
		opts.UserAgent = DefaultUserAgent
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	c := &Client{policy: cp, opts: opts, logger: logger, resolve: opts.Resolver}
	if c.resolve == nil {
		c.resolve = net.DefaultResolver
	}
	c.dialer = &net.Dialer{
		Timeout:   opts.ConnectTimeout,
		KeepAlive: 30 * time.Second,
		// Control runs on the address the socket is about to connect to,
		// whatever path led there; it is the last line of defence.
		Control: c.control,
	}
	var tlsConf *tls.Config
	if opts.TLSConfig != nil {
		tlsConf = opts.TLSConfig.Clone()
	} else {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	c.tr = &http.Transport{
		Proxy:                  nil, // never from the environment
		DialContext:            c.dialContext,
		TLSClientConfig:        tlsConf,
		TLSHandshakeTimeout:    opts.ConnectTimeout,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           64,
		MaxIdleConnsPerHost:    8,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
	}
	c.hc = &http.Client{Transport: c.tr, CheckRedirect: c.checkRedirect}
	return c
}

// Close releases idle connections. In-flight calls finish normally.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

// allowedMethods excludes CONNECT, which would turn the guard into a tunnel,
// and TRACE, which reflects headers.
var allowedMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// Do performs req under the client's policy and returns the whole response.
// Non-2xx statuses are responses, not errors.
func (c *Client) Do(ctx context.Context, req Request) (Response, error) {
	method := strings.ToUpper(req.Method)
	if method == "" {
		method = http.MethodGet
	}
	if !allowedMethods[method] {
		return Response{}, fmt.Errorf("%w: method %q", ErrInvalidRequest, req.Method)
	}
	u, err := url.Parse(req.URL)
	if err != nil || !u.IsAbs() {
		return Response{}, fmt.Errorf("%w: URL must be absolute (%v)", ErrInvalidRequest, errOrNone(err))
	}
	where := redactURL(u)
	if err := c.policy.checkURL(u); err != nil {
		c.refused(where, err)
		return Response{}, fmt.Errorf("%s %s: %w", method, where, err)
	}
	if int64(len(req.Body)) > c.opts.MaxRequestBody {
		return Response{}, fmt.Errorf("%s %s: %w: request body is %d bytes, limit %d",
			method, where, ErrTooLarge, len(req.Body), c.opts.MaxRequestBody)
	}
	header, err := requestHeader(req.Headers)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: %w", method, where, err)
	}
	if header.Get("User-Agent") == "" {
		header.Set("User-Agent", c.opts.UserAgent)
	}

	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	var body io.Reader
	if len(req.Body) > 0 {
		body = bytes.NewReader(req.Body)
	}
	hreq, err := http.NewRequestWithContext(ctx, method, req.URL, body)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: %w: %v", method, where, ErrInvalidRequest, unwrapURLError(err))
	}
	hreq.Header = header
	// Check again the URL the transport will actually use: it is parsed
	// anew from the same string, and the guard must not depend on the two
	// parses agreeing.
	if err := c.policy.checkURL(hreq.URL); err != nil {
		c.refused(where, err)
		return Response{}, fmt.Errorf("%s %s: %w", method, where, err)
	}

	hresp, err := c.hc.Do(hreq)
	if err != nil {
		err = c.classify(ctx, err)
		if isRefusal(err) {
			c.refused(where, err)
		}
		return Response{}, fmt.Errorf("%s %s: %w", method, where, err)
	}
	defer hresp.Body.Close()
	final := redactURL(hresp.Request.URL)

	limit := c.opts.MaxResponseBody
	if hresp.ContentLength > limit {
		return Response{}, fmt.Errorf("%s %s: %w: response body is %d bytes, limit %d",
			method, final, ErrTooLarge, hresp.ContentLength, limit)
	}
	data, err := io.ReadAll(io.LimitReader(hresp.Body, limit+1))
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: reading response: %w", method, final, c.classify(ctx, err))
	}
	if int64(len(data)) > limit {
		return Response{}, fmt.Errorf("%s %s: %w: response body exceeds %d bytes", method, final, ErrTooLarge, limit)
	}
	return Response{Status: hresp.StatusCode, Headers: responseHeader(hresp.Header), Body: data}, nil
}

func errOrNone(err error) any {
	if err == nil {
		return "no scheme"
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

// checkRedirect applies the policy to every hop before it is requested; the
// dialer applies the address rules to it as to any connection.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if c.opts.MaxRedirects < 0 {
		return http.ErrUseLastResponse
	}
	if len(via) > c.opts.MaxRedirects {
		return fmt.Errorf("%w: stopped after %d", ErrTooManyRedirects, c.opts.MaxRedirects)
	}
	if err := c.policy.checkURL(req.URL); err != nil {
		return fmt.Errorf("redirect to %s: %w", redactURL(req.URL), err)
	}
	return nil
}

// dialContext resolves the host itself, so that every candidate address is
// checked and a custom Resolver can be used, then dials the first allowed
// address that answers.
func (c *Client) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("bad port in %q: %w", addr, err)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		ips, err = c.resolve.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", host, err)
		}
	}
	var firstErr error
	for _, ip := range ips {
		if err := c.policy.checkAddr(ip); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", host, err)
			}
			continue
		}
		conn, err := c.dialer.DialContext(ctx, network, netip.AddrPortFrom(ip.Unmap(), uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		if firstErr == nil || errors.Is(firstErr, ErrAddressNotAllowed) {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("resolving %s: no addresses", host)
	}
	return nil, firstErr
}

// control refuses the connection if the socket's destination is not
// allowed.
func (c *Client) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unparseable address %q", ErrAddressNotAllowed, address)
	}
	return c.policy.checkAddr(ap.Addr())
}

// classify maps a transport error onto the package's sentinel errors while
// keeping the cause in the chain.
func (c *Client) classify(ctx context.Context, err error) error {
	for _, sentinel := range []error{ErrHostNotAllowed, ErrSchemeNotAllowed, ErrAddressNotAllowed, ErrTooManyRedirects, ErrInvalidRequest} {
		if errors.Is(err, sentinel) {
			return unwrapURLError(err)
		}
	}
	var nerr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()):
		return fmt.Errorf("%w (limit %v): %w", ErrTimeout, c.opts.Timeout, unwrapURLError(err))
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return unwrapURLError(err)
	}
	return fmt.Errorf("%w: %w", ErrUpstream, unwrapURLError(err))
}

func isRefusal(err error) bool {
	return errors.Is(err, ErrHostNotAllowed) || errors.Is(err, ErrSchemeNotAllowed) || errors.Is(err, ErrAddressNotAllowed)
}

func (c *Client) refused(where string, err error) {
	c.logger.Warn("outbound request refused", "url", where, "reason", err.Error())
}

// unwrapURLError drops net/http's *url.Error, whose message repeats the full
// URL (query string and credentials included); Do adds a redacted one.
func unwrapURLError(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) && uerr.Err != nil {
		return uerr.Err
	}
	return err
}

// redactURL keeps what identifies an endpoint in logs and errors, and drops
// what may carry secrets: user info, query and fragment.
func redactURL(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return r.String()
}

// hopByHop are the headers that describe one connection rather than the
// message (RFC 9110 section 7.6.1), plus Proxy-Connection. Forwarding them
// would let a plugin tamper with the host's connection handling.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func stripHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// requestHeader copies the plugin's headers, validating their syntax and
// removing those the transport owns: hop-by-hop headers, Host (the URL
// decides where the request goes) and Content-Length (the body decides).
func requestHeader(in map[string][]string) (http.Header, error) {
	h := make(http.Header, len(in)+1)
	for name, values := range in {
		if !validHeaderName(name) {
			return nil, fmt.Errorf("%w: header name %q", ErrInvalidRequest, name)
		}
		for _, v := range values {
			if !validHeaderValue(v) {
				return nil, fmt.Errorf("%w: value of header %q", ErrInvalidRequest, name)
			}
			h.Add(name, v)
		}
	}
	stripHopByHop(h)
	h.Del("Host")
	h.Del("Content-Length")
	return h, nil
}

func responseHeader(in http.Header) map[string][]string {
	h := in.Clone()
	stripHopByHop(h)
	return h
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\r' || c == '\n' || c == 0 || (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
