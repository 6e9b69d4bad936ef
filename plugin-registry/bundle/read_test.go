package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

func TestReadAccepts(t *testing.T) {
	unsigned := encode(t, mustBuild(t, testMigrations))
	byOther := mustBuild(t, testMigrations)
	if err := byOther.Sign(otherPriv); err != nil {
		t.Fatal(err)
	}
	// A bundle as tar(1) might write it: a migrations/ directory entry, content in
	// another order, and padding to a 10240-byte record.
	var reordered []entry
	for _, e := range entriesOf(t, signedBytes(t)) {
		if e.hdr.Name == wasmName {
			reordered = append([]entry{e}, reordered...)
			continue
		}
		if e.hdr.Name == "migrations/0001_init.sql" {
			reordered = append(reordered, entry{hdr: tar.Header{Name: "migrations/", Typeflag: tar.TypeDir}})
		}
		reordered = append(reordered, e)
	}
	// digests.json and signature.json must stay first: move them back.
	reordered = append(reordered[1:3], append([]entry{reordered[0]}, reordered[3:]...)...)
	tarLike := rawTar(t, reordered...)
	tarLike = append(tarLike, make([]byte, 10240-len(tarLike)%10240)...)

	tests := []struct {
		name       string
		input      []byte
		opts       ReadOptions
		wantSigned bool
	}{
		{"signed by a trusted key", signedBytes(t), trusted(), true},
		{"signed, among several trusted keys", signedBytes(t), ReadOptions{TrustedKeys: []ed25519.PublicKey{otherPub, trustedPub}}, true},
		{"signed, unsigned also allowed", signedBytes(t), ReadOptions{TrustedKeys: []ed25519.PublicKey{trustedPub}, AllowUnsigned: true}, true},
		{"unsigned, allowed", unsigned, ReadOptions{AllowUnsigned: true}, false},
		{"signed by an untrusted key, unsigned allowed", encode(t, byOther), ReadOptions{TrustedKeys: []ed25519.PublicKey{trustedPub}, AllowUnsigned: true}, false},
		{"written by tar(1)", tarLike, trusted(), true},
		{"MaxABI 1", signedBytes(t), ReadOptions{TrustedKeys: []ed25519.PublicKey{trustedPub}, MaxABI: 1}, true},
	}
	want := mustBuild(t, testMigrations).Digest()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Read(bytes.NewReader(tt.input), tt.opts)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if b.Signed() != tt.wantSigned {
				t.Errorf("Signed = %v, want %v", b.Signed(), tt.wantSigned)
			}
			if b.Digest() != want {
				t.Errorf("Digest = %s, want %s", b.Digest(), want)
			}
			if len(b.Migrations()) != len(testMigrations) {
				t.Errorf("got %d migrations, want %d", len(b.Migrations()), len(testMigrations))
			}
		})
	}
}

