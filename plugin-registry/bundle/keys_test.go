package bundle

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyRoundTrip(t *testing.T) {
	pub, priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	privPEM, err := EncodePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := EncodePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(privPEM, []byte("-----BEGIN PRIVATE KEY-----\n")) || !bytes.HasPrefix(pubPEM, []byte("-----BEGIN PUBLIC KEY-----\n")) {
		t.Fatalf("unexpected PEM:\n%s\n%s", privPEM, pubPEM)
	}
	priv2, err := DecodePrivateKey(privPEM)
	if err != nil || !priv2.Equal(priv) {
		t.Fatalf("DecodePrivateKey = %v, %v", priv2, err)
	}
	// Text around the block (a comment saying whose key it is) is allowed.
	pub2, err := DecodePublicKey(append([]byte("# release signing key, 2026\n"), pubPEM...))
	if err != nil || !pub2.Equal(pub) {
		t.Fatalf("DecodePublicKey = %v, %v", pub2, err)
	}
}

// TestKeyID pins the key id of a fixed key, computed independently with
// `openssl pkey -pubout -outform DER | tail -c 32 | sha256sum | cut -c1-16`.
func TestKeyID(t *testing.T) {
	if got, want := KeyID(trustedPub), "34750f98bd59fcfc"; got != want {
		t.Errorf("KeyID = %s, want %s", got, want)
	}
	if len(KeyID(otherPub)) != 16 || KeyID(otherPub) == KeyID(trustedPub) {
		t.Errorf("KeyID(other) = %s", KeyID(otherPub))
	}
}

func TestDecodeKeyRefuses(t *testing.T) {
	pubPEM, _ := EncodePublicKey(trustedPub)
	privPEM, _ := EncodePrivateKey(trustedPriv)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER})
	ecPrivDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	ecPrivPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecPrivDER})
	damaged := bytes.Replace(pubPEM, []byte("MCowBQYDK2VwAyEA"), []byte("MCowBQYDK2V!!yEA"), 1)

	tests := []struct {
		name   string
		decode func([]byte) error
		input  []byte
		msg    string
	}{
		{"public: empty", decodePub, nil, "none"},
		{"public: private key given", decodePub, privPEM, "public keys only"},
		{"public: two keys", decodePub, append(bytes.Clone(pubPEM), pubPEM...), "exactly one"},
		{"public: not ed25519", decodePub, ecPEM, "want ed25519"},
		{"public: damaged block", decodePub, damaged, "damaged"},
		{"public: wrong type", decodePub, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), "CERTIFICATE"},
		{"private: public key given", decodePriv, pubPEM, `"PUBLIC KEY"`},
		{"private: not ed25519", decodePriv, ecPrivPEM, "want ed25519"},
		{"private: garbage DER", decodePriv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), "private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.decode(tt.input)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.msg)
			}
		})
	}
	if _, err := EncodePublicKey(make([]byte, 3)); err == nil {
		t.Error("EncodePublicKey accepted a 3-byte key")
	}
	if _, err := EncodePrivateKey(make([]byte, 3)); err == nil {
		t.Error("EncodePrivateKey accepted a 3-byte key")
	}
}

func decodePub(b []byte) error  { _, err := DecodePublicKey(b); return err }
func decodePriv(b []byte) error { _, err := DecodePrivateKey(b); return err }

func TestLoadTrustedKeys(t *testing.T) {
	pubPEM, _ := EncodePublicKey(trustedPub)
	otherPEM, _ := EncodePublicKey(otherPub)
	privPEM, _ := EncodePrivateKey(trustedPriv)
	write := func(t *testing.T, dir, name string, data []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "release.pub", pubPEM)
		write(t, dir, "ci.pem", otherPEM)
		write(t, dir, "copy.pub", pubPEM)            // a duplicate, returned once
		write(t, dir, "README.md", []byte("keys"))   // not a key file
		write(t, dir, ".hidden.pub", []byte("junk")) // hidden: skipped
		write(t, dir, "sub/nested.pub", []byte("junk"))
		// A Kubernetes secret volume: the key is a symlink into ..data.
		write(t, dir, "..2026_01_01/k8s.pub", otherPEM)
		if err := os.Symlink("..2026_01_01", filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("..data/k8s.pub", filepath.Join(dir, "k8s.pub")); err != nil {
			t.Fatal(err)
		}
		keys, err := LoadTrustedKeys(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 2 {
			t.Fatalf("got %d keys, want 2", len(keys))
		}
		ids := map[string]bool{KeyID(keys[0]): true, KeyID(keys[1]): true}
		if !ids[KeyID(trustedPub)] || !ids[KeyID(otherPub)] {
			t.Errorf("got keys %v", ids)
		}
	})
	t.Run("file with two keys", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "keys.txt", append(append([]byte("# release\n"), pubPEM...), append([]byte("# ci\n"), otherPEM...)...))
		keys, err := LoadTrustedKeys(filepath.Join(dir, "keys.txt"))
		if err != nil || len(keys) != 2 {
			t.Fatalf("got %d keys, %v; want 2", len(keys), err)
		}
	})

	refusals := []struct {
		name  string
		files map[string][]byte
		path  string
		msg   string
	}{
		{"missing", nil, "nope", "no such file"},
		{"empty directory", map[string][]byte{"README": []byte("x")}, "", "no *.pub or *.pem"},
		{"private key in the directory", map[string][]byte{"oops.pem": privPEM}, "", "public keys only"},
		{"file without a key", map[string][]byte{"k.pub": []byte("nothing here\n")}, "k.pub", "no PEM"},
		{"damaged block", map[string][]byte{"k.pub": bytes.Replace(pubPEM, []byte("MCow"), []byte("M!ow"), 1)}, "", "damaged"},
		{"huge file", map[string][]byte{"k.pub": make([]byte, maxKeyFile+1)}, "", "larger than"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tt.files {
				write(t, dir, name, data)
			}
			_, err := LoadTrustedKeys(filepath.Join(dir, tt.path))
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.msg)
			}
		})
	}
}
