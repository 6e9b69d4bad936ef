package bundle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/keelhq/keel/abi/manifest"
)

// digestsDoc is digests.json: what the signature covers. Name and version are in it,
// not only in manifest.json, so that a signature states "this key vouches for plugin X
// version V with exactly these files", and so that errors about later entries can name
// the plugin before its manifest has been read.
type digestsDoc struct {
	Format  int          `json:"format"`
	Name    string       `json:"name"`
	Version string       `json:"version"`
	Files   []fileDigest `json:"files"`
}

type fileDigest struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// signatureDoc is signature.json.
type signatureDoc struct {
	KeyID     string `json:"key_id"`
	Algorithm string `json:"algorithm"`
	// Signature is encoded by encoding/json as standard padded base64.
	Signature []byte `json:"signature"`
}

const algorithmEd25519 = "ed25519"

var (
	versionRE = regexp.MustCompile(`^[0-9A-Za-z.+-]{1,64}$`)
	hexRE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	keyIDRE   = regexp.MustCompile(`^[0-9a-f]{16}$`)
)

// encodeDigests returns the canonical form of digests.json: compact JSON with fields in
// declaration order and a final newline, which is also what `jq -c` prints. Every
// string in it is restricted to characters JSON needs no escapes for, so the form is
// unique and easy to produce by hand.
func encodeDigests(d digestsDoc) []byte {
	out, err := json.Marshal(d)
	if err != nil {
		// Marshalling a struct of strings and integers cannot fail.
		panic("bundle: encoding digests.json: " + err.Error())
	}
	return append(out, '\n')
}

func encodeSignature(s signatureDoc) []byte {
	out, err := json.Marshal(s)
	if err != nil {
		panic("bundle: encoding signature.json: " + err.Error())
	}
	return append(out, '\n')
}

// decodeStrict decodes one JSON object into v, refusing unknown fields and trailing data.
func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON object")
	}
	return nil
}

// parseDigests decodes and checks digests.json. It must be in canonical form: the
// identity digest is a hash of these bytes, and a single accepted encoding keeps it a
// function of the content alone (no whitespace, key order or duplicate-key games).
func parseDigests(raw []byte) (*digestsDoc, error) {
	var d digestsDoc
	if err := decodeStrict(raw, &d); err != nil {
		return nil, fmt.Errorf("bundle: digests.json: %v: %w", err, ErrMalformed)
	}
	if d.Format != formatVersion {
		return nil, fmt.Errorf("bundle: digests.json: format %d, this reader understands format %d: %w", d.Format, formatVersion, ErrMalformed)
	}
	if !manifest.ValidName(d.Name) || !versionRE.MatchString(d.Version) {
		return nil, fmt.Errorf("bundle: digests.json: bad plugin name %q or version %q: %w", d.Name, d.Version, ErrMalformed)
	}
	where := "bundle " + d.Name + "@" + d.Version
	if !bytes.Equal(raw, encodeDigests(d)) {
		return nil, fmt.Errorf("%s: digests.json is not in canonical form (compact JSON, fields in order, one final newline): %w", where, ErrMalformed)
	}
	if len(d.Files) > 2+maxMigrations {
		return nil, fmt.Errorf("%s: digests.json lists %d files; a bundle holds a manifest, a module and at most %d migrations: %w", where, len(d.Files), maxMigrations, ErrTooLarge)
	}
	var migrations []string
	haveManifest, haveWasm := false, false
	for i, f := range d.Files {
		if i > 0 && f.Path <= d.Files[i-1].Path {
			return nil, fmt.Errorf("%s: digests.json: files not sorted by path or listed twice (%q after %q): %w", where, f.Path, d.Files[i-1].Path, ErrMalformed)
		}
		if !hexRE.MatchString(f.SHA256) {
			return nil, fmt.Errorf("%s: digests.json: %s: sha256 must be 64 lower-case hex digits: %w", where, f.Path, ErrMalformed)
		}
		if f.Size < 0 {
			return nil, fmt.Errorf("%s: digests.json: %s: negative size: %w", where, f.Path, ErrMalformed)
		}
		var limit int64
		switch {
		case f.Path == manifestName:
			haveManifest, limit = true, manifest.MaxSize
		case f.Path == wasmName:
			// The module is bounded by ReadOptions.MaxSize, checked on the total; this
			// cap only keeps the total from overflowing.
			haveWasm, limit = true, 1<<40
		case strings.HasPrefix(f.Path, migrationsDir):
			migrations = append(migrations, f.Path[len(migrationsDir):])
			limit = maxMigrationSize
		default:
			return nil, fmt.Errorf("%s: digests.json lists %q, which has no place in a bundle: %w", where, f.Path, ErrMalformed)
		}
		if f.Size > limit {
			return nil, fmt.Errorf("%s: %s is %d bytes, over the %d byte limit: %w", where, f.Path, f.Size, limit, ErrTooLarge)
		}
	}
	if !haveManifest || !haveWasm {
		return nil, fmt.Errorf("%s: digests.json must list both %s and %s: %w", where, manifestName, wasmName, ErrMalformed)
	}
	if len(migrations) > maxMigrations {
		return nil, fmt.Errorf("%s: %d migrations, more than %d: %w", where, len(migrations), maxMigrations, ErrTooLarge)
	}
	if err := checkMigrationNames(migrations, where); err != nil {
		return nil, err
	}
	return &d, nil
}

// parseSignature decodes signature.json. Whether the signature verifies, and whether
// its key is trusted, is the caller's business.
func parseSignature(raw []byte, where string) (*signatureDoc, error) {
	var s signatureDoc
	if err := decodeStrict(raw, &s); err != nil {
		return nil, fmt.Errorf("%s: signature.json: %v: %w", where, err, ErrMalformed)
	}
	if !keyIDRE.MatchString(s.KeyID) {
		return nil, fmt.Errorf("%s: signature.json: key_id %q: want 16 lower-case hex digits: %w", where, s.KeyID, ErrMalformed)
	}
	return &s, nil
}
