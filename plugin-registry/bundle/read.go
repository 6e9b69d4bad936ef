package bundle

import (
	"archive/tar"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// ReadOptions says what Read accepts. The zero value accepts signed bundles only, and
// trusts no key, so it refuses everything: a host must say whom it trusts.
type ReadOptions struct {
	// MaxSize bounds the whole input in bytes, archive overhead included. Zero or
	// negative means DefaultMaxSize.
	MaxSize int64
	// TrustedKeys are the public keys whose signatures are accepted.
	TrustedKeys []ed25519.PublicKey
	// AllowUnsigned accepts bundles with no signature, or with a signature whose key is
	// not trusted (which cannot be checked without the key), for development. A bad
	// signature by a trusted key is refused even then: it means forgery or tampering.
	AllowUnsigned bool
	// MaxABI is the newest ABI level accepted. Zero means manifest.CurrentABI; values
	// above manifest.CurrentABI are lowered to it, since the manifest package cannot
	// validate a level it does not know.
	MaxABI int
}

// Read reads and verifies a bundle from r, refusing anything that is not a well-formed,
// untampered, (unless allowed otherwise) trusted-signed bundle of a valid plugin.
//
// Read is streaming-safe: it reads r once, front to back, and never more than
// opts.MaxSize bytes plus one. digests.json and signature.json come first in a bundle, so
// an unsigned or untrusted bundle is refused before its content is read, and each
// content entry is checked against its signed size before it is read. Memory use is
// bounded by the bytes actually received, never by sizes the input claims.
//
// Trailing bytes after the archive's end-of-archive marker must be zeros, as padded by
// tar(1); anything else is refused, so that nothing can ride along unverified.
func Read(r io.Reader, opts ReadOptions) (*Bundle, error) {
	maxSize := opts.MaxSize
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	rd := &reader{
		in:    &capReader{r: r, left: maxSize},
		max:   maxSize,
		where: "bundle",
	}
	rd.tr = tar.NewReader(rd.in)
	return rd.read(opts)
}

type reader struct {
	in       *capReader
	tr       *tar.Reader
	max      int64
	where    string // "bundle" or "bundle name@version", the prefix of every error
	entryEnd int64  // input offset just after the last entry's data
}

// consumed is how many bytes have been read from the input.
func (rd *reader) consumed() int64 { return rd.max - rd.in.left }

func (rd *reader) read(opts ReadOptions) (*Bundle, error) {
	// digests.json, first: it says what else to expect.
	hdr, err := rd.next()
	if err == io.EOF {
		return nil, fmt.Errorf("bundle: empty archive: %w", ErrMalformed)
	}
	if err != nil {
		return nil, err
	}
	if hdr.Name != digestsName || hdr.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("bundle: first entry is %q, want %s: not a Keel bundle: %w", hdr.Name, digestsName, ErrMalformed)
	}
	digestsRaw, err := rd.readEntry(hdr, maxDigestsSize)
	if err != nil {
		return nil, err
	}
	d, err := parseDigests(digestsRaw)
	if err != nil {
		return nil, err
	}
	rd.entryEnd = rd.consumed()
	rd.where = "bundle " + d.Name + "@" + d.Version
	var total int64
	for _, f := range d.Files {
		total += f.Size
	}
	if total > rd.max {
		return nil, fmt.Errorf("%s: content is %d bytes, over the %d byte limit: %w", rd.where, total, rd.max, ErrTooLarge)
	}

	// signature.json, second if present: trust is settled before content is read.
	hdr, err = rd.next()
	var sigRaw []byte
	var sig *signatureDoc
	if err == nil && hdr.Name == signatureName && hdr.Typeflag == tar.TypeReg {
		if sigRaw, err = rd.readEntry(hdr, maxSignatureSize); err != nil {
			return nil, err
		}
		if sig, err = parseSignature(sigRaw, rd.where); err != nil {
			return nil, err
		}
		rd.entryEnd = rd.consumed()
		hdr, err = rd.next()
	}
	if err != nil && err != io.EOF {
		return nil, err
	}
	signer, trustErr := verify(digestsRaw, sig, opts, rd.where)
	if trustErr != nil {
		return nil, trustErr
	}

	// Content, in any order, each exactly as digests.json lists it.
	want := make(map[string]fileDigest, len(d.Files))
	for _, f := range d.Files {
		want[f.Path] = f
	}
	got := make(map[string][]byte, len(d.Files))
	sawDir := false
	for ; err == nil; hdr, err = rd.next() {
		if hdr.Typeflag == tar.TypeDir {
			if sawDir {
				return nil, fmt.Errorf("%s: entry %q: directory listed twice: %w", rd.where, hdr.Name, ErrMalformed)
			}
			sawDir = true
			rd.entryEnd = rd.consumed()
			continue
		}
		name := hdr.Name
		if _, dup := got[name]; dup || name == digestsName || name == signatureName {
			return nil, fmt.Errorf("%s: entry %q: duplicated or out of place: %w", rd.where, name, ErrMalformed)
		}
		f, ok := want[name]
		if !ok {
			if plausiblePath(name) {
				return nil, fmt.Errorf("%s: entry %q is not listed in digests.json (added after signing?): %w", rd.where, name, ErrTampered)
			}
			return nil, fmt.Errorf("%s: unexpected entry %q: %w", rd.where, name, ErrMalformed)
		}
		if hdr.Size != f.Size {
			return nil, fmt.Errorf("%s: %s is %d bytes, digests.json says %d: %w", rd.where, name, hdr.Size, f.Size, ErrTampered)
		}
		data, rerr := rd.readEntry(hdr, f.Size)
		if rerr != nil {
			return nil, rerr
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != f.SHA256 {
			return nil, fmt.Errorf("%s: %s has sha256 %x, digests.json says %s: %w", rd.where, name, sum, f.SHA256, ErrTampered)
		}
		got[name] = data
		rd.entryEnd = rd.consumed()
	}
	if err != io.EOF {
		return nil, err
	}
	// tar.Reader also reports a clean end of input as io.EOF; only two zero blocks
	// after the last entry tell a complete archive from one cut at an entry boundary.
	if padded := (rd.entryEnd + blockSize - 1) / blockSize * blockSize; rd.consumed() < padded+2*blockSize {
		return nil, fmt.Errorf("%s: no end-of-archive marker: truncated: %w", rd.where, ErrMalformed)
	}
	if err := rd.trailer(); err != nil {
		return nil, err
	}
	for _, f := range d.Files {
		if _, ok := got[f.Path]; !ok {
			return nil, fmt.Errorf("%s: %s is listed in digests.json but missing (removed after signing?): %w", rd.where, f.Path, ErrTampered)
		}
	}

	// Content is as signed; now check that it is a valid plugin.
	man, err := parseManifest(got[manifestName], opts.MaxABI, rd.where)
	if err != nil {
		return nil, err
	}
	if man.Name != d.Name || man.Version != d.Version {
		return nil, fmt.Errorf("%s: manifest.json describes %s@%s: %w", rd.where, man.Name, man.Version, ErrManifest)
	}
	if err := checkWasm(got[wasmName], rd.where); err != nil {
		return nil, err
	}
	b := &Bundle{
		man:          man,
		manifestJSON: got[manifestName],
		wasm:         got[wasmName],
		digests:      digestsRaw,
		sigJSON:      sigRaw,
		signer:       signer,
	}
	for _, f := range d.Files {
		name, ok := strings.CutPrefix(f.Path, migrationsDir)
		if !ok {
			continue
		}
		sql := got[f.Path]
		if !utf8.Valid(sql) {
			return nil, fmt.Errorf("%s: migration %s is not valid UTF-8: %w", rd.where, name, ErrMalformed)
		}
		b.migrations = append(b.migrations, Migration{Name: name, SQL: string(sql)})
	}
	sum := sha256.Sum256(digestsRaw)
	b.digest = hex.EncodeToString(sum[:])
	return b, nil
}

// verify settles trust and returns the key id of a verified signature, or "" for a
// bundle accepted as unsigned.
func verify(digests []byte, sig *signatureDoc, opts ReadOptions, where string) (string, error) {
	if sig == nil {
		if opts.AllowUnsigned {
			return "", nil
		}
		return "", fmt.Errorf("%s: no signature.json; sign the bundle with a trusted key, or allow unsigned bundles in development: %w", where, ErrUnsigned)
	}
	if sig.Algorithm != algorithmEd25519 {
		if opts.AllowUnsigned {
			return "", nil
		}
		return "", fmt.Errorf("%s: signature algorithm %q is not supported (want %s): %w", where, sig.Algorithm, algorithmEd25519, ErrUntrusted)
	}
	known := false
	for _, k := range opts.TrustedKeys {
		if len(k) != ed25519.PublicKeySize || KeyID(k) != sig.KeyID {
			continue
		}
		known = true
		if len(sig.Signature) == ed25519.SignatureSize && ed25519.Verify(k, digests, sig.Signature) {
			return sig.KeyID, nil
		}
	}
	if known {
		return "", fmt.Errorf("%s: signature by trusted key %s does not verify: forged, or digests.json changed after signing: %w", where, sig.KeyID, ErrUntrusted)
	}
	if opts.AllowUnsigned {
		return "", nil
	}
	return "", fmt.Errorf("%s: signed by key %s, which is not among the %d trusted keys: %w", where, sig.KeyID, len(opts.TrustedKeys), ErrUntrusted)
}

// next returns the next entry's header after checking that it is a kind of entry a
// bundle may hold: regular files with clean relative names, and the migrations/
// directory. io.EOF marks the end of the archive.
func (rd *reader) next() (*tar.Header, error) {
	hdr, err := rd.tr.Next()
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, rd.classify(err, "reading archive")
	}
	name := hdr.Name
	switch hdr.Typeflag {
	case tar.TypeReg:
	case tar.TypeDir:
		if name != "migrations/" && name != "migrations" {
			return nil, fmt.Errorf("%s: unexpected directory %q: %w", rd.where, name, ErrMalformed)
		}
		if hdr.Size != 0 {
			return nil, fmt.Errorf("%s: directory %q has content: %w", rd.where, name, ErrMalformed)
		}
	case tar.TypeSymlink, tar.TypeLink:
		return nil, fmt.Errorf("%s: entry %q is a link (to %q); bundles hold regular files only: %w", rd.where, name, hdr.Linkname, ErrMalformed)
	default:
		return nil, fmt.Errorf("%s: entry %q has type %q; bundles hold regular files only: %w", rd.where, name, hdr.Typeflag, ErrMalformed)
	}
	if traverses(name) {
		return nil, fmt.Errorf("%s: entry %q: path traversal: %w", rd.where, name, ErrMalformed)
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return nil, fmt.Errorf("%s: entry %q is a sparse file: %w", rd.where, name, ErrMalformed)
		}
	}
	return hdr, nil
}

