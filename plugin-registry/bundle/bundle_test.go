package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/keelhq/keel/abi/manifest"
)

func TestRoundTrip(t *testing.T) {
	b := mustBuild(t, testMigrations)
	if b.Signed() || b.Signer() != "" {
		t.Fatalf("a fresh build reports Signed=%v Signer=%q, want unsigned", b.Signed(), b.Signer())
	}
	digest := b.Digest()
	if err := b.Sign(trustedPriv); err != nil {
		t.Fatal(err)
	}
	if !b.Signed() || b.Signer() != KeyID(trustedPub) {
		t.Fatalf("after Sign: Signed=%v Signer=%q, want true %q", b.Signed(), b.Signer(), KeyID(trustedPub))
	}
	if b.Digest() != digest {
		t.Fatalf("signing changed the digest from %s to %s", digest, b.Digest())
	}
	archive := encode(t, b)
	if int64(len(archive)) != b.archiveSize() {
		t.Fatalf("archiveSize says %d, WriteTo wrote %d", b.archiveSize(), len(archive))
	}

	got, err := Read(bytes.NewReader(archive), trusted())
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if got.Digest() != digest {
		t.Errorf("Digest = %s, want %s", got.Digest(), digest)
	}
	sum := sha256.Sum256(entryData(t, archive, digestsName))
	if want := hex.EncodeToString(sum[:]); got.Digest() != want {
		t.Errorf("Digest = %s, want sha256(digests.json) = %s", got.Digest(), want)
	}
	if !got.Signed() || got.Signer() != KeyID(trustedPub) {
		t.Errorf("Signed=%v Signer=%q, want true %q", got.Signed(), got.Signer(), KeyID(trustedPub))
	}
	m := got.Manifest()
	if m.Name != "example" || m.Version != "1.0.0" || m.ABI != 1 || len(m.Routes) != 1 || m.Limits.PoolMax != manifest.DefaultPoolMax {
		t.Errorf("Manifest = %+v", m)
	}
	if !bytes.Equal(got.Wasm(), tinyWasm) {
		t.Errorf("Wasm = %q, want %q", got.Wasm(), tinyWasm)
	}
	migs := got.Migrations()
	wantNames := []string{"0001_init.sql", "0002_add_name.sql", "0010_index_ten.sql"}
	if len(migs) != len(wantNames) {
		t.Fatalf("Migrations = %v, want %v", migs, wantNames)
	}
	for i, mg := range migs {
		if mg.Name != wantNames[i] || mg.SQL != string(testMigrations[mg.Name]) {
			t.Errorf("Migrations[%d] = %+v, want %s with its SQL", i, mg, wantNames[i])
		}
	}
	if s := got.String(); !strings.HasPrefix(s, "example@1.0.0 (") {
		t.Errorf("String = %q", s)
	}
	// Writing what was read gives back the same bytes.
	if again := encode(t, got); !bytes.Equal(again, archive) {
		t.Error("re-writing a read bundle changed its bytes")
	}
}

