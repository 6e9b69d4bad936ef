package server

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/bridges/postgres/pgtest"
	"github.com/keelhq/keel/host/internal/testkit"
	"github.com/keelhq/keel/plugin-registry/bundle"
)

const adminToken = "test-admin-token-0123456789"

// signer holds a key pair trusted by the test hosts.
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
func (s *signer) bundleOf(t *testing.T, dir, version string, sign bool) []byte {
	t.Helper()
	wasm, m := testkit.Build(t, dir)
	m.Version = version
	mj, _ := json.Marshal(m)
	b, err := bundle.Build(mj, wasm, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sign {
		if err := b.Sign(s.priv); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := b.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// registryHost starts a host on the shared database with the test's trusted key.
func registryHost(t *testing.T, dbURL string, s *signer) string {
	t.Helper()
	_, base := startIn(t, t.TempDir(), "--database-url", dbURL, "--admin-token", adminToken, "--trusted-keys", s.keyFile,
		"--host-id", "host-"+pgtest.RandomSuffix(4))
	return base
}

func adminCall(t *testing.T, method, url string, body []byte, contentType string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func upload(t *testing.T, base string, raw []byte) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	fw, _ := w.CreateFormFile("bundle", "plugin.keel")
	fw.Write(raw)
	w.Close()
	return adminCall(t, "POST", base+"/admin/api/plugins", buf.Bytes(), w.FormDataContentType())
}

func servedVersion(t *testing.T, base string) string {
	t.Helper()
	s, b, _ := do(t, "GET", base+"/api/example/hello/x", "")
	if s != 200 {
		return fmt.Sprintf("status %d", s)
	}
	var v map[string]string
	json.Unmarshal([]byte(b), &v)
	return v["version"]
}

func registryState(t *testing.T, base string) string {
	_, b := adminCall(t, "GET", base+"/admin/api/plugins", nil, "")
	var v struct {
		Plugins []struct {
			Name     string
			Active   *struct{ Version string }
			Versions []struct{ Version, State string }
		}
	}
	json.Unmarshal([]byte(b), &v)
	var parts []string
	for _, p := range v.Plugins {
		act := "-"
		if p.Active != nil {
			act = p.Active.Version
		}
		var vs []string
		for _, x := range p.Versions {
			vs = append(vs, x.Version)
		}
		sort.Strings(vs)
		parts = append(parts, p.Name+" active="+act+" versions="+strings.Join(vs, ","))
	}
	return strings.Join(parts, "; ")
}

func TestRegistryUploadActivateRollback(t *testing.T) {
	s := newSigner(t)
	base := registryHost(t, database(t, "keel_plg_example"), s)

	if st, b := adminCall(t, "GET", base+"/admin/api/plugins", nil, ""); st != 200 {
		t.Fatalf("list: %d %s", st, b)
	}
	req, _ := http.NewRequest("GET", base+"/admin/api/plugins", nil)
	if resp, _ := http.DefaultClient.Do(req); resp.StatusCode != 401 {
		t.Fatalf("admin API without a token: %d", resp.StatusCode)
	}
	for _, v := range []string{"1.0.0", "2.0.0"} {
		if st, b := upload(t, base, s.bundleOf(t, "plugins/example", v, true)); st != 201 {
			t.Fatalf("upload %s: %d %s", v, st, b)
		}
	}
	// The same bundle again is idempotent; raw body uploads work too.
	if st, b := adminCall(t, "POST", base+"/admin/api/plugins", s.bundleOf(t, "plugins/example", "1.0.0", true), "application/octet-stream"); st != 201 {
		t.Fatalf("re-upload as raw body: %d %s", st, b)
	}
	if st, b := adminCall(t, "POST", base+"/admin/api/plugins/example/versions/1.0.0/activate", nil, ""); st != 200 {
		t.Fatalf("activate v1: %d %s", st, b)
	}
	if v := servedVersion(t, base); v != "1.0.0" {
		t.Fatalf("serving %s after activating v1", v)
	}
	if st, b := adminCall(t, "POST", base+"/admin/api/plugins/example/versions/2.0.0/activate", nil, ""); st != 200 {
		t.Fatalf("activate v2: %d %s", st, b)
	}
	if v := servedVersion(t, base); v != "2.0.0" {
		t.Fatalf("serving %s after activating v2", v)
	}
	if st, b := adminCall(t, "POST", base+"/admin/api/plugins/example/rollback", nil, ""); st != 200 {
		t.Fatalf("rollback: %d %s", st, b)
	}
	if v := servedVersion(t, base); v != "1.0.0" {
		t.Fatalf("serving %s after rollback", v)
	}
	if st, b := adminCall(t, "DELETE", base+"/admin/api/plugins/example/versions/1.0.0", nil, ""); st != 409 || !strings.Contains(b, "version_active") {
		t.Fatalf("deleting the active version: %d %s", st, b)
	}
	if st, b := adminCall(t, "GET", base+"/admin/api/plugins/example/history", nil, ""); st != 200 || strings.Count(b, `"Action":"activate"`)+strings.Count(b, `"Action":"rollback"`) < 3 {
		t.Fatalf("history: %d %s", st, b)
	}
	if st, b := adminCall(t, "POST", base+"/admin/api/plugins/example/deactivate", nil, ""); st != 200 {
		t.Fatalf("deactivate: %d %s", st, b)
	}
	if s, _, _ := do(t, "GET", base+"/api/example/hello/x", ""); s != 404 {
		t.Fatalf("deactivated plugin still serves: %d", s)
	}
}

func TestRegistryRefusesBadBundles(t *testing.T) {
	s := newSigner(t)
	base := registryHost(t, database(t, "keel_plg_example"), s)
	good := s.bundleOf(t, "plugins/example", "1.0.0", true)
	if st, b := upload(t, base, good); st != 201 {
		t.Fatal(st, b)
	}
	if st, b := adminCall(t, "POST", base+"/admin/api/plugins/example/versions/1.0.0/activate", nil, ""); st != 200 {
		t.Fatal(st, b)
	}
	before := registryState(t, base)

	tampered := append([]byte(nil), s.bundleOf(t, "plugins/example", "1.0.1", true)...)
	tampered[len(tampered)-5000] ^= 0xff // inside plugin.wasm, the last entry
	other := newSigner(t)
	notWasmB, err := bundle.Build([]byte(`{"name":"example","version":"1.0.2","abi":1,"limits":{}}`), []byte("MZ not a wasm module"), nil)
	if err == nil {
		t.Fatal("bundle.Build accepted a non-wasm module")
	}
	_ = notWasmB
	conflicting := s.bundleOf(t, "host/testdata/guests/sickly", "1.0.0", true) // same name and version, other content
	for _, tc := range []struct {
		name   string
		raw    []byte
		status int
		code   string
	}{
		{"tampered", tampered, 422, "bundle_tampered"},
		{"unsigned", s.bundleOf(t, "plugins/example", "1.0.3", false), 422, "bundle_unsigned"},
		{"untrusted", other.bundleOf(t, "plugins/example", "1.0.4", true), 422, "bundle_untrusted"},
		{"garbage", []byte("this is not a bundle at all"), 400, "bundle_malformed"},
		{"truncated", good[:len(good)/2], 400, "bundle_malformed"},
		{"version conflict", conflicting, 409, "version_conflict"},
	} {
		st, b := upload(t, base, tc.raw)
		if st != tc.status || !strings.Contains(b, tc.code) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, st, b, tc.status, tc.code)
		}
		if after := registryState(t, base); after != before {
			t.Errorf("%s changed the registry: %s -> %s", tc.name, before, after)
		}
	}
	// A body over the host's upload limit is refused from its Content-Length, before it
	// is read, when the client asks first (Expect: 100-continue), as the CLI does.
	huge := bytes.Repeat([]byte{0}, 66<<20)
	req, _ := http.NewRequest("POST", base+"/admin/api/plugins", bytes.NewReader(huge))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Expect", "100-continue")
	resp, err := (&http.Client{Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}).Do(req)
	// fasthttp refuses it from Content-Length and may close the connection while the
	// client is still writing: a 4xx or a reset are both refusals; what matters is
	// that nothing was stored (checked below) and that the host keeps serving.
	if err == nil && resp.StatusCode < 400 {
		t.Errorf("oversized upload accepted: %d", resp.StatusCode)
	}
	// Under the limit but over the bundle's own maximum, or just not a bundle: 4xx too.
	if st, b := adminCall(t, "POST", base+"/admin/api/plugins", huge[:20<<20], "application/octet-stream"); st != 400 {
		t.Errorf("20 MiB of zeros: %d %.200s", st, b)
	}
	if after := registryState(t, base); after != before {
		t.Errorf("oversized uploads changed the registry: %s -> %s", before, after)
	}
	if v := servedVersion(t, base); v != "1.0.0" {
		t.Fatalf("refusals changed what is served: %s", v)
	}
}

func TestUnhealthyVersionNeverTakesTraffic(t *testing.T) {
	s := newSigner(t)
	base := registryHost(t, database(t, "keel_plg_example"), s)
	upload(t, base, s.bundleOf(t, "plugins/example", "1.0.0", true))
	adminCall(t, "POST", base+"/admin/api/plugins/example/versions/1.0.0/activate", nil, "")
	if st, b := upload(t, base, s.bundleOf(t, "host/testdata/guests/sickly", "2.0.0", true)); st != 201 {
		t.Fatal(st, b)
	}
	var served atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // watch traffic while the activation is attempted
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, b, _ := do(t, "GET", base+"/api/example/hello/x", ""); strings.Contains(b, "sickly") {
				served.Add(1)
			}
		}
	}()
	st, b := adminCall(t, "POST", base+"/admin/api/plugins/example/versions/2.0.0/activate", nil, "")
	close(stop)
	wg.Wait()
	if st != 422 || !strings.Contains(b, "activation_failed") || !strings.Contains(b, "cannot reach its dependencies") {
		t.Fatalf("activating an unhealthy version: %d %s", st, b)
	}
	if served.Load() != 0 || servedVersion(t, base) != "1.0.0" {
		t.Fatalf("the unhealthy version took %d requests; serving %s", served.Load(), servedVersion(t, base))
	}
	if state := registryState(t, base); !strings.Contains(state, "active=1.0.0") {
		t.Fatalf("registry: %s", state)
	}
}

