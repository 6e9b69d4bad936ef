package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"sort"
	"testing"
)

// tinyWasm is the smallest valid WebAssembly module: the magic and version 1.
var tinyWasm = []byte("\x00asm\x01\x00\x00\x00")

const testManifest = `{"name":"example","version":"1.0.0","abi":1,"routes":[{"method":"GET","path":"/hello/:name","public":true}]}`

var testMigrations = map[string][]byte{
	"0001_init.sql":      []byte("CREATE TABLE t (id int PRIMARY KEY);\n"),
	"0002_add_name.sql":  []byte("ALTER TABLE t ADD COLUMN name text;\n"),
	"0010_index_ten.sql": []byte("CREATE INDEX t_name ON t (name);\n"),
}

// Fixed keys keep test bundles, and failures, reproducible.
var (
	trustedPriv = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	trustedPub  = trustedPriv.Public().(ed25519.PublicKey)
	otherPriv   = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize))
	otherPub    = otherPriv.Public().(ed25519.PublicKey)
)

var sentinels = []error{ErrTooLarge, ErrMalformed, ErrTampered, ErrUnsigned, ErrUntrusted, ErrNotWasm, ErrManifest, ErrABITooNew}

// assertOnly fails unless err wraps want and none of the other sentinels, so that each
// refusal is told apart from the others.
func assertOnly(t *testing.T, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want it to wrap %v", err, want)
	}
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Fatalf("got %v, which wraps %v as well as %v", err, s, want)
		}
	}
}

func mustBuild(t testing.TB, migrations map[string][]byte) *Bundle {
	t.Helper()
	b, err := Build([]byte(testManifest), tinyWasm, migrations)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return b
}

func encode(t testing.TB, b *Bundle) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := b.WriteTo(&buf)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d bytes", n, buf.Len())
	}
	return buf.Bytes()
}

// signedBytes is a valid bundle with migrations, signed by the trusted key.
func signedBytes(t testing.TB) []byte {
	t.Helper()
	b := mustBuild(t, testMigrations)
	if err := b.Sign(trustedPriv); err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return encode(t, b)
}

// craft builds an archive the way WriteTo would, but from arbitrary files: digests.json
// is computed honestly over files and signed with priv (nil leaves it unsigned), so
// that tests can reach the checks that come after trust and integrity.
func craft(t testing.TB, priv ed25519.PrivateKey, name, version string, files []file) []byte {
	t.Helper()
	files = append([]file(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	d := digestsDoc{Format: formatVersion, Name: name, Version: version}
	for _, f := range files {
		sum := sha256.Sum256(f.data)
		d.Files = append(d.Files, fileDigest{Path: f.path, Size: int64(len(f.data)), SHA256: hex.EncodeToString(sum[:])})
	}
	digests := encodeDigests(d)
	entries := []file{{digestsName, digests}}
	if priv != nil {
		entries = append(entries, file{signatureName, signatureFor(priv, digests)})
	}
	entries = append(entries, files...)
	var buf bytes.Buffer
	if err := writeArchive(&buf, entries); err != nil {
		t.Fatalf("writeArchive: %v", err)
	}
	return buf.Bytes()
}

func signatureFor(priv ed25519.PrivateKey, digests []byte) []byte {
	return encodeSignature(signatureDoc{
		KeyID:     KeyID(priv.Public().(ed25519.PublicKey)),
		Algorithm: algorithmEd25519,
		Signature: ed25519.Sign(priv, digests),
	})
}

// entry is one raw tar entry, for archives no valid bundle could produce.
type entry struct {
	hdr  tar.Header
	data []byte
}

func rawTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		h.Mode = 0o644
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatalf("tar data %q: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// entriesOf returns the entries of a bundle archive, in order, for tests that rearrange
// a valid bundle.
func entriesOf(t testing.TB, archive []byte) []entry {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(archive))
	var out []entry
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		var data bytes.Buffer
		if _, err := data.ReadFrom(tr); err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{hdr: tar.Header{Name: h.Name, Typeflag: h.Typeflag}, data: data.Bytes()})
	}
	return out
}

func entryData(t testing.TB, archive []byte, name string) []byte {
	t.Helper()
	for _, e := range entriesOf(t, archive) {
		if e.hdr.Name == name {
			return e.data
		}
	}
	t.Fatalf("no entry %q", name)
	return nil
}

func sha256New() hash.Hash { return sha256.New() }

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func trusted() ReadOptions { return ReadOptions{TrustedKeys: []ed25519.PublicKey{trustedPub}} }
