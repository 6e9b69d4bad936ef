// Package e2e tests the admin dashboard in a real browser: headless Chromium from
// Debian's package, driven by playwright-core (dashboard.e2e.mjs), against a real
// host with a PostgreSQL registry and signed bundles of the example plugin.
//
// It is a package of its own because it starts a server.Server, and server imports
// the dashboard: a test inside package dashboard could not.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/bridges/bus"
	"github.com/keelhq/keel/bridges/nats"
	"github.com/keelhq/keel/bridges/postgres/pgtest"
	"github.com/keelhq/keel/host/internal/admin"
	"github.com/keelhq/keel/host/internal/admin/dashboard"
	"github.com/keelhq/keel/host/internal/config"
	"github.com/keelhq/keel/host/internal/events"
	"github.com/keelhq/keel/host/internal/server"
	"github.com/keelhq/keel/host/internal/testkit"
	"github.com/keelhq/keel/plugin-registry/bundle"
)

const adminToken = "dashboard-e2e-admin-token-0123456789"

// The poison guest's topic: the browser replays and discards what its subscriber parks.
const (
	eventTopic  = "poison.orders"
	eventTenant = "t1"
)

// Seeded registry for the first-paint measurement: the 50 plugins with 10
// versions each.
const (
	perfPlugins  = 50
	perfVersions = 10
)

