package httpout

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// mapResolver resolves a fixed set of names, standing in for DNS so that
// tests can point public-looking names at local servers.
type mapResolver map[string][]netip.Addr

func (m mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if ips, ok := m[strings.ToLower(strings.TrimSuffix(host, "."))]; ok {
		return ips, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

var loopback = []netip.Addr{netip.MustParseAddr("127.0.0.1")}

// testServer is an httptest server that counts the requests it receives.
type testServer struct {
	*httptest.Server
	hits atomic.Int64
}

func newServer(t *testing.T, h http.HandlerFunc) *testServer {
	t.Helper()
	s := &testServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// hostPort returns the server's address and port.
func (s *testServer) hostPort() (string, string) {
	u, _ := url.Parse(s.URL)
	return u.Hostname(), u.Port()
}

func quietOpts(o Options) Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

func newClient(t *testing.T, p Policy, o Options) *Client {
	t.Helper()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	c := New(p, quietOpts(o))
	t.Cleanup(c.Close)
	return c
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
}

func echoHandler(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Method", r.Method)
	w.Header().Set("X-Seen-Headers", strings.Join(sortedKeys(r.Header), ","))
	w.Header().Set("X-Host", r.Host)
	w.Header().Set("Keep-Alive", "timeout=5")
	w.Header().Set("Proxy-Authenticate", "Basic")
	w.WriteHeader(http.StatusCreated)
	w.Write(body)
}

func sortedKeys(h http.Header) []string {
	var ks []string
	for k := range h {
		ks = append(ks, k)
	}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return ks
}

func TestLoopbackDeniedByDefault(t *testing.T) {
	srv := newServer(t, echoHandler)
	ctx := context.Background()
	host, _ := srv.hostPort()

	// Host allowed, http opted in, but loopback is not without AllowPrivate.
	c := newClient(t, Policy{AllowedHosts: []string{host}, AllowedSchemes: []string{"http"}}, Options{})
	_, err := c.Do(ctx, Request{URL: srv.URL})
	wantErr(t, err, ErrAddressNotAllowed)

	// Host not in the list.
	c = newClient(t, Policy{AllowedHosts: []string{"api.example.com"}, AllowedSchemes: []string{"http"}, AllowPrivate: true}, Options{})
	_, err = c.Do(ctx, Request{URL: srv.URL})
	wantErr(t, err, ErrHostNotAllowed)

	// Scheme not opted in.
	c = newClient(t, Policy{AllowedHosts: []string{host}, AllowPrivate: true}, Options{})
	_, err = c.Do(ctx, Request{URL: srv.URL})
	wantErr(t, err, ErrSchemeNotAllowed)

	if n := srv.hits.Load(); n != 0 {
		t.Fatalf("server saw %d requests; refusals must not reach it", n)
	}
}

func TestAllowedWithAllowPrivate(t *testing.T) {
	srv := newServer(t, echoHandler)
	host, _ := srv.hostPort()
	c := newClient(t, Policy{AllowedHosts: []string{host}, AllowedSchemes: []string{"http"}, AllowPrivate: true}, Options{})

	resp, err := c.Do(context.Background(), Request{
		Method: "post",
		URL:    srv.URL + "/echo?token=secret",
		Headers: map[string][]string{
			"Content-Type":        {"text/plain"},
			"X-Normal":            {"ok"},
			"Connection":          {"X-Hop-Private"},
			"X-Hop-Private":       {"must not leave"},
			"Proxy-Authorization": {"Basic Zm9vOmJhcg=="},
			"Keep-Alive":          {"timeout=1"},
			"Host":                {"internal.example"},
			"Content-Length":      {"999"},
		},
		Body: []byte("hello"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusCreated || string(resp.Body) != "hello" {
		t.Fatalf("resp = %d %q", resp.Status, resp.Body)
	}
	seen := resp.Headers["X-Seen-Headers"][0]
	for _, h := range []string{"X-Hop-Private", "Proxy-Authorization", "Keep-Alive", "Connection"} {
		if strings.Contains(seen, h) {
			t.Errorf("hop-by-hop header %s reached the server (saw %s)", h, seen)
		}
	}
	if !strings.Contains(seen, "X-Normal") || !strings.Contains(seen, "User-Agent") {
		t.Errorf("server saw %s", seen)
	}
	if got := resp.Headers["X-Host"][0]; got == "internal.example" {
		t.Errorf("plugin overrode the Host header")
	}
	if got := resp.Headers["X-Method"][0]; got != "POST" {
		t.Errorf("method = %s", got)
	}
	for _, h := range []string{"Keep-Alive", "Proxy-Authenticate"} {
		if _, ok := resp.Headers[h]; ok {
			t.Errorf("hop-by-hop response header %s was passed on", h)
		}
	}
}

func TestHTTPS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(echoHandler))
	t.Cleanup(srv.Close)
	tlsConf := srv.Client().Transport.(*http.Transport).TLSClientConfig
	u, _ := url.Parse(srv.URL)
	// The test certificate is for example.com, so reach the server by that
	// name through the resolver hook.
	res := mapResolver{"example.com": loopback}
	c := newClient(t, Policy{AllowedHosts: []string{"example.com"}, AllowPrivate: true}, Options{TLSConfig: tlsConf, Resolver: res})
	resp, err := c.Do(context.Background(), Request{URL: "https://example.com:" + u.Port() + "/"})
	if err != nil || resp.Status != http.StatusCreated {
		t.Fatalf("Do = %+v, %v", resp, err)
	}
	_, err = c.Do(context.Background(), Request{URL: "http://example.com:" + u.Port() + "/"})
	wantErr(t, err, ErrSchemeNotAllowed)
}

func TestNameResolvingToLoopbackRefused(t *testing.T) {
	srv := newServer(t, echoHandler)
	_, port := srv.hostPort()
	ctx := context.Background()
	res := mapResolver{"api.example.com": loopback, "dual.example.com": {netip.MustParseAddr("::1"), netip.MustParseAddr("10.0.0.1")}}

	c := newClient(t, Policy{AllowedHosts: []string{"api.example.com", "dual.example.com", "localhost"}, AllowedSchemes: []string{"http"}},
		Options{Resolver: res})
	_, err := c.Do(ctx, Request{URL: "http://api.example.com:" + port + "/"})
	wantErr(t, err, ErrAddressNotAllowed)
	if !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("error does not name the address: %v", err)
	}
	_, err = c.Do(ctx, Request{URL: "http://dual.example.com:" + port + "/"})
	wantErr(t, err, ErrAddressNotAllowed)

	// The system resolver: localhost is loopback.
	c = newClient(t, Policy{AllowedHosts: []string{"localhost"}, AllowedSchemes: []string{"http"}}, Options{})
	_, err = c.Do(ctx, Request{URL: "http://localhost:" + port + "/"})
	wantErr(t, err, ErrAddressNotAllowed)

	if n := srv.hits.Load(); n != 0 {
		t.Fatalf("server saw %d requests", n)
	}

	// With AllowPrivate the same name reaches the server, which shows the
	// refusals above came from the address rules and not from a broken
	// resolver.
	c = newClient(t, Policy{AllowedHosts: []string{"api.example.com"}, AllowedSchemes: []string{"http"}, AllowPrivate: true},
		Options{Resolver: res})
	if resp, err := c.Do(ctx, Request{URL: "http://api.example.com:" + port + "/"}); err != nil || resp.Status != http.StatusCreated {
		t.Fatalf("Do = %+v, %v", resp, err)
	}
}

func TestDialerControlIsTheLastLine(t *testing.T) {
	// Bypass dialContext's own check and dial through the guarded dialer
	// directly: the Control hook must still refuse.
	c := newClient(t, Policy{AllowedHosts: []string{"*"}}, Options{})
	srv := newServer(t, echoHandler)
	u, _ := url.Parse(srv.URL)
	_, err := c.dialer.DialContext(context.Background(), "tcp", u.Host)
	wantErr(t, err, ErrAddressNotAllowed)
}

func TestRedirects(t *testing.T) {
	ctx := context.Background()
	evil := newServer(t, echoHandler)
	_, evilPort := evil.hostPort()
	var good *testServer
	good = newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, port := good.hostPort()
		switch r.URL.Path {
		case "/to-evil":
			http.Redirect(w, r, "http://evil.example.net:"+evilPort+"/", http.StatusFound)
		case "/to-metadata":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		case "/to-https-less":
			http.Redirect(w, r, "ftp://api.example.com/", http.StatusFound)
		case "/to-self":
			http.Redirect(w, r, "http://api.example.com:"+port+"/final", http.StatusMovedPermanently)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/final":
			w.Write([]byte("arrived"))
		}
	})
	_, port := good.hostPort()
	base := "http://api.example.com:" + port
	res := mapResolver{"api.example.com": loopback, "evil.example.net": loopback}
	c := newClient(t, Policy{AllowedHosts: []string{"api.example.com", "169.254.169.254"}, AllowedSchemes: []string{"http"}, AllowPrivate: true},
		Options{Resolver: res})

	_, err := c.Do(ctx, Request{URL: base + "/to-evil"})
	wantErr(t, err, ErrHostNotAllowed)
	if evil.hits.Load() != 0 {
		t.Fatal("the disallowed redirect target was contacted")
	}
	_, err = c.Do(ctx, Request{URL: base + "/to-metadata"})
	wantErr(t, err, ErrAddressNotAllowed)
	_, err = c.Do(ctx, Request{URL: base + "/to-https-less"})
	wantErr(t, err, ErrSchemeNotAllowed)

	resp, err := c.Do(ctx, Request{URL: base + "/to-self"})
	if err != nil || string(resp.Body) != "arrived" {
		t.Fatalf("allowed redirect: %+v, %v", resp, err)
	}

	before := good.hits.Load()
	_, err = c.Do(ctx, Request{URL: base + "/loop"})
	wantErr(t, err, ErrTooManyRedirects)
	if n := good.hits.Load() - before; n != 1+DefaultMaxRedirects {
		t.Fatalf("redirect loop made %d requests, want %d", n, 1+DefaultMaxRedirects)
	}

	// MaxRedirects < 0 hands the 3xx back.
	c = newClient(t, Policy{AllowedHosts: []string{"api.example.com"}, AllowedSchemes: []string{"http"}, AllowPrivate: true},
		Options{Resolver: res, MaxRedirects: -1})
	resp, err = c.Do(ctx, Request{URL: base + "/to-evil"})
	if err != nil || resp.Status != http.StatusFound {
		t.Fatalf("with redirects off: %+v, %v", resp, err)
	}
}

func TestBodyLimits(t *testing.T) {
	const limit = 1000
	ctx := context.Background()
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/exact":
			w.Write(bytes.Repeat([]byte("a"), limit))
		case "/declared":
			w.Write(bytes.Repeat([]byte("a"), limit+1)) // small enough to carry a Content-Length
		case "/chunked":
			for range 10 {
				w.Write(bytes.Repeat([]byte("a"), limit/4))
				w.(http.Flusher).Flush()
			}
		case "/gzip-bomb":
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(make([]byte, 100*limit))
			zw.Close()
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(buf.Bytes())
		}
	})
	host, _ := srv.hostPort()
	c := newClient(t, Policy{AllowedHosts: []string{host}, AllowedSchemes: []string{"http"}, AllowPrivate: true},
		Options{MaxResponseBody: limit, MaxRequestBody: limit})

	resp, err := c.Do(ctx, Request{URL: srv.URL + "/exact"})
	if err != nil || len(resp.Body) != limit {
		t.Fatalf("exact limit: %d bytes, %v", len(resp.Body), err)
	}
	for _, path := range []string{"/declared", "/chunked", "/gzip-bomb"} {
		_, err = c.Do(ctx, Request{URL: srv.URL + path})
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: error = %v, want ErrTooLarge", path, err)
		}
	}
	before := srv.hits.Load()
	_, err = c.Do(ctx, Request{Method: "POST", URL: srv.URL + "/exact", Body: make([]byte, limit+1)})
	wantErr(t, err, ErrTooLarge)
	if srv.hits.Load() != before {
		t.Fatal("an oversized request body was sent")
	}
}