func TestRoundTripNoMigrations(t *testing.T) {
	b := mustBuild(t, nil)
	got, err := Read(bytes.NewReader(encode(t, b)), ReadOptions{AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Migrations()) != 0 || got.Signed() {
		t.Errorf("Migrations=%v Signed=%v, want none and unsigned", got.Migrations(), got.Signed())
	}
}

func TestDeterministic(t *testing.T) {
	// The same inputs, given in a different map, built at different times.
	migs2 := map[string][]byte{}
	for _, k := range []string{"0010_index_ten.sql", "0001_init.sql", "0002_add_name.sql"} {
		migs2[k] = testMigrations[k]
	}
	a, b := mustBuild(t, testMigrations), mustBuild(t, migs2)
	if x, y := encode(t, a), encode(t, b); !bytes.Equal(x, y) {
		t.Fatal("two unsigned builds of the same inputs differ")
	}
	for _, bb := range []*Bundle{a, b} {
		if err := bb.Sign(trustedPriv); err != nil {
			t.Fatal(err)
		}
	}
	x, y := encode(t, a), encode(t, b)
	if !bytes.Equal(x, y) {
		t.Fatal("two signed builds of the same inputs differ")
	}
	// A different key gives a different file but the same identity.
	c := mustBuild(t, testMigrations)
	if err := c.Sign(otherPriv); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(encode(t, c), x) || c.Digest() != a.Digest() {
		t.Error("the signature should change the file but not the digest")
	}
}

// TestArchiveLayout pins the header bytes README.md documents, so that the document
// and the code cannot drift apart silently.
func TestArchiveLayout(t *testing.T) {
	archive := signedBytes(t)
	if len(archive)%512 != 0 {
		t.Fatalf("archive is %d bytes, not a multiple of 512", len(archive))
	}
	field := func(h []byte, off, n int) string { return string(h[off : off+n]) }
	want := []string{digestsName, signatureName, manifestName,
		"migrations/0001_init.sql", "migrations/0002_add_name.sql", "migrations/0010_index_ten.sql", wasmName}
	off := 0
	for _, name := range want {
		h := archive[off : off+512]
		checks := []struct{ what, got, want string }{
			{"name", strings.TrimRight(field(h, 0, 100), "\x00"), name},
			{"mode", field(h, 100, 8), "0000644\x00"},
			{"uid", field(h, 108, 8), "0000000\x00"},
			{"gid", field(h, 116, 8), "0000000\x00"},
			{"mtime", field(h, 136, 12), "00000000000\x00"},
			{"typeflag", field(h, 156, 1), "0"},
			{"linkname", field(h, 157, 100), strings.Repeat("\x00", 100)},
			{"magic+version", field(h, 257, 8), "ustar\x0000"},
			{"uname+gname", field(h, 265, 64), strings.Repeat("\x00", 64)},
			{"devmajor+devminor", field(h, 329, 16), "0000000\x000000000\x00"},
			{"prefix+pad", field(h, 345, 167), strings.Repeat("\x00", 167)},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("entry %s: %s = %q, want %q", name, c.what, c.got, c.want)
			}
		}
		var size int64
		if _, err := fmt.Sscanf(field(h, 124, 11), "%o", &size); err != nil || h[135] != 0 {
			t.Fatalf("entry %s: size field %q", name, field(h, 124, 12))
		}
		var sum int64
		for i, c := range h {
			if i >= 148 && i < 156 {
				c = ' '
			}
			sum += int64(c)
		}
		if got := field(h, 148, 8); got != fmt.Sprintf("%06o\x00 ", sum) {
			t.Errorf("entry %s: chksum = %q, want %q", name, got, fmt.Sprintf("%06o\x00 ", sum))
		}
		off += 512 + int((size+511)/512*512)
	}
	if rest := archive[off:]; len(rest) != 1024 || !bytes.Equal(rest, make([]byte, 1024)) {
		t.Errorf("after the last entry: %d bytes, want 1024 zero bytes", len(rest))
	}
}

