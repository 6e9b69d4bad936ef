package server

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is a log sink safe for the host's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestBootKeepsTheActiveVersionAndSaysSo: a host that boots with a newer bundle of a
// plugin the registry already serves uploads it, leaves the active version serving
// (the registry decides what runs), and logs how to activate the new one.
func TestBootKeepsTheActiveVersionAndSaysSo(t *testing.T) {
	s := newSigner(t)
	dbURL := database(t, "keel_plg_example")
	bundleDir := func(version string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "example.keel"), s.bundleOf(t, "plugins/example", version, true), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	_, first := startIn(t, bundleDir("1.0.0"), "--database-url", dbURL, "--trusted-keys", s.keyFile, "--admin-token", adminToken)
	if v := servedVersion(t, first); v != "1.0.0" {
		t.Fatalf("first boot serves %s, want 1.0.0", v)
	}

	var logs lockedBuffer
	_, second := startLogging(t, &logs, bundleDir("1.1.0"), "--database-url", dbURL, "--trusted-keys", s.keyFile, "--admin-token", adminToken)
	if v := servedVersion(t, second); v != "1.0.0" {
		t.Fatalf("second boot serves %s, want the registry's active 1.0.0", v)
	}
	if st := registryState(t, second); !strings.Contains(st, "example active=1.0.0 versions=1.0.0,1.1.0") {
		t.Fatalf("registry after the second boot: %s", st)
	}
	if l := logs.String(); !strings.Contains(l, "the registry keeps the active version") || !strings.Contains(l, "keel plugin activate example 1.1.0") {
		t.Fatalf("the second boot did not say how to activate 1.1.0:\n%s", l)
	}
}
