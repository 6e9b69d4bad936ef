package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keelhq/keel/host/internal/testkit"
)

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestSIGTERMDrainsSlowRequest runs the real binary, starts a slow request, sends
// SIGTERM while it is in flight, and checks that the request completes with 200, that
// new connections are refused afterwards, and that the process exits 0.
func TestSIGTERMDrainsSlowRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "keel")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	addr := freePort(t)
	cmd := exec.Command(bin, "serve")
	// A hermetic environment: nothing KEEL_* from the caller (make exports, a shell).
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEEL_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "KEEL_HTTP_ADDR="+addr, "KEEL_DATA_DIR="+t.TempDir(),
		"KEEL_PLUGINS_DIR="+testkit.PluginsDir(t, "plugins/example"))
	var logs syncBuffer // written by the scanner goroutine, read by the test
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	ready, scanned := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "keel serving") {
				close(ready)
			}
		}
	}()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("host exited during start-up (%v):\n%s", err, logs.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("host did not start:\n%s", logs.String())
	}
	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/api/example/slow?ms=1500")
		if err != nil {
			done <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{status: resp.StatusCode, body: string(b)}
	}()
	testkit.WaitFor(t, 10*time.Second, "the slow request to be in flight", func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(b), `keel_plugin_pool_in_use{plugin="example",version="1.1.3"} 1`)
	})
	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.status != 200 || !strings.Contains(r.body, `"slept_ms":1500`) {
		t.Fatalf("slow request during shutdown: %+v\nlogs:\n%s", r, logs.String())
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("host did not exit after SIGTERM\n%s", logs.String())
	}
	pw.Close()
	<-scanned // every line the host wrote is in logs
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("host still accepts connections after exit")
	}
	t.Logf("drained and exited %s after SIGTERM", time.Since(sent).Round(time.Millisecond))
	if !strings.Contains(logs.String(), "shutdown complete") {
		t.Fatalf("no clean shutdown in logs:\n%s", logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) WriteString(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.WriteString(v)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestUnknownSettingFailsStartup(t *testing.T) {
	var out bytes.Buffer
	os.Setenv("KEEL_HTTP_ADRESS", ":1")
	defer os.Unsetenv("KEEL_HTTP_ADRESS")
	if code := run([]string{"serve"}, io.Discard, &out); code != 2 || !strings.Contains(out.String(), "unknown setting KEEL_HTTP_ADRESS") {
		t.Fatalf("exit %d, stderr %q", code, out.String())
	}
	out.Reset()
	if code := run([]string{"frobnicate"}, io.Discard, &out); code != 2 || !strings.Contains(out.String(), `unknown command "frobnicate"`) {
		t.Fatalf("exit %d, stderr %q", code, out.String())
	}
	fmt.Fprint(io.Discard, out.String())
}
