package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/keelhq/keel/bridges/bus"
	"github.com/keelhq/keel/host/internal/telemetry"
)

const testToken = "metrics-test-token"

func call(t *testing.T, app *fiber.App, path, tok string) (int, string) {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMetricsSnapshot(t *testing.T) {
	m := telemetry.New()
	for i := 0; i < 90; i++ {
		m.HTTPRequest("shop", "/items/:id", "GET", "200", 3*time.Millisecond)
	}
	for i := 0; i < 10; i++ {
		m.HTTPRequest("shop", "/items", "POST", "503", 40*time.Millisecond)
	}
	m.HTTPRequest("shop", "unmatched", "GET", "404", time.Millisecond)
	m.HTTPRequest("other", "/x", "GET", "200", time.Millisecond)
	m.Failure("shop", "trap")
	m.Failure("shop", "trap")
	m.Failure("shop", "timeout")
	m.Pool("shop", "1.0.0", 4, 1, 8<<20)
	m.Pool("shop", "2.0.0", 2, 2, 4<<20)
	m.InFlight("shop").Set(3)

	app := fiber.New()
	started := time.Now().Add(-time.Minute)
	MountMetrics(app, MetricsConfig{Token: testToken, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Gatherer: m.Registry(), HostID: "h1", Started: started})

	status, body := call(t, app, "/admin/api/metrics?plugin=shop", testToken)
	if status != 200 {
		t.Fatalf("metrics: %d %s", status, body)
	}
	var s MetricsSnapshot
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Plugins) != 1 || s.Plugins["shop"] == nil {
		t.Fatalf("plugins %v, want shop alone", s.Plugins)
	}
	p := s.Plugins["shop"]
	if p.Requests["2xx"] != 90 || p.Requests["5xx"] != 10 || p.Requests["4xx"] != 1 {
		t.Errorf("requests %v", p.Requests)
	}
	if p.Routes["POST /items"]["5xx"] != 10 || p.Routes["GET unmatched"]["4xx"] != 1 {
		t.Errorf("routes %v", p.Routes)
	}
	if p.Failures["trap"] != 2 || p.Failures["timeout"] != 1 {
		t.Errorf("failures %v", p.Failures)
	}
	if p.Pool.Instances != 6 || p.Pool.InUse != 3 || p.Pool.MemoryBytes != 12<<20 || p.Pool.Versions["2.0.0"].InUse != 2 {
		t.Errorf("pool %+v", p.Pool)
	}
	if p.InFlight != 3 {
		t.Errorf("in flight %v", p.InFlight)
	}
	// 101 observations summed over three series: 91 at or under 5 ms, all under 50 ms.
	h := p.Latency
	if h.Count != 101 || len(h.LE) != len(h.Counts) || len(h.LE) == 0 {
		t.Fatalf("latency %+v", h)
	}
	for i, le := range h.LE {
		switch {
		case le == 0.005 && h.Counts[i] != 91, le == 0.05 && h.Counts[i] != 101:
			t.Errorf("latency bucket le=%v holds %d", le, h.Counts[i])
		}
	}
	if math.Abs(h.Sum-(90*0.003+10*0.04+0.001)) > 1e-9 {
		t.Errorf("latency sum %v", h.Sum)
	}
	if s.Host.ID != "h1" || s.Host.UptimeS < 59 || s.Host.Goroutines <= 0 || s.Host.HeapAllocBytes <= 0 {
		t.Errorf("host %+v", s.Host)
	}

	// Without a plugin: every plugin with a series.
	_, body = call(t, app, "/admin/api/metrics", testToken)
	s = MetricsSnapshot{}
	json.Unmarshal([]byte(body), &s)
	if len(s.Plugins) != 2 || s.Plugins["other"].Requests["2xx"] != 1 {
		t.Fatalf("all plugins: %s", body)
	}
	// A plugin without series yet reads as zeros, not as an error.
	status, body = call(t, app, "/admin/api/metrics?plugin=quiet", testToken)
	if status != 200 || !strings.Contains(body, `"quiet":{"requests":{}`) {
		t.Fatalf("quiet plugin: %d %s", status, body)
	}
}

func TestMetricsRoutesNeedTheToken(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	mcfg := MetricsConfig{Token: testToken, Logger: logger, Gatherer: telemetry.New().Registry(),
		Readiness: func(ctx context.Context) any { return map[string]string{"status": "ok"} }}
	// Either mount order protects the routes, and a call is audited once.
	for _, order := range []string{"metrics first", "admin first"} {
		t.Run(order, func(t *testing.T) {
			app := fiber.New()
			if order == "metrics first" {
				MountMetrics(app, mcfg)
			}
			Mount(app, Config{Token: testToken, Logger: logger})
			if order == "admin first" {
				MountMetrics(app, mcfg)
			}
			for _, path := range []string{"/admin/api/metrics", "/admin/api/health"} {
				if status, body := call(t, app, path, ""); status != 401 || !strings.Contains(body, `"code":"unauthenticated"`) {
					t.Fatalf("%s without a token: %d %s", path, status, body)
				}
				if status, _ := call(t, app, path, "wrong"); status != 401 {
					t.Fatalf("%s with a wrong token: %d", path, status)
				}
				logs.Reset()
				if status, body := call(t, app, path, testToken); status != 200 {
					t.Fatalf("%s: %d %s", path, status, body)
				}
				if n := strings.Count(logs.String(), "admin call"); n != 1 {
					t.Fatalf("%s audited %d times:\n%s", path, n, logs.String())
				}
			}
		})
	}
	app := fiber.New()
	MountMetrics(app, MetricsConfig{Logger: logger})
	if status, body := call(t, app, "/admin/api/health", testToken); status != 503 || !strings.Contains(body, "admin_disabled") {
		t.Fatalf("without a configured token: %d %s", status, body)
	}
}

// The dashboard's metrics and events routes accept the same credentials as the rest of
// the admin API, also when they are mounted on their own (before Mount's group or
// without it).
func TestStandaloneRoutesAcceptAdminAccessTokens(t *testing.T) {
	const good = "header.admin.signature"
	adminJWT := func(ctx context.Context, tok string) (string, error) {
		if tok != good {
			return "", errors.New("not an admin token")
		}
		return "user:root", nil
	}
	app := fiber.New()
	MountMetrics(app, MetricsConfig{AdminJWT: adminJWT, Logger: slog.New(slog.DiscardHandler), Gatherer: telemetry.New().Registry(),
		Readiness: func(ctx context.Context) any { return map[string]string{"status": "ok"} }})
	MountEvents(app, EventsConfig{AdminJWT: adminJWT, Logger: slog.New(slog.DiscardHandler), Bus: struct{ bus.Bus }{}})
	for _, path := range []string{"/admin/api/metrics", "/admin/api/health", "/admin/api/events"} {
		if status, body := call(t, app, path, good); status != 200 {
			t.Errorf("%s with an admin access token: %d %s", path, status, body)
		}
		if status, _ := call(t, app, path, "header.user.signature"); status != 401 {
			t.Errorf("%s with a non-admin token: %d", path, status)
		}
	}
}
