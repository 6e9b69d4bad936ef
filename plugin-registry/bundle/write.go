package bundle

import (
	"archive/tar"
	"fmt"
	"io"
	"time"
)

// epoch is the modification time of every entry Keel writes. Fixing it (and the
// owner, group and mode) makes equal content produce byte-identical bundles.
var epoch = time.Unix(0, 0)

// WriteTo writes the bundle as an uncompressed ustar archive: digests.json, then
// signature.json if the bundle is signed, then manifest.json, migrations/*.sql and
// plugin.wasm in path order. Equal bundles produce identical bytes. It returns the
// number of bytes written.
func (b *Bundle) WriteTo(w io.Writer) (int64, error) {
	entries := make([]file, 0, 4+len(b.migrations))
	entries = append(entries, file{digestsName, b.digests})
	if b.sigJSON != nil {
		entries = append(entries, file{signatureName, b.sigJSON})
	}
	entries = append(entries, b.files()...)
	cw := &countingWriter{w: w}
	if err := writeArchive(cw, entries); err != nil {
		return cw.n, fmt.Errorf("bundle %s@%s: write: %w", b.man.Name, b.man.Version, err)
	}
	return cw.n, nil
}

// writeArchive writes regular files with fixed metadata, then the end-of-archive marker.
func writeArchive(w io.Writer, entries []file) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     e.path,
			Mode:     0o644,
			Size:     int64(len(e.data)),
			ModTime:  epoch,
			Format:   tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", e.path, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return fmt.Errorf("%s: %w", e.path, err)
		}
	}
	return tw.Close()
}

// archiveSize is the exact number of bytes WriteTo produces.
func (b *Bundle) archiveSize() int64 {
	entry := func(n int) int64 { return blockSize + (int64(n)+blockSize-1)/blockSize*blockSize }
	size := int64(2*blockSize) + entry(len(b.digests)) // end-of-archive marker, digests.json
	if b.sigJSON != nil {
		size += entry(len(b.sigJSON))
	}
	size += entry(len(b.manifestJSON)) + entry(len(b.wasm))
	for _, m := range b.migrations {
		size += entry(len(m.SQL))
	}
	return size
}

const blockSize = 512

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