func TestTimeouts(t *testing.T) {
	ctx := context.Background()
	release := make(chan struct{})
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow-headers":
		case "/slow-body":
			w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	host, _ := srv.hostPort()
	c := newClient(t, Policy{AllowedHosts: []string{host}, AllowedSchemes: []string{"http"}, AllowPrivate: true},
		Options{Timeout: 200 * time.Millisecond})
	for _, path := range []string{"/slow-headers", "/slow-body"} {
		start := time.Now()
		_, err := c.Do(ctx, Request{URL: srv.URL + path})
		if !errors.Is(err, ErrTimeout) {
			t.Errorf("%s: error = %v, want ErrTimeout", path, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: took %v with a 200ms timeout", path, d)
		}
	}

	// The caller's own deadline counts as a timeout too.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := c.Do(short, Request{URL: srv.URL + "/slow-headers"})
	wantErr(t, err, ErrTimeout)

	// Cancellation is reported as such, not as a failure of the remote.
	cctx, ccancel := context.WithCancel(ctx)
	time.AfterFunc(30*time.Millisecond, ccancel)
	_, err = c.Do(cctx, Request{URL: srv.URL + "/slow-headers"})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUpstream) || errors.Is(err, ErrTimeout) {
		t.Errorf("cancelled call: %v", err)
	}
}

