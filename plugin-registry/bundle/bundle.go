// Package bundle reads, writes, signs and verifies Keel plugin bundles.
//
// A bundle is one file that carries one plugin version: its WebAssembly module, its
// manifest.json, its SQL migrations and a detached ed25519 signature. The file is an
// uncompressed POSIX ustar archive whose first entry, digests.json, lists the size and
// SHA-256 of every other file; the signature covers the exact bytes of digests.json, so
// verifying it once vouches for the whole content, and sha256(digests.json) is the
// bundle's identity. plugin-registry/README.md documents the format byte for byte.
//
// Bundles come from uploads and from disk, so Read treats them as hostile: every read is
// bounded, the signature is checked before any content is read, and each refusal has its
// own error (ErrTooLarge, ErrMalformed, ErrTampered, ErrUnsigned, ErrUntrusted,
// ErrNotWasm, ErrManifest, ErrABITooNew) so callers can tell an attack from a typo.
package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/keelhq/keel/abi/manifest"
)

// Errors returned by Build, Read and FromDir. Each refusal wraps exactly one of them, so
// callers branch with errors.Is and show the wrapped message, which names the plugin and
// the file at fault when they are known.
var (
	// ErrTooLarge reports a bundle, or a file inside it, over its size or count limit.
	ErrTooLarge = errors.New("bundle too large")
	// ErrMalformed reports input that is not a well-formed bundle: not a tar archive,
	// truncated, entries out of place, duplicated or unexpected, links, path traversal,
	// or digests.json/signature.json that do not follow the format.
	ErrMalformed = errors.New("malformed bundle")
	// ErrTampered reports content that does not match digests.json: a file changed,
	// added or removed after the digests were computed (and signed).
	ErrTampered = errors.New("bundle content does not match its digests (tampered or corrupt)")
	// ErrUnsigned reports a bundle without a signature where one is required.
	ErrUnsigned = errors.New("bundle is not signed")
	// ErrUntrusted reports a signature that does not verify, or that was made by a key
	// the reader does not trust.
	ErrUntrusted = errors.New("bundle signature is invalid or not from a trusted key")
	// ErrNotWasm reports a module that is not a WebAssembly binary (version 1).
	ErrNotWasm = errors.New("module is not a WebAssembly binary")
	// ErrManifest reports an invalid manifest.json; the manifest package's error, which
	// names the field, is wrapped too.
	ErrManifest = errors.New("invalid manifest")
	// ErrABITooNew reports a plugin that needs a newer ABI level than the reader allows.
	ErrABITooNew = errors.New("plugin needs a newer ABI level than this host supports")
)

// Ext is the file name extension bundles carry by convention, as in example-1.0.0.keel.
const Ext = ".keel"

// DefaultMaxSize is the largest bundle Read accepts unless ReadOptions.MaxSize says
// otherwise, and the largest bundle Build produces, so that what Build makes every host
// with default settings can read.
const DefaultMaxSize = 64 << 20

// Limits on migrations. A plugin with more than a thousand migrations, or a single
// migration over a mebibyte, is far more likely an attack or a mistake than a schema.
const (
	maxMigrations    = 1000
	maxMigrationSize = 1 << 20
	// maxMigrationName keeps "migrations/" + name inside the 100-byte ustar name field.
	maxMigrationName = 100 - len(migrationsDir)
)

// Bounds on the two metadata files, far above what a valid one needs.
const (
	maxDigestsSize   = 1 << 20
	maxSignatureSize = 4 << 10
)

// formatVersion is the bundle format this package writes and reads; a reader refuses
// other versions rather than guess at their meaning.
const formatVersion = 1

// Entry names inside the archive.
const (
	digestsName   = "digests.json"
	signatureName = "signature.json"
	manifestName  = "manifest.json"
	wasmName      = "plugin.wasm"
	migrationsDir = "migrations/"
)

var migrationRE = regexp.MustCompile(`^[0-9]{4}_[a-z0-9_]+\.sql$`)

// wasmHeader is the WebAssembly magic number followed by binary format version 1.
var wasmHeader = []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}

// Migration is one SQL migration carried by a bundle.
type Migration struct {
	// Name is the file name, NNNN_description.sql, without the migrations/ directory.
	Name string
	// SQL is the file's content, UTF-8.
	SQL string
}

