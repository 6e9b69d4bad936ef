package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Keys are stored as PEM: private keys as PKCS#8 ("PRIVATE KEY"), public keys as PKIX
// ("PUBLIC KEY"). That is what `openssl genpkey -algorithm ed25519` and
// `openssl pkey -pubout` produce, so keys can be made, inspected and used to sign without
// Keel's own tools.
const (
	pemPrivate = "PRIVATE KEY"
	pemPublic  = "PUBLIC KEY"
)

// maxKeyFile bounds a key file; one PEM key is under 200 bytes.
const maxKeyFile = 64 << 10

// GenerateKey returns a new ed25519 signing key pair from crypto/rand.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("bundle: generate key: %w", err)
	}
	return pub, priv, nil
}

// KeyID names a public key: the first 16 hex digits of the SHA-256 of its 32 raw bytes.
// signature.json carries it so a reader can pick the key to verify with, and logs carry
// it so people can tell keys apart without printing them.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// EncodePrivateKey returns priv as a PEM "PRIVATE KEY" block (PKCS#8). Whoever stores
// it should make the file readable by its owner only.
func EncodePrivateKey(priv ed25519.PrivateKey) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("bundle: encode private key: %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("bundle: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: der}), nil
}

// DecodePrivateKey parses a PEM "PRIVATE KEY" block (PKCS#8) holding an ed25519 key, as
// written by EncodePrivateKey or openssl. Encrypted keys are not supported.
func DecodePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	blocks, err := pemBlocks(data)
	if err != nil {
		return nil, fmt.Errorf("bundle: decode private key: %w", err)
	}
	if len(blocks) != 1 || blocks[0].Type != pemPrivate {
		return nil, fmt.Errorf("bundle: decode private key: want exactly one PEM %q block, found %s", pemPrivate, describe(blocks))
	}
	key, err := x509.ParsePKCS8PrivateKey(blocks[0].Bytes)
	if err != nil {
		return nil, fmt.Errorf("bundle: decode private key: %w", err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("bundle: decode private key: a %T, want ed25519", key)
	}
	return priv, nil
}

// EncodePublicKey returns pub as a PEM "PUBLIC KEY" block (PKIX), the form trusted-key
// files hold.
func EncodePublicKey(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("bundle: encode public key: %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("bundle: encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: der}), nil
}

// DecodePublicKey parses one PEM "PUBLIC KEY" block (PKIX) holding an ed25519 key.
func DecodePublicKey(data []byte) (ed25519.PublicKey, error) {
	blocks, err := pemBlocks(data)
	if err != nil {
		return nil, fmt.Errorf("bundle: decode public key: %w", err)
	}
	if len(blocks) != 1 {
		return nil, fmt.Errorf("bundle: decode public key: want exactly one PEM %q block, found %s", pemPublic, describe(blocks))
	}
	pub, err := parsePublic(blocks[0])
	if err != nil {
		return nil, fmt.Errorf("bundle: decode public key: %w", err)
	}
	return pub, nil
}

// LoadTrustedKeys reads the public keys a host trusts. path is either a file holding
// one or more PEM "PUBLIC KEY" blocks, or a directory whose *.pub and *.pem files each
// do; other files, subdirectories and names starting with "." (such as the ..data links
// of a Kubernetes secret volume) are skipped, and symbolic links are followed. A private
// key where a public one belongs, an unparseable block, or finding no key at all is an
// error, because each means the host would not trust what its operator intended.
// Duplicate keys are returned once.
func LoadTrustedKeys(path string) ([]ed25519.PublicKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("bundle: trusted keys: %w", err)
	}
	files := []string{path}
	if st.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("bundle: trusted keys: %w", err)
		}
		files = files[:0]
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, ".") || (!strings.HasSuffix(name, ".pub") && !strings.HasSuffix(name, ".pem")) {
				continue
			}
			p := filepath.Join(path, name)
			fst, err := os.Stat(p)
			if err != nil {
				return nil, fmt.Errorf("bundle: trusted keys: %w", err)
			}
			if fst.Mode().IsRegular() {
				files = append(files, p)
			}
		}
		sort.Strings(files)
	}
	var keys []ed25519.PublicKey
	seen := map[string]bool{}
	for _, p := range files {
		data, err := readKeyFile(p)
		if err != nil {
			return nil, err
		}
		blocks, err := pemBlocks(data)
		if err != nil {
			return nil, fmt.Errorf("bundle: trusted key file %s: %w", p, err)
		}
		if len(blocks) == 0 {
			return nil, fmt.Errorf("bundle: trusted key file %s: no PEM %q block", p, pemPublic)
		}
		for _, b := range blocks {
			pub, err := parsePublic(b)
			if err != nil {
				return nil, fmt.Errorf("bundle: trusted key file %s: %w", p, err)
			}
			if id := KeyID(pub); !seen[id] {
				seen[id] = true
				keys = append(keys, pub)
			}
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("bundle: trusted keys: no *.pub or *.pem key files in %s", path)
	}
	return keys, nil
}

func readKeyFile(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("bundle: trusted keys: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("bundle: trusted key file %s: %w", p, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("bundle: trusted key file %s: larger than %d bytes, not a key file", p, maxKeyFile)
	}
	return data, nil
}

func parsePublic(b *pem.Block) (ed25519.PublicKey, error) {
	if b.Type == pemPrivate || strings.Contains(b.Type, "PRIVATE") {
		return nil, fmt.Errorf("found a %q block: this must hold public keys only (derive one with `openssl pkey -pubout`)", b.Type)
	}
	if b.Type != pemPublic {
		return nil, fmt.Errorf("found a PEM %q block, want %q", b.Type, pemPublic)
	}
	key, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	pub, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T public key, want ed25519", key)
	}
	return pub, nil
}

// pemBlocks decodes every PEM block in data. Text around blocks is allowed (a comment
// saying whose key it is), but a block that fails to decode is an error rather than being
// skipped as text, as pem.Decode alone would do.
func pemBlocks(data []byte) ([]*pem.Block, error) {
	var blocks []*pem.Block
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if n := bytes.Count(data, []byte("-----BEGIN ")); n != len(blocks) {
		return nil, errors.New("a PEM block is damaged and cannot be decoded")
	}
	return blocks, nil
}

func describe(blocks []*pem.Block) string {
	if len(blocks) == 0 {
		return "none"
	}
	types := make([]string, len(blocks))
	for i, b := range blocks {
		types[i] = fmt.Sprintf("%q", b.Type)
	}
	return strings.Join(types, ", ")
}
