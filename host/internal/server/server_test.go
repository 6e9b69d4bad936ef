package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keelhq/keel/host/internal/config"
	"github.com/keelhq/keel/host/internal/testkit"
)

func start(t *testing.T, dirs ...string) (*Server, string) {
	t.Helper()
	return startIn(t, testkit.PluginsDir(t, dirs...))
}

func startIn(t *testing.T, pluginsDir string, args ...string) (*Server, string) {
	t.Helper()
	return startLogging(t, io.Discard, pluginsDir, args...)
}

// startLogging is startIn with the host's JSON log written to logs.
func startLogging(t *testing.T, logs io.Writer, pluginsDir string, args ...string) (*Server, string) {
	t.Helper()
	cfg, err := config.Load(nil, append([]string{"--http-addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--plugins-dir", pluginsDir, "--access-log=false"}, args...))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, "http://" + s.Addr()
}

func do(t *testing.T, method, url, body string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("X-Tenant-ID", "acme")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestBadPluginsFailOnlyTheirRequest(t *testing.T) {
	_, base := start(t, "plugins/example", "host/testdata/guests/misbehave")
	for _, tc := range []struct {
		path   string
		status int
		code   string
	}{
		{"/loop", 504, "plugin_timeout"},
		{"/bomb", 500, "plugin_memory"},
		{"/trap", 500, "plugin_trap"},
		{"/exit", 500, "plugin_exit"},
		{"/panic", 500, "plugin_panic"},
		{"/huge", 502, "plugin_oversized"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			status, body, hdr := do(t, "GET", base+"/api/misbehave"+tc.path, "")
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, body)
			}
			var e struct {
				Error map[string]string `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("error body is not JSON: %q", body)
			}
			if e.Error["code"] != tc.code || e.Error["request_id"] == "" || e.Error["request_id"] != hdr.Get("X-Request-ID") {
				t.Fatalf("error body %v, want code %s and the request id %s", e.Error, tc.code, hdr.Get("X-Request-ID"))
			}
			if status, body, _ := do(t, "GET", base+"/api/example/hello/bob", ""); status != 200 || !strings.Contains(body, `"hello":"bob"`) {
				t.Fatalf("good plugin after %s: %d %s", tc.path, status, body)
			}
			if status, body, _ := do(t, "GET", base+"/api/misbehave/ok", ""); status != 200 || body != "ok" {
				t.Fatalf("misbehave /ok after %s: %d %s", tc.path, status, body)
			}
		})
	}
	_, metrics, _ := do(t, "GET", base+"/plugins/misbehave/metrics", "")
	for _, reason := range []string{"timeout", "memory", "trap", "exit", "panic", "oversized"} {
		if !strings.Contains(metrics, fmt.Sprintf(`keel_plugin_failures_total{plugin="misbehave",reason=%q} 1`, reason)) {
			t.Errorf("failure %s not counted in /plugins/misbehave/metrics", reason)
		}
	}
	if strings.Contains(metrics, `plugin="example"`) {
		t.Error("/plugins/misbehave/metrics leaks another plugin's series")
	}
}

func TestConcurrentHTTPRequests(t *testing.T) {
	_, base := start(t, "plugins/example")
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body := fmt.Sprintf(`{"n":%d,"s":%q}`, i, strings.Repeat("z", i*13))
			resp, err := http.Post(base+"/api/example/echo", "application/json", strings.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != body {
				errs <- fmt.Errorf("request %d: %d %.80q", i, resp.StatusCode, b)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestReadyzReportsUnhealthyPlugin(t *testing.T) {
	_, base := start(t, "plugins/example", "host/testdata/guests/unhealthy")
	status, body, _ := do(t, "GET", base+"/readyz", "")
	if status != 200 {
		t.Fatalf("readyz before: %d %s", status, body)
	}
	if s, b, _ := do(t, "POST", base+"/api/unhealthy/sick", ""); s != 200 {
		t.Fatalf("sick: %d %s", s, b)
	}
	var rep struct {
		Status  string
		Plugins map[string]struct{ Status, Error string }
	}
	testkit.WaitFor(t, 5*time.Second, "readyz to turn 503", func() bool {
		status, body, _ = do(t, "GET", base+"/readyz", "")
		return status == 503
	})
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Status != "failing" || rep.Plugins["unhealthy"].Status != "failing" ||
		!strings.Contains(rep.Plugins["unhealthy"].Error, "database connection lost") || rep.Plugins["example"].Status != "ok" {
		t.Fatalf("readyz body: %s", body)
	}
	if s, _, _ := do(t, "GET", base+"/healthz", ""); s != 200 {
		t.Fatalf("healthz %d", s)
	}
}

func TestCORSAndTenantRateLimit(t *testing.T) {
	_, base := startIn(t, testkit.PluginsDir(t, "plugins/example"), "--cors-origins", "https://app.example.com", "--tenant-rps", "5")
	req, _ := http.NewRequest("OPTIONS", base+"/api/example/hello/x", nil)
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Access-Control-Request-Method", "GET")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	limited := 0
	for i := 0; i < 30; i++ {
		s, b, h := do(t, "GET", base+"/api/example/hello/x", "") // do sends X-Tenant-ID: acme
		if s == 429 {
			limited++
			if h.Get("Retry-After") == "" || !strings.Contains(b, "rate_limited") {
				t.Fatalf("429 without Retry-After or code: %v %s", h, b)
			}
		}
	}
	if limited == 0 {
		t.Fatal("30 quick requests at 5 rps with bursts of 10 were never limited")
	}
	// Another tenant is not affected.
	req, _ = http.NewRequest("GET", base+"/api/example/hello/x", nil)
	req.Header.Set("X-Tenant-ID", "globex")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("other tenant: %v %v", resp, err)
	}
}

func TestGatewayErrors(t *testing.T) {
	_, base := start(t, "plugins/example")
	for _, tc := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"GET", "/api/nope/x", "", 404, "plugin_not_found"},
		{"GET", "/api/example/nothing", "", 404, "route_not_found"},
		{"DELETE", "/api/example/echo", "", 405, "method_not_allowed"},
		{"POST", "/api/example/echo", "{bad", 400, "invalid_json"},
		{"POST", "/api/example/echo", `{"x":"` + strings.Repeat("a", 2<<20) + `"}`, 413, "payload_too_large"},
		{"GET", "/api/example/slow?ms=abc", "", 400, "invalid_ms"},
	} {
		status, body, _ := do(t, tc.method, base+tc.path, tc.body)
		if status != tc.status || !strings.Contains(body, `"code":"`+tc.code+`"`) || !strings.Contains(body, `"request_id":"`) {
			t.Errorf("%s %s: %d %.200s, want %d %s", tc.method, tc.path, status, body, tc.status, tc.code)
		}
	}
	req, _ := http.NewRequest("GET", base+"/api/example/hello/x", nil)
	req.Header.Set("X-Request-ID", "trace-123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("X-Request-ID") != "trace-123" || !strings.Contains(string(b), `"request_id":"trace-123"`) {
		t.Fatalf("request id not propagated: %v %s", resp.Header, b)
	}
}