func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a host, a PostgreSQL database and Chromium")
	}
	chromium := ensureChromium(t)
	dir := testDir(t)
	// Reading the script (not only handing it to node) lets go test's cache see it change.
	if _, err := os.ReadFile(filepath.Join(dir, "dashboard.e2e.mjs")); err != nil {
		t.Fatal(err)
	}
	ensureNodeModules(t, dir)
	artifacts := filepath.Join(testkit.Root(), "test-artifacts", "dashboard")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(artifacts, "*.png"))
	for _, f := range old {
		os.Remove(f)
	}

	sig := newSigner(t)
	evbus := natsServer(t)
	base := startHost(t, database(t), sig, filepath.Join(artifacts, "host.log"), evbus)

	// example 1.0.0 is active before the browser arrives, so that the browser can
	// upload 2.0.0, activate it and roll back to 1.0.0.
	if st, b := upload(base, sig.bundleOf(t, "plugins/example", "1.0.0")); st != 201 {
		t.Fatalf("upload 1.0.0: %d %s", st, b)
	}
	if st, b := adminCall("POST", base+"/admin/api/plugins/example/versions/1.0.0/activate", nil, ""); st != 200 {
		t.Fatalf("activate 1.0.0: %d %s", st, b)
	}
	// The poison guest refuses two of three orders: they are parked in poison.orders.dlq
	// for the browser to replay and discard.
	if st, b := upload(base, sig.bundleOf(t, "host/testdata/guests/poison", "1.0.0")); st != 201 {
		t.Fatalf("upload poison: %d %s", st, b)
	}
	if st, b := adminCall("POST", base+"/admin/api/plugins/poison/versions/1.0.0/activate", nil, ""); st != 200 {
		t.Fatalf("activate poison: %d %s", st, b)
	}
	parkOrders(t, evbus.bus, "fine", "flaky", "poison")

	files := t.TempDir()
	v2 := filepath.Join(files, "example-2.0.0.keel")
	bad := filepath.Join(files, "not-a-bundle.keel")
	if err := os.WriteFile(v2, sig.bundleOf(t, "plugins/example", "2.0.0"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("this is not a plugin bundle\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	stop, sent := traffic(base)
	res := runNode(t, dir, "flow", chromium, base, artifacts, "KEEL_BUNDLE="+v2, "KEEL_BAD_BUNDLE="+bad,
		"KEEL_EVENT_TOPIC="+eventTopic, "KEEL_EVENT_TENANT="+eventTenant)
	stop()
	t.Logf("traffic sent during the flow: %d requests", sent())
	if res["failed"] != nil {
		t.Fatalf("browser flow failed: %v (screenshot in %s)", res["failed"], artifacts)
	}
	t.Logf("overview first paint (reload, token in the tab): %v", res["overview_paint"])
	t.Logf("charts: %v", res["charts"])

	// What the browser did is what the registry recorded.
	st, b := adminCall("GET", base+"/admin/api/plugins/example/history", nil, "")
	if st != 200 {
		t.Fatalf("history: %d %s", st, b)
	}
	for _, want := range []string{`"Action":"deactivate"`, `"Action":"rollback"`, `"Version":"2.0.0","Action":"activate"`, `"Version":"2.0.0","Action":"upload"`} {
		if !strings.Contains(b, want) {
			t.Errorf("history lacks %s: %s", want, b)
		}
	}
	if st, _ := get(base + "/api/example/hello/x"); st != 404 {
		t.Errorf("example still serves (%d) after the browser deactivated it", st)
	}
	// The browser replayed the flaky order, which the healed guest then handled once, and
	// discarded the poison one, which it never handled.
	if st, b := adminCall("GET", base+"/admin/api/events/dlq/"+eventTopic, nil, ""); st != 200 || !strings.Contains(b, `"total":0`) {
		t.Errorf("dead letters after the browser flow: %d %s", st, b)
	}
	for note, want := range map[string]string{"flaky": `{"handled":1}`, "poison": `{"handled":0}`, "fine": `{"handled":1}`} {
		if st, b := tenantGet(base+"/api/poison/handled/"+note, eventTenant); st != 200 || b != want {
			t.Errorf("poison guest handled %s: %d %s, want %s", note, st, b, want)
		}
	}

	seed(t, base, sig)
	res = runNode(t, dir, "perf", chromium, base, artifacts,
		fmt.Sprintf("KEEL_PERF_PLUGINS=%d", perfPlugins), fmt.Sprintf("KEEL_PERF_VERSIONS=%d", perfVersions))
	if res["failed"] != nil {
		t.Fatalf("first paint with %d plugins x %d versions: %v", perfPlugins, perfVersions, res["failed"])
	}
	perf, _ := json.MarshalIndent(res["perf"], "", "  ")
	t.Logf("plugins page with %d plugins x %d versions:\n%s", perfPlugins, perfVersions, perf)
	shots, _ := filepath.Glob(filepath.Join(artifacts, "*.png"))
	t.Logf("%d screenshots in %s", len(shots), artifacts)
}

// testDir is this package's directory, where package.json and the script are.
func testDir(t *testing.T) string {
	d, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// ensureChromium returns Debian's chromium, installing the package when the test
// runs as root on a machine with apt; anywhere else a missing browser fails the
// test, because a browser test that skips itself silently proves nothing.
func ensureChromium(t *testing.T) string {
	t.Helper()
	path := os.Getenv("KEEL_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err == nil {
		return path
	}
	aptGet, err := exec.LookPath("apt-get")
	if err != nil || os.Geteuid() != 0 {
		t.Fatalf("%s is missing and this test cannot install it (needs root and apt-get): run `sudo apt-get install -y chromium`, or set KEEL_CHROMIUM to a Chromium binary", path)
	}
	install := func(args ...string) error {
		cmd := exec.Command(aptGet, args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get %s: %v\n%s", strings.Join(args, " "), err, tail(out, 2000))
		}
		return nil
	}
	t.Logf("installing Debian's chromium package for the browser test")
	if err := install("install", "-y", "--no-install-recommends", "chromium"); err != nil {
		// Stale package lists are the usual cause on a fresh machine.
		if err := install("update"); err != nil {
			t.Fatal(err)
		}
		if err := install("install", "-y", "--no-install-recommends", "chromium"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("apt-get installed chromium but %s does not exist", path)
	}
	return path
}

// ensureNodeModules installs playwright-core from the lock file when node_modules is
// missing. playwright-core downloads no browser.
func ensureNodeModules(t *testing.T, dir string) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: the browser test runs playwright-core under Node.js 20 or newer")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core", "package.json")); err == nil {
		return
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("node_modules is missing in %s and npm is not installed to fetch playwright-core", dir)
	}
	for _, args := range [][]string{{"ci", "--no-audit", "--no-fund"}, {"install", "--no-audit", "--no-fund"}} {
		cmd := exec.Command(npm, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1")
		out, err := cmd.CombinedOutput()
		if err == nil {
			return
		}
		t.Logf("npm %s: %v\n%s", args[0], err, tail(out, 2000))
	}
	t.Fatalf("could not install playwright-core in %s with npm (see above)", dir)
}

// runNode runs the browser script in one mode and returns its RESULT object.
func runNode(t *testing.T, dir, mode, chromium, base, artifacts string, extra ...string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "dashboard.e2e.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "KEEL_MODE="+mode, "KEEL_BASE="+base, "KEEL_ADMIN_TOKEN="+adminToken,
		"KEEL_ARTIFACTS="+artifacts, "KEEL_CHROMIUM="+chromium)
	cmd.Env = append(cmd.Env, extra...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	var res map[string]any
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var lines []string
	for sc.Scan() {
		line := sc.Text()
		if j, ok := strings.CutPrefix(line, "RESULT "); ok {
			if jerr := json.Unmarshal([]byte(j), &res); jerr != nil {
				t.Errorf("unreadable RESULT line: %v", jerr)
			}
			continue
		}
		lines = append(lines, line)
	}
	t.Logf("browser %s (%s):\n%s", mode, time.Since(t0).Round(time.Millisecond), strings.Join(lines, "\n"))
	if res == nil {
		t.Fatalf("browser %s: %v, and no RESULT line", mode, err)
	}
	if err != nil && res["failed"] == nil {
		t.Fatalf("browser %s exited with %v", mode, err)
	}
	return res
}

// traffic sends a steady mix of requests to the example plugin until stop: mostly
// 200s, some 404s and some slower calls, so the dashboard's request, error and
// latency charts have something to draw.
func traffic(base string) (stop func(), sent func() int64) {
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := &http.Client{Timeout: 5 * time.Second}
		tick := time.NewTicker(15 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			path := "/api/example/hello/x"
			switch {
			case i%10 == 0:
				path = "/api/example/no-such-route"
			case i%25 == 1:
				path = "/api/example/slow?ms=20"
			}
			req, _ := http.NewRequestWithContext(ctx, "GET", base+path, nil)
			if resp, err := c.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n.Add(1)
			}
		}
	}()
	return func() { cancel(); wg.Wait() }, n.Load
}

