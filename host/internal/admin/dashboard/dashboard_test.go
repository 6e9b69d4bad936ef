package dashboard

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
)

func newApp(t *testing.T) *fiber.App {
	t.Helper()
	app := fiber.New()
	Mount(app)
	// Registered after the dashboard, as server.go may do with the admin API: the
	// dashboard must pass /admin/api through.
	app.Get("/admin/api/ping", func(c *fiber.Ctx) error { return c.SendString("pong") })
	return app
}

func get(t *testing.T, app *fiber.App, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestIndexAndPageRoutes(t *testing.T) {
	app := newApp(t)
	resp, _ := get(t, app, "/admin")
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "/admin/" {
		t.Fatalf("/admin: %d Location %q, want a redirect to /admin/", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, p := range []string{"/admin/", "/admin/plugins/example", "/admin/activity"} {
		resp, body := get(t, app, p)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" || !strings.Contains(body, `<main id="main">`) {
			t.Fatalf("%s: %d %s, want index.html", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("%s: Cache-Control %q, want no-cache so a new binary's assets are picked up", p, cc)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("%s: Content-Security-Policy %q", p, csp)
		}
	}
	if resp, body := get(t, app, "/admin/api/ping"); resp.StatusCode != 200 || body != "pong" {
		t.Fatalf("/admin/api/ping: %d %q: the dashboard swallowed the admin API", resp.StatusCode, body)
	}
}

func TestAssets(t *testing.T) {
	app := newApp(t)
	_, index := get(t, app, "/admin/")
	if strings.Contains(index, "{{VERSION}}") {
		t.Fatal("index.html still holds the {{VERSION}} placeholder")
	}
	if strings.Contains(index, "http://") || strings.Contains(index, "https://") {
		t.Fatal("index.html refers to another origin; the dashboard must work offline")
	}
	refs := regexp.MustCompile(`/admin/assets/([0-9a-f]+)/([a-z.]+)`).FindAllStringSubmatch(index, -1)
	if len(refs) < 3 {
		t.Fatalf("index.html names %d assets", len(refs))
	}
	version := refs[0][1]
	types := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
	seen := map[string]bool{}
	var check func(name string)
	check = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		resp, body := get(t, app, "/admin/assets/"+version+"/"+name, "Accept-Encoding", "gzip")
		if resp.StatusCode != 200 {
			t.Fatalf("asset %s: %d", name, resp.StatusCode)
		}
		ext := name[strings.LastIndex(name, "."):]
		if ct := resp.Header.Get("Content-Type"); ct != types[ext] {
			t.Errorf("asset %s: Content-Type %q, want %q", name, ct, types[ext])
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("asset %s: Cache-Control %q, want immutable for the current version", name, cc)
		}
		if ext == ".js" {
			if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
				t.Errorf("asset %s refers to another origin", name)
			}
			// Follow the module graph: every import must be embedded too.
			for _, m := range regexp.MustCompile(`from '\./([a-z]+\.js)'`).FindAllStringSubmatch(body, -1) {
				check(m[1])
			}
		}
	}
	for _, r := range refs {
		if r[1] != version {
			t.Fatalf("assets carry two versions: %s and %s", version, r[1])
		}
		check(r[2])
	}
	if !seen["app.js"] || !seen["api.js"] || !seen["chart.js"] {
		t.Fatalf("module graph incomplete: %v", seen)
	}

	resp, _ := get(t, app, "/admin/assets/"+version+"/app.js")
	etag := resp.Header.Get("ETag")
	if resp.Header.Get("Content-Encoding") != "" || etag == "" {
		t.Fatalf("plain request: Content-Encoding %q, ETag %q", resp.Header.Get("Content-Encoding"), etag)
	}
	if resp, _ := get(t, app, "/admin/assets/"+version+"/app.js", "If-None-Match", etag); resp.StatusCode != 304 {
		t.Fatalf("revalidation: %d, want 304", resp.StatusCode)
	}
	if resp, body := get(t, app, "/admin/assets/0123456789ab/app.js"); resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-cache" || body == "" {
		t.Fatalf("asset of another version: %d %q, want today's file, not cached for good", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
	if resp, _ := get(t, app, "/admin/assets/"+version+"/missing.js"); resp.StatusCode != 404 {
		t.Fatalf("missing asset: %d", resp.StatusCode)
	}
}
