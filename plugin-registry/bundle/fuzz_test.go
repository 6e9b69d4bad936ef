package bundle

import (
	"bytes"
	"crypto/ed25519"
	"testing"
)

// FuzzRead feeds arbitrary bytes to Read. It must never panic, hang or allocate beyond
// its limit, must return either a bundle or an error, and whatever it accepts must
// survive being written and read again unchanged in identity.
func FuzzRead(f *testing.F) {
	signed := signedBytes(f)
	f.Add(signed)
	f.Add(encode(f, mustBuild(f, testMigrations)))
	f.Add(encode(f, mustBuild(f, nil)))
	f.Add(signed[:len(signed)/2])
	f.Add(craft(f, nil, "example", "1.0.0", []file{{manifestName, []byte(testManifest)}, {wasmName, []byte("not wasm")}}))
	f.Add([]byte{})
	f.Add([]byte("\x00asm\x01\x00\x00\x00"))

	const maxSize = 1 << 20
	optionSets := []ReadOptions{
		{MaxSize: maxSize, TrustedKeys: []ed25519.PublicKey{trustedPub}},
		{MaxSize: maxSize, TrustedKeys: []ed25519.PublicKey{trustedPub}, AllowUnsigned: true},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, opts := range optionSets {
			b, err := Read(bytes.NewReader(data), opts)
			if (b == nil) == (err == nil) {
				t.Fatalf("Read returned bundle %v and error %v; want exactly one", b, err)
			}
			if err != nil {
				continue
			}
			if !opts.AllowUnsigned && !b.Signed() {
				t.Fatal("accepted an unsigned bundle without AllowUnsigned")
			}
			var buf bytes.Buffer
			if _, err := b.WriteTo(&buf); err != nil {
				t.Fatalf("WriteTo: %v", err)
			}
			again, err := Read(&buf, opts)
			if err != nil {
				t.Fatalf("re-reading an accepted bundle: %v", err)
			}
			if again.Digest() != b.Digest() || !bytes.Equal(again.Wasm(), b.Wasm()) || len(again.Migrations()) != len(b.Migrations()) {
				t.Fatal("re-reading an accepted bundle changed it")
			}
		}
	})
}