// seed uploads perfPlugins x perfVersions small signed bundles. They are stored, not
// activated: the plugins page lists registry versions whether or not they run, and
// fifty running copies of a Go plugin would not fit a test machine.
func seed(t *testing.T, base string, sig *signer) {
	t.Helper()
	t0 := time.Now()
	type job struct{ name, version string }
	jobs := make(chan job)
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				raw, err := sig.tinyBundle(j.name, j.version)
				if err == nil {
					if st, b := upload(base, raw); st != 201 {
						err = fmt.Errorf("upload %s %s: %d %s", j.name, j.version, st, b)
					}
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for p := 0; p < perfPlugins; p++ {
		for v := 0; v < perfVersions; v++ {
			jobs <- job{fmt.Sprintf("load-%02d", p), fmt.Sprintf("1.%d.0", v)}
		}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %d plugins x %d versions in %s", perfPlugins, perfVersions, time.Since(t0).Round(time.Millisecond))
}

// ---- host, database and bundles: the helpers of host/internal/server's tests,
// which a test outside that package cannot import.

type signer struct {
	priv    ed25519.PrivateKey
	keyFile string
}

func newSigner(t *testing.T) *signer {
	pub, priv, err := bundle.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pem, err := bundle.EncodePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "trusted.pub")
	if err := os.WriteFile(f, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	return &signer{priv: priv, keyFile: f}
}

// bundleOf builds and signs a bundle of the guest at dir with the given version.
func (s *signer) bundleOf(t *testing.T, dir, version string) []byte {
	t.Helper()
	wasm, m := testkit.Build(t, dir)
	m.Version = version
	mj, _ := json.Marshal(m)
	raw, err := s.sign(mj, wasm)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// tinyBundle is a signed bundle around an empty wasm module: valid to store and
// list, never meant to run.
func (s *signer) tinyBundle(name, version string) ([]byte, error) {
	mj, _ := json.Marshal(map[string]any{"name": name, "version": version, "abi": 1,
		"description": "dashboard load-test entry", "limits": map[string]int{"memory_mib": 16, "pool_min": 1, "pool_max": 4}})
	return s.sign(mj, []byte("\x00asm\x01\x00\x00\x00"))
}

func (s *signer) sign(manifestJSON, wasm []byte) ([]byte, error) {
	b, err := bundle.Build(manifestJSON, wasm, nil)
	if err != nil {
		return nil, err
	}
	if err := b.Sign(s.priv); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := b.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// database creates a throwaway database, dropped at the end. The example plugin
// declares no sql capability, so no plugin role is left to drop.
func database(t *testing.T) string {
	t.Helper()
	db, err := pgtest.Create(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Drop(context.Background(), ""); err != nil {
			t.Logf("dropping test database: %v", err)
		}
	})
	return db.URL()
}

// eventBus is a NATS server of the test's own, which the host uses as its event bus,
// and the test's connection to it.
type eventBus struct {
	url string
	bus *nats.Bus
}

// natsServer starts a NATS server for the host, so that the test can publish orders
// and, while server.New does not mount the events routes, give them a bus.
func natsServer(t *testing.T) *eventBus {
	t.Helper()
	srv, err := nats.StartEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := nats.Open(ctx, srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &eventBus{url: srv.ClientURL(), bus: b}
}

// parkOrders publishes one order per note to the poison guest's topic, as another
// plugin's outbox relay would, and waits until the guest has parked the two it refuses.
func parkOrders(t *testing.T, b *nats.Bus, notes ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, note := range notes {
		env := events.Envelope{ID: events.NewID(), Type: "order.created", Tenant: eventTenant, Source: "e2e",
			Time: time.Now().UTC(), Payload: json.RawMessage(fmt.Sprintf(`{"note":%q,"amount":42}`, note))}
		raw, err := env.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Publish(ctx, eventTopic, bus.Message{ID: env.ID, Key: []byte(note), Value: raw,
			Headers: map[string]string{"keel-type": env.Type, "keel-source": env.Source}}); err != nil {
			t.Fatal(err)
		}
	}
	for {
		st, err := b.TopicStats(ctx, bus.DLQTopic(eventTopic), nil)
		if err == nil && st.Messages == 2 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("the poison guest did not park two orders: %+v %v", st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startHost starts a host on the database and the test's NATS server, like
// server_test.go's startIn, and mounts the dashboard, its metrics routes and its
// events routes unless server.New already did.
func startHost(t *testing.T, dbURL string, s *signer, logFile string, evbus *eventBus) string {
	t.Helper()
	cfg, err := config.Load(nil, []string{"--http-addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--plugins-dir", t.TempDir(), "--access-log=false", "--host-id", "e2e-host",
		"--database-url", dbURL, "--admin-token", adminToken, "--trusted-keys", s.keyFile,
		"--nats-url", evbus.url})
	if err != nil {
		t.Fatal(err)
	}
	lf, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lf.Close() })
	srv, err := server.New(context.Background(), cfg, slog.New(slog.NewJSONHandler(lf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	app := srv.App()
	if !hasRoute(app, "GET", "/admin/api/metrics") {
		admin.MountMetrics(app, admin.MetricsConfig{Token: adminToken, Logger: slog.New(slog.NewJSONHandler(lf, nil)),
			Gatherer: srv.Metrics().Registry(), HostID: cfg.HostID, Started: time.Now(),
			// server.Server does not expose its health checker, so the test reads the
			// same report through /readyz.
			Readiness: func(ctx context.Context) any { return readyz(ctx, "http://"+srv.Addr()) }})
	}
	if !hasRoute(app, "GET", "/admin/api/events") {
		// The test's own connection to the host's NATS server stands in for the host's bus.
		admin.MountEvents(app, admin.EventsConfig{Token: adminToken, Logger: slog.New(slog.NewJSONHandler(lf, nil)), Bus: evbus.bus,
			Manifests: func() []*manifest.Manifest {
				var out []*manifest.Manifest
				for _, g := range srv.Plugins().List() {
					out = append(out, g.Manifest())
				}
				return out
			}})
	}
	if !hasRoute(app, "GET", "/admin/*") {
		dashboard.Mount(app)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return "http://" + srv.Addr()
}

func hasRoute(app *fiber.App, method, path string) bool {
	for _, r := range app.GetRoutes(true) {
		if r.Method == method && r.Path == path {
			return true
		}
	}
	return false
}

func readyz(ctx context.Context, base string) any {
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return map[string]any{"status": "failing", "error": err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !json.Valid(b) {
		return map[string]any{"status": "failing", "error": fmt.Sprintf("/readyz answered %d with something that is not JSON", resp.StatusCode)}
	}
	return json.RawMessage(b)
}

func adminCall(method, url string, body []byte, contentType string) (int, string) {
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func upload(base string, raw []byte) (int, string) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	fw, _ := w.CreateFormFile("bundle", "plugin.keel")
	fw.Write(raw)
	w.Close()
	return adminCall("POST", base+"/admin/api/plugins", buf.Bytes(), w.FormDataContentType())
}

func tenantGet(url, tenant string) (int, string) {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("X-Tenant-ID", tenant)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
