package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/host/internal/testkit"
)

func jsonBody(t *testing.T, body string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("not JSON: %q", body)
	}
	return v
}

func TestCapabilitiesWhenDeclared(t *testing.T) {
	t.Setenv("KEEL_PLUGIN_CAPS_API_TOKEN", "s3cret-token")
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "upstream says hi") }))
	defer upstream.Close()
	_, base := start(t, "host/testdata/guests/caps", "plugins/example")

	if s, b, _ := do(t, "PUT", base+"/api/caps/cache/colour", "blue"); s != 200 {
		t.Fatalf("cache set: %d %s", s, b)
	}
	if s, b, _ := do(t, "GET", base+"/api/caps/cache/colour", ""); s != 200 || !strings.Contains(b, `"found":true,"value":"blue"`) {
		t.Fatalf("cache get: %d %s", s, b)
	}
	if s, b, _ := do(t, "GET", base+"/api/caps/cache/other", ""); s != 200 || !strings.Contains(b, `"found":false`) {
		t.Fatalf("cache miss: %d %s", s, b)
	}
	// Values larger than the SDK's result buffer travel through keel:env/v1.take; the
	// host's reusable result buffer must not be overwritten while one is pending.
	big1, big2 := strings.Repeat("x", 40<<10), strings.Repeat("y", 20<<10)
	for k, v := range map[string]string{"big1": big1, "big2": big2, "small": "s"} {
		if s, b, _ := do(t, "PUT", base+"/api/caps/cache/"+k, v); s != 200 {
			t.Fatalf("cache set %s: %d %s", k, s, b)
		}
	}
	for _, c := range [][2]string{{"big1", "small"}, {"small", "big1"}, {"big1", "big2"}, {"big2", "big1"}, {"small", "small"}} {
		vals := map[string]string{"big1": big1, "big2": big2, "small": "s"}
		want := "<" + vals[c[0]] + ">" + vals[c[1]]
		if s, b, _ := do(t, "GET", base+"/api/caps/cache-two/"+c[0]+"/"+c[1], ""); s != 200 || b != want {
			t.Fatalf("cache-two %v: %d, %d bytes (want %d), prefix %.20q", c, s, len(b), len(want), b)
		}
	}
	for want := 1; want <= 3; want++ {
		if s, b, _ := do(t, "POST", base+"/api/caps/incr/hits", ""); s != 200 || !strings.Contains(b, fmt.Sprintf(`"value":%d`, want)) {
			t.Fatalf("incr %d: %d %s", want, s, b)
		}
	}
	if _, b, _ := do(t, "GET", base+"/api/caps/cached/k1", ""); !strings.Contains(b, `"loads":1`) {
		t.Fatalf("cache-aside first call should load: %s", b)
	}
	if _, b, _ := do(t, "GET", base+"/api/caps/cached/k1", ""); !strings.Contains(b, `"loads":0`) || !strings.Contains(b, `"computed":"k1"`) {
		t.Fatalf("cache-aside second call should hit: %s", b)
	}
	if s, b, _ := do(t, "GET", base+"/api/caps/config/greeting", ""); s != 200 || !strings.Contains(b, `"value":"hello"`) {
		t.Fatalf("config default: %d %s", s, b)
	}
	if s, b, _ := do(t, "GET", base+"/api/caps/config/api_token", ""); s != 200 || !strings.Contains(b, `"value":"s3cret-token"`) {
		t.Fatalf("config from env: %d %s", s, b)
	}
	if s, b, _ := do(t, "POST", base+"/api/caps/metric/jobs_total?label=ok", ""); s != 200 {
		t.Fatalf("metric: %d %s", s, b)
	}
	if _, m, _ := do(t, "GET", base+"/plugins/caps/metrics", ""); !strings.Contains(m, `keel_plugin_jobs_total{plugin="caps",status="ok"} 1`) ||
		!strings.Contains(m, `keel_cache_requests_total{op="get",plugin="caps",result="hit"}`) {
		t.Fatalf("plugin metrics missing from /plugins/caps/metrics:\n%s", m)
	}
	if s, b, _ := do(t, "POST", base+"/api/caps/fetch", upstream.URL+"/x"); s != 200 || !strings.Contains(b, `"body":"upstream says hi"`) {
		t.Fatalf("fetch: %d %s", s, b)
	}
	if s, b, _ := do(t, "GET", base+"/api/caps/call/example", ""); s != 200 || !strings.Contains(b, `"hello":"from-caps"`) {
		t.Fatalf("plugin call: %d %s", s, b)
	}
}

