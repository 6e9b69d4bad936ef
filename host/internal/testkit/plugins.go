package testkit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/keelhq/keel/abi/manifest"
)

// WritePlugin writes one plugin into root/<name>/ as KEEL_PLUGINS_DIR expects.
func WritePlugin(t testing.TB, root string, wasm []byte, m *manifest.Manifest) {
	t.Helper()
	if err := writePlugin(root, wasm, m); err != nil {
		t.Fatal(err)
	}
}

func writePlugin(root string, wasm []byte, m *manifest.Manifest) error {
	pd := filepath.Join(root, m.Name)
	if err := os.MkdirAll(pd, 0o755); err != nil {
		return err
	}
	mj, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(pd, "manifest.json"), mj, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(pd, "plugin.wasm"), wasm, 0o644)
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

// AddPlugin builds the package at srcDir, lets edit change its manifest (to give it
// a unique name, say), and writes it with its migrations/ into root.
func AddPlugin(t testing.TB, root, srcDir string, edit func(*manifest.Manifest)) *manifest.Manifest {
	t.Helper()
	m, err := AddPluginE(root, srcDir, edit)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// AddPluginE is AddPlugin for callers without a testing.TB (the benchmark driver).
func AddPluginE(root, srcDir string, edit func(*manifest.Manifest)) (*manifest.Manifest, error) {
	wasm, m, err := BuildE(srcDir)
	if err != nil {
		return nil, err
	}
	if edit != nil {
		edit(m)
		if err := m.Validate(); err != nil {
			return nil, err
		}
	}
	if err := writePlugin(root, wasm, m); err != nil {
		return nil, err
	}
	// Migrations live beside the package (test guests) or in the repository's
	// migrations/<plugin>/ (first-party plugins).
	migs := filepath.Join(Root(), srcDir, "migrations")
	entries, err := os.ReadDir(migs)
	if err != nil {
		migs = filepath.Join(Root(), "migrations", filepath.Base(srcDir))
		if entries, err = os.ReadDir(migs); err != nil {
			return m, nil
		}
	}
	dst := filepath.Join(root, m.Name, "migrations")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, err
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(migs, e.Name()))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			return nil, err
		}
	}
	return m, nil
}
