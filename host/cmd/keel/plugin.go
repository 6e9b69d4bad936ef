package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/plugin-registry/bundle"
)

// pluginCmd implements `keel plugin ...`: producing bundles (keygen, build, sign) and
// operating the registry through the admin API (push, list, activate, rollback,
// deactivate).
func pluginCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, pluginUsage)
		return 2
	}
	var err error
	switch args[0] {
	case "keygen":
		err = keygen(args[1:], stdout)
	case "jwt-keygen":
		err = jwtKeygen(args[1:], stdout)
	case "build":
		err = build(args[1:], stdout)
	case "sign":
		err = sign(args[1:], stdout)
	case "push":
		err = push(args[1:], stdout)
	case "list":
		err = list(args[1:], stdout)
	case "watch":
		err = watch(args[1:], stdout, stderr)
	case "activate", "rollback", "deactivate":
		err = change(args[0], args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, pluginUsage)
		return 0
	default:
		err = fmt.Errorf("unknown plugin command %q\n%s", args[0], pluginUsage)
	}
	if err != nil {
		fmt.Fprintf(stderr, "keel plugin %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

const pluginUsage = `usage: keel plugin <command>

  keygen -out PREFIX                 write PREFIX.key (private, 0600) and PREFIX.pub
  jwt-keygen -out PREFIX             write PREFIX.seed (the auth plugin's signing_seed, 0600)
                                     and PREFIX.pub (the host's KEEL_JWT_PUBLIC_KEY), base64
  build  -dir DIR [-out FILE] [-key KEYFILE] [-migrations DIR]
                                     compile DIR (a Go plugin with manifest.json) into a bundle
  sign   -key KEYFILE BUNDLE          sign (or re-sign) a bundle in place
  push   [-activate] BUNDLE          upload a bundle to the admin API
  list                               list plugins, versions and what is active
  activate NAME VERSION              activate a stored version on every host
  rollback NAME                      go back to the previously active version
  deactivate NAME                    stop serving a plugin
  watch  [-root plugins] [-key KEYFILE]
                                     rebuild, push and activate a plugin whenever its source
                                     changes (versions get a -dev.<time> suffix); for make dev

The admin API is KEEL_ADMIN_URL (default http://127.0.0.1:8080) with the bearer token
KEEL_ADMIN_TOKEN; -url and -token override them.
`

func keygen(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	out := fs.String("out", "", "path prefix of the key files")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("-out is required")
	}
	pub, priv, err := bundle.GenerateKey()
	if err != nil {
		return err
	}
	privPEM, err := bundle.EncodePrivateKey(priv)
	if err != nil {
		return err
	}
	pubPEM, err := bundle.EncodePublicKey(pub)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(*out+".key", privPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(*out+".pub", pubPEM, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s.key and %s.pub (key id %s)\n", *out, *out, bundle.KeyID(pub))
	return nil
}

func readKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return bundle.DecodePrivateKey(b)
}

// build compiles a plugin with the standard toolchain and packs it with its manifest
// and migrations into a bundle.
func build(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	dir := fs.String("dir", "", "the plugin's Go package directory (with manifest.json)")
	out := fs.String("out", "", "bundle file (default dist/<name>-<version>.keel)")
	key := fs.String("key", "", "private key to sign with (unsigned without)")
	migs := fs.String("migrations", "", "migrations directory (default <dir>/migrations, else migrations/<name>)")
	version := fs.String("version", "", "override the manifest's version (e.g. for development builds)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	_, err := buildBundle(*dir, *out, *key, *migs, *version, stdout)
	return err
}

// buildBundle compiles the plugin at dir into a bundle file and returns its path.
func buildBundle(dir, out, key, migs, version string, stdout io.Writer) (string, error) {
	if dir == "" {
		return "", errors.New("-dir is required")
	}
	mf, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return "", err
	}
	if version != "" {
		var raw map[string]any
		if err := json.Unmarshal(mf, &raw); err != nil {
			return "", err
		}
		raw["version"] = version
		if mf, err = json.MarshalIndent(raw, "", "  "); err != nil {
			return "", err
		}
	}
	m, err := manifest.Parse(mf)
	if err != nil {
		return "", err
	}
	stage, err := os.MkdirTemp("", "keel-build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	pkg, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", filepath.Join(stage, "plugin.wasm"), ".")
	cmd.Dir = pkg
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, b)
	}
	if err := os.WriteFile(filepath.Join(stage, "manifest.json"), mf, 0o644); err != nil {
		return "", err
	}
	src := migs
	if src == "" {
		for _, cand := range []string{filepath.Join(dir, "migrations"), filepath.Join("migrations", m.Name)} {
			if st, err := os.Stat(cand); err == nil && st.IsDir() {
				src = cand
				break
			}
		}
	}
	if src != "" {
		if err := copyDir(src, filepath.Join(stage, "migrations")); err != nil {
			return "", err
		}
	}
	b, err := bundle.FromDir(stage)
	if err != nil {
		return "", err
	}
	if key != "" {
		priv, err := readKey(key)
		if err != nil {
			return "", err
		}
		if err := b.Sign(priv); err != nil {
			return "", err
		}
	}
	if out == "" {
		out = filepath.Join("dist", m.Name+"-"+m.Version+bundle.Ext)
	}
	if err := writeBundle(out, b); err != nil {
		return "", err
	}
	fmt.Fprintf(stdout, "%s: %s@%s digest %s signed=%v\n", out, m.Name, m.Version, b.Digest()[:16], b.Signed())
	return out, nil
}