// readEntry reads the current entry, which must be at most limit bytes and fit in what
// is left of the size budget. Only the first MiB is allocated up front; the rest once
// that much has actually arrived, so a small input claiming a large entry costs little,
// while a real module still lands in a single buffer of its exact size.
func (rd *reader) readEntry(hdr *tar.Header, limit int64) ([]byte, error) {
	if hdr.Size > limit {
		return nil, fmt.Errorf("%s: %s is %d bytes, over the %d byte limit: %w", rd.where, hdr.Name, hdr.Size, limit, ErrTooLarge)
	}
	if hdr.Size > rd.in.left {
		return nil, fmt.Errorf("%s: %s is %d bytes, more than is left of the %d byte limit: %w", rd.where, hdr.Name, hdr.Size, rd.max, ErrTooLarge)
	}
	buf := make([]byte, min(hdr.Size, 1<<20))
	if _, err := io.ReadFull(rd.tr, buf); err != nil {
		return nil, rd.classify(err, "reading "+hdr.Name)
	}
	if int64(len(buf)) < hdr.Size {
		full := make([]byte, hdr.Size)
		copy(full, buf)
		if _, err := io.ReadFull(rd.tr, full[len(buf):]); err != nil {
			return nil, rd.classify(err, "reading "+hdr.Name)
		}
		buf = full
	}
	return buf, nil
}

