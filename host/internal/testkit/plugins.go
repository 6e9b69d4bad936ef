package testkit

import (
	"encoding/json"

	"github.com/keelhq/keel/abi/manifest"
	"os"
	"path/filepath"
	"testing"
)

// WritePlugin writes one plugin into root/<name>/ as KEEL_PLUGINS_DIR expects.
func WritePlugin(t testing.TB, root string, wasm []byte, m *manifest.Manifest) {
	t.Helper()
	pd := filepath.Join(root, m.Name)
	if err := os.MkdirAll(pd, 0o755); err != nil {
		t.Fatal(err)
	}
	mj, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pd, "manifest.json"), mj, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pd, "plugin.wasm"), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
}

// PluginsDir builds the given guest or plugin packages (paths relative to the
// repository root) into a fresh plugins directory laid out as KEEL_PLUGINS_DIR
// expects: <name>/manifest.json and <name>/plugin.wasm.
func PluginsDir(t testing.TB, dirs ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range dirs {
		wasm, m := Build(t, d)
		WritePlugin(t, root, wasm, m)
	}
	return root
}