func copyDir(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func writeBundle(path string, b *bundle.Bundle) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := b.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func sign(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("sign", flag.ContinueOnError)
	key := fs.String("key", "", "private key file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *key == "" || fs.NArg() != 1 {
		return errors.New("usage: keel plugin sign -key KEYFILE BUNDLE")
	}
	raw, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	b, err := bundle.Read(bytes.NewReader(raw), bundle.ReadOptions{AllowUnsigned: true, MaxABI: manifest.CurrentABI})
	if err != nil {
		return err
	}
	priv, err := readKey(*key)
	if err != nil {
		return err
	}
	if err := b.Sign(priv); err != nil {
		return err
	}
	if err := writeBundle(fs.Arg(0), b); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signed %s with key %s\n", fs.Arg(0), b.Signer())
	return nil
}

// client talks to the admin API.
type client struct {
	url, token string
	http       *http.Client
}

func newClient(fs *flag.FlagSet) func() *client {
	u := fs.String("url", envOr("KEEL_ADMIN_URL", "http://127.0.0.1:8080"), "admin API base URL")
	t := fs.String("token", os.Getenv("KEEL_ADMIN_TOKEN"), "admin bearer token")
	return func() *client {
		return &client{url: strings.TrimRight(*u, "/"), token: *t,
			http: &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}}
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// do sends a request and decodes a JSON answer; API errors come back as Go errors
// with the server's code and message.
func (c *client) do(method, path string, body []byte, contentType string, out any) error {
	if c.token == "" {
		return errors.New("no admin token: set KEEL_ADMIN_TOKEN or pass -token")
	}
	req, err := http.NewRequestWithContext(context.Background(), method, c.url+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Expect", "100-continue")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Code != "" {
			return fmt.Errorf("%s (%d %s)", e.Error.Message, resp.StatusCode, e.Error.Code)
		}
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func push(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	mk := newClient(fs)
	activate := fs.Bool("activate", false, "activate the version after uploading it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: keel plugin push [-activate] BUNDLE")
	}
	st, err := os.Stat(fs.Arg(0))
	if err != nil {
		return err
	}
	if st.Size() > bundle.DefaultMaxSize {
		return fmt.Errorf("%s is %d bytes; bundles are limited to %d", fs.Arg(0), st.Size(), bundle.DefaultMaxSize)
	}
	raw, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	c := mk()
	var v struct{ Name, Version, Digest, State string }
	if err := c.do("POST", "/admin/api/plugins", raw, "application/octet-stream", &v); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "uploaded %s@%s (%s)\n", v.Name, v.Version, v.Digest[:16])
	if *activate {
		var a struct{ Generation int64 }
		if err := c.do("POST", "/admin/api/plugins/"+v.Name+"/versions/"+v.Version+"/activate", nil, "", &a); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "activated %s@%s (generation %d)\n", v.Name, v.Version, a.Generation)
	}
	return nil
}