// trailer checks that nothing but zero padding follows the end-of-archive marker.
func (rd *reader) trailer() error {
	var chunk [4096]byte
	for {
		n, err := rd.in.Read(chunk[:])
		for _, c := range chunk[:n] {
			if c != 0 {
				return fmt.Errorf("%s: data after the end of the archive: %w", rd.where, ErrMalformed)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return rd.classify(err, "reading after the archive")
		}
	}
}

// classify turns an error from the archive reader into one of the package's errors.
func (rd *reader) classify(err error, doing string) error {
	if errors.Is(err, errOverLimit) {
		return fmt.Errorf("%s: larger than the %d byte limit: %w", rd.where, rd.max, ErrTooLarge)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %s: truncated: %w", rd.where, doing, ErrMalformed)
	}
	if errors.Is(err, tar.ErrHeader) || errors.Is(err, tar.ErrFieldTooLong) || errors.Is(err, tar.ErrInsecurePath) {
		return fmt.Errorf("%s: %s: %v: not a Keel bundle: %w", rd.where, doing, err, ErrMalformed)
	}
	// Anything else is the underlying reader's own failure (a network error, say),
	// which says nothing about the bundle: pass it on, wrapped.
	return fmt.Errorf("%s: %s: %w", rd.where, doing, err)
}

// traverses reports whether an entry name could escape the directory it is extracted
// into, were anyone to extract it.
func traverses(name string) bool {
	if strings.HasPrefix(name, "/") || strings.Contains(name, `\`) {
		return true
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == ".." {
			return true
		}
	}
	return false
}

// plausiblePath reports whether name is a path a bundle can hold, so that an entry
// missing from digests.json reads as tampering rather than as a malformed archive.
func plausiblePath(name string) bool {
	if name == manifestName || name == wasmName {
		return true
	}
	m, ok := strings.CutPrefix(name, migrationsDir)
	return ok && migrationRE.MatchString(m)
}

// errOverLimit is what capReader returns once the input exceeds its limit.
var errOverLimit = errors.New("input over the size limit")

// capReader passes through at most left bytes and fails with errOverLimit if the
// underlying reader has more, so that oversized input is detected after reading at
// most one byte past the limit.
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.left <= 0 {
		var one [1]byte
		n, err := io.ReadAtLeast(c.r, one[:], 1)
		if n > 0 {
			return 0, errOverLimit
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}