func TestReadRefuses(t *testing.T) {
	signed := signedBytes(t)
	unsigned := encode(t, mustBuild(t, testMigrations))
	entries := entriesOf(t, signed) // digests, signature, manifest, 3 migrations, wasm
	replace := func(name string, data []byte) []byte {
		var out []entry
		for _, e := range entries {
			if e.hdr.Name == name {
				e.data = data
			}
			out = append(out, e)
		}
		return rawTar(t, out...)
	}
	without := func(name string) []byte {
		var out []entry
		for _, e := range entries {
			if e.hdr.Name != name {
				out = append(out, e)
			}
		}
		return rawTar(t, out...)
	}
	with := func(extra ...entry) []byte { return rawTar(t, append(append([]entry(nil), entries...), extra...)...) }

	// Flip one byte of the module inside the archive.
	flipped := bytes.Clone(signed)
	i := bytes.Index(flipped, tinyWasm)
	flipped[i+7] ^= 1

	// Another bundle of the same plugin, signed by the trusted key: its signature is
	// genuine but covers other content.
	otherContent := mustBuild(t, nil)
	if err := otherContent.Sign(trustedPriv); err != nil {
		t.Fatal(err)
	}
	byOther := mustBuild(t, testMigrations)
	if err := byOther.Sign(otherPriv); err != nil {
		t.Fatal(err)
	}
	badSig := bytes.Clone(entryData(t, signed, signatureName))
	badSig[bytes.Index(badSig, []byte(`"signature":"`))+20] ^= 1

	abi2 := strings.Replace(testManifest, `"abi":1`, `"abi":2`, 1)
	validFiles := func(man string, wasm []byte, extra ...file) []file {
		return append([]file{{manifestName, []byte(man)}, {wasmName, wasm}}, extra...)
	}
	crafted := func(fs []file) []byte { return craft(t, trustedPriv, "example", "1.0.0", fs) }

	pretty := strings.Replace(string(entryData(t, unsigned, digestsName)), `,"files"`, `, "files"`, 1)
	format2 := strings.Replace(string(entryData(t, unsigned, digestsName)), `"format":1`, `"format":2`, 1)

	tests := []struct {
		name  string
		input []byte
		opts  ReadOptions
		want  error
		msg   string // a part of the message
	}{
		// Trust.
		{"unsigned", unsigned, trusted(), ErrUnsigned, "no signature.json"},
		{"unsigned, no keys at all", unsigned, ReadOptions{}, ErrUnsigned, "example@1.0.0"},
		{"untrusted key", encode(t, byOther), trusted(), ErrUntrusted, KeyID(otherPub)},
		{"no trusted keys", signed, ReadOptions{}, ErrUntrusted, "not among the 0 trusted keys"},
		{"signature swapped from other content", replace(signatureName, entryData(t, encode(t, otherContent), signatureName)), trusted(), ErrUntrusted, "does not verify"},
		{"signature swapped, unsigned allowed", replace(signatureName, entryData(t, encode(t, otherContent), signatureName)), ReadOptions{TrustedKeys: []ed25519.PublicKey{trustedPub}, AllowUnsigned: true}, ErrUntrusted, "does not verify"},
		{"signature bytes damaged", replace(signatureName, badSig), trusted(), ErrUntrusted, "does not verify"},
		{"signature algorithm unknown", replace(signatureName, bytes.Replace(entryData(t, signed, signatureName), []byte(`"ed25519"`), []byte(`"rsa"`), 1)), trusted(), ErrUntrusted, `"rsa"`},
		{"signature.json not JSON", replace(signatureName, []byte("{")), trusted(), ErrMalformed, "signature.json"},
		{"signature.json bad key id", replace(signatureName, []byte(`{"key_id":"x","algorithm":"ed25519","signature":""}`)), trusted(), ErrMalformed, "key_id"},

		// Integrity.
		{"one byte of the module flipped", flipped, trusted(), ErrTampered, "plugin.wasm"},
		{"manifest replaced", replace(manifestName, []byte(strings.Replace(testManifest, `"public":true`, `"public":false`, 1))), trusted(), ErrTampered, "manifest.json"},
		{"migration removed", without("migrations/0002_add_name.sql"), trusted(), ErrTampered, "missing"},
		{"migration added", with(entry{hdr: tar.Header{Name: "migrations/0003_evil.sql"}, data: []byte("DROP TABLE t;")}), trusted(), ErrTampered, "not listed"},
		{"migration grown", replace("migrations/0001_init.sql", []byte("CREATE TABLE t (id int PRIMARY KEY); DROP TABLE x;")), trusted(), ErrTampered, "digests.json says"},

		// Archive shape.
		{"empty input", nil, trusted(), ErrMalformed, "empty"},
		{"not a tar", []byte(strings.Repeat("hello, world\n", 100)), trusted(), ErrMalformed, "not a Keel bundle"},
		{"a tar without digests.json first", rawTar(t, entry{hdr: tar.Header{Name: manifestName}, data: []byte(testManifest)}), trusted(), ErrMalformed, "first entry"},
		{"truncated", signed[:len(signed)/2], trusted(), ErrMalformed, "truncated"},
		{"end-of-archive marker missing", signed[:len(signed)-1024], trusted(), ErrMalformed, "truncated"},
		{"end-of-archive marker half missing", signed[:len(signed)-512], trusted(), ErrMalformed, "truncated"},
		{"truncated inside digests.json", signed[:600], trusted(), ErrMalformed, "truncated"},
		{"path traversal", with(entry{hdr: tar.Header{Name: "../evil"}, data: []byte("x")}), trusted(), ErrMalformed, "path traversal"},
		{"path traversal inside migrations", with(entry{hdr: tar.Header{Name: "migrations/../../evil.sql"}, data: []byte("x")}), trusted(), ErrMalformed, "path traversal"},
		{"absolute path", with(entry{hdr: tar.Header{Name: "/etc/cron.d/evil"}, data: []byte("x")}), trusted(), ErrMalformed, "path traversal"},
		{"symlink", with(entry{hdr: tar.Header{Name: "migrations/0003_x.sql", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}}), trusted(), ErrMalformed, "link"},
		{"hard link", with(entry{hdr: tar.Header{Name: "migrations/0003_x.sql", Typeflag: tar.TypeLink, Linkname: "plugin.wasm"}}), trusted(), ErrMalformed, "link"},
		{"device", with(entry{hdr: tar.Header{Name: "dev", Typeflag: tar.TypeChar}}), trusted(), ErrMalformed, "regular files only"},
		{"other directory", with(entry{hdr: tar.Header{Name: "evil/", Typeflag: tar.TypeDir}}), trusted(), ErrMalformed, "directory"},
		{"duplicate manifest", with(entries[2]), trusted(), ErrMalformed, "duplicated"},
		{"second digests.json", with(entries[0]), trusted(), ErrMalformed, "duplicated or out of place"},
		{"unexpected entry", with(entry{hdr: tar.Header{Name: "README.md"}, data: []byte("hi")}), trusted(), ErrMalformed, "unexpected entry"},
		{"data after the archive", append(bytes.Clone(signed), "trailing"...), trusted(), ErrMalformed, "after the end"},
		{"digests.json not canonical", replace(digestsName, []byte(pretty)), ReadOptions{AllowUnsigned: true}, ErrMalformed, "canonical"},
		{"digests.json format 2", replace(digestsName, []byte(format2)), ReadOptions{AllowUnsigned: true}, ErrMalformed, "format 2"},
		{"digests.json not JSON", replace(digestsName, []byte("not json")), trusted(), ErrMalformed, "digests.json"},
		{"digests.json unsorted", craftRawDigests(t, `{"format":1,"name":"example","version":"1.0.0","files":[{"path":"plugin.wasm","size":8,"sha256":"%[1]s"},{"path":"manifest.json","size":8,"sha256":"%[1]s"}]}`), ReadOptions{AllowUnsigned: true}, ErrMalformed, "sorted"},
		{"digests.json without a module", craftRawDigests(t, `{"format":1,"name":"example","version":"1.0.0","files":[{"path":"manifest.json","size":8,"sha256":"%[1]s"}]}`), ReadOptions{AllowUnsigned: true}, ErrMalformed, "must list both"},
		{"digests.json lists a stranger", craftRawDigests(t, `{"format":1,"name":"example","version":"1.0.0","files":[{"path":"evil.sh","size":8,"sha256":"%[1]s"}]}`), ReadOptions{AllowUnsigned: true}, ErrMalformed, "evil.sh"},
		{"digests.json bad migration name", craftRawDigests(t, `{"format":1,"name":"example","version":"1.0.0","files":[{"path":"manifest.json","size":8,"sha256":"%[1]s"},{"path":"migrations/init.sql","size":8,"sha256":"%[1]s"},{"path":"plugin.wasm","size":8,"sha256":"%[1]s"}]}`), ReadOptions{AllowUnsigned: true}, ErrMalformed, "init.sql"},

		// Content.
		{"abi 2", crafted(validFiles(abi2, tinyWasm)), trusted(), ErrABITooNew, "needs ABI level 2"},
		{"MaxABI above what the host implements", crafted(validFiles(abi2, tinyWasm)), ReadOptions{TrustedKeys: []ed25519.PublicKey{trustedPub}, MaxABI: 7}, ErrABITooNew, "allows up to 1"},
		{"module is a shell script", crafted(validFiles(testManifest, []byte("#!/bin/sh\n"))), trusted(), ErrNotWasm, "plugin.wasm"},
		{"module is wasm version 2", crafted(validFiles(testManifest, []byte("\x00asm\x02\x00\x00\x00"))), trusted(), ErrNotWasm, "plugin.wasm"},
		{"empty module", crafted(validFiles(testManifest, nil)), trusted(), ErrNotWasm, "plugin.wasm"},
		{"manifest invalid", crafted(validFiles(strings.Replace(testManifest, `"GET"`, `"get"`, 1), tinyWasm)), trusted(), ErrManifest, "method"},
		{"manifest names another plugin", crafted(validFiles(strings.Replace(testManifest, `"example"`, `"other"`, 1), tinyWasm)), trusted(), ErrManifest, "describes other@1.0.0"},
		{"migration not UTF-8", crafted(validFiles(testManifest, tinyWasm, file{"migrations/0001_a.sql", []byte{0xff}})), trusted(), ErrMalformed, "UTF-8"},
		{"migration numbered 0000", crafted(validFiles(testManifest, tinyWasm, file{"migrations/0000_a.sql", nil})), trusted(), ErrMalformed, "0001"},

		// Size.
		{"over MaxSize", signed, ReadOptions{TrustedKeys: []ed25519.PublicKey{trustedPub}, MaxSize: int64(len(signed)) - 1}, ErrTooLarge, "limit"},
		{"content over MaxSize", signed, ReadOptions{TrustedKeys: []ed25519.PublicKey{trustedPub}, MaxSize: 1500}, ErrTooLarge, "limit"},
		{"migration over 1 MiB", crafted(validFiles(testManifest, tinyWasm, file{"migrations/0001_a.sql", make([]byte, maxMigrationSize+1)})), trusted(), ErrTooLarge, "0001_a.sql"},
		{"manifest over its limit", crafted(validFiles(testManifest+strings.Repeat(" ", 256<<10), tinyWasm)), trusted(), ErrTooLarge, "manifest.json"},
		{"over 1000 migrations", crafted(validFiles(testManifest, tinyWasm, manyMigrationFiles(maxMigrations+1)...)), trusted(), ErrTooLarge, "at most 1000 migrations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Read(bytes.NewReader(tt.input), tt.opts)
			if b != nil {
				t.Errorf("Read returned a bundle with the error %v", err)
			}
			assertOnly(t, err, tt.want)
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
}

// craftRawDigests returns an unsigned archive whose digests.json is format with %[1]s
// standing for a well-formed hash, and nothing else.
func craftRawDigests(t *testing.T, format string) []byte {
	return rawTar(t, entry{hdr: tar.Header{Name: digestsName}, data: []byte(fmt.Sprintf(format, strings.Repeat("ab", 32)) + "\n")})
}

func manyMigrationFiles(n int) []file {
	out := make([]file, n)
	for i := range out {
		out[i] = file{fmt.Sprintf("migrations/%04d_m.sql", i+1), nil}
	}
	return out
}

func TestReadManifestErrorIsWrapped(t *testing.T) {
	input := craft(t, trustedPriv, "example", "1.0.0", []file{
		{manifestName, []byte(strings.Replace(testManifest, `"1.0.0"`, `"1.0.0","limits":{"pool_max":9999}`, 1))},
		{wasmName, tinyWasm},
	})
	_, err := Read(bytes.NewReader(input), trusted())
	assertOnly(t, err, ErrManifest)
	// The manifest package's own message, naming the field, is kept.
	for _, want := range []string{"example@1.0.0", "limits.pool_max 9999"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestReadOversizedStreams feeds Read bundles of 65 MiB and more, generated on the fly,
// and checks that it refuses them early, without holding them in memory.
func TestReadOversizedStreams(t *testing.T) {
	const huge = 65 << 20
	man := []byte(testManifest)

	// A real, honestly digested and signed 65 MiB bundle: the module is the wasm header
	// followed by zeros.
	zeros := func(n int64) io.Reader { return io.LimitReader(zeroReader{}, n) }
	hugeSum := func() string {
		h := sha256New()
		h.Write(tinyWasm)
		if _, err := io.Copy(h, zeros(huge-int64(len(tinyWasm)))); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%x", h.Sum(nil))
	}()
	d := digestsDoc{Format: 1, Name: "example", Version: "1.0.0", Files: []fileDigest{
		{Path: manifestName, Size: int64(len(man)), SHA256: sha256Hex(man)},
		{Path: wasmName, Size: huge, SHA256: hugeSum},
	}}
	digests := encodeDigests(d)
	// prefix is everything up to and including the module's first 8 bytes.
	var prefix bytes.Buffer
	tw := tar.NewWriter(&prefix)
	for _, f := range []file{{digestsName, digests}, {signatureName, signatureFor(trustedPriv, digests)}, {manifestName, man}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.path, Mode: 0o644, Size: int64(len(f.data)), Format: tar.FormatUSTAR}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: wasmName, Mode: 0o644, Size: huge, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(tinyWasm); err != nil {
		t.Fatal(err)
	}
	hugeBundle := func() io.Reader {
		return io.MultiReader(bytes.NewReader(prefix.Bytes()), zeros(huge-8), zeros(1024))
	}

	// A valid small bundle followed by 65 MiB of zero "padding".
	small := signedBytes(t)
	padded := func() io.Reader { return io.MultiReader(bytes.NewReader(small), zeros(huge)) }

	// A first entry claiming 65 MiB.
	var claim bytes.Buffer
	if err := tar.NewWriter(&claim).WriteHeader(&tar.Header{Name: digestsName, Mode: 0o644, Size: huge}); err != nil {
		t.Fatal(err)
	}
	claims := func() io.Reader { return io.MultiReader(bytes.NewReader(claim.Bytes()), zeros(huge)) }

	tests := []struct {
		name     string
		input    func() io.Reader
		maxRead  int64 // most bytes Read may consume
		maxAlloc uint64
	}{
		{"65 MiB bundle", hugeBundle, 64 << 10, 4 << 20},
		{"small bundle and 65 MiB of padding", padded, DefaultMaxSize + 1, 4 << 20},
		{"first entry claims 65 MiB", claims, 64 << 10, 4 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cr := &countReader{r: tt.input()}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := Read(cr, trusted())
			runtime.ReadMemStats(&after)
			assertOnly(t, err, ErrTooLarge)
			if cr.n > tt.maxRead {
				t.Errorf("Read consumed %d bytes, want at most %d", cr.n, tt.maxRead)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > tt.maxAlloc {
				t.Errorf("Read allocated %d bytes, want at most %d", alloc, tt.maxAlloc)
			}
		})
	}
	// The same 65 MiB bundle is fine for a host that raised the limit.
	if testing.Short() {
		return
	}
	b, err := Read(hugeBundle(), ReadOptions{TrustedKeys: []ed25519.PublicKey{trustedPub}, MaxSize: 66 << 20})
	if err != nil {
		t.Fatalf("Read with MaxSize 66 MiB: %v", err)
	}
	if len(b.Wasm()) != huge {
		t.Errorf("module is %d bytes, want %d", len(b.Wasm()), huge)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestReadPassesOnReaderErrors checks that a failing source is reported as itself, not
// as a malformed bundle: a dropped connection says nothing about the bundle.
func TestReadPassesOnReaderErrors(t *testing.T) {
	boom := errors.New("connection reset")
	signed := signedBytes(t)
	_, err := Read(io.MultiReader(bytes.NewReader(signed[:2000]), errReader{boom}), trusted())
	if !errors.Is(err, boom) {
		t.Fatalf("Read = %v, want %v", err, boom)
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			t.Errorf("a reader error was reported as %v", s)
		}
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
