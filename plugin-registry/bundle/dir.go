package bundle

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/keelhq/keel/abi/manifest"
)

// FromDir builds an unsigned bundle from a plugin build directory: dir/manifest.json,
// dir/plugin.wasm and, if present, the NNNN_description.sql files of dir/migrations.
// As in the migration runner, other files in migrations/ (a README, an embed.go) and
// subdirectories are ignored, but a .sql file with a bad name is an error rather than
// being left out of the bundle. Reads stay inside dir, even through symbolic links.
func FromDir(dir string) (*Bundle, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle from %s: %w", dir, err)
	}
	defer root.Close()
	man, err := readBounded(root, manifestName, manifest.MaxSize)
	if err != nil {
		return nil, fmt.Errorf("bundle from %s: %w", dir, err)
	}
	wasm, err := readBounded(root, wasmName, DefaultMaxSize)
	if err != nil {
		return nil, fmt.Errorf("bundle from %s: %w", dir, err)
	}
	migrations := map[string][]byte{}
	entries, err := fs.ReadDir(root.FS(), strings.TrimSuffix(migrationsDir, "/"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("bundle from %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		if len(migrations) == maxMigrations {
			return nil, fmt.Errorf("bundle from %s: more than %d migrations: %w", dir, maxMigrations, ErrTooLarge)
		}
		sql, err := readBounded(root, migrationsDir+e.Name(), maxMigrationSize)
		if err != nil {
			return nil, fmt.Errorf("bundle from %s: %w", dir, err)
		}
		migrations[e.Name()] = sql
	}
	b, err := Build(man, wasm, migrations)
	if err != nil {
		return nil, fmt.Errorf("bundle from %s: %w", dir, err)
	}
	return b, nil
}

// readBounded reads a regular file of at most limit bytes, refusing larger ones with
// ErrTooLarge before reading them.
func readBounded(root *os.Root, name string, limit int64) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file: %w", name, ErrMalformed)
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, over the %d byte limit: %w", name, st.Size(), limit, ErrTooLarge)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: grew past the %d byte limit while being read: %w", name, limit, ErrTooLarge)
	}
	return data, nil
}
