// Package testkit builds test guests and plugins into wasm for tests, once per source
// change, and offers the polling helper the integration tests share.
package testkit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keelhq/keel/abi/manifest"
)

// Root returns the repository root (the directory holding go.mod).
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

var buildMu sync.Mutex

// Build compiles the Go package at dir (relative to the repository root) for wasip1 as
// a reactor and returns the .wasm bytes and the parsed manifest.json next to it.
// Outputs are cached in the OS temp dir keyed by a hash of the SDK's and the
// package's sources and of the build environment (buildKey), so repeated test runs do
// not relink.
func Build(t testing.TB, dir string) ([]byte, *manifest.Manifest) {
	t.Helper()
	wasm, m, err := BuildE(dir)
	if err != nil {
		t.Fatal(err)
	}
	return wasm, m
}

// BuildE is Build for callers without a testing.TB, such as the benchmark runner.
func BuildE(dir string) ([]byte, *manifest.Manifest, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	root := Root()
	abs := filepath.Join(root, dir)
	sum, err := buildKey(root, abs)
	if err != nil {
		return nil, nil, err
	}
	cacheDir := filepath.Join(os.TempDir(), "keel-test-guests")
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, nil, err
	}
	out := filepath.Join(cacheDir, strings.ReplaceAll(dir, string(filepath.Separator), "_")+"-"+sum+".wasm")
	if _, err := os.Stat(out); err != nil {
		tmp := out + fmt.Sprintf(".%d.tmp", os.Getpid())
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", tmp, "./"+dir)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, nil, fmt.Errorf("building guest %s: %v\n%s", dir, err, b)
		}
		if err := os.Rename(tmp, out); err != nil {
			return nil, nil, err
		}
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		return nil, nil, err
	}
	mf, err := os.Open(filepath.Join(abs, "manifest.json"))
	if err != nil {
		return nil, nil, err
	}
	defer mf.Close()
	m, err := manifest.Decode(mf)
	if err != nil {
		return nil, nil, err
	}
	return wasm, m, nil
}

// buildEnv lists the environment variables that change what "go build" produces for
// the same sources. They are part of the cache key: a guest built with, say,
// GOFLAGS=-tags=x must not be answered with one cached from a build without it.
var buildEnv = []string{"GOFLAGS", "GOWASM", "GOEXPERIMENT", "GOTOOLCHAIN"}

// buildKey names a guest build: a hash of the package's, the SDK's and the wire
// package's sources, go.sum, and buildEnv's values.
func buildKey(root, abs string) (string, error) {
	h := sha256.New()
	for _, d := range []string{abs, filepath.Join(root, "abi", "sdk"), filepath.Join(root, "abi", "wire"), filepath.Join(root, "go.sum")} {
		if err := hashTree(h, d); err != nil {
			return "", err
		}
	}
	for _, k := range buildEnv {
		fmt.Fprintf(h, "%s=%s\n", k, os.Getenv(k))
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func hashTree(h interface{ Write([]byte) (int, error) }, dir string) error {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".go") || strings.HasSuffix(p, ".json") || strings.HasSuffix(p, ".sum")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	return nil
}

// CacheDir returns a compilation cache directory shared by all test runs on this
// machine, so that each module is compiled by wazero once.
func CacheDir() string { return filepath.Join(os.TempDir(), "keel-test-wazero-cache") }

// WaitFor polls cond every 10 ms until it holds or timeout passes, then fails the test
// with what.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