func TestBuildRefuses(t *testing.T) {
	valid := testManifest
	tests := []struct {
		name       string
		manifest   string
		wasm       []byte
		migrations map[string][]byte
		want       error
		msg        string
	}{
		{"manifest not JSON", `{`, tinyWasm, nil, ErrManifest, "manifest.json"},
		{"manifest bad name", strings.Replace(valid, `"example"`, `"Example"`, 1), tinyWasm, nil, ErrManifest, "name"},
		{"manifest unknown field", strings.Replace(valid, `"abi":1`, `"abi":1,"colour":"red"`, 1), tinyWasm, nil, ErrManifest, "colour"},
		{"abi too new", strings.Replace(valid, `"abi":1`, `"abi":2`, 1), tinyWasm, nil, ErrABITooNew, "ABI level 2"},
		{"not wasm", valid, []byte("#!/bin/sh\necho hi\n"), nil, ErrNotWasm, "plugin.wasm"},
		{"wasm version 2", valid, []byte("\x00asm\x02\x00\x00\x00"), nil, ErrNotWasm, "plugin.wasm"},
		{"empty wasm", valid, nil, nil, ErrNotWasm, "plugin.wasm"},
		{"migration upper case", valid, tinyWasm, map[string][]byte{"0001_Init.sql": nil}, ErrMalformed, "0001_Init.sql"},
		{"migration dash", valid, tinyWasm, map[string][]byte{"0001_add-x.sql": nil}, ErrMalformed, "0001_add-x.sql"},
		{"migration three digits", valid, tinyWasm, map[string][]byte{"001_init.sql": nil}, ErrMalformed, "001_init.sql"},
		{"migration with directory", valid, tinyWasm, map[string][]byte{"migrations/0001_init.sql": nil}, ErrMalformed, "migrations/0001_init.sql"},
		{"migration not sql", valid, tinyWasm, map[string][]byte{"0001_init.txt": nil}, ErrMalformed, "0001_init.txt"},
		{"migration 0000", valid, tinyWasm, map[string][]byte{"0000_init.sql": nil}, ErrMalformed, "starts at 0001"},
		{"migration same number", valid, tinyWasm, map[string][]byte{"0001_a.sql": nil, "0001_b.sql": nil}, ErrMalformed, "same number"},
		{"migration name too long", valid, tinyWasm, map[string][]byte{"0001_" + strings.Repeat("a", 81) + ".sql": nil}, ErrMalformed, "at most 89 bytes"},
		{"migration not UTF-8", valid, tinyWasm, map[string][]byte{"0001_init.sql": {0xff, 0xfe}}, ErrMalformed, "UTF-8"},
		{"migration too large", valid, tinyWasm, map[string][]byte{"0001_init.sql": make([]byte, maxMigrationSize+1)}, ErrTooLarge, "0001_init.sql"},
		{"too many migrations", valid, tinyWasm, manyMigrations(maxMigrations + 1), ErrTooLarge, "migrations"},
		{"wasm too large", valid, append(bytes.Clone(tinyWasm), make([]byte, DefaultMaxSize)...), nil, ErrTooLarge, "plugin.wasm"},
		// Unsigned, this bundle is exactly DefaultMaxSize bytes; its signature would not fit.
		{"bundle too large once signed", valid, append(bytes.Clone(tinyWasm), make([]byte, DefaultMaxSize-3584-8)...), nil, ErrTooLarge, "signed bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build([]byte(tt.manifest), tt.wasm, tt.migrations)
			assertOnly(t, err, tt.want)
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
}

func TestBuildLimitsAreInclusive(t *testing.T) {
	migs := manyMigrations(maxMigrations)
	migs["0001_m.sql"] = bytes.Repeat([]byte("x"), maxMigrationSize)
	migs["0002_"+strings.Repeat("a", 80)+".sql"] = nil
	delete(migs, "0002_m.sql")
	b, err := Build([]byte(testManifest), tinyWasm, migs)
	if err != nil {
		t.Fatalf("Build at the limits: %v", err)
	}
	if _, err := Read(bytes.NewReader(encode(t, b)), ReadOptions{AllowUnsigned: true}); err != nil {
		t.Fatalf("Read at the limits: %v", err)
	}
}

// TestBuildLargestBundle builds, signs and reads a bundle of exactly DefaultMaxSize bytes.
func TestBuildLargestBundle(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 64 MiB several times")
	}
	// 1024 each for digests.json, signature.json and manifest.json with their headers,
	// 512 for the module's header and 1024 for the end-of-archive marker.
	wasm := append(bytes.Clone(tinyWasm), make([]byte, DefaultMaxSize-4608-8)...)
	b, err := Build([]byte(testManifest), wasm, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Sign(trustedPriv); err != nil {
		t.Fatal(err)
	}
	archive := encode(t, b)
	if len(archive) != DefaultMaxSize {
		t.Fatalf("archive is %d bytes, want exactly %d", len(archive), DefaultMaxSize)
	}
	if _, err := Read(bytes.NewReader(archive), trusted()); err != nil {
		t.Fatalf("Read: %v", err)
	}
	_, err = Read(bytes.NewReader(archive), ReadOptions{TrustedKeys: []ed25519.PublicKey{trustedPub}, MaxSize: DefaultMaxSize - 1})
	assertOnly(t, err, ErrTooLarge)
}

func manyMigrations(n int) map[string][]byte {
	m := make(map[string][]byte, n)
	for i := 1; i <= n; i++ {
		m[fmt.Sprintf("%04d_m.sql", i)] = []byte("SELECT 1;")
	}
	return m
}

func TestBuildCopiesInputs(t *testing.T) {
	man := []byte(testManifest)
	wasm := bytes.Clone(tinyWasm)
	sql := []byte("CREATE TABLE t ();")
	b, err := Build(man, wasm, map[string][]byte{"0001_init.sql": sql})
	if err != nil {
		t.Fatal(err)
	}
	before := encode(t, b)
	wasm[7] = 0xff
	sql[0] = 'X'
	man[2] = 'X'
	if after := encode(t, b); !bytes.Equal(before, after) {
		t.Error("changing Build's inputs afterwards changed the bundle")
	}
	m := b.Manifest()
	m.Routes[0].Path = "/changed"
	m.Name = "changed"
	if b.Manifest().Routes[0].Path == "/changed" || b.Manifest().Name == "changed" {
		t.Error("changing the result of Manifest changed the bundle")
	}
}

func TestSignRefusesBadKey(t *testing.T) {
	b := mustBuild(t, nil)
	if err := b.Sign(ed25519.PrivateKey(make([]byte, 10))); err == nil || !strings.Contains(err.Error(), "example@1.0.0") {
		t.Fatalf("Sign with a short key: %v, want an error naming the plugin", err)
	}
	if b.Signed() {
		t.Error("a failed Sign left the bundle signed")
	}
}

func TestWriteToReportsWriterErrors(t *testing.T) {
	b := mustBuild(t, testMigrations)
	boom := errors.New("disk full")
	n, err := b.WriteTo(&failingWriter{after: 1000, err: boom})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "example@1.0.0") {
		t.Fatalf("WriteTo = %v, want %v wrapped with the plugin", err, boom)
	}
	if n > 1000 {
		t.Errorf("WriteTo reported %d bytes, but the writer took at most 1000", n)
	}
}

type failingWriter struct {
	after int
	err   error
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.after {
		n := f.after
		f.after = 0
		return n, f.err
	}
	f.after -= len(p)
	return len(p), nil
}
