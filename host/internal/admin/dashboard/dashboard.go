// Package dashboard serves the operator dashboard at /admin/: a single page
// application in plain HTML, CSS and JavaScript modules, embedded in the binary so
// that it needs no build step, no CDN and no internet access. Everything it shows
// comes from the admin API under /admin/api, with the admin token the operator
// types in.
package dashboard

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"path"
	"strings"

	"github.com/gofiber/fiber/v2"
)

//go:embed static
var static embed.FS

// asset is one file ready to serve: its bytes, gzipped bytes when that saves
// something, content type and entity tag.
type asset struct {
	body, gz    []byte
	contentType string
	etag        string
}

// site is the whole dashboard, prepared once at start-up.
type site struct {
	// version is a digest of every file. Asset URLs carry it
	// (/admin/assets/<version>/app.js), so assets can be cached for good and a new
	// binary is picked up on the next page load. Relative imports between the
	// JavaScript modules inherit the versioned directory.
	version string
	index   *asset
	assets  map[string]*asset
}

// Mount serves the dashboard on app: GET /admin redirects to /admin/, assets are
// under /admin/assets/, and every other path under /admin/ (the page routes) gets
// index.html. /admin/api/ is left to the admin API, whichever is mounted first.
func Mount(app *fiber.App) {
	s := load()
	app.Get("/admin", s.serve)
	app.Get("/admin/*", s.serve)
}

func load() *site {
	s := &site{assets: map[string]*asset{}}
	h := sha256.New()
	raw := map[string][]byte{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "static/")
		raw[name] = b
		h.Write([]byte(name))
		h.Write(b)
		return nil
	})
	if err != nil {
		// The files are compiled in; failing to read them is a broken build.
		panic("dashboard: reading embedded assets: " + err.Error())
	}
	s.version = hex.EncodeToString(h.Sum(nil))[:12]
	for name, b := range raw {
		if name == "index.html" {
			b = bytes.ReplaceAll(b, []byte("{{VERSION}}"), []byte(s.version))
			s.index = newAsset(name, b)
			continue
		}
		s.assets[name] = newAsset(name, b)
	}
	if s.index == nil {
		panic("dashboard: static/index.html is missing")
	}
	return s
}

func newAsset(name string, b []byte) *asset {
	sum := sha256.Sum256(b)
	// Weak, because the gzipped and the plain body share it.
	a := &asset{body: b, contentType: contentType(name), etag: `W/"` + hex.EncodeToString(sum[:8]) + `"`}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(b)
	zw.Close()
	if buf.Len() < len(b)*9/10 {
		a.gz = buf.Bytes()
	}
	return a
}

// contentType is fixed for the types the dashboard ships, because the system MIME
// table mime.TypeByExtension consults differs between machines (.js in particular,
// which module scripts refuse to load under the wrong type).
func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".json":
		return "application/json"
	}
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// csp allows only the dashboard's own files and calls to its own origin: the admin
// token sits in sessionStorage, so no injected or third-party script may run.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func (s *site) serve(c *fiber.Ctx) error {
	p := c.Path()
	if p == "/admin/api" || strings.HasPrefix(p, "/admin/api/") {
		return c.Next()
	}
	if p == "/admin" {
		return c.Redirect("/admin/", fiber.StatusMovedPermanently)
	}
	c.Set("X-Content-Type-Options", "nosniff")
	c.Set("Referrer-Policy", "no-referrer")
	if rest, ok := strings.CutPrefix(p, "/admin/assets/"); ok {
		version, name, _ := strings.Cut(rest, "/")
		a := s.assets[name]
		if a == nil {
			return fiber.NewError(fiber.StatusNotFound, "no dashboard asset "+name)
		}
		if version == s.version {
			c.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			// A page loaded from an older binary asks for its own version: it gets
			// today's file, revalidated every time, rather than a 404 mid-upgrade.
			c.Set("Cache-Control", "no-cache")
		}
		return send(c, a)
	}
	// index.html for / and the page routes. It is revalidated on every load so that
	// it always names the current asset version.
	c.Set("Cache-Control", "no-cache")
	c.Set("Content-Security-Policy", csp)
	c.Set("X-Frame-Options", "DENY")
	return send(c, s.index)
}

func send(c *fiber.Ctx, a *asset) error {
	c.Set("ETag", a.etag)
	c.Set("Vary", "Accept-Encoding")
	c.Set("Content-Type", a.contentType)
	if match := c.Get("If-None-Match"); match != "" && strings.Contains(match, a.etag) {
		return c.SendStatus(fiber.StatusNotModified)
	}
	if a.gz != nil && strings.Contains(c.Get("Accept-Encoding"), "gzip") {
		c.Set("Content-Encoding", "gzip")
		return c.Send(a.gz)
	}
	return c.Send(a.body)
}