func TestUndeclaredCapabilitiesAreRefused(t *testing.T) {
	wasm, m := testkit.Build(t, "host/testdata/guests/caps")
	dir := t.TempDir()
	testkit.WritePlugin(t, dir, wasm, m)
	bare := *m
	bare.Name, bare.Capabilities = "bare", manifest.Capabilities{}
	testkit.WritePlugin(t, dir, wasm, &bare)
	exWasm, exM := testkit.Build(t, "plugins/example")
	testkit.WritePlugin(t, dir, exWasm, exM)
	_, base := startIn(t, dir)

	for _, tc := range []struct {
		method, path, body, want string
	}{
		{"GET", "/api/bare/cache/x", "", "does not declare the cache capability"},
		{"POST", "/api/bare/incr/x", "", "does not declare the cache capability"},
		{"GET", "/api/bare/config/greeting", "", `does not declare config key "greeting"`},
		{"POST", "/api/bare/metric/jobs_total?label=x", "", `does not declare metric "jobs_total"`},
		{"POST", "/api/bare/fetch", "http://127.0.0.1:1/", "does not declare outbound http"},
		{"GET", "/api/bare/call/example", "", `does not declare calls to "example"`},
		{"GET", "/api/caps/config/undeclared", "", `does not declare config key "undeclared"`},
		{"POST", "/api/caps/metric/other_total?label=x", "", `does not declare metric "other_total"`},
		{"GET", "/api/caps/call/bare", "", `does not declare calls to "bare"`},
		{"POST", "/api/caps/fetch", "http://localhost:1/", "not allowed"},
		{"POST", "/api/caps/fetch", "http://169.254.169.254/latest/meta-data", "not allowed"},
	} {
		s, b, _ := do(t, tc.method, base+tc.path, tc.body)
		v := jsonBody(t, b)
		if s != 500 || v["code"] != "denied" || v["numeric"] != float64(3) || !strings.Contains(fmt.Sprint(v["message"]), tc.want) {
			t.Errorf("%s %s: %d %s, want denied (3) mentioning %q", tc.method, tc.path, s, b, tc.want)
		}
	}
}

func TestRedisOutageKeepsRequestsSucceeding(t *testing.T) {
	redisAddr := os.Getenv("KEEL_TEST_REDIS_ADDR")
	if redisAddr == "" {
		redisAddr = "127.0.0.1:6379"
	}
	proxy := testkit.NewProxy(t, redisAddr)
	_, base := startIn(t, testkit.PluginsDir(t, "host/testdata/guests/caps"), "--redis-url", "redis://"+proxy.Addr()+"/0")
	key := fmt.Sprintf("k%d", time.Now().UnixNano())

	if s, b, _ := do(t, "PUT", base+"/api/caps/cache/"+key, "v1"); s != 200 {
		t.Fatalf("set through redis: %d %s", s, b)
	}
	if _, b, _ := do(t, "GET", base+"/api/caps/cache/"+key, ""); !strings.Contains(b, `"found":true`) {
		t.Fatalf("get through redis: %s", b)
	}
	proxy.Cut()
	for i := 0; i < 20; i++ {
		t0 := time.Now()
		s, b, _ := do(t, "GET", base+"/api/caps/cache/"+key, "")
		if s != 200 || !strings.Contains(b, `"found":false`) {
			t.Fatalf("get during outage: %d %s", s, b)
		}
		if s, b, _ := do(t, "PUT", base+"/api/caps/cache/"+key, "v2"); s != 202 {
			t.Fatalf("set during outage: %d %s", s, b)
		}
		if d := time.Since(t0); i > 10 && d > 500*time.Millisecond {
			t.Fatalf("requests during the outage are slow (%s): the breaker should short-circuit", d)
		}
	}
	if _, b, _ := do(t, "GET", base+"/readyz", ""); !strings.Contains(b, `"redis":{"status":"degraded"`) {
		t.Fatalf("readyz should report redis degraded: %s", b)
	}
	proxy.Restore()
	testkit.WaitFor(t, 10*time.Second, "the cache to heal", func() bool {
		s, _, _ := do(t, "PUT", base+"/api/caps/cache/"+key, "v3")
		return s == 200
	})
	if _, b, _ := do(t, "GET", base+"/api/caps/cache/"+key, ""); !strings.Contains(b, `"value":"v3"`) {
		t.Fatalf("after recovery: %s", b)
	}
}