func TestConnectTimeout(t *testing.T) {
	// A resolver that never answers stands in for an unreachable network:
	// the connect phase must still end at the deadline.
	c := newClient(t, Policy{AllowedHosts: []string{"slow.example.com"}}, Options{Timeout: 150 * time.Millisecond, Resolver: blockingResolver{}})
	start := time.Now()
	_, err := c.Do(context.Background(), Request{URL: "https://slow.example.com/"})
	wantErr(t, err, ErrTimeout)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v", d)
	}
}

type blockingResolver struct{}

func (blockingResolver) LookupNetIP(ctx context.Context, _, _ string) ([]netip.Addr, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestUpstreamErrors(t *testing.T) {
	ctx := context.Background()
	// A closed port: connection refused.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	c := newClient(t, Policy{AllowedHosts: []string{"127.0.0.1", "nxdomain.example.com"}, AllowedSchemes: []string{"http"}, AllowPrivate: true},
		Options{Resolver: mapResolver{}})
	_, err := c.Do(ctx, Request{URL: "http://" + addr + "/"})
	wantErr(t, err, ErrUpstream)
	_, err = c.Do(ctx, Request{URL: "http://nxdomain.example.com/"})
	wantErr(t, err, ErrUpstream)
}

func TestInvalidRequests(t *testing.T) {
	c := newClient(t, Policy{AllowedHosts: []string{"api.example.com"}}, Options{Resolver: mapResolver{}})
	for _, r := range []Request{
		{URL: "/relative"},
		{URL: "::not a url"},
		{Method: "CONNECT", URL: "https://api.example.com/"},
		{Method: "TRACE", URL: "https://api.example.com/"},
		{Method: "GET POST", URL: "https://api.example.com/"},
		{URL: "https://api.example.com/", Headers: map[string][]string{"X-Bad\r\nInjected": {"1"}}},
		{URL: "https://api.example.com/", Headers: map[string][]string{"X-Bad": {"a\r\nInjected: 1"}}},
	} {
		_, err := c.Do(context.Background(), r)
		if !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("Do(%+v) = %v, want ErrInvalidRequest", r, err)
		}
	}
}

func TestErrorsDoNotLeakSecrets(t *testing.T) {
	logs := &bytes.Buffer{}
	c := New(Policy{AllowedHosts: []string{"api.example.com"}}, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	defer c.Close()
	_, err := c.Do(context.Background(), Request{URL: "https://user:hunter2@evil.example.com/path?api_key=hunter2"})
	wantErr(t, err, ErrHostNotAllowed)
	if strings.Contains(err.Error(), "hunter2") || strings.Contains(logs.String(), "hunter2") {
		t.Fatalf("secret leaked: %v / %s", err, logs)
	}
	if !strings.Contains(logs.String(), "outbound request refused") {
		t.Fatalf("refusal not logged: %s", logs)
	}
}

func Example() {
	c := New(Policy{AllowedHosts: []string{"api.stripe.com", "*.hooks.example.com"}}, Options{Timeout: 5 * time.Second})
	defer c.Close()
	_, err := c.Do(context.Background(), Request{Method: "GET", URL: "https://169.254.169.254/latest/meta-data/"})
	fmt.Println(errors.Is(err, ErrHostNotAllowed))
	// Output: true
}
