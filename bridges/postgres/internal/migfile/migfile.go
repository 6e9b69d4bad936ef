// Package migfile reads migration files named NNNN_description.sql from a file system.
//
// File names come from plugin bundles, so they are untrusted input: the parser is strict, total and fuzzed.
package migfile

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// Ext is the suffix every migration file carries.
const Ext = ".sql"

// maxVersionDigits keeps versions inside int64 and rejects absurd names before parsing them.
const maxVersionDigits = 18

// maxDescription bounds the description so names stay readable in logs and in schema_migrations.
const maxDescription = 100

// ErrBadName reports a .sql file whose name does not follow NNNN_description.sql.
var ErrBadName = errors.New("migration file name must look like 0001_description.sql (digits, '_', then letters, digits, '_' or '-')")

// File is one migration ready to apply.
type File struct {
	// Version is the numeric prefix; files apply in ascending Version order.
	Version int64
	// Name is the file name, recorded so errors and the schema_migrations table can name it.
	Name string
	// SQL is the file's content.
	SQL string
	// Checksum is the lowercase hex SHA-256 of SQL; a changed file is detected by comparing it.
	Checksum string
}

// ParseName splits a migration file name into its version and description.
// It accepts exactly: 1 to 18 ASCII digits with a value above zero, '_', 1 to 100 characters from
// [A-Za-z0-9_-], and ".sql".
func ParseName(name string) (version int64, description string, err error) {
	base, ok := strings.CutSuffix(name, Ext)
	if !ok {
		return 0, "", fmt.Errorf("%q: %w", name, ErrBadName)
	}
	digits, desc, ok := strings.Cut(base, "_")
	if !ok || len(digits) == 0 || len(digits) > maxVersionDigits || len(desc) == 0 || len(desc) > maxDescription {
		return 0, "", fmt.Errorf("%q: %w", name, ErrBadName)
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, "", fmt.Errorf("%q: %w", name, ErrBadName)
		}
	}
	for i := 0; i < len(desc); i++ {
		c := desc[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return 0, "", fmt.Errorf("%q: %w", name, ErrBadName)
		}
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || v <= 0 {
		return 0, "", fmt.Errorf("%q: version must be a positive number: %w", name, ErrBadName)
	}
	return v, desc, nil
}

// Checksum returns the lowercase hex SHA-256 of content.
func Checksum(content []byte) string {
	sum := sha256.Sum256(content)
	return hex.EncodeToString(sum[:])
}

// Load reads every *.sql file at the root of src, sorted by version.
// Other files and directories are ignored so a migrations folder can hold a README or Go embed file.
// A .sql file with a malformed name, or two files with the same version, is an error rather than
// being skipped, because silently skipping a schema change is worse than refusing to start.
func Load(src fs.FS) ([]File, error) {
	entries, err := fs.ReadDir(src, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations directory: %w", err)
	}
	files := make([]File, 0, len(entries))
	seen := make(map[int64]string, len(entries))
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), Ext) {
			continue
		}
		v, _, err := ParseName(e.Name())
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %q and %q share version %d", prev, e.Name(), v)
		}
		seen[v] = e.Name()
		content, err := fs.ReadFile(src, e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", e.Name(), err)
		}
		files = append(files, File{Version: v, Name: e.Name(), SQL: string(content), Checksum: Checksum(content)})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Version < files[j].Version })
	return files, nil
}