func TestTwoHostsConverge(t *testing.T) {
	s := newSigner(t)
	url := database(t, "keel_plg_example")
	a := registryHost(t, url, s)
	b := registryHost(t, url, s)
	for _, v := range []string{"1.0.0", "2.0.0"} {
		if st, body := upload(t, a, s.bundleOf(t, "plugins/example", v, true)); st != 201 {
			t.Fatal(st, body)
		}
	}
	// The first activation compiles the module on both hosts (cold); convergence is
	// timed from then on, when hosts have the module in their compilation cache.
	t0 := time.Now()
	if st, body := adminCall(t, "POST", a+"/admin/api/plugins/example/versions/2.0.0/activate", nil, ""); st != 200 {
		t.Fatalf("warm-up activation: %d %s", st, body)
	}
	testkit.WaitFor(t, 30*time.Second, "both hosts to serve 2.0.0", func() bool {
		return servedVersion(t, a) == "2.0.0" && servedVersion(t, b) == "2.0.0"
	})
	t.Logf("cold: both hosts serve 2.0.0 %s after the activation call started", time.Since(t0).Round(time.Millisecond))
	for i, tc := range []struct{ on, version string }{{a, "1.0.0"}, {b, "2.0.0"}, {a, "1.0.0"}} {
		t0 := time.Now()
		if st, body := adminCall(t, "POST", tc.on+"/admin/api/plugins/example/versions/"+tc.version+"/activate", nil, ""); st != 200 {
			t.Fatalf("step %d: %d %s", i, st, body)
		}
		testkit.WaitFor(t, 2*time.Second, "both hosts to serve "+tc.version, func() bool {
			return servedVersion(t, a) == tc.version && servedVersion(t, b) == tc.version
		})
		t.Logf("step %d: both hosts serve %s %s after the activation", i, tc.version, time.Since(t0).Round(time.Millisecond))
	}
	// Each host sees both in the registry's host list, alive, with what they serve.
	st, body := adminCall(t, "GET", a+"/admin/api/hosts", nil, "")
	var hs struct {
		Hosts []struct {
			ID      string
			Alive   bool
			Self    bool
			Plugins map[string]string
		}
	}
	json.Unmarshal([]byte(body), &hs)
	if st != 200 || len(hs.Hosts) != 2 || !hs.Hosts[0].Alive || !hs.Hosts[1].Alive || hs.Hosts[0].Self == hs.Hosts[1].Self {
		t.Fatalf("hosts: %d %s", st, body)
	}
}

func TestSwapUnderLoadDropsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	s := newSigner(t)
	base := registryHost(t, database(t, "keel_plg_example"), s)
	for _, v := range []string{"1.0.0", "2.0.0"} {
		upload(t, base, s.bundleOf(t, "plugins/example", v, true))
	}
	adminCall(t, "POST", base+"/admin/api/plugins/example/versions/1.0.0/activate", nil, "")
	var ok, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(base + "/api/example/hello/load")
				if err != nil {
					failed.Add(1)
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					mu.Lock()
					failures = append(failures, fmt.Sprint(resp.StatusCode))
					mu.Unlock()
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	for i := 0; i < 6; i++ {
		v := []string{"2.0.0", "1.0.0"}[i%2]
		if st, b := adminCall(t, "POST", base+"/admin/api/plugins/example/versions/"+v+"/activate", nil, ""); st != 200 {
			t.Errorf("swap %d to %s: %d %s", i, v, st, b)
		}
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during swaps: %v", failed.Load(), ok.Load()+failed.Load(), failures[:min(5, len(failures))])
	}
	t.Logf("%d requests, 0 failed, across 6 swaps", ok.Load())
	_ = manifest.CurrentABI
}

func TestConcurrentActivationsOneWins(t *testing.T) {
	s := newSigner(t)
	base := registryHost(t, database(t, "keel_plg_example"), s)
	// Two versions whose modules this host has never compiled: each activation takes a
	// cold compile, so the two requests overlap.
	for _, v := range []string{"3.0.0", "3.0.1"} {
		wasm, m := testkit.Build(t, "plugins/example")
		m.Version = v
		mj, _ := json.Marshal(m)
		// A custom section (name "key", then a payload): new bytes, so a new compilation,
		// and the same code.
		payload := []byte{3, 'k', 'e', 'y', v[len(v)-1], 'p', 'a', 'd'}
		code := append(append(append([]byte(nil), wasm...), 0, byte(len(payload))), payload...)
		b, err := bundle.Build(mj, code, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Sign(s.priv); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		b.WriteTo(&buf)
		if st, body := upload(t, base, buf.Bytes()); st != 201 {
			t.Fatalf("upload %s: %d %s", v, st, body)
		}
	}
	type res struct {
		st   int
		body string
	}
	out := make(chan res, 2)
	start := make(chan struct{})
	for _, v := range []string{"3.0.0", "3.0.1"} {
		go func() {
			<-start
			st, body := adminCall(t, "POST", base+"/admin/api/plugins/example/versions/"+v+"/activate", nil, "")
			out <- res{st, body}
		}()
	}
	close(start)
	a, b := <-out, <-out
	won, lost := 0, 0
	for _, r := range []res{a, b} {
		switch {
		case r.st == 200:
			won++
		case r.st == 409 && strings.Contains(r.body, "activation_in_progress"):
			lost++
		default:
			t.Fatalf("unexpected answer %d %s", r.st, r.body)
		}
	}
	if won != 1 || lost != 1 {
		t.Fatalf("two simultaneous activations: %d won, %d refused; want exactly one of each", won, lost)
	}
	state := registryState(t, base)
	if !strings.Contains(state, "active=3.0.0") && !strings.Contains(state, "active=3.0.1") {
		t.Fatalf("registry after the race: %s", state)
	}
}
