package bundle

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// pluginDir writes a plugin build directory and returns its path.
func pluginDir(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func validDirFiles() map[string][]byte {
	files := map[string][]byte{
		"manifest.json": []byte(testManifest),
		"plugin.wasm":   tinyWasm,
	}
	for name, sql := range testMigrations {
		files["migrations/"+name] = sql
	}
	return files
}

func TestFromDir(t *testing.T) {
	files := validDirFiles()
	// Ignored, as the migration runner ignores them.
	files["migrations/README.md"] = []byte("notes")
	files["migrations/embed.go"] = []byte("package x")
	files["migrations/old/0099_ignored.sql"] = []byte("SELECT 1;")
	files["other.txt"] = []byte("not part of the bundle")
	b, err := FromDir(pluginDir(t, files))
	if err != nil {
		t.Fatal(err)
	}
	if want := mustBuild(t, testMigrations); b.Digest() != want.Digest() {
		t.Errorf("FromDir gives digest %s, Build of the same files %s", b.Digest(), want.Digest())
	}

	noMigrations := validDirFiles()
	for name := range testMigrations {
		delete(noMigrations, "migrations/"+name)
	}
	b, err = FromDir(pluginDir(t, noMigrations))
	if err != nil || len(b.Migrations()) != 0 {
		t.Fatalf("FromDir without migrations/: %v, %d migrations", err, len(b.Migrations()))
	}
}

func TestFromDirRefuses(t *testing.T) {
	with := func(name string, data []byte) map[string][]byte {
		f := validDirFiles()
		if data == nil {
			delete(f, name)
		} else {
			f[name] = data
		}
		return f
	}
	tests := []struct {
		name  string
		files map[string][]byte
		setup func(t *testing.T, dir string)
		want  error // nil: only check the message
		msg   string
	}{
		{"no manifest", with("manifest.json", nil), nil, fs.ErrNotExist, "manifest.json"},
		{"no module", with("plugin.wasm", nil), nil, fs.ErrNotExist, "plugin.wasm"},
		{"bad migration name", with("migrations/0003-Bad.sql", []byte("SELECT 1;")), nil, ErrMalformed, "0003-Bad.sql"},
		{"manifest too large", with("manifest.json", make([]byte, 256<<10+1)), nil, ErrTooLarge, "manifest.json"},
		{"migration too large", with("migrations/0003_big.sql", make([]byte, maxMigrationSize+1)), nil, ErrTooLarge, "0003_big.sql"},
		{"invalid manifest", with("manifest.json", []byte(`{"name":"x"}`)), nil, ErrManifest, "manifest.json"},
		{"not wasm", with("plugin.wasm", []byte("ELF")), nil, ErrNotWasm, "plugin.wasm"},
		{"module is a directory", with("plugin.wasm", nil), func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, "plugin.wasm"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, ErrMalformed, "not a regular file"},
		{"symlink out of the directory", with("plugin.wasm", nil), func(t *testing.T, dir string) {
			outside := filepath.Join(t.TempDir(), "secret.wasm")
			if err := os.WriteFile(outside, tinyWasm, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(dir, "plugin.wasm")); err != nil {
				t.Fatal(err)
			}
		}, nil, "plugin.wasm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := pluginDir(t, tt.files)
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			b, err := FromDir(dir)
			if err == nil {
				t.Fatalf("FromDir succeeded with digest %s", b.Digest())
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v, want it to wrap %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), dir) {
				t.Errorf("error %q does not mention %q and the directory", err, tt.msg)
			}
		})
	}
}

// TestHandMadeBundle runs testdata/mkbundle.sh, the by-hand recipe README.md gives,
// with openssl keys, and checks that Read accepts the result and that its identity
// equals that of the same content built by Build.
func TestHandMadeBundle(t *testing.T) {
	for _, tool := range []string{"sh", "tar", "jq", "openssl", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
	if out, err := exec.Command("tar", "--version").Output(); err != nil || !bytes.Contains(out, []byte("GNU tar")) {
		t.Skip("the recipe uses GNU tar options")
	}
	work := t.TempDir()
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = work
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run("openssl", "genpkey", "-algorithm", "ed25519", "-out", "key.pem")
	run("openssl", "pkey", "-in", "key.pem", "-pubout", "-out", "key.pub")

	dir := pluginDir(t, validDirFiles())
	script, err := filepath.Abs("testdata/mkbundle.sh")
	if err != nil {
		t.Fatal(err)
	}
	run("sh", script, dir, "signed.keel", "key.pem") // relative to work
	run("sh", script, dir, "unsigned.keel")

	keys, err := LoadTrustedKeys(filepath.Join(work, "key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	privPEM, err := os.ReadFile(filepath.Join(work, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := DecodePrivateKey(privPEM)
	if err != nil {
		t.Fatalf("decoding an openssl private key: %v", err)
	}
	if !priv.Public().(ed25519.PublicKey).Equal(keys[0]) {
		t.Fatal("the openssl private and public keys do not match as decoded")
	}

	want := mustBuild(t, testMigrations)
	for _, tc := range []struct {
		file string
		opts ReadOptions
	}{
		{"signed.keel", ReadOptions{TrustedKeys: keys}},
		{"unsigned.keel", ReadOptions{AllowUnsigned: true}},
	} {
		f, err := os.Open(filepath.Join(work, tc.file))
		if err != nil {
			t.Fatal(err)
		}
		b, err := Read(f, tc.opts)
		f.Close()
		if err != nil {
			t.Fatalf("Read %s: %v", tc.file, err)
		}
		if b.Digest() != want.Digest() {
			t.Errorf("%s: digest %s, Build gives %s", tc.file, b.Digest(), want.Digest())
		}
		if tc.opts.AllowUnsigned == b.Signed() {
			t.Errorf("%s: Signed = %v", tc.file, b.Signed())
		}
	}

	// Signing the same content in Go with the openssl key gives the same bundle, byte
	// for byte, as the recipe: ed25519 signatures are deterministic and the recipe
	// fixes the tar metadata.
	if err := want.Sign(priv); err != nil {
		t.Fatal(err)
	}
	handMade, err := os.ReadFile(filepath.Join(work, "signed.keel"))
	if err != nil {
		t.Fatal(err)
	}
	// GNU tar pads the archive to a 10240-byte record; Keel does not.
	ours := encode(t, want)
	if !bytes.Equal(bytes.TrimRight(handMade, "\x00"), bytes.TrimRight(ours, "\x00")) {
		t.Error("the recipe's bundle and WriteTo's differ beyond trailing padding")
	}
}