// Bundle is one plugin version, validated, with its digests computed and possibly a
// signature. Bundles come from Build, FromDir or Read; the zero value is not usable. A
// Bundle is safe for concurrent use except that Sign must not run alongside other methods.
type Bundle struct {
	man          *manifest.Manifest
	manifestJSON []byte
	wasm         []byte
	migrations   []Migration // sorted by name
	digests      []byte      // exact bytes of digests.json
	digest       string      // hex sha256 of digests
	sigJSON      []byte      // exact bytes of signature.json, nil when unsigned
	signer       string      // key id of a verified signature, "" otherwise
}

// Manifest returns a copy of the plugin's validated manifest, with defaults applied.
func (b *Bundle) Manifest() *manifest.Manifest {
	m := *b.man
	m.Routes = slices.Clone(b.man.Routes)
	return &m
}

// Wasm returns the WebAssembly module. The slice is shared, not copied, because modules
// run to tens of megabytes: callers must not modify it.
func (b *Bundle) Wasm() []byte { return b.wasm }

// Migrations returns the SQL migrations in name order, which is the order they apply in.
func (b *Bundle) Migrations() []Migration { return slices.Clone(b.migrations) }

// Digest returns the bundle's identity: the lowercase hex SHA-256 of digests.json. It
// depends only on the plugin's name, version and file contents, never on the signature,
// the archive's metadata or the tool that wrote it, so equal digests mean equal content.
func (b *Bundle) Digest() string { return b.digest }

// Signer returns the key id (see KeyID) of the signature that Sign made or Read
// verified against a trusted key, or "" when there is none.
func (b *Bundle) Signer() string { return b.signer }

// Signed reports whether the bundle carries a signature that Sign made or that Read
// verified against a trusted key. A signature by a key the reader does not trust, which
// Read lets through only with AllowUnsigned, does not count.
func (b *Bundle) Signed() bool { return b.signer != "" }

// String names the bundle for logs: name@version and a short digest.
func (b *Bundle) String() string {
	return fmt.Sprintf("%s@%s (%s)", b.man.Name, b.man.Version, b.digest[:12])
}

// Build validates a plugin version and assembles an unsigned bundle from it:
// manifestJSON is the content of manifest.json, wasm the module, and migrations maps
// file names (NNNN_description.sql, without a directory) to their SQL. The inputs are
// copied, so the caller may reuse them.
//
// Build refuses what Read would refuse, with the same errors: an invalid manifest
// (ErrManifest), a manifest needing a newer ABI than manifest.CurrentABI (ErrABITooNew),
// a module that is not wasm (ErrNotWasm), a bad migration name or non-UTF-8 SQL
// (ErrMalformed), and anything over the size limits (ErrTooLarge).
func Build(manifestJSON []byte, wasm []byte, migrations map[string][]byte) (*Bundle, error) {
	man, err := parseManifest(manifestJSON, manifest.CurrentABI, "bundle")
	if err != nil {
		return nil, err
	}
	where := "bundle " + man.Name + "@" + man.Version
	if len(wasm) > DefaultMaxSize {
		return nil, fmt.Errorf("%s: plugin.wasm is %d bytes, over the %d byte limit: %w", where, len(wasm), DefaultMaxSize, ErrTooLarge)
	}
	if err := checkWasm(wasm, where); err != nil {
		return nil, err
	}
	if len(migrations) > maxMigrations {
		return nil, fmt.Errorf("%s: %d migrations, more than %d: %w", where, len(migrations), maxMigrations, ErrTooLarge)
	}
	names := make([]string, 0, len(migrations))
	for name := range migrations {
		names = append(names, name)
	}
	sort.Strings(names)
	if err := checkMigrationNames(names, where); err != nil {
		return nil, err
	}
	migs := make([]Migration, 0, len(names))
	for _, name := range names {
		sql := migrations[name]
		if len(sql) > maxMigrationSize {
			return nil, fmt.Errorf("%s: migration %s is %d bytes, over the %d byte limit: %w", where, name, len(sql), maxMigrationSize, ErrTooLarge)
		}
		if !utf8.Valid(sql) {
			return nil, fmt.Errorf("%s: migration %s is not valid UTF-8: %w", where, name, ErrMalformed)
		}
		migs = append(migs, Migration{Name: name, SQL: string(sql)})
	}
	b := &Bundle{
		man:          man,
		manifestJSON: bytes.Clone(manifestJSON),
		wasm:         bytes.Clone(wasm),
		migrations:   migs,
	}
	b.digests = encodeDigests(b.digestsDoc())
	sum := sha256.Sum256(b.digests)
	b.digest = hex.EncodeToString(sum[:])
	// Count the signature.json (under one block) the bundle will most likely get, so a
	// bundle that fits now still fits once signed.
	if size := b.archiveSize() + 2*blockSize; size > DefaultMaxSize {
		return nil, fmt.Errorf("%s: the signed bundle would be %d bytes, over the %d byte limit: %w", where, size, DefaultMaxSize, ErrTooLarge)
	}
	return b, nil
}