func list(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	mk := newClient(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var resp struct {
		Host    string
		Plugins []struct {
			Name     string
			Active   *struct{ Version string }
			Versions []struct{ Version, State, Digest, Signer string }
			Running  *struct{ Version string }
		}
	}
	if err := mk().do("GET", "/admin/api/plugins", nil, "", &resp); err != nil {
		return err
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PLUGIN\tVERSION\tSTATE\tACTIVE\tRUNNING HERE\tDIGEST")
	for _, p := range resp.Plugins {
		run := ""
		if p.Running != nil {
			run = p.Running.Version
		}
		if len(p.Versions) == 0 {
			fmt.Fprintf(w, "%s\t-\t(not in registry)\t\t%s\t\n", p.Name, run)
		}
		for _, v := range p.Versions {
			act := ""
			if p.Active != nil && p.Active.Version == v.Version {
				act = "*"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, v.Version, v.State, act, run, v.Digest[:12])
		}
	}
	return w.Flush()
}

func change(op string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(op, flag.ContinueOnError)
	mk := newClient(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var path string
	switch {
	case op == "activate" && fs.NArg() == 2:
		path = "/admin/api/plugins/" + fs.Arg(0) + "/versions/" + fs.Arg(1) + "/activate"
	case op != "activate" && fs.NArg() == 1:
		path = "/admin/api/plugins/" + fs.Arg(0) + "/" + op
	default:
		return fmt.Errorf("wrong arguments\n%s", pluginUsage)
	}
	var out map[string]any
	if err := mk().do("POST", path, nil, "", &out); err != nil {
		return err
	}
	b, _ := json.Marshal(out)
	fmt.Fprintf(stdout, "%s: %s\n", op, b)
	return nil
}

// watch polls the plugin sources and hot-swaps a plugin whenever its files change:
// build with a development version, push, activate. It runs until interrupted.
func watch(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	mk := newClient(fs)
	root := fs.String("root", "plugins", "directory holding one folder per plugin")
	key := fs.String("key", "", "private key to sign development builds with")
	every := fs.Duration("every", time.Second, "polling interval")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c := mk()
	seen := map[string]time.Time{}
	first := true
	for {
		dirs, _ := filepath.Glob(filepath.Join(*root, "*", "manifest.json"))
		for _, mf := range dirs {
			dir := filepath.Dir(mf)
			mod := newest(dir, filepath.Join("migrations", filepath.Base(dir)))
			if prev, ok := seen[dir]; ok && !mod.After(prev) {
				continue
			}
			seen[dir] = mod
			if first {
				continue // the host loaded the current builds at boot
			}
			var m struct{ Version string }
			b, _ := os.ReadFile(mf)
			_ = json.Unmarshal(b, &m)
			version := fmt.Sprintf("%s-dev.%d", strings.SplitN(m.Version, "-", 2)[0], time.Now().Unix())
			out := filepath.Join(os.TempDir(), "keel-dev-"+filepath.Base(dir)+bundle.Ext)
			path, err := buildBundle(dir, out, *key, "", version, stdout)
			if err == nil {
				err = push([]string{"-url", c.url, "-token", c.token, "-activate", path}, stdout)
			}
			if err != nil {
				fmt.Fprintf(stderr, "keel plugin watch: %s: %v\n", dir, err)
			}
		}
		first = false
		time.Sleep(*every)
	}
}

// newest returns the latest modification time of the files under the given paths.
func newest(paths ...string) time.Time {
	var t time.Time
	for _, p := range paths {
		filepath.Walk(p, func(_ string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() && info.ModTime().After(t) {
				t = info.ModTime()
			}
			return nil
		})
	}
	return t
}

// jwtKeygen makes the access-token key pair: the auth plugin signs with the seed, the
// gateway verifies with the public key.
func jwtKeygen(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("jwt-keygen", flag.ContinueOnError)
	out := fs.String("out", "", "path prefix of the key files")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("-out is required")
	}
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(*out+".seed", []byte(base64.StdEncoding.EncodeToString(priv.Seed())+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(*out+".pub", []byte(base64.StdEncoding.EncodeToString(pub)+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s.seed and %s.pub\n", *out, *out)
	return nil
}