// Sign signs the bundle's digests.json with priv, replacing any signature it had. The
// digest does not change: a signature vouches for content, it is not part of it.
func (b *Bundle) Sign(priv ed25519.PrivateKey) error {
	if len(priv) != ed25519.PrivateKeySize {
		return fmt.Errorf("bundle %s@%s: sign: private key is %d bytes, want %d", b.man.Name, b.man.Version, len(priv), ed25519.PrivateKeySize)
	}
	pub := priv.Public().(ed25519.PublicKey)
	doc := signatureDoc{
		KeyID:     KeyID(pub),
		Algorithm: algorithmEd25519,
		Signature: ed25519.Sign(priv, b.digests),
	}
	b.sigJSON = encodeSignature(doc)
	b.signer = doc.KeyID
	return nil
}

// files lists the content files in archive (and digests.json) order: sorted by path.
func (b *Bundle) files() []file {
	out := make([]file, 0, 2+len(b.migrations))
	out = append(out, file{manifestName, b.manifestJSON})
	for _, m := range b.migrations {
		out = append(out, file{migrationsDir + m.Name, []byte(m.SQL)})
	}
	out = append(out, file{wasmName, b.wasm})
	return out
}

type file struct {
	path string
	data []byte
}

func (b *Bundle) digestsDoc() digestsDoc {
	d := digestsDoc{Format: formatVersion, Name: b.man.Name, Version: b.man.Version}
	for _, f := range b.files() {
		sum := sha256.Sum256(f.data)
		d.Files = append(d.Files, fileDigest{Path: f.path, Size: int64(len(f.data)), SHA256: hex.EncodeToString(sum[:])})
	}
	return d
}

// parseManifest validates manifest.json, reporting a too-new ABI level as ErrABITooNew
// rather than as a generic manifest error, because "upgrade the host" is a different
// remedy from "fix the manifest". The manifest package itself refuses levels above
// manifest.CurrentABI, so maxABI is capped there.
func parseManifest(raw []byte, maxABI int, where string) (*manifest.Manifest, error) {
	if maxABI <= 0 || maxABI > manifest.CurrentABI {
		maxABI = manifest.CurrentABI
	}
	var probe struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		ABI     int    `json:"abi"`
	}
	// A probe that fails to decode is left to manifest.Parse, which says why.
	if json.Unmarshal(raw, &probe) == nil && probe.ABI > maxABI {
		if where == "bundle" && manifest.ValidName(probe.Name) && versionRE.MatchString(probe.Version) {
			where = "bundle " + probe.Name + "@" + probe.Version
		}
		return nil, fmt.Errorf("%s: manifest.json needs ABI level %d, this host allows up to %d: %w", where, probe.ABI, maxABI, ErrABITooNew)
	}
	man, err := manifest.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: manifest.json: %w: %w", where, ErrManifest, err)
	}
	return man, nil
}

func checkWasm(wasm []byte, where string) error {
	if !bytes.HasPrefix(wasm, wasmHeader) {
		n := min(len(wasm), len(wasmHeader))
		return fmt.Errorf("%s: plugin.wasm starts with %q, want %q (\\0asm, version 1): %w", where, wasm[:n], wasmHeader, ErrNotWasm)
	}
	return nil
}

// checkMigrationNames validates sorted migration file names. Beyond the name pattern it
// refuses version 0000 and two files with the same number, which the migration runner
// (bridges/postgres) refuses too; better to learn that at build or upload than at
// activation.
func checkMigrationNames(sorted []string, where string) error {
	prev := ""
	for _, name := range sorted {
		if !migrationRE.MatchString(name) || len(name) > maxMigrationName {
			return fmt.Errorf("%s: migration %q: want NNNN_description.sql with a lower-case description of a-z, 0-9 and _, at most %d bytes: %w", where, name, maxMigrationName, ErrMalformed)
		}
		if n, _ := strconv.Atoi(name[:4]); n == 0 {
			return fmt.Errorf("%s: migration %q: numbering starts at 0001: %w", where, name, ErrMalformed)
		}
		if prev != "" && prev[:4] == name[:4] {
			return fmt.Errorf("%s: migrations %q and %q have the same number: %w", where, prev, name, ErrMalformed)
		}
		prev = name
	}
	return nil
}
